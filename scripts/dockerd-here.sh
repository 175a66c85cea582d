#!/usr/bin/env bash
# A throwaway Docker daemon for building and testing the images on a machine without a bridge network or an
# image registry (docs: docker/README.md). Everything lives under one directory: data root, exec root, socket,
# log, pid. No docker0 bridge and no iptables rules are created; builds and containers use --network host.
#   scripts/dockerd-here.sh start DIR [WATCH_PID]   prints `export DOCKER_HOST=unix://DIR/docker.sock`
#   scripts/dockerd-here.sh stop DIR                 stops the daemon, its containers, removes DIR
# With WATCH_PID, a watchdog stops the daemon and removes DIR when that process ends, so a test runner that is
# killed (timeout, Ctrl-C) does not leave a daemon and gigabytes of layers behind.
set -euo pipefail
cmd="${1:?start|stop}"
dir="${2:?directory}"

stop() {
  local d="$1" pid
  if [ -f "$d/docker.pid" ] && pid=$(cat "$d/docker.pid") && kill -0 "$pid" 2>/dev/null; then
    # Containers first (their shims outlive the daemon otherwise), then the daemon.
    DOCKER_HOST="unix://$d/docker.sock" /usr/bin/docker ps -q 2>/dev/null | xargs -r \
      env DOCKER_HOST="unix://$d/docker.sock" /usr/bin/docker kill >/dev/null 2>&1 || true
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  # Overlay mounts left by a daemon that died uncleanly would make rm fail.
  if [ -d "$d" ]; then
    awk -v d="$d" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
    rm -rf "$d"
  fi
}

case "$cmd" in
  start)
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    dockerd --bridge=none --iptables=false --ip-masq=false --ip6tables=false \
      --data-root "$dir/data" --exec-root "$dir/exec" -H "unix://$dir/docker.sock" \
      --pidfile "$dir/docker.pid" >"$dir/dockerd.log" 2>&1 &
    for _ in $(seq 1 120); do
      DOCKER_HOST="unix://$dir/docker.sock" /usr/bin/docker info >/dev/null 2>&1 && break
      sleep 0.5
    done
    if ! DOCKER_HOST="unix://$dir/docker.sock" /usr/bin/docker info >/dev/null 2>&1; then
      echo "dockerd did not start; its log:" >&2
      tail -30 "$dir/dockerd.log" >&2
      stop "$dir"
      exit 1
    fi
    if [ -n "${3:-}" ]; then
      watch="$3"
      ( trap '' HUP INT; while kill -0 "$watch" 2>/dev/null && [ -d "$dir" ]; do sleep 2; done; "$0" stop "$dir" ) \
        </dev/null >/dev/null 2>&1 &
    fi
    echo "export DOCKER_HOST=unix://$dir/docker.sock"
    ;;
  stop) stop "$dir" ;;
  *) echo "usage: $0 start|stop DIR [WATCH_PID]" >&2; exit 2 ;;
esac

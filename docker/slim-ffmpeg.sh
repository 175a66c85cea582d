#!/bin/sh
# Installs Debian's (or Ubuntu's) ffmpeg — the distribution's maintained build, which gets its security
# updates — plus tini, then deletes every shared library the install added that neither /usr/bin/ffmpeg nor
# /usr/bin/ffprobe links (ldd closure): Mesa's DRI drivers and LLVM (dlopen'ed by OpenGL, never by a
# command-line decode), VA/VDPAU drivers, and the like. The package database keeps listing every package at
# its version, so scanners still see what is installed and apt upgrades still apply.
# Measured on Debian bookworm: see docker/README.md (ffmpeg options).
# Runs inside `RUN --mount=type=bind,...` in docker/Dockerfile; fails the build if ffmpeg no longer loads.
set -eu
export DEBIAN_FRONTEND=noninteractive
libs() { find / -xdev \( -name '*.so' -o -name '*.so.*' \) \( -type f -o -type l \) 2>/dev/null | sort; }
before=$(mktemp); closure=$(mktemp)
libs >"$before"
apt-get update -qq
apt-get install -y -qq --no-install-recommends ffmpeg tini >/dev/null
for bin in /usr/bin/ffmpeg /usr/bin/ffprobe; do ldd "$bin" | awk '/=> \// {print $3}'; done \
  | xargs -r readlink -f | sort -u >"$closure"
libs | comm -13 "$before" - | while read -r f; do
  grep -qxF "$(readlink -f "$f")" "$closure" || rm -f "$f"
done
# Data only the removed libraries (or ffmpeg's filters we never run) read.
rm -rf /usr/lib/x86_64-linux-gnu/dri /usr/lib/x86_64-linux-gnu/vdpau /usr/share/X11 /usr/share/icons \
  /usr/share/drirc.d /usr/share/glvnd /usr/share/vulkan /usr/share/alsa /usr/share/pocketsphinx
rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log "$before" "$closure"
if ldd /usr/bin/ffmpeg /usr/bin/ffprobe | grep 'not found'; then echo 'slim-ffmpeg: a needed library was removed' >&2; exit 1; fi
ffmpeg -hide_banner -version | head -1

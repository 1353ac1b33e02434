#!/usr/bin/env bash
# Build a Debian bookworm base image from Debian's own packages, for machines that cannot
# pull from an image registry (the public python:3.11-slim stays the Dockerfile's default).
#   scripts/docker-base.sh [NAME:TAG]     default synqra-base:bookworm; skipped if it exists
# Needs root, debootstrap and a running Docker engine. The mirror is the one apt's own
# sources name (override with DEBIAN_MIRROR). The image has no Python: the Dockerfile installs
# Debian's python3 (3.11 on bookworm). Use it with:
#   docker build --build-arg BASE_IMAGE=synqra-base:bookworm ...
set -euo pipefail
image="${1:-synqra-base:bookworm}"
suite=bookworm

if docker image inspect "$image" >/dev/null 2>&1; then
  echo "base image $image exists; skipping" >&2
  exit 0
fi
command -v debootstrap >/dev/null || { echo "debootstrap is missing: apt-get install debootstrap" >&2; exit 1; }

mirror_from_apt() {
  # deb822 sources first (URIs: ...), then one-line sources (deb URL suite ...).
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk '/^URIs:/ {print $2}' "$f"
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    awk '$1 == "deb" {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; break}}' "$f"
  done
}
# The main archive, not the security one.
mirror="${DEBIAN_MIRROR:-$(mirror_from_apt | grep -v -- '-security' | grep -m1 '/debian/\?$' || true)}"
[ -n "$mirror" ] || { echo "no Debian mirror found in apt's sources; set DEBIAN_MIRROR" >&2; exit 1; }
security="${mirror%/debian}"; security="${security%/}/debian-security"

rootfs="$(mktemp -d /tmp/synqra-rootfs.XXXXXX)"
trap 'rm -rf "$rootfs"' EXIT
start=$(date +%s)
echo "debootstrap --variant=minbase $suite from $mirror" >&2
debootstrap --variant=minbase "$suite" "$rootfs" "$mirror" >&2
cat > "$rootfs/etc/apt/sources.list" <<SOURCES
deb $mirror $suite main
deb $mirror $suite-updates main
deb $security $suite-security main
SOURCES
# Keep the image small: no apt lists or caches (the Dockerfile runs apt-get update itself).
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb
tar -C "$rootfs" -c . | docker import - "$image" >&2
echo "built $image in $(( $(date +%s) - start )) s" >&2

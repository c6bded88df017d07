#!/usr/bin/env bash
# Build the local Debian bookworm image that Molecule and `make demo` boot with systemd.
#
# Why: no image registry is reachable from our machines, so the base image is made from
# Debian packages with debootstrap, cached as a tarball, and imported into podman.
# Idempotent: an existing image is kept; a cached tarball is re-imported in seconds.
#
# Env: WATTKEEPER_CACHE (default ~/.cache/wattkeeper), WATTKEEPER_IMAGE
# (default localhost/wattkeeper-bookworm), DEBIAN_MIRROR, FORCE=1 to rebuild.
set -euo pipefail

CACHE="${WATTKEEPER_CACHE:-$HOME/.cache/wattkeeper}"
IMAGE="${WATTKEEPER_IMAGE:-localhost/wattkeeper-bookworm}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
# Bump when the package list changes, so a stale tarball is not reused.
REV=2
TARBALL="$CACHE/wattkeeper-bookworm-rootfs-r$REV.tar"
# Everything the roles need is baked in, so a converge does not depend on apt in the
# container: systemd as PID 1, python for Ansible, venv/pip for the agent virtualenv.
PACKAGES=systemd,systemd-sysv,dbus,python3,python3-venv,python3-pip,python3-apt,sudo,iproute2,ca-certificates,procps,sqlite3,curl,gnupg

log() { echo "build-image: $*" >&2; }

if [[ "${FORCE:-0}" != 1 ]] && podman image exists "$IMAGE" \
    && [[ "$(podman image inspect -f '{{index .Labels "wattkeeper.rev"}}' "$IMAGE" 2>/dev/null)" == "$REV" ]]; then
    log "$IMAGE is up to date (rev $REV)"
    echo "$IMAGE"
    exit 0
fi

mkdir -p "$CACHE"
if [[ "${FORCE:-0}" == 1 || ! -s "$TARBALL" ]]; then
    command -v debootstrap >/dev/null || { log "debootstrap is not installed (apt-get install debootstrap)"; exit 1; }
    root="$(mktemp -d "${TMPDIR:-/var/tmp}/wattkeeper-rootfs.XXXXXX")"
    trap 'rm -rf "$root"' EXIT
    log "debootstrap bookworm (minbase) into $root, about a minute"
    debootstrap --variant=minbase --include="$PACKAGES" bookworm "$root" "$MIRROR" >&2
    # A container has no consoles or udev hardware; these units only fail or wait there.
    for unit in systemd-udevd.service systemd-udev-trigger.service getty@tty1.service \
        systemd-remount-fs.service systemd-firstboot.service console-getty.service \
        sys-kernel-config.mount sys-kernel-debug.mount; do
        ln -sf /dev/null "$root/etc/systemd/system/$unit"
    done
    echo "wattkeeper" >"$root/etc/hostname"
    : >"$root/etc/machine-id"
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar -C "$root" --numeric-owner -cf "$TARBALL.tmp" .
    mv "$TARBALL.tmp" "$TARBALL"
fi

log "importing $TARBALL as $IMAGE"
podman import --change 'CMD ["/sbin/init"]' --change 'LABEL wattkeeper.rev='"$REV" \
    --change 'ENV container=podman' "$TARBALL" "$IMAGE" >&2
echo "$IMAGE"

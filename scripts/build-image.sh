#!/usr/bin/env bash
# Build the local Debian bookworm image that Molecule and `make demo` boot with systemd.
#   scripts/build-image.sh [amd64|arm64|armhf]      (default amd64, the machine's own)
# arm64 and armhf are the Raspberry Pi collectors' architectures: debootstrap runs their
# second stage through qemu-user-static (binfmt_misc, `make deps-arm`), and podman runs
# the image emulated (`podman run --arch arm64 ...`).
#
# Why: no image registry is reachable from our machines, so the base image is made from
# Debian packages with debootstrap, cached as a tarball, and imported into podman.
# Idempotent: an existing image is kept; a cached tarball is re-imported in seconds.
#
# Env: WATTKEEPER_CACHE (default ~/.cache/wattkeeper), WATTKEEPER_IMAGE
# (default localhost/wattkeeper-bookworm, and localhost/wattkeeper-bookworm-ARCH for arm),
# DEBIAN_MIRROR, FORCE=1 to rebuild.
set -euo pipefail

ARCH="${1:-amd64}"
CACHE="${WATTKEEPER_CACHE:-$HOME/.cache/wattkeeper}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
# Bump when the package list changes, so a stale tarball is not reused.
REV=2
case "$ARCH" in
    amd64) IMAGE="${WATTKEEPER_IMAGE:-localhost/wattkeeper-bookworm}"
           TARBALL="$CACHE/wattkeeper-bookworm-rootfs-r$REV.tar"; PODMAN_ARCH=(); QEMU="" ;;
    arm64) QEMU=aarch64; PODMAN_ARCH=(--arch arm64) ;;
    armhf) QEMU=arm; PODMAN_ARCH=(--arch arm --variant v7) ;;
    *) echo "build-image: unknown architecture '$ARCH' (amd64, arm64 or armhf)" >&2; exit 2 ;;
esac
if [[ -n "$QEMU" ]]; then
    # The arm images' own revision (r3: the qemu-user drop-ins below).
    REV=3
    IMAGE="${WATTKEEPER_IMAGE:-localhost/wattkeeper-bookworm-$ARCH}"
    TARBALL="$CACHE/wattkeeper-bookworm-$ARCH-rootfs-r$REV.tar"
fi
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
    if [[ -n "$QEMU" && ! -e /proc/sys/fs/binfmt_misc/qemu-$QEMU ]]; then
        log "$ARCH binaries cannot run here: no binfmt_misc entry qemu-$QEMU (run: make deps-arm)"
        exit 1
    fi
    root="$(mktemp -d "${TMPDIR:-/var/tmp}/wattkeeper-rootfs.XXXXXX")"
    trap 'rm -rf "$root"' EXIT
    log "debootstrap bookworm (minbase, $ARCH) into $root, about a minute (arm: several, emulated)"
    nice -n 10 debootstrap --arch="$ARCH" --variant=minbase --include="$PACKAGES" bookworm "$root" "$MIRROR" >&2
    # A container has no consoles or udev hardware; these units only fail or wait there.
    for unit in systemd-udevd.service systemd-udev-trigger.service getty@tty1.service \
        systemd-remount-fs.service systemd-firstboot.service console-getty.service \
        sys-kernel-config.mount sys-kernel-debug.mount; do
        ln -sf /dev/null "$root/etc/systemd/system/$unit"
    done
    if [[ -n "$QEMU" ]]; then
        # Under qemu-user, systemd cannot set up these units' (empty) credentials ("Failed to
        # set up credentials: Invalid argument", status 243): they load none here anyway.
        for unit in systemd-sysusers systemd-tmpfiles-setup systemd-tmpfiles-setup-dev; do
            mkdir -p "$root/etc/systemd/system/$unit.service.d"
            printf '[Service]\nLoadCredential=\n' >"$root/etc/systemd/system/$unit.service.d/qemu-user.conf"
        done
    fi
    echo "wattkeeper" >"$root/etc/hostname"
    : >"$root/etc/machine-id"
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar -C "$root" --numeric-owner -cf "$TARBALL.tmp" .
    mv "$TARBALL.tmp" "$TARBALL"
fi

log "importing $TARBALL as $IMAGE"
podman import "${PODMAN_ARCH[@]}" --change 'CMD ["/sbin/init"]' --change 'LABEL wattkeeper.rev='"$REV" \
    --change 'ENV container=podman' "$TARBALL" "$IMAGE" >&2
echo "$IMAGE"

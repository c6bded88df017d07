# shellcheck shell=bash
# A throwaway root filesystem to chroot into, for the scripts that build arm things under
# qemu-user-static (build-pi-image.sh, build-arm-wheels.sh). Source it, then
# `chroot_workdir NAME`: sets $work (a new temporary directory) and $root ($work/rootfs), and
# on exit unmounts what mount_chroot mounted and removes $work, whatever happened.

chroot_workdir() {
    work="$(mktemp -d "${TMPDIR:-/var/tmp}/wattkeeper-$1.XXXXXX")"
    root="$work/rootfs"
    mounted=()
    trap _chroot_cleanup EXIT
}

_chroot_cleanup() {
    for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -l "${mounted[i]}" 2>/dev/null || true; done
    rm -rf "$work"
}

# /proc, /sys and /dev inside $root, for package scripts and compilers.
mount_chroot() {
    for fs in proc sys dev; do
        mkdir -p "$root/$fs"
        case $fs in
            proc) mount -t proc proc "$root/proc" ;;
            sys) mount -t sysfs sys "$root/sys" ;;
            dev) mount --bind /dev "$root/dev" ;;
        esac
        mounted+=("$root/$fs")
    done
}

umount_chroot() {
    for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -l "${mounted[i]}"; done
    mounted=()
}

# A command in $root with a clean environment (emulated: niced, it is slow and long).
in_root() {
    nice -n 10 chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
        DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 "$@"
}

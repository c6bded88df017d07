#!/usr/bin/env bash
# Debian packages a fresh machine needs, per target:
#   install-deps.sh        the tests and the demo: podman and friends for the systemd test
#                          hosts, debootstrap for their image, sqlite3 for inspecting buffers,
#                          mosquitto for the MQTT tests (which start their own brokers)
#   install-deps.sh arm    + qemu-user-static and binfmt-support, so arm64/armhf binaries run
#                          (the arm collectors of `make test-arm`, the Pi image's chroot)
#   install-deps.sh image  + what `make image` needs to assemble and boot-test the Pi image
#                          (qemu-system-arm, dosfstools, mtools, parted, e2fsprogs) and boot-test it (socat;
#                          debugfs and journalctl read the guest's journal)
# Go and Rust (for building influxd) come with the machine. `make test` pays only for the first.
set -euo pipefail

packages=(podman runc fuse-overlayfs slirp4netns uidmap catatonit containernetworking-plugins
          iptables debootstrap sqlite3 python3-venv faketime mosquitto)
case "${1:-}" in
    "") ;;
    arm) packages+=(qemu-user-static binfmt-support) ;;
    image) packages+=(qemu-user-static binfmt-support qemu-system-arm dosfstools mtools parted
                      e2fsprogs fdisk socat systemd) ;;
    *) echo "install-deps: unknown target '$1' (nothing, arm or image)" >&2; exit 2 ;;
esac
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
sudo_cmd=()
[[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
if ((${#missing[@]})); then
    echo "install-deps: installing ${missing[*]}" >&2
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
if [[ -n "${1:-}" ]]; then
    # Foreign binaries run through binfmt_misc; a container host may not have it mounted.
    # Debian's qemu-user-static registers its interpreters with the F flag, so they work
    # inside chroots and podman containers too.
    if [[ ! -e /proc/sys/fs/binfmt_misc/status ]]; then
        "${sudo_cmd[@]}" mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    fi
    if [[ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 || ! -e /proc/sys/fs/binfmt_misc/qemu-arm ]]; then
        "${sudo_cmd[@]}" update-binfmts --enable qemu-aarch64
        "${sudo_cmd[@]}" update-binfmts --enable qemu-arm
    fi
fi

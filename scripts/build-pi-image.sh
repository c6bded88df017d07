#!/usr/bin/env bash
# `make image`: a Raspberry Pi SD-card image (arm64: Pi 3, 4, 400, Zero 2 W; not the Pi 5) with
# wattkeeper's collector installed, written to dist/wattkeeper-pi-arm64.img.
#
# Debian bookworm with Debian's own Pi support (raspi-firmware, linux-image-arm64, the
# non-free-firmware Wi-Fi blobs); Raspberry Pi OS's repository is not reachable from our
# machines. Steps:
#   1. base root filesystem (debootstrap --arch=arm64, kernel, firmware), cached as a tarball
#      in ~/.cache/wattkeeper; its second stage runs through qemu-user-static
#   2. the collector installed into a copy of it by the wattkeeper role itself, over Ansible's
#      chroot connection (image/build.yml): no second installer
#   3. a FAT boot partition (RASPIFIRM) and an ext4 root (RASPIROOT) assembled without loop
#      devices (mkfs.vfat + mtools, mkfs.ext4 -d) into an MBR disk image
# On first boot wattkeeper-firstboot.service reads wattkeeper.yml from the FAT partition
# (image/firstboot.sh). Env: WATTKEEPER_CACHE, DEBIAN_MIRROR, WATTKEEPER_PI_IMAGE (output),
# FORCE=1 rebuilds the cached base.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${WATTKEEPER_CACHE:-$HOME/.cache/wattkeeper}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
OUT="${WATTKEEPER_PI_IMAGE:-dist/wattkeeper-pi-arm64.img}"
VENV="${VENV:-.venv}"
# Bump when the base's packages or settings change, so a stale tarball is not reused.
REV=1
BASE="$CACHE/wattkeeper-pi-arm64-base-r$REV.tar"
BASE_PACKAGES=systemd,systemd-sysv,udev,kmod,dbus,ca-certificates,procps,iproute2,python3,python3-venv
# The first boot runs Ansible: its dependencies from Debian, ansible-core itself from PyPI.
SYSTEM_PACKAGES=(initramfs-tools linux-image-arm64 raspi-firmware firmware-brcm80211 wireless-regdb
                 wpasupplicant iw systemd-timesyncd systemd-resolved cloud-guest-utils fdisk e2fsprogs
                 dosfstools python3-yaml python3-jinja2 python3-cryptography python3-packaging
                 python3-resolvelib)
FAT_MIB=256
start=$(date +%s)
log() { echo "build-pi-image: [$(( $(date +%s) - start ))s] $*" >&2; }

for tool in debootstrap mkfs.vfat mcopy mkfs.ext4 sfdisk; do
    command -v "$tool" >/dev/null || { log "$tool is missing: run make deps-image"; exit 1; }
done
[[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]] || { log "arm64 binaries cannot run here: run make deps-image"; exit 1; }
[[ -x "$VENV/bin/ansible-playbook" ]] || { log "no $VENV/bin/ansible-playbook: run make venv"; exit 1; }

# shellcheck source=scripts/lib/chroot.sh
source scripts/lib/chroot.sh
chroot_workdir pi

mkdir -p "$CACHE" "$root"
if [[ "${FORCE:-0}" == 1 || ! -s "$BASE" ]]; then
    log "base: debootstrap bookworm arm64 (emulated second stage, several minutes)"
    nice -n 10 debootstrap --arch=arm64 --variant=minbase --components=main,non-free-firmware \
        --include="$BASE_PACKAGES" bookworm "$root" "$MIRROR" >"$work/debootstrap.log" \
        || { tail -5 "$work/debootstrap.log"; tail -30 "$root/debootstrap/debootstrap.log"; exit 1; } >&2
    mkdir -p "$root/boot/firmware" "$root/etc/default"
    # raspi-firmware writes cmdline.txt from this: boot by label, serial and HDMI consoles.
    printf '%s\n' 'ROOTPART=LABEL=RASPIROOT' 'CONSOLES="ttyS1,115200 tty0"' >"$root/etc/default/raspi-firmware"
    # One initramfs (the kernel's own install makes it): package triggers would each build it
    # again, about 20 minutes every time under emulation. Updates are back on in the image.
    mkdir -p "$root/etc/initramfs-tools"
    echo update_initramfs=no >"$root/etc/initramfs-tools/update-initramfs.conf"
    mount_chroot
    log "base: kernel, Pi firmware, Wi-Fi, time and network services"
    in_root apt-get update -qq
    in_root apt-get install -y -qq --no-install-recommends -o Dpkg::Options::=--force-confold \
        "${SYSTEM_PACKAGES[@]}" >"$work/apt.log" 2>&1 || { tail -30 "$work/apt.log" >&2; exit 1; }
    in_root apt-get clean
    echo update_initramfs=yes >"$root/etc/initramfs-tools/update-initramfs.conf"
    umount_chroot
    rm -rf "$root"/var/lib/apt/lists/*
    tar -C "$root" --numeric-owner -cf "$BASE.tmp" .
    mv "$BASE.tmp" "$BASE"
else
    log "base: $BASE (cached)"
    tar -C "$root" --numeric-owner -xf "$BASE"
fi

log "system settings: fstab, network, hostname, apt sources"
cat >"$root/etc/fstab" <<'EOF'
LABEL=RASPIROOT  /              ext4  rw,noatime                     0  1
# umask=0077: while the settings file is there, only root reads it on the running Pi.
LABEL=RASPIFIRM  /boot/firmware vfat  rw,noatime,umask=0077,nofail   0  2
EOF
cat >"$root/etc/systemd/network/10-wired.network" <<'EOF'
[Match]
Name=e*

[Network]
DHCP=yes
EOF
cat >"$root/etc/systemd/network/20-wireless.network" <<'EOF'
# Wi-Fi: configure wpa_supplicant@wlan0 (see docs/raspberry-pi.md); the address comes by DHCP.
[Match]
Name=wl*

[Network]
DHCP=yes
EOF
echo wattkeeper >"$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\twattkeeper\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
cat >"$root/etc/apt/sources.list" <<EOF
deb $MIRROR bookworm main non-free-firmware
deb $MIRROR bookworm-updates main non-free-firmware
deb http://security.debian.org/debian-security bookworm-security main non-free-firmware
EOF
ln -sf /run/systemd/resolve/stub-resolv.conf "$root/etc/resolv.conf"
mkdir -p "$root/etc/systemd/system/multi-user.target.wants" "$root/etc/systemd/system/sockets.target.wants" \
    "$root/etc/systemd/system/network-online.target.wants" "$root/etc/systemd/system/sysinit.target.wants"
ln -sf /lib/systemd/system/systemd-networkd.service "$root/etc/systemd/system/multi-user.target.wants/"
ln -sf /lib/systemd/system/systemd-networkd.socket "$root/etc/systemd/system/sockets.target.wants/"
ln -sf /lib/systemd/system/systemd-networkd-wait-online.service "$root/etc/systemd/system/network-online.target.wants/"
ln -sf /lib/systemd/system/systemd-resolved.service "$root/etc/systemd/system/multi-user.target.wants/"
# A new machine-id on first boot (each Pi its own).
: >"$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"

log "collector: the wattkeeper role through Ansible's chroot connection (image/build.yml)"
ansible_core="$("$VENV/bin/python" -c 'import ansible.release as r; print(r.__version__)')"
mkdir -p "$CACHE/pi-wheels"
"$VENV/bin/python" -m pip download --quiet --no-deps --only-binary=:all: --dest "$CACHE/pi-wheels" \
    "ansible-core==$ansible_core"
ansible_wheel="$(ls "$CACHE/pi-wheels"/ansible_core-"$ansible_core"-*.whl)"
tar -C . --exclude=__pycache__ -czf "$work/provision.tar.gz" ansible.cfg roles/wattkeeper \
    roles/wattkeeper_common ansible/plugins image/firstboot.yml image/firstboot.sh image/callback
printf '[pi_image]\nwattkeeper-pi ansible_connection=community.general.chroot ansible_host=%s ansible_python_interpreter=/usr/bin/python3\n' \
    "$root" >"$work/inventory.ini"
mkdir -p "$root/usr/lib/wattkeeper"
mount_chroot
ANSIBLE_CONFIG=ansible.cfg nice -n 10 "$VENV/bin/ansible-playbook" -i "$work/inventory.ini" image/build.yml \
    -e "wattkeeper_build_dir=$work/ansible-build" -e "wattkeeper_image_provision_tar=$work/provision.tar.gz" \
    -e "wattkeeper_image_ansible_wheel=$ansible_wheel" \
    -e '{"_wattkeeper_restart": [], "_wattkeeper_restart_simulators": []}' >"$work/ansible.log" 2>&1 \
    || { tail -40 "$work/ansible.log" >&2; exit 1; }
grep -A3 'PLAY RECAP' "$work/ansible.log" >&2
umount_chroot
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/root/.cache "$root"/root/.ansible
find "$root/opt" "$root/usr/lib/wattkeeper" -name __pycache__ -prune -exec rm -rf {} + 2>/dev/null || true
cp image/wattkeeper.example.yml "$root/boot/firmware/wattkeeper.example.yml"

log "assembling the disk image"
mkdir -p "$work/firmware"
mv "$root/boot/firmware"/* "$work/firmware/"
root_mib=$(( $(du -sm "$root" | cut -f1) * 13 / 10 + 256 ))
rm -f "$work/fat.img" "$work/root.img"
mkfs.vfat -n RASPIFIRM -F 32 -C "$work/fat.img" $((FAT_MIB * 1024)) >/dev/null
mcopy -s -i "$work/fat.img" "$work/firmware"/* ::/
mkfs.ext4 -q -L RASPIROOT -d "$root" "$work/root.img" "${root_mib}M"
mkdir -p "$(dirname "$OUT")"
rm -f "$OUT"
truncate -s $(( (4 + FAT_MIB + root_mib) * 1024 * 1024 )) "$OUT"
sfdisk --quiet "$OUT" <<EOF
label: dos
start=4MiB, size=${FAT_MIB}MiB, type=c
start=$((4 + FAT_MIB))MiB, type=83
EOF
dd if="$work/fat.img" of="$OUT" bs=1M seek=4 conv=notrunc,sparse status=none
dd if="$work/root.img" of="$OUT" bs=1M seek=$((4 + FAT_MIB)) conv=notrunc,sparse status=none
log "done: $OUT ($(( $(stat -c %s "$OUT") / 1024 / 1024 )) MiB)"
echo "$OUT"

#!/usr/bin/env bash
# Compile, once, the wheels PyPI has no build of for armv7l (32-bit Raspberry Pi OS), so an
# amd64 controller can still put them in an offline wheelhouse
# (wattkeeper_wheelhouse_find_links). Today that is gpiod: its PyPI release ships x86_64 and
# aarch64 wheels only; its sdist bundles libgpiod's C sources and needs gcc + python3-dev.
# The sdist and its build requirements are downloaded here (this machine's pip and its
# certificates), the compiler runs in a chroot of the armhf root filesystem
# (scripts/build-image.sh armhf) under qemu-user-static, several minutes. The wheel is
# cached in ~/.cache/wattkeeper/wheels-armhf and that directory printed.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${WATTKEEPER_CACHE:-$HOME/.cache/wattkeeper}"
OUT="${WATTKEEPER_ARM_WHEELS:-$CACHE/wheels-armhf}"
PY="${PY:-.venv/bin/python}"
# The version the tests pin (requirements-dev.txt), so controller and Pi run the same binding.
GPIOD="$(sed -n 's/^gpiod==//p' requirements-dev.txt)"
log() { echo "build-arm-wheels: $*" >&2; }

if compgen -G "$OUT/gpiod-$GPIOD-*linux_armv7l.whl" >/dev/null; then
    log "gpiod $GPIOD for armv7l is cached in $OUT"
    echo "$OUT"
    exit 0
fi
bash scripts/build-image.sh armhf >/dev/null
tarball="$(ls "$CACHE"/wattkeeper-bookworm-armhf-rootfs-r*.tar | tail -1)"
# shellcheck source=scripts/lib/chroot.sh
source scripts/lib/chroot.sh
chroot_workdir armwheels
mkdir -p "$root" "$OUT"
tar -C "$root" -xf "$tarball"
mkdir -p "$root/src"
"$PY" -m pip download --quiet --no-deps --no-binary :all: --dest "$root/src" "gpiod==$GPIOD"
"$PY" -m pip download --quiet --only-binary :all: --dest "$root/src" setuptools wheel
mount_chroot
cp /etc/resolv.conf "$root/etc/resolv.conf"
log "compiling gpiod $GPIOD for armv7l in a chroot of $tarball (emulated, several minutes)"
in_root sh -ec "apt-get update -qq
            apt-get install -y -qq --no-install-recommends gcc libc6-dev python3-dev >/dev/null
            python3 -m pip wheel --quiet --no-index --find-links /src --wheel-dir /out-wheels gpiod==$GPIOD" >&2
cp "$root"/out-wheels/gpiod-"$GPIOD"-*linux_armv7l.whl "$OUT/"
ls "$OUT"/gpiod-"$GPIOD"-*linux_armv7l.whl >&2
echo "$OUT"

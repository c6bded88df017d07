#!/usr/bin/env bash
# Compile, once, the wheels PyPI has no build of for armv7l (32-bit Raspberry Pi OS), so an
# amd64 controller can still put them in an offline wheelhouse
# (wattkeeper_wheelhouse_find_links). Today that is gpiod: its PyPI release ships x86_64 and
# aarch64 wheels only; its sdist bundles libgpiod's C sources and needs gcc + python3-dev.
# The compiler runs in the armhf image under qemu-user-static (several minutes), the result
# is cached in ~/.cache/wattkeeper/wheels-armhf and printed.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${WATTKEEPER_CACHE:-$HOME/.cache/wattkeeper}"
OUT="${WATTKEEPER_ARM_WHEELS:-$CACHE/wheels-armhf}"
# The version the tests pin (requirements-dev.txt), so controller and Pi run the same binding.
GPIOD="$(sed -n 's/^gpiod==//p' requirements-dev.txt)"
log() { echo "build-arm-wheels: $*" >&2; }

if compgen -G "$OUT/gpiod-$GPIOD-*linux_armv7l.whl" >/dev/null; then
    log "gpiod $GPIOD for armv7l is cached in $OUT"
    echo "$OUT"
    exit 0
fi
image="$(bash scripts/build-image.sh armhf)"
mkdir -p "$OUT"
log "compiling gpiod $GPIOD for armv7l in $image (emulated, a few minutes)"
flock /tmp/wattkeeper-podman.lock nice -n 10 podman run --rm --runtime runc --arch arm --variant v7 \
    --ulimit nofile=20000:20000 --ulimit nproc=4096:4096 -v "$OUT:/out" "$image" sh -ec "
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends gcc libc6-dev python3-dev >/dev/null
        python3 -m pip wheel --quiet --no-deps --wheel-dir /out gpiod==$GPIOD" >&2
ls "$OUT"/gpiod-"$GPIOD"-*linux_armv7l.whl >&2
echo "$OUT"

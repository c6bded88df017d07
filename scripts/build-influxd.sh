#!/usr/bin/env bash
# Build influxd 2.x from its Go module and cache it under ~/.cache/wattkeeper/.
#
# Why a source build: no registry reachable from our machines ships InfluxDB 2
# (Debian has only 1.6). See docs/influxd-build.md for the traps handled here.
#
# Prints the path of the cached binary on its last line of stdout.
set -euo pipefail

# v2.10.0 is the newest tag, but the module proxy refuses the zip of the flux
# v0.201.0 it needs (HTTP 403); v2.7.12 is the newest 2.x that builds from modules.
VERSION="${WATTKEEPER_INFLUXD_VERSION:-v2.7.12}"
CACHE="${WATTKEEPER_CACHE:-$HOME/.cache/wattkeeper}"
OUT="$CACHE/influxd-$VERSION/influxd"

if [[ -x "$OUT" ]]; then
    echo "$OUT"
    exit 0
fi

log() { echo "build-influxd: $*" >&2; }

command -v go >/dev/null || { log "go is not installed"; exit 1; }
command -v cargo >/dev/null || { log "cargo (rustup) is not installed"; exit 1; }

# The newest 2.x may ask for a newer Go patch release than the machine has;
# the go command fetches that toolchain from the module proxy itself.
export GOTOOLCHAIN="${GOTOOLCHAIN:-auto}"
export GOFLAGS="-mod=mod"
# flux pins an old Rust channel (1.72) that rustup cannot download here.
export RUSTUP_TOOLCHAIN="${RUSTUP_TOOLCHAIN:-stable}"

work="$(mktemp -d "${TMPDIR:-/tmp}/influxd-build.XXXXXX")"
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT

log "fetching github.com/influxdata/influxdb/v2@$VERSION"
src_dir="$(cd "$work" && go mod download -json "github.com/influxdata/influxdb/v2@$VERSION" \
    | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d.get("Dir") or sys.exit(d.get("Error")))')"
cp -r "$src_dir" "$work/src"
chmod -R u+w "$work/src"

# influxdata's pkg-config wrapper builds libflux with cargo when cgo asks for "flux".
log "installing influxdata/pkg-config wrapper"
pkgcfg_version="$(awk '$1=="github.com/influxdata/pkg-config"{print $2}' "$work/src/go.mod")"
GOBIN="$work/bin" go install "github.com/influxdata/pkg-config@${pkgcfg_version:-latest}"
export PATH="$work/bin:$PATH"
# libflux denies warnings, and rustc versions newer than flux's pinned 1.72 add lints.
# The cap must reach every rustc call, including host-side build-script crates, which
# RUSTFLAGS skip when cargo is given --target (as the pkg-config wrapper does): hence a
# RUSTC_WRAPPER, set by a cargo shim (the wrapper honours $CARGO).
cat > "$work/bin/rustc-cap-lints" <<'WRAP'
#!/bin/sh
rustc="$1"; shift
for a in "$@"; do case "$a" in --cap-lints*) exec "$rustc" "$@" ;; esac; done
exec "$rustc" "$@" --cap-lints=warn
WRAP
cat > "$work/bin/cargo-shim" <<SHIM
#!/bin/sh
export RUSTUP_TOOLCHAIN="$RUSTUP_TOOLCHAIN" RUSTC_WRAPPER="$work/bin/rustc-cap-lints"
exec "$(command -v cargo)" "\$@"
SHIM
chmod +x "$work/bin/cargo-shim" "$work/bin/rustc-cap-lints"
export CARGO="$work/bin/cargo-shim"

tags="sqlite_foreign_keys,sqlite_json"   # no 'assets': the UI would be downloaded from the internet
case "$(uname -m)" in x86_64|amd64) ;; *) tags="$tags,noasm" ;; esac

log "building influxd $VERSION (tags: $tags); this takes a while on 2 cores"
(cd "$work/src" && go build -tags "$tags" \
    -ldflags "-s -w -X main.version=${VERSION#v} -X main.commit=wattkeeper-build" \
    -o "$work/influxd" ./cmd/influxd)

mkdir -p "$(dirname "$OUT")"
mv "$work/influxd" "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
log "built $("$OUT" version)"
echo "$OUT"

#!/usr/bin/env bash
# Build Telegraf from its Go module and cache it under ~/.cache/wattkeeper/, for the
# side-by-side benchmark (bench/telegraf.py). `make bench` runs this when the binary is
# missing; `make test` never needs it.
#
# Only the plugins the benchmark uses are compiled in (Telegraf's documented `custom`
# build tags, docs/CUSTOMIZATION.md in its source): the full build would take far longer
# on 2 cores and the agent's behaviour (buffers, batching, retries) is the same.
#
# Prints the path of the cached binary on its last line of stdout.
set -euo pipefail

# v1.37.2 is the newest release the Go module proxy lists for github.com/influxdata/telegraf
# (it needs Go >= 1.25.5, which the machine's Go 1.26 satisfies).
VERSION="${WATTKEEPER_TELEGRAF_VERSION:-v1.37.2}"
CACHE="${WATTKEEPER_CACHE:-$HOME/.cache/wattkeeper}"
OUT="$CACHE/telegraf-$VERSION/telegraf"
TAGS="custom,inputs.socket_listener,inputs.internal,outputs.influxdb_v2,parsers.influx,serializers.influx"

if [[ -x "$OUT" ]]; then
    echo "$OUT"
    exit 0
fi

log() { echo "build-telegraf: $*" >&2; }

command -v go >/dev/null || { log "go is not installed"; exit 1; }

export GOTOOLCHAIN="${GOTOOLCHAIN:-auto}"
export GOFLAGS="-mod=mod"

work="$(mktemp -d "${TMPDIR:-/tmp}/telegraf-build.XXXXXX")"
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT

log "fetching github.com/influxdata/telegraf@$VERSION"
src_dir="$(cd "$work" && go mod download -json "github.com/influxdata/telegraf@$VERSION" \
    | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d.get("Dir") or sys.exit(d.get("Error")))')"
cp -r "$src_dir" "$work/src"
chmod -R u+w "$work/src"

log "building telegraf $VERSION (tags: $TAGS), niced"
(cd "$work/src" && CGO_ENABLED=0 nice -n 19 go build -tags "$TAGS" \
    -ldflags "-s -w -X github.com/influxdata/telegraf/internal.Version=${VERSION#v}" \
    -o "$work/telegraf" ./cmd/telegraf)

mkdir -p "$(dirname "$OUT")"
mv "$work/telegraf" "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
log "built $("$OUT" --version)"
echo "$OUT"

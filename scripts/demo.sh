#!/usr/bin/env bash
# `make demo`: the whole appliance on this machine. Two Debian containers booted with
# systemd (podman): an InfluxDB 2 server and a collector running every landed agent against
# `wattkeeper simulate` services; site.yml converges them exactly as it would real hosts.
#
#   scripts/demo.sh up      start (or re-converge) the demo, then show what landed
#   scripts/demo.sh show    show what landed again
#   scripts/demo.sh clean   remove the containers and the demo's state
#
# Names differ from the Molecule scenario's (wk-server, wk-collector), so `make test`
# never touches a running demo. State (inventory, tokens, logs): ~/.cache/wattkeeper/demo.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="${WATTKEEPER_CACHE:-$HOME/.cache/wattkeeper}"
DEMO="$CACHE/demo"
IMAGE="${WATTKEEPER_IMAGE:-localhost/wattkeeper-bookworm}"
SERVER=wk-demo-server
COLLECTOR=wk-demo-collector
PY="$ROOT/.venv/bin/python"
export PATH="$ROOT/.venv/bin:$PATH"

log() { printf '\033[1mdemo:\033[0m %s\n' "$*" >&2; }

landed() {  # sources whose agent and simulator both exist in this checkout
    local pkg="$ROOT/agents/wattkeeper" s
    for s in octopus wattivahti pulse luxtronik; do
        if { [[ -f $pkg/sources/$s.py ]] || [[ -f $pkg/sources/$s/__init__.py ]]; } &&
           { [[ -f $pkg/simulate/$s.py ]] || [[ -f $pkg/simulate/$s/__init__.py ]]; }; then
            echo "$s"
        fi
    done
}

start_host() {
    local name=$1
    if [[ "$(podman inspect -f '{{.State.Running}}' "$name" 2>/dev/null)" == true ]]; then
        return
    fi
    podman rm -f "$name" >/dev/null 2>&1 || true
    log "starting $name (systemd as PID 1)"
    podman run -d --name "$name" --hostname "$name" --runtime runc --systemd=always \
        --ulimit nofile=20000:20000 --ulimit nproc=4096:4096 \
        --label wattkeeper.demo=1 "$IMAGE" /sbin/init >/dev/null
}

write_inventory() {
    local sources=("$@") s
    mkdir -p "$DEMO/group_vars" "$DEMO/secrets"
    chmod 0700 "$DEMO" "$DEMO/secrets"
    {
        echo "# Written by scripts/demo.sh: the two demo containers, reached with podman exec."
        echo "[influxdb]"
        echo "$SERVER"
        for s in octopus wattivahti pulse luxtronik; do
            echo
            echo "[$s]"
            if printf '%s\n' "${sources[@]}" | grep -qx "$s"; then echo "$COLLECTOR"; fi
        done
        echo
        echo "[all:vars]"
        echo "ansible_connection=containers.podman.podman"
        echo "ansible_python_interpreter=/usr/bin/python3"
    } >"$DEMO/inventory.ini"
    if [[ ! -s $DEMO/admin-password ]]; then
        (umask 077; "$PY" -c 'import secrets; print(secrets.token_urlsafe(18))' >"$DEMO/admin-password")
    fi
    cat >"$DEMO/group_vars/all.yml" <<EOF
---
# Written by scripts/demo.sh.
wattkeeper_secrets_dir: "$DEMO/secrets"
wattkeeper_build_dir: "$DEMO/build"
wattkeeper_simulate: true
wattkeeper_offline: true
wattkeeper_influxdb_url: "http://{{ hostvars['$SERVER']['ansible_default_ipv4']['address'] }}:8086"
wattkeeper_agent: {log_level: info, metrics_interval: 30s}
wattkeeper_octopus: {account_number: A-DEMO0001}
wattkeeper_wattivahti: {metering_point: "1234567", initial_days: 2}
wattkeeper_pulse:
  channels:
    - {name: import, pin: 20, pulses_per_kwh: 1000}
    - {name: export, pin: 26, pulses_per_kwh: 1000}
    - {name: generate, pin: 21, pulses_per_kwh: 1000}
wattkeeper_luxtronik: {host: 127.0.0.1, interval: 15s}
EOF
    cat >"$DEMO/group_vars/influxdb.yml" <<EOF
---
influxdb_install_method: binary
influxdb_binary_src: "$INFLUXD"
influxdb_admin_password: "{{ lookup('ansible.builtin.file', '$DEMO/admin-password') }}"
EOF
}

up() {
    [[ -x $PY ]] || { log "no virtualenv: run 'make demo' (or 'make venv') first"; exit 1; }
    INFLUXD="$(bash "$ROOT/scripts/build-influxd.sh" | tail -1)"
    bash "$ROOT/scripts/build-image.sh" >/dev/null
    mapfile -t sources < <(landed)
    log "sources: ${sources[*]}"
    start_host "$SERVER"
    start_host "$COLLECTOR"
    for h in "$SERVER" "$COLLECTOR"; do
        podman exec "$h" systemctl is-system-running --wait >/dev/null 2>&1 || true
    done
    write_inventory "${sources[@]}"
    log "converging site.yml (log: $DEMO/ansible.log)"
    local t0=$SECONDS
    (cd "$ROOT" && ANSIBLE_LOG_PATH="$DEMO/ansible.log" ANSIBLE_CONFIG="$ROOT/ansible.cfg" \
        ansible-playbook -i "$DEMO/inventory.ini" site.yml) || { log "converge failed (log: $DEMO/ansible.log)"; exit 1; }
    log "converged in $((SECONDS - t0))s"
    show --wait
}

show() {
    "$PY" "$ROOT/scripts/demo_summary.py" --server "$SERVER" --collector "$COLLECTOR" \
        --secrets "$DEMO/secrets" --inventory "$DEMO/inventory.ini" "$@"
}

clean() {
    log "removing $SERVER, $COLLECTOR and $DEMO (the image and the influxd build stay cached)"
    podman rm -f "$SERVER" "$COLLECTOR" >/dev/null 2>&1 || true
    rm -rf "$DEMO"
}

case "${1:-up}" in
    up) up ;;
    show) shift; show "$@" ;;
    clean) clean ;;
    *) echo "usage: $0 up|show|clean" >&2; exit 2 ;;
esac

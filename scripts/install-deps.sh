#!/usr/bin/env bash
# Debian packages a fresh machine needs for the tests and the demo:
# podman and friends for the systemd test hosts, debootstrap for their image,
# sqlite3 for inspecting buffers, mosquitto for the MQTT tests (which start their own
# brokers). Go and Rust (for building influxd) come with the machine.
set -euo pipefail

packages=(podman runc fuse-overlayfs slirp4netns uidmap catatonit containernetworking-plugins
          iptables debootstrap sqlite3 python3-venv faketime mosquitto)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "install-deps: installing ${missing[*]}" >&2
    sudo_cmd=()
    [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

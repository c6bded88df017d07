#!/bin/bash
# wattkeeper Pi image, first boot (wattkeeper-firstboot.service): configure and start the
# agents from the settings file on the FAT boot partition, with the wattkeeper role
# (image/firstboot.yml), then say in ONE line what happened: on stdout (the unit sends it to
# the journal and the console) and in wattkeeper-status.txt next to the settings file.
#
# The settings file holds secrets, and the FAT partition is readable by anyone holding the
# card: it is moved off that partition before anything else, and deleted after the run.
# A bad file changes nothing. A run that fails after it changed something disables every
# agent and removes their configs: no agent ever runs half-configured.
set -uo pipefail
settings="${1:-/boot/firmware/wattkeeper.yml}"
prov=/usr/lib/wattkeeper
state=/var/lib/wattkeeper-firstboot
status="$(dirname "$settings")/wattkeeper-status.txt"
umask 077

say() {
    echo "wattkeeper-firstboot: $1"
    echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) $1" >"$status" 2>/dev/null && sync -f "$status" 2>/dev/null || true
}

mkdir -p "$state"
rm -f "$state/settings.yml"
if ! cp "$settings" "$state/settings.yml"; then
    say "cannot read $settings; nothing was configured"
    exit 1
fi
rm -f "$settings"
sync -f "$(dirname "$settings")" 2>/dev/null || sync
trap 'rm -f "$state/settings.yml"' EXIT

# A YAML mistake is named with its line here, before Ansible hides the file's content.
if ! problem="$(/usr/bin/python3 - "$state/settings.yml" "$settings" 2>&1 <<'PY'
import sys
import yaml
try:
    data = yaml.safe_load(open(sys.argv[1], encoding="utf-8"))
except (yaml.YAMLError, UnicodeDecodeError) as exc:
    mark = getattr(exc, "problem_mark", None)
    where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    print(f"{sys.argv[2]}:{where} is not valid YAML ({getattr(exc, 'problem', None) or exc})")
    sys.exit(1)
if not isinstance(data, dict):
    print(f"{sys.argv[2]}: must be a mapping of settings (wattkeeper_sources: [...], ...)")
    sys.exit(1)
PY
)"; then
    say "${problem}; nothing was configured, write a corrected file and reboot"
    exit 1
fi

cd "$prov" || exit 1
ANSIBLE_CONFIG="$prov/ansible.cfg" ANSIBLE_CALLBACK_PLUGINS="$prov/image/callback" \
    ANSIBLE_STDOUT_CALLBACK=wattkeeper_firstboot ANSIBLE_LOCALHOST_WARNING=false \
    ANSIBLE_INVENTORY_UNPARSED_WARNING=false ANSIBLE_NOCOLOR=1 \
    /opt/wattkeeper-provision/bin/ansible-playbook -i localhost, image/firstboot.yml \
    -e "wattkeeper_settings_file=$state/settings.yml" -e "wattkeeper_settings_name=$settings" \
    >"$state/last-run.json" 2>"$state/last-run.err"
rc=$?

# What the run did (image/callback): the first failure's message and whether anything changed.
read -r changed message < <(/usr/bin/python3 - "$state/last-run.json" "$state/last-run.err" "$settings" <<'PY'
import json
import sys

def first_line(text):
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    # The role names the host ("localhost: ..."); here the file is what the user can fix.
    return lines[0].replace("localhost: ", sys.argv[3] + ": ", 1) if lines else ""

try:
    out = open(sys.argv[1], encoding="utf-8").read().strip().splitlines()
    run = json.loads(out[-1])
except (ValueError, IndexError):
    err = [ln for ln in open(sys.argv[2], encoding="utf-8", errors="replace") if ln.strip()]
    print(1, first_line(err[-1] if err else "ansible-playbook did not run"))
    sys.exit()
print(run.get("changed", 1), first_line(run.get("failure") or ""))
PY
)

if [[ $rc -eq 0 ]]; then
    sources="$(systemctl list-units 'wattkeeper-*' --no-legend --plain --state=active \
        | awk '{print $1}' | grep -v -e firstboot -e growroot -e simulate | tr '\n' ' ')"
    say "configured and started: ${sources% }; settings file removed from the boot partition"
    exit 0
fi
if [[ "${changed:-1}" != 0 ]]; then
    # Something was written before the failure: no agent keeps running on a partial config.
    mapfile -t units < <(systemctl list-unit-files 'wattkeeper-*' --no-legend --plain \
        | awk '{print $1}' | grep -v -e firstboot -e growroot)
    ((${#units[@]})) && systemctl disable --now "${units[@]}" >/dev/null 2>&1
    rm -f /etc/wattkeeper/*.toml
    message="${message}; every agent was stopped and unconfigured"
else
    message="${message}; nothing was configured"
fi
say "${message:-the Ansible run failed (see $state/last-run.err)}, write a corrected file and reboot"
exit 1

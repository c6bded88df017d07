#!/usr/bin/python
"""Write several small files whose content the controller rendered, in one module call."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: wattkeeper_files
short_description: Write a list of files from content, in one call
description:
  - Each file is written (atomically, through a temporary file in its directory) only when
    its content differs, and its mode, owner and group are set when they differ, like
    M(ansible.builtin.copy) with I(content). One call for the whole list, so a run with
    nothing to change costs one round trip to the host, not one per file.
  - The directories must exist (in check mode, a missing one means the file would be
    written). Supports check mode and diff (one per changed file).
  - For secrets, set C(no_log) on the task (the diff shows the content).
options:
  files:
    description: The files.
    type: list
    elements: dict
    required: true
    suboptions:
      path:
        description: Absolute path of the file.
        type: path
        required: true
      content:
        description: Its whole content.
        type: str
        required: true
      mode:
        description: Mode, e.g. C("0644") (as a string).
        type: raw
      owner:
        description: Owner (name or ID).
        type: str
      group:
        description: Group (name or ID).
        type: str
author: wattkeeper contributors
"""

EXAMPLES = r"""
- name: Two files in one call
  wattkeeper_files:
    files:
      - {path: /etc/example/a.json, content: "{}\n", mode: "0644", owner: root, group: root}
      - {path: /etc/example/b.json, content: "[]\n", mode: "0644", owner: root, group: root}
"""

RETURN = r"""
changed_paths:
  description: The files whose content or attributes changed (or would, in check mode).
  type: list
  elements: str
  returned: always
"""

import os  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402


def _write(module: Any, path: Path, data: bytes) -> None:
    """Replace the file atomically (a reader never sees half a file)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".wattkeeper-")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        module.atomic_move(tmp, str(path))
    finally:
        Path(tmp).unlink(missing_ok=True)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "files": {
                "type": "list",
                "elements": "dict",
                "required": True,
                "options": {
                    "path": {"type": "path", "required": True},
                    "content": {"type": "str", "required": True},
                    "mode": {"type": "raw"},
                    "owner": {"type": "str"},
                    "group": {"type": "str"},
                },
            }
        },
        supports_check_mode=True,
    )
    changed_paths: list[str] = []
    diffs: list[dict[str, str]] = []
    for item in module.params["files"]:
        path = Path(item["path"])
        header = {"before_header": str(path), "after_header": str(path)}
        if not path.parent.is_dir():
            if not module.check_mode:
                module.fail_json(msg=f"{path}: its directory does not exist")
            # Check mode: an earlier task would have made the directory.
            changed_paths.append(str(path))
            diffs.append({**header, "before": "", "after": item["content"]})
            continue
        data = item["content"].encode("utf-8")
        exists = path.exists()
        before = path.read_bytes() if exists else b""
        changed = not exists or before != data
        if changed:
            diffs.append(
                {**header, "before": before.decode("utf-8", "replace"), "after": item["content"]}
            )
            if not module.check_mode:
                _write(module, path, data)
        args = {"mode": item["mode"], "owner": item["owner"], "group": item["group"]}
        file_args = module.load_file_common_arguments(args, path=str(path))
        if path.exists():
            changed = module.set_fs_attributes_if_different(file_args, changed)
        if changed:
            changed_paths.append(str(path))
    module.exit_json(changed=bool(changed_paths), changed_paths=changed_paths, diff=diffs)


if __name__ == "__main__":
    main()

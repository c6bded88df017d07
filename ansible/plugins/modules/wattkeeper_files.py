#!/usr/bin/python
"""Write several small files whose content the controller rendered, in one module call."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: wattkeeper_files
short_description: Make a list of directories and write a list of files from content, in one call
description:
  - Each file is written (atomically, through a temporary file in its directory) only when
    its content differs, and its mode, owner and group are set when they differ, like
    M(ansible.builtin.copy) with I(content). One call for the whole list, so a run with
    nothing to change costs one round trip to the host, not one per file.
  - I(directories) are made first (their parents must exist), in the order given, with
    their mode, owner and group. A file's directory must exist or be in I(directories)
    (in check mode, a missing one means the file would be written). Supports check mode
    and diff (one per changed file).
  - For secrets, set C(no_log) on the task (the diff shows the content).
options:
  directories:
    description: Directories to make (or bring to their mode, owner and group) before the files.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Absolute path of the directory.
        type: path
        required: true
      mode:
        description: Mode, e.g. C("0755") (as a string).
        type: raw
      owner:
        description: Owner (name or ID).
        type: str
      group:
        description: Group (name or ID).
        type: str
      tag:
        description: A label returned in C(changed_tags) when the directory changed.
        type: str
  files:
    description: The files.
    type: list
    elements: dict
    default: []
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
      force:
        description:
          - Whether to replace a file that exists with other content. C(false) only seeds it
            (a secret its program renews itself, like a refresh token); mode, owner and
            group are still set.
        type: bool
        default: true
      tag:
        description: >-
          A label returned in C(changed_tags) when the file changed, e.g. the unit that must
          restart because of it.
        type: str
author: wattkeeper contributors
"""

EXAMPLES = r"""
- name: Two files in one call
  wattkeeper_files:
    directories:
      - {path: /etc/example, mode: "0750", owner: root, group: root}
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
changed_tags:
  description: The tags of the changed files and directories, each once, in order.
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


_ATTRS = {
    "mode": {"type": "raw"},
    "owner": {"type": "str"},
    "group": {"type": "str"},
    "tag": {"type": "str"},
}


def _attributes(module: Any, item: dict[str, Any], path: Path, changed: bool) -> bool:
    """Set mode, owner and group where they differ; True if anything changed."""
    args = {"mode": item["mode"], "owner": item["owner"], "group": item["group"]}
    file_args = module.load_file_common_arguments(args, path=str(path))
    if path.exists():
        return bool(module.set_fs_attributes_if_different(file_args, changed))
    return changed


def _directory(module: Any, item: dict[str, Any]) -> bool:
    """Make one directory (its parent must exist); True if it or its attributes changed."""
    path = Path(item["path"])
    if path.is_dir():
        return _attributes(module, item, path, False)
    if not module.check_mode:
        if not path.parent.is_dir():
            module.fail_json(msg=f"{path}: its parent directory does not exist")
        path.mkdir()
        return _attributes(module, item, path, True)
    return True


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "directories": {
                "type": "list",
                "elements": "dict",
                "default": [],
                "options": {"path": {"type": "path", "required": True}, **_ATTRS},
            },
            "files": {
                "type": "list",
                "elements": "dict",
                "default": [],
                "options": {
                    "path": {"type": "path", "required": True},
                    "content": {"type": "str", "required": True},
                    "force": {"type": "bool", "default": True},
                    **_ATTRS,
                },
            },
        },
        supports_check_mode=True,
    )
    changed_paths: list[str] = []
    changed_tags: list[str] = []
    diffs: list[dict[str, str]] = []

    def record(item: dict[str, Any]) -> None:
        changed_paths.append(item["path"])
        if item["tag"] and item["tag"] not in changed_tags:
            changed_tags.append(item["tag"])

    for item in module.params["directories"]:
        if _directory(module, item):
            record(item)
    for item in module.params["files"]:
        path = Path(item["path"])
        header = {"before_header": str(path), "after_header": str(path)}
        if not path.parent.is_dir():
            if not module.check_mode:
                module.fail_json(msg=f"{path}: its directory does not exist")
            # Check mode: an earlier task (or directories) would have made the directory.
            record(item)
            diffs.append({**header, "before": "", "after": item["content"]})
            continue
        data = item["content"].encode("utf-8")
        exists = path.exists()
        before = path.read_bytes() if exists else b""
        changed = not exists or (before != data and item["force"])
        if changed:
            diffs.append(
                {**header, "before": before.decode("utf-8", "replace"), "after": item["content"]}
            )
            if not module.check_mode:
                _write(module, path, data)
        if _attributes(module, item, path, changed):
            record(item)
    module.exit_json(
        changed=bool(changed_paths),
        changed_paths=changed_paths,
        changed_tags=changed_tags,
        diff=diffs,
    )


if __name__ == "__main__":
    main()

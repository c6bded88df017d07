"""Stdout callback of the Pi image's first boot (image/firstboot.sh reads it).

It prints one JSON line at the end: the first failed task's message and how many tasks
changed something, which is all the wrapper needs for its one line and its clean-up.
ansible-core has no JSON callback of its own (ansible.posix's is not in the image), and the
usual output would bury the one message that matters.
"""

from __future__ import annotations

import json
from typing import Any

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):  # type: ignore[misc]
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "wattkeeper_firstboot"

    def __init__(self) -> None:
        super().__init__()
        self.failure: str | None = None

    def _first_failure(self, result: Any, what: str) -> None:
        if self.failure is not None:
            return
        res = result._result
        items = [i for i in res.get("results", []) if isinstance(i, dict) and i.get("failed")]
        msg = (items[0] if items else res).get("msg")
        self.failure = str(msg) if msg else f"task '{result._task.get_name()}' {what}"

    def v2_runner_on_failed(self, result: Any, ignore_errors: bool = False) -> None:
        if not ignore_errors:
            self._first_failure(result, "failed")

    def v2_runner_on_unreachable(self, result: Any) -> None:
        self._first_failure(result, "could not run")

    def v2_playbook_on_stats(self, stats: Any) -> None:
        changed = sum(stats.changed.values())
        self._display.display(json.dumps({"changed": changed, "failure": self.failure}))

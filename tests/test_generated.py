"""Everything derived from the sources' declarations is current (scripts/generate.py):
argument specs, defaults and table of sources of the roles, site.yml's collectors, the
settings tables, the sample configs and the role READMEs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_generated_files_are_current() -> None:
    done = subprocess.run(
        [sys.executable, "scripts/generate.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr

"""The figures of the fault-injection cases: generated, landed, duplicated, lost.

Every case prints one line per source (``[case] source: generated=... landed=...``) and
records the same figures as a row of docs/faults.md, so the table always shows the last
run of each case, whichever command ran it (`make test` runs the short cases, `make
test-faults` the long ones). The row is written before the case asserts, so a failing
case leaves its (bad) figures in the table too.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = Path(os.environ.get("WATTKEEPER_FAULTS_DOC", ROOT / "docs" / "faults.md"))
COLUMNS = (
    "case",
    "source",
    "generated",
    "landed",
    "duplicated",
    "lost",
    "wall time",
    "suite",
    "date (UTC)",
    "note",
)

INTRO = """# Fault injection: generated, landed, duplicated, lost

Written by the fault-injection cases in `tests/test_faults.py` (one row per case and
source, the last run of each). The short cases run in `make test`, the long ones in
`make test-faults`; both use a real InfluxDB 2 on loopback, the real `wattkeeper run`
processes and each source's `wattkeeper simulate` server.

- **generated**: readings the source really offered, counted on the source's side: the
  simulators' truth logs (every pulse edge sent, every complete Luxtronik answer served),
  the WattiVahti portal's deterministic meter over the synced span, or the test source's
  cursor (reading *k* has value *k*).
- **landed**: distinct readings found in InfluxDB afterwards, each at its own timestamp
  and with its true value.
- **duplicated**: readings in InfluxDB that should not be there: a reading stored twice
  under another timestamp, or a point at an instant the source never offered. (InfluxDB
  keeps one point per series and timestamp, so a replay of the same reading overwrites
  itself and is not a duplicate.)
- **lost**: generated readings that never landed.

The `wattkeeper_agent` metrics points are not readings and are not counted.
"""


@dataclass
class Figures:
    case: str
    source: str
    generated: int
    landed: int
    duplicated: int
    lost: int
    note: str = ""

    def line(self) -> str:
        text = (
            f"[{self.case}] {self.source}: generated={self.generated} landed={self.landed} "
            f"duplicated={self.duplicated} lost={self.lost}"
        )
        return text + (f" ({self.note})" if self.note else "")

    @property
    def exact(self) -> bool:
        """Every generated reading landed once, nothing else did."""
        return self.lost == 0 and self.duplicated == 0 and self.landed == self.generated > 0


def _row(fig: Figures, seconds: float, suite: str) -> list[str]:
    minutes, secs = divmod(round(seconds), 60)
    return [
        fig.case,
        fig.source,
        str(fig.generated),
        str(fig.landed),
        str(fig.duplicated),
        str(fig.lost),
        f"{minutes}m{secs:02d}s",
        suite,
        datetime.now(UTC).strftime("%Y-%m-%d %H:%M"),
        fig.note.replace("|", "/"),
    ]


def _read_rows(path: Path) -> list[list[str]]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        if not line.startswith("| ") or line.startswith("| case "):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == len(COLUMNS):
            rows.append(cells)
    return rows


def record(fig: Figures, *, seconds: float, suite: str) -> None:
    """Print the case's line and put its row into docs/faults.md (replacing the last run)."""
    print("\n" + fig.line(), flush=True)
    rows = _read_rows(DOC)
    new = _row(fig, seconds, suite)
    for i, row in enumerate(rows):
        if row[:2] == new[:2]:
            rows[i] = new
            break
    else:
        rows.append(new)
    machine = f"{os.cpu_count()} cores, {platform.system()} {platform.release()}"
    out = [
        INTRO,
        f"Machine of the last run: {machine}, Python {platform.python_version()}.",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "|".join("---:" if c in COLUMNS[2:6] else "---" for c in COLUMNS) + "|",
    ]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text("\n".join(out) + "\n")

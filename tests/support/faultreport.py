"""The figures of the fault-injection cases: generated, landed, duplicated, lost.

Every case prints one line per source (``[case] source: generated=... landed=...``) and
records the same figures as a row of docs/faults.md, so the table always shows the last
run of each case, whichever command ran it (`make test` runs the short cases, `make
test-faults` the long ones). The row is written before the case asserts, so a failing
case leaves its (bad) figures in the table too.
"""

from __future__ import annotations

import fcntl
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
    "tiers: windows compared/differing",
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
- **tiers**: the 1m, 5m and 1h tiers of the case's raw bucket, whose tasks (the
  production Flux, on their real schedule) ran through the case: after the agents have
  stopped, each task runs until it has caught up, and every window of each tier (one
  series in one time window, all its fields) is compared with raw's aggregates
  recomputed by the same Flux; *compared/differing*, differing must be 0. Windows after
  a tier's last run (those of the hour, or five minutes, under way: a case is short) are
  not compared. Empty for rows run before the tiers had this column.

The `wattkeeper_agent` metrics points are not readings and are not counted.

## The cases

- **InfluxDB killed at random**: every agent runs against its simulator (the tiny test
  source, pulse at 3 x 10/s, Luxtronik every 2 s, a 30-day WattiVahti sync, an Octopus
  Home Mini polled every 5 s) while InfluxDB is SIGKILLed at random instants (up 3-15 s,
  down 2-15 s) and restarted; then the backlogs drain and the agents stop with SIGTERM.
- **network to InfluxDB cut**: the same agents write through a TCP proxy that black-holes
  the path (connections hang, no refusals: the hard case) for the time given, then
  restores it; collection goes on in the buffers meanwhile.
- **agents SIGKILLed 50 times each**: tiny, Luxtronik, WattiVahti (a 60-day sync, so most
  kills land mid-sync) and Octopus are each SIGKILLed at 50 random instants and started
  again. The pulse agent is not in this case: a pulse exists only at its instant, and
  while the process is dead nothing counts it (as on a real Pi, where the GPIO line
  request dies with the process). A Luxtronik answer served in the last moment before a
  kill, never committed, was never taken and is not counted as generated (the row's note
  says how many).
- **buffer disk full**: the tiny agent alone on a 3 MB tmpfs, and every agent at once with
  their buffers on one 24 MB tmpfs, which another file fills up; after a while the space
  returns. Polls go on at their pace, what they take is held in memory and stored when
  the disk takes writes again.
- **corrupt buffer file**: the buffer is garbage at start: moved aside with a message, a
  fresh buffer, no crash loop (a second start is normal).
- **clock jumps**: the agent's wall clock (libfaketime) jumps an hour back, a day forward
  and back; readings keep their source timestamps.
- **bad input from every source** has no row here: `tests/test_properties.py` feeds the
  Kraken, portal and Luxtronik parsers hypothesis-generated answers and asserts no crash,
  no text where a number belongs, and every rejection counted, through the runner too.
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
    # "1m 120/0 · 5m 24/0 · 1h 2/0": windows compared/differing per tier ("" if none).
    tiers: str = ""
    tier_differing: int = 0
    tier_runs: int = 0  # runs the slowest tier took to catch up at the end

    def line(self) -> str:
        text = (
            f"[{self.case}] {self.source}: generated={self.generated} landed={self.landed} "
            f"duplicated={self.duplicated} lost={self.lost}"
        )
        if self.tiers:
            text += f" tiers={self.tiers}"
        return text + (f" ({self.note})" if self.note else "")

    @property
    def exact(self) -> bool:
        """Every generated reading landed once, nothing else did, and every tier window
        equals raw."""
        return (
            self.lost == 0
            and self.duplicated == 0
            and self.landed == self.generated > 0
            and self.tier_differing == 0
        )


def _row(fig: Figures, seconds: float, suite: str) -> list[str]:
    minutes, secs = divmod(round(seconds), 60)
    return [
        fig.case,
        fig.source,
        str(fig.generated),
        str(fig.landed),
        str(fig.duplicated),
        str(fig.lost),
        fig.tiers,
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
        if len(cells) == len(COLUMNS) - 1:  # a row from before the tiers column
            cells.insert(COLUMNS.index("tiers: windows compared/differing"), "")
        if len(cells) == len(COLUMNS):
            rows.append(cells)
    return rows


SOURCES = ("tiny (test source)", "pulse", "luxtronik", "wattivahti", "octopus")
# The cases in the order the page describes them (a case's name starts with one of these).
CASES = (
    "InfluxDB killed",
    "network to InfluxDB",
    "agents SIGKILLed",
    "buffer disk full",
    "corrupt buffer",
    "clock jumps",
)


def _ordered(rows: list[list[str]]) -> list[list[str]]:
    def rank(value: str, order: tuple[str, ...]) -> int:
        return next((i for i, o in enumerate(order) if value.startswith(o)), len(order))

    return sorted(rows, key=lambda r: (rank(r[0], CASES), r[0], rank(r[1], SOURCES), r[1]))


def write(rows: list[list[str]]) -> None:
    machine = f"{os.cpu_count()} cores, {platform.system()} {platform.release()}"
    out = [
        INTRO,
        f"Machine of the last run: {machine}, Python {platform.python_version()}.",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "|".join("---:" if c in COLUMNS[2:7] else "---" for c in COLUMNS) + "|",
    ]
    out += ["| " + " | ".join(row) + " |" for row in _ordered(rows)]
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text("\n".join(out) + "\n")


def record(fig: Figures, *, seconds: float, suite: str) -> None:
    """Print the case's line and put its row into docs/faults.md (replacing the last run).

    Parallel pytest workers record at the same time: the read-modify-write of the page
    holds an exclusive lock (a file beside it), so no worker's row is lost.
    """
    print("\n" + fig.line(), flush=True)
    new = _row(fig, seconds, suite)
    DOC.parent.mkdir(parents=True, exist_ok=True)
    with DOC.with_name(DOC.name + ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        rows = _read_rows(DOC)
        for i, row in enumerate(rows):
            if row[:2] == new[:2]:
                rows[i] = new
                break
        else:
            rows.append(new)
        write(rows)


if __name__ == "__main__":  # rewrite the page around the rows it holds (after a text change)
    write(_read_rows(DOC))

"""The runner on a buffer that cannot be written (a full disk): polls go on at their
normal pace, what they took is held in memory in order and without repeats, and lands
with the first commit that works, together with the newest cursor; past the memory bound
the newest readings go, counted, and their cursor with them."""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wattkeeper.config import load_config
from wattkeeper.point import Point
from wattkeeper.runner import Agent
from wattkeeper.source import Batch, SourceContext, SourcePlugin


@dataclass
class _Section:
    cursor: bool = False


class _Counting:
    """Reading n has value n. With a cursor it resumes from the committed state (like the
    real sources with a reading-time cursor); without one each poll is a new snapshot."""

    def __init__(self, ctx: SourceContext) -> None:
        self.ctx = ctx
        self.polls = 0

    def next_delay(self) -> float:
        return 0.0

    def poll(self) -> Batch:
        cfg: _Section = self.ctx.config.source
        start = int(self.ctx.state.get_state("n", 0)) if cfg.cursor else self.polls * 2
        self.polls += 1
        points = [Point("counting", {"n": float(k)}, 10**18 + k) for k in (start, start + 1)]
        return Batch(points=points, state={"n": start + 2})

    def check(self) -> str:
        return "counting"

    def close(self) -> None:
        pass


PLUGIN = SourcePlugin(name="counting", config_class=_Section, factory=_Counting)


class FullDisk:
    """Makes the buffer's append fail like SQLITE_FULL while ``full`` is set."""

    def __init__(self, agent: Agent) -> None:
        self.full = False
        self._append = agent.buffer.append
        agent.buffer.append = self.append  # type: ignore[method-assign]

    def append(self, lines: Any, state: dict[str, Any] | None = None) -> int:
        if self.full:
            raise sqlite3.OperationalError("database or disk is full")
        return self._append(lines, state)


def _agent(tmp_path: Path, cursor: bool) -> tuple[Agent, FullDisk]:
    cfg_file = tmp_path / "counting.toml"
    cfg_file.write_text(
        '[influxdb]\nurl = "http://127.0.0.1:9"\norg = "home"\nbucket = "b"\n'
        f'token = "xxxxxxxx"\n[buffer]\npath = "{tmp_path / "buf.sqlite"}"\n'
        f"[counting]\ncursor = {'true' if cursor else 'false'}\n"
    )
    cfg = load_config(cfg_file, "counting", _Section, set())
    agent = Agent(cfg, PLUGIN)
    agent.source = PLUGIN.factory(
        SourceContext(cfg, agent.buffer, logging.getLogger("test"), agent.influx)
    )
    return agent, FullDisk(agent)


def _values(agent: Agent) -> list[float]:
    lines = [line for _, line in agent.buffer.peek(1000) if line.startswith("counting ")]
    return [float(line.split("n=")[1].split()[0]) for line in lines]


def test_snapshots_taken_on_a_full_disk_land_when_space_returns(tmp_path: Path) -> None:
    agent, disk = _agent(tmp_path, cursor=False)
    assert agent._poll_once()
    disk.full = True
    for _ in range(3):
        assert agent._poll_once()  # taken and held: the poll itself worked
    assert "buffer not writable, 6 held" in agent._status_line()
    disk.full = False
    assert agent._poll_once()
    assert _values(agent) == [float(k) for k in range(10)]  # every poll, in order, once
    assert agent.buffer.get_state("n") == 10
    assert agent.poll_errors == 0 and agent.held_dropped == 0
    agent._close()


def test_a_cursor_never_passes_held_readings_and_repeats_are_not_held_twice(
    tmp_path: Path,
) -> None:
    agent, disk = _agent(tmp_path, cursor=True)
    assert agent._poll_once()
    disk.full = True
    for _ in range(3):
        assert agent._poll_once()  # the cursor stays: the source asks again
    assert agent.buffer.get_state("n") == 2
    assert len(agent._held) == 2  # the same two readings, held once
    disk.full = False
    assert agent._poll_once()
    # The poll after recovery asked for the same two again: stored once, cursor after them.
    assert _values(agent) == [0.0, 1.0, 2.0, 3.0]
    assert agent.buffer.get_state("n") == 4
    agent._close()


def test_past_the_memory_bound_the_newest_go_counted_with_their_cursor(tmp_path: Path) -> None:
    agent, disk = _agent(tmp_path, cursor=False)
    agent.sink.maxsize = 4  # readings held at most
    disk.full = True
    assert [agent._poll_once() for _ in range(4)] == [True, True, False, False]
    assert agent.held_dropped == 4  # polls 3 and 4 did not fit
    assert agent.poll_errors == 2  # and were counted as failed polls
    disk.full = False
    agent._write_metrics()  # any commit stores what is held
    assert _values(agent) == [0.0, 1.0, 2.0, 3.0]
    assert agent.buffer.get_state("n") == 4  # the cursor of the last poll kept, not beyond
    line = agent.buffer.peek(1000)[-1][1]
    assert line.startswith("wattkeeper_agent,") and "points_dropped=4.0" in line
    agent._close()

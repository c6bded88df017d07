"""After KT-GB-4051 (a start too far in the past): the oldest start the API still accepts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .client import KrakenError

TOO_FAR_BACK = "KT-GB-4051"


@dataclass
class Search:
    """The latest start refused so far: where the search got to, should it stop."""

    refused: float


def oldest_accepted(
    fetch: Callable[[float, float], Any],
    now: Callable[[], float],
    search: Search,
    window: float,
    precision: float,
) -> tuple[float, float, Any]:
    """Galloping (one window, two, four ...) then bisection to ``precision``: a few calls
    even for a gap of days, where stepping window by window could spend the whole budget
    on refusals. Returns that start, its window's end and its rows; any other error ends
    the search (``search.refused`` says how far it got)."""
    jump = window
    accepted: tuple[float, float, Any] | None = None
    while accepted is None:
        t = now()
        probe = min(search.refused + jump, t - window)
        if probe <= search.refused:
            probe = search.refused + precision
        if probe >= t - 1.0:
            return (t, t, [])  # nothing the API would give: skip to now
        try:
            end = min(probe + window, t)
            accepted = (probe, end, fetch(probe, end))
        except KrakenError as exc:
            if exc.code != TOO_FAR_BACK:
                raise
            search.refused, jump = probe, jump * 2
    while accepted[0] - search.refused > precision:
        mid = (search.refused + accepted[0]) / 2
        end = min(mid + window, now())
        try:
            accepted = (mid, end, fetch(mid, end))
        except KrakenError as exc:
            if exc.code != TOO_FAR_BACK:
                raise
            search.refused = mid
    return accepted

"""The portal's naive Europe/Helsinki times, turned into exact UTC instants.

WattiVahti answers with local wall-clock times and no offset. Two nights a year that is
not enough: in autumn the hour 03:00-03:59 happens twice and the portal lists it as
consecutive pairs (03:00, 03:00, 03:15, 03:15, ...), the first of each pair in summer
time (EEST, fold=0) and the second in winter time (EET, fold=1); in spring 03:00-03:59
does not exist at all, yet the portal has been seen to label it (see convert_series).
Counting occurrences of each wall-clock time (rather than relying on the order of the
pairs) gives the right fold for either ordering.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

HELSINKI = ZoneInfo("Europe/Helsinki")


def is_ambiguous(naive: datetime) -> bool:
    """True for a wall-clock time that happens twice (the autumn repeated hour)."""
    a = naive.replace(tzinfo=HELSINKI, fold=0).utcoffset()
    b = naive.replace(tzinfo=HELSINKI, fold=1).utcoffset()
    return a != b


def is_missing(naive: datetime) -> bool:
    """True for a wall-clock time that never happens (the spring gap)."""
    aware = naive.replace(tzinfo=HELSINKI)
    back = aware.astimezone(UTC).astimezone(HELSINKI).replace(tzinfo=None)
    return back != naive


def to_utc(naive: datetime, fold: int = 0) -> datetime:
    return naive.replace(tzinfo=HELSINKI, fold=fold).astimezone(UTC)


@dataclass(frozen=True)
class Converted:
    """One portal entry with its UTC instant (or why it has none)."""

    index: int
    local: datetime
    utc: datetime | None
    problem: str = ""
    # True when the label was read in winter time by the spring rule (see convert_series).
    spring_relabelled: bool = False


def _winter_reading(naive: datetime, offset: timedelta) -> datetime:
    return naive.replace(tzinfo=timezone(offset)).astimezone(UTC)


def convert_series(times: Iterable[datetime]) -> Iterator[Converted]:
    """UTC instants for a response's naive local times, in response order.

    Autumn: a wall-clock time seen twice is legitimate only inside the repeated hour
    (first = EEST, second = EET).

    Spring, the stated rule: the portal has been seen to label the hours right after the
    switch in the offset before it (winter time, UTC+2): 2023-03-26 came as 00, 01, 02, 03,
    04, 05, 07 (miikaforma/WattiVahtiLogger, api/src/lib.rs, a PT1H sample; one public
    sample, so the evidence is thin). So a label inside the spring gap is read in winter
    time, and so is every label after it whose summer-time reading is already taken by an
    earlier entry, until a label's summer-time reading is free again. A label that cannot
    be placed either way is reported as a problem, never written over a neighbour.
    """
    seen: dict[datetime, int] = {}
    taken: set[datetime] = set()
    winter: timedelta | None = None  # the offset before the switch, while a run lasts
    for i, naive in enumerate(times):
        n = seen.get(naive, 0)
        seen[naive] = n + 1
        if is_missing(naive):
            offset = naive.replace(tzinfo=HELSINKI, fold=0).utcoffset()
            assert offset is not None
            winter = offset
            utc = _winter_reading(naive, offset)
            relabelled = True
        elif n == 0:
            utc = to_utc(naive, 0)
            relabelled = False
            if winter is not None and utc in taken:
                utc, relabelled = _winter_reading(naive, winter), True
            else:
                winter = None
        elif n == 1 and is_ambiguous(naive):
            utc, relabelled = to_utc(naive, 1), False
        else:
            yield Converted(i, naive, None, "repeated in the answer")
            continue
        if utc in taken:
            yield Converted(i, naive, None, "cannot be placed: its instant is taken (spring gap)")
            continue
        taken.add(utc)
        yield Converted(i, naive, utc, spring_relabelled=relabelled)


def parse_local(text: str) -> datetime:
    """A portal time ("2024-10-27T03:00:00", maybe with a stray "Z") as naive local time."""
    s = text.strip()
    if s.endswith("Z"):
        # The portal's "Z" is not UTC: the values are local times either way.
        s = s[:-1]
    dt = datetime.fromisoformat(s)
    if dt.tzinfo is not None:
        dt = dt.astimezone(HELSINKI).replace(tzinfo=None)
    return dt


def local_midnight(d: date) -> datetime:
    """Midnight at the start of local day ``d``, as an aware UTC datetime."""
    return datetime.combine(d, time(0), HELSINKI).astimezone(UTC)


def local_date(instant: datetime) -> date:
    return instant.astimezone(HELSINKI).date()


def day_windows(start: datetime, end: datetime, days: int) -> list[tuple[datetime, datetime]]:
    """[start, end) cut into windows of ``days`` whole local days, aligned to midnights.

    Whole local days keep both occurrences of the autumn repeated hour in one answer,
    so the pairs can always be told apart.
    """
    first = local_date(start)
    last = local_date(end - timedelta(microseconds=1))
    out = []
    d = first
    while d <= last:
        nxt = min(d + timedelta(days=days), last + timedelta(days=1))
        out.append((local_midnight(d), local_midnight(nxt)))
        d = nxt
    return out


def parse_user_time(text: str) -> datetime:
    """--start-date/--end-date: a date or a date-time, local unless it carries an offset."""
    s = text.strip()
    try:
        if len(s) == 10:
            return local_midnight(date.fromisoformat(s))
        dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f'"{text}" is not a date (YYYY-MM-DD) or date-time (YYYY-MM-DDTHH:MM[:SS])'
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=HELSINKI)
    return dt.astimezone(UTC)

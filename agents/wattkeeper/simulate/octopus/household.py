"""The simulated household behind a Home Mini: deterministic telemetry for any instant.

Every 10-second slot has a whole-watt net demand taken from one of seven day profiles
(fridge cycling, kettle and cooking peaks, a weekend wash; solar on the export account),
chosen by the UTC day. The meter's registers are whole Wh, like a real SMETS2 meter: the
import register at an instant is the floor of the energy imported since the epoch, so

* ``consumption`` is the import register at the end of the reading's interval,
* ``consumptionDelta`` is the register's increase over the interval (whole Wh),
* ``demand`` is the mean net demand over the interval (W; negative while exporting),
* ``export`` is the export register at the end of the interval,
* ``costDelta`` is ``consumptionDelta`` at the unit rate (pence), ``costDeltaWithTax``
  the same with 5 % VAT,

all as decimal strings, written the way Kraken writes its ``Decimal`` scalar: Python's
``str(Decimal)`` (see :func:`decimal_text`). Everything depends only on the device's
household, the UTC instant and the value forms asked for, so a test computes the exact
reading any point must carry with :func:`reading`.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from functools import cache
from zoneinfo import ZoneInfo

SLOT = 10  # seconds: the Home Mini's native spacing
SLOTS_PER_DAY = 86400 // SLOT
# Kraken's TelemetryGrouping values. HOURLY is taken from the reading of the
# introspected schema (ryanw-mobile/OctoMeter schema.graphqls); that file is too large for
# our search index to show the enum, so this value's evidence is second-hand.
GROUPING_SECONDS = {
    "TEN_SECONDS": 10,
    "ONE_MINUTE": 60,
    "FIVE_MINUTES": 300,
    "HALF_HOURLY": 1800,
    "HOURLY": 3600,
}
LONDON = ZoneInfo("Europe/London")
UNIT_RATE_PENCE = Decimal("24.50")  # per kWh, before VAT
VAT = Decimal("1.05")
FOUR = Decimal("0.0001")
ONE_PLACE = Decimal("0.1")
# Value forms: "real" as the live service writes them; "exponent" every other finite form
# str(Decimal) can write, for the same kind of values.
DECIMAL_FORMS = ("real", "exponent")
# Registers are zero at this instant (the meter's installation, say).
INSTALLED = int(datetime(2019, 1, 1, tzinfo=UTC).timestamp())
# Register readings the meters were installed with (Wh).
IMPORT_BASE = 1_250_000
EXPORT_BASE = 40_000


@dataclass(frozen=True)
class Profile:
    """Seven day profiles of one household: per-slot import/export and their prefix sums."""

    demand: tuple[tuple[int, ...], ...]  # net W per slot, per profile day
    imp: tuple[tuple[int, ...], ...]  # prefix sums of max(demand, 0) (W*slot)
    exp: tuple[tuple[int, ...], ...]  # prefix sums of max(-demand, 0)
    imp_week: int
    exp_week: int


def _day_load(rng: random.Random, weekday: int) -> list[int]:
    """Whole watts for every 10-second slot of one day (UTC slots; a UK household)."""
    load = [0] * SLOTS_PER_DAY
    for i in range(SLOTS_PER_DAY):
        hour = i * SLOT / 3600
        # Night base, daytime standby and lighting in the evening.
        base = 110 + 60 * (7 <= hour < 23) + 140 * (17.5 <= hour < 22.5)
        fridge = 85 if (i // 90) % 3 == 0 else 0  # 15 min on, 30 off
        load[i] = base + fridge + rng.randint(-12, 12)

    def burst(start_h: float, minutes: float, watts: int) -> None:
        first = int(start_h * 360)
        for j in range(first, min(SLOTS_PER_DAY, first + int(minutes * 6))):
            load[j] += watts

    burst(6.5 + rng.random(), 3, 2800)  # morning kettle
    burst(7.2 + rng.random() / 2, 4, 1200)  # toaster
    burst(12 + rng.random(), 3, 2800)
    burst(16.5 + rng.random() / 2, 3, 2800)
    burst(17.5 + rng.random(), 50, 2000)  # oven
    burst(19 + rng.random() * 2, 25, 650)  # dishwasher heating
    if weekday >= 5:
        burst(9 + rng.random() * 2, 40, 1900)  # washing machine
    return load


def _solar(i: int, weekday: int) -> int:
    """A 3.5 kWp roof on a fair day (UTC), a bit cloudier on some days."""
    hour = i * SLOT / 3600
    if not 5.5 <= hour < 20.5:
        return 0
    peak = (3200, 2600, 1400, 3000, 2200, 2900, 1800)[weekday]
    return int(peak * math.sin(math.pi * (hour - 5.5) / 15) ** 2)


def _prefix(values: list[int]) -> tuple[int, ...]:
    out = [0]
    for v in values:
        out.append(out[-1] + v)
    return tuple(out)


@cache
def profile(household: str) -> Profile:
    """Build (once) the seven day profiles of a household ("plain" or "solar")."""
    demands, imps, exps = [], [], []
    for day in range(7):
        weekday = (day + 3) % 7  # profile day d serves the UTC days n with n % 7 == d
        load = _day_load(random.Random(f"{household}-{day}"), weekday)
        if household == "solar":
            load = [w - _solar(i, weekday) for i, w in enumerate(load)]
        demands.append(tuple(load))
        imps.append(_prefix([max(w, 0) for w in load]))
        exps.append(_prefix([max(-w, 0) for w in load]))
    return Profile(
        tuple(demands),
        tuple(imps),
        tuple(exps),
        sum(p[-1] for p in imps),
        sum(p[-1] for p in exps),
    )


def _watt_slots(prefix: tuple[tuple[int, ...], ...], week: int, t: int) -> int:
    """Sum over all slots from the epoch up to instant t (aligned to a slot) of W."""
    n = t // SLOT
    day, slot = divmod(n, SLOTS_PER_DAY)
    weeks, d = divmod(day, 7)
    return weeks * week + sum(prefix[k][-1] for k in range(d)) + prefix[d][slot]


def registers(household: str, t: int) -> tuple[int, int]:
    """(import, export) registers in whole Wh at instant t (a multiple of 10 s)."""
    p = profile(household)
    # W * 10 s = Wh / 360
    imp = _watt_slots(p.imp, p.imp_week, t) - _watt_slots(p.imp, p.imp_week, INSTALLED)
    exp = _watt_slots(p.exp, p.exp_week, t) - _watt_slots(p.exp, p.exp_week, INSTALLED)
    return IMPORT_BASE + imp // 360, EXPORT_BASE + exp // 360


def mean_demand(household: str, t: int, seconds: int) -> Decimal:
    p = profile(household)
    total = 0
    for s in range(t, t + seconds, SLOT):
        day, slot = divmod(s // SLOT, SLOTS_PER_DAY)
        total += p.demand[day % 7][slot]
    return (Decimal(total) / (seconds // SLOT)).quantize(FOUR, ROUND_HALF_EVEN)


def _d4(value: Decimal | int) -> str:
    return str(Decimal(value).quantize(FOUR, ROUND_HALF_EVEN))


def decimal_text(name: str, value: Decimal, forms: str = "real") -> str:
    """A telemetry value as Kraken writes it: ``str()`` of a Decimal.

    "real": the demand with one place ("624.0") and a zero consumptionDelta as "0E+1",
    both from a real TEN_SECONDS answer (inigo/octopusviz, GraphQlClientTest.scala). The
    costs are taken to write a zero the same way (no public sample shows them: an
    assumption). Non-zero deltas, registers and costs appear in no public sample: they
    keep four places ("1250312.0000"), evidence thin.

    "exponent" (``--decimals exponent``): the other forms of str(Decimal), for the same
    values: trailing zeros folded into an exponent ("4E+4", "1.1E+2", as a normalized
    Decimal prints), and the cost of an interval without consumption carrying a residue
    of 1E-7 pence (the issue's example of a tiny value in exponent form; not seen in a
    public sample).
    """
    if forms == "exponent":
        if value == 0 and name in ("costDelta", "costDeltaWithTax"):
            return str(Decimal("1E-7"))
        if value == 0:
            return "0E+1"
        return str(value.normalize())
    if name == "demand":
        return str(value.quantize(ONE_PLACE, ROUND_HALF_EVEN))
    if value == 0 and name in ("consumptionDelta", "costDelta", "costDeltaWithTax"):
        return "0E+1"
    return _d4(value)


def read_at_text(t: int) -> str:
    """readAt as Kraken writes it: UK local time with its offset (+01:00 in summer)."""
    return datetime.fromtimestamp(t, UTC).astimezone(LONDON).isoformat()


def reading(
    household: str, t: int, grouping: str, forms: str = "real", upto: int | None = None
) -> dict[str, str]:
    """The telemetry row whose interval is [t, t + grouping) (t aligned to the grouping);
    with ``upto`` (a 10-second instant inside it), the group still filling: its values
    so far."""
    g = GROUPING_SECONDS[grouping] if upto is None else upto - t
    imp0, _ = registers(household, t)
    imp1, exp1 = registers(household, t + g)
    delta = imp1 - imp0
    cost = (Decimal(delta) * UNIT_RATE_PENCE / 1000).quantize(FOUR, ROUND_HALF_EVEN)
    values = {
        "consumption": Decimal(imp1),
        "demand": mean_demand(household, t, g),
        "export": Decimal(exp1),
        "consumptionDelta": Decimal(delta),
        "costDelta": cost,
        "costDeltaWithTax": (cost * VAT).quantize(FOUR, ROUND_HALF_EVEN),
    }
    row = {"readAt": read_at_text(t)}
    row.update({k: decimal_text(k, v, forms) for k, v in values.items()})
    return row


def slots(start: float, end: float, grouping: str) -> list[int]:
    """Aligned readAt instants t with start <= t < end (start inclusive, end exclusive)."""
    g = GROUPING_SECONDS[grouping]
    first = math.ceil(start / g) * g
    return list(range(first, math.ceil(end), g)) if end > first else []

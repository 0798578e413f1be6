"""HJ 212-2017 day data (CN=2031) from a local day's 24 hour records (pure, no I/O).

The gateway has no day record; the uplink folds the ``hour`` records it passes on. A day
frame goes out only when all 24 hours of the local day (the platform's time zone) went
through the uplink, so a day interrupted by a restart is never sent half-counted.

Items: every quantity as in 2051 (``-Min/-Avg/-Max`` or the noise ``Leq/LMx/LMn-Data``),
plus for the sound level ``Ld-DayData`` and ``Ln-NightData`` (the Leq of the day's and
the night's hours; an hour belongs to the period its start falls in, GB 3096-2008 §3
periods) and ``Ldn-Data`` (day-night level with the night weighted +10 dB), each with
flags by the same rule as a minute (see :mod:`cloud_sync.hj212_frames`).

Completeness (:mod:`cloud_sync.validity`): a quantity's day is valid with at least 20
valid hours (GB 3095-2012 表4), Ld/Ln with 75 % of their period's hours valid, Ldn with
both and the day; an invalid one goes out with its value and an invalid flag.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cloud_sync.hj212_frames import (
    CodeBook,
    Hj212Sensor,
    combine,
    data_items,
    flag_items,
    invalidate,
)
from cloud_sync.validity import day_valid, period_valid, quantity_valid

DAY_S = 86400
HOUR_S = 3600
Body = Mapping[str, Any]


def fold_hours(bodies: Iterable[Body]) -> list[dict[str, Any]]:
    """Merge the items of several hour bodies per (quantity, flag)."""
    acc: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for body in bodies:
        for item in body["items"]:
            acc.setdefault((str(item["quantity"]), str(item["flag"])), []).append(item)
    out: list[dict[str, Any]] = []
    for (quantity, flag), items in sorted(acc.items()):
        count = sum(int(i["count"]) for i in items)
        merged: dict[str, Any] = {
            "quantity": quantity,
            "flag": flag,
            "count": count,
            "min": min(float(i["min"]) for i in items),
            "max": max(float(i["max"]) for i in items),
            "avg": math.fsum(float(i["avg"]) * int(i["count"]) for i in items) / count,
        }
        if all("leq" in i for i in items):
            power = math.fsum(int(i["count"]) * 10.0 ** (float(i["leq"]) / 10) for i in items)
            merged["leq"] = 10.0 * math.log10(power / count)
        out.append(merged)
    return out


def is_day(seconds_of_day: float, day_start_s: float, night_start_s: float) -> bool:
    """Whether a local time of day lies in the day period ``[day_start, night_start)``."""
    if day_start_s <= night_start_s:
        return day_start_s <= seconds_of_day < night_start_s
    return not night_start_s <= seconds_of_day < day_start_s


def day_items(
    hours: Mapping[int, Body], book: CodeBook, sensor: Hj212Sensor, utc_offset_hours: float
) -> list[tuple[str, str]]:
    """CP items of a 2031 frame from one sensor's hour bodies (keyed by hour start)."""
    whole = fold_hours(hours.values())
    validity = {
        q: {"valid": day_valid(sum(quantity_valid(b, q) for b in hours.values()))}
        for q in {str(i["quantity"]) for i in whole}
    }
    out = data_items({"items": whole, "validity": validity}, book)
    sound = next(
        (
            q
            for q in sorted({str(i["quantity"]) for i in whole})
            if combine([i for i in whole if i["quantity"] == q]).leq is not None
        ),
        None,
    )
    if sound is None:
        return out
    offset = utc_offset_hours * 3600
    parts: dict[bool, list[Body]] = {True: [], False: []}
    for start, body in hours.items():
        local = (start + offset) % DAY_S
        parts[is_day(local, sensor.day_start_s, sensor.night_start_s)].append(body)
    # The period's length in hours, not the hours that came: a missing hour is missing data.
    span = {
        daytime: sum(
            is_day(h * HOUR_S, sensor.day_start_s, sensor.night_start_s) is daytime
            for h in range(DAY_S // HOUR_S)
        )
        for daytime in (True, False)
    }
    levels: dict[bool, float] = {}
    all_valid = bool(validity[sound]["valid"])
    for daytime, (code, suffix) in ((True, ("Ld", "DayData")), (False, ("Ln", "NightData"))):
        items = [i for i in fold_hours(parts[daytime]) if i["quantity"] == sound]
        if not items:
            all_valid = False
            continue
        c = combine(items, book.eflag_chars)
        level = c.leq
        if level is None:
            continue
        if not period_valid(sum(quantity_valid(b, sound) for b in parts[daytime]), span[daytime]):
            c = invalidate(c, items, book.eflag_chars)
            all_valid = False
        levels[daytime] = level
        out += [(f"{code}-{suffix}", book.fmt(code, level)), *flag_items(code, c)]
    if len(levels) == 2:
        td, tn = len(parts[True]), len(parts[False])
        power = td * 10 ** (levels[True] / 10) + tn * 10 ** ((levels[False] + 10) / 10)
        ldn = 10 * math.log10(power / (td + tn))
        items = [i for i in whole if i["quantity"] == sound]
        c = combine(items, book.eflag_chars)
        if not all_valid:
            c = invalidate(c, items, book.eflag_chars)
        out += [("Ldn-Data", book.fmt("Ldn", ldn)), *flag_items("Ldn", c)]
    return out


@dataclass(frozen=True, slots=True)
class Day:
    """A local day whose last hour has arrived: its start and the hours that came."""

    sensor_id: str
    start: float
    hours: Mapping[int, Body]
    watched: bool = False
    """The collector ran from before the day began: every hour record made for the day
    passed through it, so a missing hour is missing data (invalid), not a restart."""

    @property
    def complete(self) -> bool:
        """All 24 hours are present."""
        return len(self.hours) == DAY_S // HOUR_S

    @property
    def sendable(self) -> bool:
        """Complete, or watched whole: an hour missing then is an invalid hour, and the
        day goes out flagged by the completeness rule rather than not at all."""
        return self.complete or self.watched


class DayCollector:
    """Collects hour bodies per sensor and local day; hands a day over at its last hour.

    Holds at most ``keep_days`` days per sensor, so a sensor whose last hour never comes
    (the gateway was off at 23:00) cannot make it grow.
    """

    def __init__(
        self, utc_offset_hours: float, keep_days: int = 2, since: float | None = None
    ) -> None:
        self.offset = int(utc_offset_hours * 3600)
        self.keep_days = keep_days
        self.since = since  # when the collector started (None: unknown, never watched)
        self._days: dict[tuple[str, int], dict[int, Body]] = {}

    def day_start(self, hour: int) -> int:
        """The local midnight (epoch seconds) starting the day ``hour`` lies in."""
        return hour - (hour + self.offset) % DAY_S

    def add(self, sensor_id: str, hour: int, body: Body) -> Day | None:
        """Add one hour; return the day when ``hour`` is its last hour, else None.

        The day stays held until :meth:`done`: if its 2031 is not answered, the last hour
        comes again (it was not acknowledged) and hands the same full day over again.
        """
        start = self.day_start(hour)
        self._days.setdefault((sensor_id, start), {})[hour] = body  # a resend replaces
        for key in [k for k in self._days if k[0] == sensor_id]:
            if key[1] < start - self.keep_days * DAY_S:
                del self._days[key]
        if (hour + HOUR_S + self.offset) % DAY_S != 0:
            return None
        watched = self.since is not None and self.since <= start
        return Day(sensor_id, start, dict(self._days[(sensor_id, start)]), watched)

    def done(self, day: Day) -> None:
        """Forget a day that was sent (or will never be complete)."""
        self._days.pop((day.sensor_id, int(day.start)), None)

"""Data rates per sensor and local day or month (数据传输有效率), from what the store records.

For each sensor and period (a local day or month in the sensor's standard's time zone):

* **expected** readings per quantity: the covered seconds ÷ the sensor's
  ``health.expected_interval_s`` (its HJ 212 RtdInterval). The period is covered from the
  sensor's first reading or from when the gateway first ran with it configured, whichever
  is earlier, to the period's end (a gateway that was off does not excuse missing data);
* **received**: the readings stored (every data flag, ``minute_aggregates``) plus the
  values refused (decoding, range, device time: ``minute_quality``; a message refused
  whole counts one refused value per quantity);
* **valid**: stored readings flagged ``N`` (decoded, within range, not in maintenance,
  calibration or any other device-declared state);
* **transmission rate** = received ÷ expected (capped at 1: at-least-once delivery may
  count a reading twice), **validity rate** = valid ÷ received, **effective rate** (数据
  传输有效率) = their product. A sensor's figures pool its quantities.

Nothing new is written per reading: the rates are sums over the minute rows. When a local
day has ended (plus :data:`DAY_GRACE_S` for late data), the outbox's transaction hook
appends one ``rates`` record per sensor for it (class ``minute``), and one for the month
when the day was its last (see docs/protocol.md, "Data rates").
"""

from __future__ import annotations

import datetime as dt
import json
import math
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import aiosqlite

from edge.counters import read_meta, write_meta

DAY_GRACE_S = 3600.0
"""A day's record waits this long after local midnight, for readings that arrive late."""
MAX_CATCH_UP_DAYS = 62
"""After a long stop, at most this many past days are closed (older ones are skipped)."""
STATE_META = "rates_state"

COUNTS_SQL = (
    "SELECT quantity, flag = 'N', sum(count) FROM minute_aggregates"
    " WHERE sensor_id = ? AND minute >= ? AND minute < ? GROUP BY 1, 2"
)
QUALITY_SQL = (
    "SELECT quantity, sum(refused), sum(untrusted) FROM minute_quality"
    " WHERE sensor_id = ? AND minute >= ? AND minute < ? GROUP BY 1"
)
FIRST_SQL = (
    "SELECT min(m) FROM (SELECT min(minute) AS m FROM minute_aggregates WHERE sensor_id = ?"
    " UNION ALL SELECT min(minute) FROM minute_quality WHERE sensor_id = ?)"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class RatePlan:
    """What one sensor is expected to send."""

    sensor_id: str
    quantities: tuple[str, ...]
    expected_interval_s: float
    timezone: str = "Asia/Shanghai"


@dataclass(slots=True, kw_only=True)
class RatesSetup:
    """The outbox's rates duty: the sensors' plans and whether to wait for a synced clock."""

    plans: Sequence[RatePlan]
    require_synced: bool = False
    """Close no day while records say the clock is unsynchronised (the gateway holds
    judgement until the first sync, so a day boundary by a wrong clock is no boundary)."""
    _next_due: float = field(default=0.0, repr=False)


def _ratio(num: float, den: float, cap: bool = False) -> float | None:
    if den <= 0:
        return None
    value = num / den
    return round(min(1.0, value) if cap else value, 4)


def rates_of(
    plan: RatePlan,
    counts: Iterable[tuple[str, int, int]],
    quality: Iterable[tuple[str, int, int]],
    covered_s: float,
) -> dict[str, Any]:
    """The figures of one sensor and period from its summed rows (pure).

    ``counts``: (quantity, is_valid, readings); ``quality``: (quantity, refused, untrusted).
    """
    per: dict[str, list[int]] = {q: [0, 0, 0, 0] for q in plan.quantities}
    for quantity, valid, n in counts:
        slot = per.setdefault(quantity, [0, 0, 0, 0])
        slot[0] += int(n)
        if valid:
            slot[1] += int(n)
    for quantity, refused, untrusted in quality:
        slot = per.setdefault(quantity, [0, 0, 0, 0])
        slot[2] += int(refused or 0)
        slot[3] += int(untrusted or 0)
    expected_each = max(0.0, covered_s) / plan.expected_interval_s
    items = []
    for quantity, (stored, valid, refused, untrusted) in sorted(per.items()):
        expected = expected_each if quantity in plan.quantities else 0.0
        items.append(_figures(quantity, expected, stored + refused, valid, refused, untrusted))
    total = _figures(
        None,
        sum(i["expected"] for i in items),
        sum(i["received"] for i in items),
        sum(i["valid"] for i in items),
        sum(i["refused"] for i in items),
        sum(i["clock_untrusted"] for i in items),
    )
    total.pop("quantity")
    return {**total, "quantities": items}


def _figures(  # noqa: PLR0917 - one row of the rates table
    quantity: str | None,
    expected: float,
    received: int,
    valid: int,
    refused: int,
    untrusted: int,
) -> dict[str, Any]:
    transmission = _ratio(received, expected, cap=True)
    validity = _ratio(valid, received)
    effective = None
    if transmission is not None and validity is not None:
        effective = round(transmission * validity, 4)
    return {
        "quantity": quantity,
        "expected": round(expected, 2),
        "received": received,
        "valid": valid,
        "refused": refused,
        "clock_untrusted": untrusted,
        "transmission_rate": transmission,
        "validity_rate": validity,
        "effective_rate": effective,
    }


def day_bounds(day: dt.date, zone: ZoneInfo) -> tuple[float, float]:
    """[start, end) of a local day as Unix seconds (23 or 25 h long across a DST change)."""
    start = dt.datetime.combine(day, dt.time(), zone)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), zone)
    return start.timestamp(), end.timestamp()


def month_bounds(day: dt.date, zone: ZoneInfo) -> tuple[float, float]:
    """[start, end) of the local month holding ``day``."""
    first = day.replace(day=1)
    following = (first + dt.timedelta(days=32)).replace(day=1)
    return day_bounds(first, zone)[0], day_bounds(following, zone)[0]


def local_date(t: float, zone: ZoneInfo) -> dt.date:
    """The local calendar date at Unix time ``t``."""
    return dt.datetime.fromtimestamp(t, zone).date()


def _covered(start: float, end: float, since: float | None) -> float:
    begin = start if since is None else max(start, since)
    return max(0.0, end - begin)


def _since(first_minute: Any, configured: Any) -> float | None:
    known = [float(v) for v in (first_minute, configured) if isinstance(v, int | float)]
    return min(known) if known else None


# -- read-only (status) -------------------------------------------------------------------
def period_rates_sync(
    db: sqlite3.Connection, plan: RatePlan, start: float, end: float
) -> dict[str, Any]:
    """One sensor's figures for [start, end) from a read-only connection (status)."""
    row = db.execute("SELECT value FROM meta WHERE key = ?", (STATE_META,)).fetchone()
    since = _since(
        None, _load(None if row is None else row[0]).get("since", {}).get(plan.sensor_id)
    )
    if since is None:  # the gateway has not closed a day with this sensor yet
        (first,) = db.execute(FIRST_SQL, (plan.sensor_id, plan.sensor_id)).fetchone()
        since = _since(first, None)
    counts = db.execute(COUNTS_SQL, (plan.sensor_id, start, end)).fetchall()
    quality = db.execute(QUALITY_SQL, (plan.sensor_id, start, end)).fetchall()
    return rates_of(plan, counts, quality, _covered(start, end, since))


def status_rates(
    db: sqlite3.Connection, plans: Sequence[RatePlan], now: float
) -> dict[str, dict[str, Any]]:
    """Per sensor: today so far, yesterday and this month so far (for ``status``)."""
    out: dict[str, dict[str, Any]] = {}
    for plan in plans:
        zone = ZoneInfo(plan.timezone)
        today = local_date(now, zone)
        t0, _ = day_bounds(today, zone)
        y0, y1 = day_bounds(today - dt.timedelta(days=1), zone)
        m0, _ = month_bounds(today, zone)
        out[plan.sensor_id] = {
            "today": {"date": today.isoformat(), **period_rates_sync(db, plan, t0, now)},
            "yesterday": {
                "date": (today - dt.timedelta(days=1)).isoformat(),
                **period_rates_sync(db, plan, y0, y1),
            },
            "month": {"month": today.strftime("%Y-%m"), **period_rates_sync(db, plan, m0, now)},
        }
    return out


# -- in the writer's transaction (outbox hook) ----------------------------------------------
async def _period_rates(
    db: aiosqlite.Connection, plan: RatePlan, start: float, end: float, since: float | None
) -> dict[str, Any]:
    async with db.execute(COUNTS_SQL, (plan.sensor_id, start, end)) as cursor:
        counts = [tuple(r) for r in await cursor.fetchall()]
    async with db.execute(QUALITY_SQL, (plan.sensor_id, start, end)) as cursor:
        quality = [tuple(r) for r in await cursor.fetchall()]
    return rates_of(plan, counts, quality, _covered(start, end, since))


def _load(raw: str | None) -> dict[str, Any]:
    try:
        data = json.loads(raw or "{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


async def close_days(
    db: aiosqlite.Connection,
    setup: RatesSetup,
    *,
    now: float,
    clock_synced: bool | None,
) -> list[tuple[str, dict[str, Any]]]:
    """Rates records of every local day (and month) that ended since the last call.

    Cheap when nothing is due (no query until the next local midnight plus the grace).
    Returns (data class, body) pairs for the outbox to append in the same transaction.
    """
    if now < setup._next_due or not setup.plans:
        return []
    if setup.require_synced and clock_synced is False:
        return []
    state = _load(await read_meta(db, STATE_META))
    since_of: dict[str, float] = state.setdefault("since", {})
    closed: dict[str, str] = state.setdefault("closed", {})
    items: list[tuple[str, dict[str, Any]]] = []
    next_due = math.inf
    for plan in setup.plans:
        zone = ZoneInfo(plan.timezone)
        if plan.sensor_id not in since_of:
            # Once per sensor (a scan of its rows): from its first reading or from now.
            async with db.execute(FIRST_SQL, (plan.sensor_id, plan.sensor_id)) as cursor:
                row = await cursor.fetchone()
            since_of[plan.sensor_id] = _since(None if row is None else row[0], now) or now
        since = since_of[plan.sensor_id]
        last_done = local_date(now - DAY_GRACE_S, zone) - dt.timedelta(days=1)
        done = closed.get(plan.sensor_id)
        day = (
            local_date(since if since is not None else now, zone)
            if done is None
            else dt.date.fromisoformat(done) + dt.timedelta(days=1)
        )
        day = max(day, last_done - dt.timedelta(days=MAX_CATCH_UP_DAYS - 1))
        while day <= last_done:
            start, end = day_bounds(day, zone)
            body = await _period_rates(db, plan, start, end, since)
            items.append(("minute", _body(plan, "day", day.isoformat(), start, end, body)))
            if (day + dt.timedelta(days=1)).day == 1:
                m0, m1 = month_bounds(day, zone)
                month = await _period_rates(db, plan, m0, m1, since)
                items.append(("minute", _body(plan, "month", day.strftime("%Y-%m"), m0, m1, month)))
            closed[plan.sensor_id] = day.isoformat()
            day += dt.timedelta(days=1)
        next_due = min(
            next_due, day_bounds(last_done + dt.timedelta(days=1), zone)[1] + DAY_GRACE_S
        )
    await write_meta(db, STATE_META, json.dumps(state, sort_keys=True))
    setup._next_due = next_due
    return items


def _body(  # noqa: PLR0917 - the record's parts
    plan: RatePlan, period: str, label: str, start: float, end: float, figures: Mapping[str, Any]
) -> dict[str, Any]:
    return {
        "type": "rates",
        "period": period,
        "sensor_id": plan.sensor_id,
        "date" if period == "day" else "month": label,
        "start": start,
        "end": end,
        "timezone": plan.timezone,
        "expected_interval_s": plan.expected_interval_s,
        **figures,
    }

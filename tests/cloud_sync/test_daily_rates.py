"""Data rates (数据传输有效率): computed from the store's minute rows, sent as day/month records.

Real SQLite through the real store and outbox hook; the only thing the tests choose is
``now`` where the day boundary matters.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sqlite3
import time
from contextlib import closing
from zoneinfo import ZoneInfo

import aiosqlite
import pytest

from cloud_sync.daily_rates import (
    DAY_GRACE_S,
    RatePlan,
    RatesSetup,
    close_days,
    day_bounds,
    rates_of,
    status_rates,
)
from cloud_sync.outbox import Outbox
from edge.batch import Batch
from edge.store import Store

SHANGHAI = ZoneInfo("Asia/Shanghai")
PLAN = RatePlan(
    sensor_id="noise-01", quantities=("LA",), expected_interval_s=60.0, timezone="Asia/Shanghai"
)


def _day_batch(day: dt.date, *, valid: int, maintenance: int, refused: int) -> Batch:
    """A day of minute rows: ``valid`` N minutes, then M minutes, and refused values."""
    start, _ = day_bounds(day, SHANGHAI)
    batch = Batch(messages=valid + maintenance)
    for i in range(valid + maintenance):
        flag = "N" if i < valid else "M"
        batch.aggregates[("noise-01", "LA", flag, int(start) + 60 * i)] = [1, 50, 50, 50, 1e5]
    for i in range(refused):
        batch.quality[("noise-01", "LA", int(start) + 60 * i)] = [1, 0]
    return batch


def test_rates_of_pools_quantities_and_caps_transmission():
    plan = RatePlan(sensor_id="w", quantities=("pH", "DO"), expected_interval_s=60.0)
    figures = rates_of(
        plan,
        counts=[("pH", 1, 1000), ("pH", 0, 200), ("DO", 1, 1500)],
        quality=[("pH", 40, 3), ("DO", 0, 0)],
        covered_s=86400.0,
    )
    ph = next(q for q in figures["quantities"] if q["quantity"] == "pH")
    do = next(q for q in figures["quantities"] if q["quantity"] == "DO")
    assert (ph["expected"], ph["received"], ph["valid"], ph["refused"]) == (1440, 1240, 1000, 40)
    assert ph["transmission_rate"] == round(1240 / 1440, 4)
    assert ph["validity_rate"] == round(1000 / 1240, 4)
    assert ph["effective_rate"] == round(round(1240 / 1440, 4) * round(1000 / 1240, 4), 4)
    assert ph["clock_untrusted"] == 3
    # At-least-once delivery counted some twice: the rate never exceeds 1.
    assert do["transmission_rate"] == 1.0
    assert (figures["expected"], figures["received"], figures["valid"]) == (2880, 2740, 2500)


def test_no_expectation_and_no_receipt_give_no_rate_not_zero_division():
    figures = rates_of(PLAN, counts=[], quality=[], covered_s=0.0)
    assert (figures["transmission_rate"], figures["validity_rate"]) == (None, None)
    assert figures["effective_rate"] is None


async def _store_day(db, batch: Batch) -> None:
    async with await Store.open(db) as store:
        await store.commit(batch)


async def _close(db, setup: RatesSetup, now: float, synced: bool | None = True):
    async with aiosqlite.connect(db) as conn:
        items = await close_days(conn, setup, now=now, clock_synced=synced)
        await conn.commit()
        return items


def test_a_local_day_closes_after_its_grace_with_its_counts(tmp_path):
    db = tmp_path / "g.db"
    day = dt.date(2026, 11, 29)
    asyncio.run(_store_day(db, _day_batch(day, valid=1000, maintenance=200, refused=40)))
    _, end = day_bounds(day, SHANGHAI)  # 2026-11-29 16:00 UTC
    setup = RatesSetup(plans=[PLAN])
    assert asyncio.run(_close(db, setup, end + DAY_GRACE_S - 1)) == []
    setup = RatesSetup(plans=[PLAN])
    (item,) = asyncio.run(_close(db, setup, end + DAY_GRACE_S + 1))
    data_class, body = item
    assert data_class == "minute"
    assert (body["type"], body["period"], body["date"], body["sensor_id"]) == (
        "rates",
        "day",
        "2026-11-29",
        "noise-01",
    )
    assert (body["start"], body["end"]) == day_bounds(day, SHANGHAI)
    assert (body["expected"], body["received"], body["valid"], body["refused"]) == (
        1440,
        1240,
        1000,
        40,
    )
    assert body["transmission_rate"] == pytest.approx(1240 / 1440, abs=1e-4)
    assert body["validity_rate"] == pytest.approx(1000 / 1240, abs=1e-4)
    assert body["effective_rate"] == pytest.approx(1000 / 1440, abs=2e-4)
    # Closed once: the next call (a fresh setup, as after a restart) sends nothing again.
    assert asyncio.run(_close(db, RatesSetup(plans=[PLAN]), end + DAY_GRACE_S + 60)) == []


def test_the_last_day_of_a_month_also_closes_the_month(tmp_path):
    db = tmp_path / "g.db"
    first, last = dt.date(2026, 11, 1), dt.date(2026, 11, 30)
    asyncio.run(_store_day(db, _day_batch(first, valid=1440, maintenance=0, refused=0)))
    asyncio.run(_store_day(db, _day_batch(last, valid=720, maintenance=0, refused=0)))
    _, end = day_bounds(last, SHANGHAI)
    items = asyncio.run(_close(db, RatesSetup(plans=[PLAN]), end + DAY_GRACE_S + 1))
    days = [b for _, b in items if b["period"] == "day"]
    assert [b["date"] for b in days][:1] == ["2026-11-01"]
    assert [b["date"] for b in days][-1] == "2026-11-30"
    assert len(days) == 30  # days with no data are on record too, at rate 0
    assert days[1]["transmission_rate"] == 0.0
    (month,) = [b for _, b in items if b["period"] == "month"]
    assert month["month"] == "2026-11"
    assert (month["expected"], month["received"]) == (30 * 1440, 1440 + 720)
    assert month["validity_rate"] == 1.0


def test_no_day_closes_by_an_unsynced_clock_when_the_gateway_waits_for_sync(tmp_path):
    db = tmp_path / "g.db"
    day = dt.date(2026, 11, 29)
    asyncio.run(_store_day(db, _day_batch(day, valid=10, maintenance=0, refused=0)))
    _, end = day_bounds(day, SHANGHAI)
    setup = RatesSetup(plans=[PLAN], require_synced=True)
    assert asyncio.run(_close(db, setup, end + 2 * DAY_GRACE_S, synced=False)) == []
    assert len(asyncio.run(_close(db, setup, end + 2 * DAY_GRACE_S, synced=True))) == 1


def test_the_outbox_hook_appends_signed_chain_rates_records(tmp_path):
    db = tmp_path / "g.db"
    today = dt.datetime.fromtimestamp(time.time(), SHANGHAI).date()
    day = today - dt.timedelta(days=3)
    outbox = Outbox(gateway_id="gw", rates=RatesSetup(plans=[PLAN]))

    async def main():
        async with await Store.open(db, hook=outbox, clock=lambda: True) as store:
            await store.commit(_day_batch(day, valid=1300, maintenance=0, refused=0))

    asyncio.run(main())
    with closing(sqlite3.connect(db)) as conn:
        rows = conn.execute(
            "SELECT data_class, clock_synced, body FROM outbox ORDER BY seq"
        ).fetchall()
    rates = [json.loads(b) for c, s, b in rows if json.loads(b)["type"] == "rates"]
    assert {r["period"] for r in rates} <= {"day", "month"}
    (ours,) = [r for r in rates if r.get("date") == day.isoformat()]
    assert (ours["received"], ours["valid"], ours["expected"]) == (1300, 1300, 1440)
    assert all(c == "minute" and s == 1 for c, s, b in rows if json.loads(b)["type"] == "rates")


def test_status_rates_cover_today_so_far_yesterday_and_the_month(tmp_path):
    db = tmp_path / "g.db"
    now = time.time()
    today = dt.datetime.fromtimestamp(now, SHANGHAI).date()
    yesterday = today - dt.timedelta(days=1)
    asyncio.run(_store_day(db, _day_batch(yesterday, valid=720, maintenance=720, refused=0)))
    with closing(sqlite3.connect(db)) as conn:
        got = status_rates(conn, [PLAN], now)["noise-01"]
    assert got["yesterday"]["date"] == yesterday.isoformat()
    assert got["yesterday"]["transmission_rate"] == 1.0
    assert got["yesterday"]["validity_rate"] == 0.5
    assert got["today"]["received"] == 0
    assert got["today"]["transmission_rate"] == 0.0
    assert got["month"]["month"] == today.strftime("%Y-%m")


def test_minute_and_hour_records_say_what_was_refused_or_clock_untrusted(tmp_path):
    db = tmp_path / "g.db"
    hour = int(time.time() // 3600 * 3600) - 2 * 3600
    batch = Batch(messages=3)
    batch.aggregates[("noise-01", "LA", "N", hour)] = [2, 50, 51, 101, 2e5]
    batch.aggregates[("noise-01", "LA", "N", hour + 60)] = [1, 50, 50, 50, 1e5]
    batch.quality[("noise-01", "LA", hour)] = [1, 2]

    async def main():
        async with await Store.open(db, hook=Outbox(gateway_id="gw")) as store:
            await store.commit(batch)

    asyncio.run(main())
    with closing(sqlite3.connect(db)) as conn:
        bodies = [json.loads(b) for (b,) in conn.execute("SELECT body FROM outbox ORDER BY seq")]
    minutes = {b["minute"]: b for b in bodies if b["type"] == "minute"}
    assert (minutes[hour]["clock_untrusted"], minutes[hour]["refused"]) == (2, {"LA": 1})
    assert "clock_untrusted" not in minutes[hour + 60]
    assert "refused" not in minutes[hour + 60]
    (hour_body,) = [b for b in bodies if b["type"] == "hour"]
    assert (hour_body["clock_untrusted"], hour_body["refused"]) == (2, {"LA": 1})

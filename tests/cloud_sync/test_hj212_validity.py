"""Incomplete hours and days are sent, marked invalid: cloud hour records and HJ 212 frames.

GB 3095-2012 表4: an hourly value needs 45 minutes of valid data, a daily one 20 valid
hours. 44 minutes is invalid, 45 valid; a valid minute holds an N (or T) reading.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from hj212_fakes import BEIJING, MN_NOISE, PLATFORM_PW, StandardPlatform, platform_cloud
from hypothesis import given
from hypothesis import strategies as st

from cloud_sync.hj212_daily import day_items
from cloud_sync.hj212_frames import CodeBook, Hj212Sensor, data_items
from cloud_sync.minutes import hour_bodies
from cloud_sync.sync import CloudSync, make_outbox
from cloud_sync.validity import HOUR_CLAUSE, invalid_flags
from edge.aggregate import energy
from edge.batch import Batch
from edge.store import Store

from .conftest import wait_for

pytestmark = pytest.mark.timeout(60)

H0 = 1_700_000_000 // 3600 * 3600
FLAGS = "NTDBFCMS"


def _rows(minutes: dict[int, str], value: float = 50.0):
    """Aggregate rows of one sensor's hour ``H0``: minute index -> flag."""
    return [
        ("s1", "LA", f, H0 + 60 * m, 1, value, value, value, energy(value))
        for m, f in minutes.items()
    ]


def test_an_hour_with_44_valid_minutes_is_invalid_and_keeps_its_figures():
    rows = _rows(dict.fromkeys(range(44), "N") | dict.fromkeys(range(44, 60), "M"))
    (body,) = hour_bodies(rows)
    assert body["valid"] is False
    assert body["coverage"] == round(44 / 60, 4)
    assert body["clause"] == HOUR_CLAUSE
    assert body["validity"]["LA"] == {"valid": False, "valid_minutes": 44, "coverage": 0.7333}
    assert {(i["flag"], i["count"]) for i in body["items"]} == {("N", 44), ("M", 16)}


def test_an_hour_with_45_valid_minutes_is_valid():
    (body,) = hour_bodies(_rows(dict.fromkeys(range(45), "N")))
    assert body["valid"] is True
    assert body["validity"]["LA"]["valid_minutes"] == 45
    cp = dict(data_items(body, CodeBook()))
    assert (cp["Leq-Data"], cp["Leq-Flag"]) == ("50.0", "N")
    assert "Leq-EFlag" not in cp


def test_an_hour_valid_only_for_one_of_two_quantities_is_invalid_for_that_one():
    rows = _rows(dict.fromkeys(range(50), "N"))
    rows += [("s1", "pH", "N", H0 + 60 * m, 1, 7.0, 7.0, 7.0, 0.0) for m in range(30)]
    (body,) = hour_bodies(rows)
    assert body["valid"] is False
    assert body["coverage"] == 0.5
    cp = dict(data_items(body, CodeBook(codes={"pH": "w01001"})))
    assert cp["Leq-Flag"] == "N"
    assert (cp["w01001-Avg"], cp["w01001-Flag"]) == ("7.00", "B")


@given(st.dictionaries(st.integers(0, 59), st.sampled_from(FLAGS), max_size=60))
def test_hour_validity_is_the_count_of_minutes_with_evidence(minutes):
    (body,) = hour_bodies(_rows(minutes)) if minutes else [None]
    if body is None:
        return
    good = sum(1 for f in minutes.values() if f in "NT")
    assert body["validity"]["LA"]["valid_minutes"] == good
    assert body["valid"] is (good >= 45)
    cp = dict(data_items(body, CodeBook()))
    # never dropped: the value is always there; an invalid hour never says N or T
    assert "Leq-Data" in cp
    if not body["valid"]:
        assert cp["Leq-Flag"] not in {"N", "T"}


@given(st.sets(st.sampled_from(FLAGS), min_size=1))
def test_invalid_flags_never_say_normal_and_lose_no_flag(present):
    flag, eflag = invalid_flags(present, eflag_chars=8)
    assert flag in "DBFCMS"
    assert set(eflag) | {flag} == present | ({"B"} if flag == "B" else set())
    assert len(eflag) == len(set(eflag))


def _day(valid: dict[int, bool]):
    """Hour bodies of a local day (Beijing) with 60 or 44 N minutes per hour."""
    start = int(dt.datetime(2026, 3, 1, tzinfo=BEIJING).timestamp())
    hours = {}
    for h in range(24):
        level = 62.0 if 6 <= h < 22 else 47.0
        n = 60 if valid.get(h, True) else 44
        rows = [
            ("s1", "LA", "N", start + h * 3600 + 60 * m, 1, level, level, level, energy(level))
            for m in range(n)
        ]
        (body,) = hour_bodies(rows)
        hours[start + h * 3600] = body
    return hours


def test_a_day_with_19_valid_hours_is_flagged_and_20_is_not():
    sensor = Hj212Sensor(kind="noise")
    # 4 invalid day hours: 20 valid hours, Ld 12 of 16 valid, Ln 8 of 8
    ok = dict(day_items(_day(dict.fromkeys(range(6, 10), False)), CodeBook(), sensor, 8))
    assert ok["Leq-Flag"] == ok["Ld-Flag"] == ok["Ln-Flag"] == ok["Ldn-Flag"] == "N"
    # 5 invalid: 19 valid hours: the day is invalid; Ld (11 of 16) too; Ln stays valid
    bad = dict(day_items(_day(dict.fromkeys(range(6, 11), False)), CodeBook(), sensor, 8))
    assert (bad["Leq-Flag"], bad["Leq-EFlag"]) == ("B", "N")
    assert bad["Leq-Data"] == ok["Leq-Data"]  # the value is sent all the same
    assert bad["Ld-Flag"] == "B"
    assert bad["Ln-Flag"] == "N"
    assert bad["Ldn-Flag"] == "B"
    # 3 invalid night hours: Ln 5 of 8 (< 6) invalid although the day (21) is valid
    night = dict(day_items(_day(dict.fromkeys(range(3), False)), CodeBook(), sensor, 8))
    assert (night["Leq-Flag"], night["Ld-Flag"], night["Ln-Flag"]) == ("N", "N", "B")


def test_incomplete_hours_and_day_on_the_wire(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Through the real outbox and uplink to a real TCP platform."""
    monkeypatch.setenv("OFFSITE_TEST_HJ212_PW", PLATFORM_PW)
    asyncio.run(_wire(tmp_path))


async def _wire(tmp_path: Path) -> None:
    platform = StandardPlatform(ask_time=False)
    server = await asyncio.start_server(platform.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    cloud = platform_cloud(port, mn=MN_NOISE, realtime=False)
    today = dt.datetime.now(BEIJING).replace(hour=0, minute=0, second=0, microsecond=0)
    yesterday = int((today - dt.timedelta(days=1)).timestamp())
    aggregates = {}
    for h in range(24):
        level = 62.0 if 6 <= h < 22 else 47.0
        # hours 06-10: 44 valid minutes (06: the rest maintenance); the others 45
        n = 44 if 6 <= h <= 10 else 45
        for m in range(60):
            flag = "N" if m < n else "M" if h == 6 else None
            if flag is not None:
                aggregates[("noise-1", "LA", flag, yesterday + h * 3600 + 60 * m)] = [
                    1, level, level, level, energy(level)
                ]  # fmt: skip
    db = tmp_path / "gw.db"
    outbox = make_outbox("gw-v", cloud, db)
    async with await Store.open(db, hook=outbox) as store:
        stop = asyncio.Event()
        sensors = {"noise-1": Hj212Sensor(kind="noise", profile="gb3096-2008")}
        task = asyncio.create_task(CloudSync(store, outbox, cloud, hj212_sensors=sensors).run(stop))
        await store.commit(Batch(aggregates=aggregates, messages=1))
        await wait_for(lambda: any(f.cn == "2031" for f in platform.frames), timeout=50)
        stop.set()
        await task
    server.close()
    await server.wait_closed()

    with closing(sqlite3.connect(db)) as conn:
        bodies = [json.loads(b) for (b,) in conn.execute("SELECT body FROM outbox")]
    hours = {b["hour"]: b for b in bodies if b["type"] == "hour"}
    assert len(hours) == 24
    for h in range(24):
        body = hours[yesterday + h * 3600]
        assert body["valid"] is not (6 <= h <= 10), h
        assert body["validity"]["LA"]["valid_minutes"] == (44 if 6 <= h <= 10 else 45)
        assert body["clause"] == HOUR_CLAUSE

    frames = {f.cp["DataTime"]: f for f in platform.frames if f.cn == "2061"}
    assert len(frames) == 24

    def at(h: int):
        stamp = dt.datetime.fromtimestamp(yesterday + h * 3600, BEIJING)
        return frames[stamp.strftime("%Y%m%d%H%M%S")].cp

    assert (at(6)["Leq-Data"], at(6)["Leq-Flag"], at(6)["Leq-EFlag"]) == ("62.0", "M", "N")
    assert (at(7)["Leq-Data"], at(7)["Leq-Flag"], at(7)["Leq-EFlag"]) == ("62.0", "B", "N")
    assert (at(11)["Leq-Data"], at(11)["Leq-Flag"]) == ("62.0", "N")
    assert "Leq-EFlag" not in at(11)

    (day,) = [f for f in platform.frames if f.cn == "2031"]
    # 19 valid hours: the day is invalid, Ld (11 of 16) too; Ln (8 of 8) is valid
    assert (day.cp["Leq-Flag"], day.cp["Ld-Flag"], day.cp["Ldn-Flag"]) == ("M", "M", "M")
    assert day.cp["Ln-Flag"] == "N"
    assert day.cp["Ld-DayData"] == "62.0"


def test_a_day_watched_whole_is_sent_flagged_with_hours_missing():
    from cloud_sync.hj212_daily import DayCollector

    hours = _day({})
    start = min(hours)
    missing = {start + h * 3600 for h in range(6, 11)}  # the sensor sent nothing 06-11
    sensor = Hj212Sensor(kind="noise")
    # the uplink ran from before the day: missing hours are invalid hours, the day goes out
    collector = DayCollector(8.0, since=start - 1)
    (day,) = [
        d for s, b in sorted(hours.items()) if s not in missing if (d := collector.add("s1", s, b))
    ]
    assert (day.complete, day.watched, day.sendable) == (False, True, True)
    cp = dict(day_items(day.hours, CodeBook(), sensor, 8))
    assert (cp["Leq-Flag"], cp["Ld-Flag"], cp["Ln-Flag"]) == ("B", "B", "N")
    # started mid-day (a restart): hours before it never came through; not sent
    collector = DayCollector(8.0, since=start + 3600)
    (day,) = [
        d for s, b in sorted(hours.items()) if s not in missing if (d := collector.add("s1", s, b))
    ]
    assert not day.sendable

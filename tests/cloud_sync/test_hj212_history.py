"""History requests (2051/2061/2031 with BeginTime/EndTime) answered from the store, checked
field by field by a platform written to HJ 212-2017 over real TCP, with a real SQLite store."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sqlite3
import time
from pathlib import Path

import pytest
from hj212_fakes import (
    BEIJING,
    MN_NOISE,
    MN_WATER,
    PLATFORM_PW,
    StandardPlatform,
    platform_cloud,
    uploads,
)

from cloud_sync.config import CloudConfig
from cloud_sync.hj212_frames import Hj212Sensor
from cloud_sync.sync import CloudSync, make_outbox
from edge.aggregate import energy, level_from_energy
from edge.batch import Batch
from edge.hj212 import reassemble
from edge.store import Store

from .conftest import wait_for

pytestmark = pytest.mark.timeout(60)

MULTI = [f"q{n:02d}" for n in range(40)]  # one sensor, 40 quantities: a frame > 1024 bytes


def local(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, BEIJING).strftime("%Y%m%d%H%M%S")


def cloud(port: int, **uplink: object) -> CloudConfig:
    return platform_cloud(
        port,
        sensor_mn={"noise-1": MN_NOISE},
        codes={q: f"x{q}" for q in MULTI},
        realtime=False,
        audit_every_s=0,  # every request's audit, not one per minute
        **uplink,
    )


SENSORS = {
    "water-1": Hj212Sensor(kind="water", profile="gb3838-2002", codes={"pH": "w01001"}),
    "multi-1": Hj212Sensor(kind="water"),
    "noise-1": Hj212Sensor(kind="noise", profile="gb12348-2008"),
}


def audits(db: Path) -> list[dict]:
    conn = sqlite3.connect(db)
    try:
        bodies = [json.loads(b) for (b,) in conn.execute("SELECT body FROM outbox")]
    finally:
        conn.close()
    return [b for b in bodies if b.get("type") == "command"]


async def run_platform(tmp_path: Path, aggregates: dict, script, **uplink: object):
    """Commit ``aggregates``, let ``script(platform)`` send its requests; return the audits."""
    platform = StandardPlatform(ask_time=False)
    server = await asyncio.start_server(platform.handle, "127.0.0.1", 0)
    config = cloud(server.sockets[0].getsockname()[1], **uplink)
    db = tmp_path / "gw.db"
    outbox = make_outbox("gw-h", config, db)
    async with await Store.open(db, hook=outbox) as store:
        stop = asyncio.Event()
        task = asyncio.create_task(
            CloudSync(store, outbox, config, hj212_sensors=SENSORS).run(stop)
        )
        await store.commit(Batch(aggregates=aggregates, messages=1))
        await asyncio.wait_for(platform.connected.wait(), 20)
        wanted = await script(platform)
        await wait_for(lambda: len(audits(db)) >= wanted)
        stop.set()
        await task
    server.close()
    await server.wait_closed()
    return platform, audits(db)


def test_2051_history_streams_exactly_the_stored_minutes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OFFSITE_TEST_HJ212_PW", PLATFORM_PW)
    base = int(time.time() // 60) * 60 - 600
    aggregates: dict = {}
    for i in range(6):  # water: six closed minutes, base … base+5 min
        lo = 7.0 + i / 10
        aggregates[("water-1", "pH", "N", base + 60 * i)] = [2, lo, lo + 0.2, 2 * lo + 0.2, 0.0]
    aggregates[("water-1", "pH", "M", base + 120)] = [1, 6.0, 6.0, 6.0, 0.0]
    for q in MULTI:
        aggregates[("multi-1", q, "N", base + 120)] = [1, 1.25, 1.25, 1.25, 0.0]
    aggregates[("noise-1", "LA", "N", base + 120)] = [2, 50.0, 60.0, 110.0, energy(50) + energy(60)]
    qns = {
        "minutes": "20240101000000011",
        "empty": "20240101000000012",
        "reversed": "20240101000000013",
        "running": "20240101000000014",
        "noise": "20240101000000015",
        "too_long": "20240101000000016",
    }
    in_range = {"BeginTime": local(base + 60), "EndTime": local(base + 180)}

    def live_split(platform: StandardPlatform) -> list:
        return [f for f in platform_frames(platform) if "PNUM" in f.header]

    def platform_frames(platform: StandardPlatform) -> list:
        return [f for f in platform.frames if f.cn == "2051"]

    async def script(platform: StandardPlatform) -> int:
        # The live upload of the 40-quantity minute: packets, each answered by a 9014.
        await wait_for(
            lambda: (
                bool(packets := live_split(platform))
                and len(packets) == int(packets[0].header["PNUM"])
            )
        )
        requests = [
            ("minutes", "2051", in_range, MN_WATER),
            ("empty", "2051", {"BeginTime": "20200101000000", "EndTime": "20200101010000"}, None),
            ("reversed", "2051", {"BeginTime": local(base + 180), "EndTime": local(base)}, None),
            ("running", "2041", in_range, None),
            ("noise", "2051", in_range, MN_NOISE),
            ("too_long", "2051", {"BeginTime": "20200101000000", "EndTime": "20200301000000"}, None),
        ]  # fmt: skip
        for name, cn, cp, mn in requests:
            await platform.send(qns[name], cn, cp, mn or MN_WATER)
            await wait_for(lambda n=name: platform.finished(qns[n]))
        return len(requests)

    platform, audit = asyncio.run(run_platform(tmp_path, aggregates, script, hourly=False))

    got = platform.replies[qns["minutes"]]
    # 9011 first, the uploads, 9012 last; all with the request's QN.
    assert {f.header["QN"] for f in got} == {qns["minutes"]}
    assert (got[0].header["ST"], got[0].cn, got[0].header["Flag"], got[0].cp) == (
        "91", "9011", "4", {"QnRtn": "1"}
    )  # fmt: skip
    assert (got[-1].header["ST"], got[-1].cn, got[-1].cp) == ("91", "9012", {"ExeRtn": "1"})
    data = got[1:-1]
    assert all(f.cn == "2051" and f.mn == MN_WATER and f.header["PW"] == PLATFORM_PW for f in data)
    assert all(f.header["ST"] == "21" for f in data)  # the sensors' ST, not the request's
    messages = uploads(got)
    # Exactly the stored minutes of [Begin, End] (both ends included), one per sensor.
    assert [(m.cp["DataTime"], "xq00-Avg" in m.cp) for m in messages] == [
        (local(base + 60), False),
        (local(base + 120), True),  # multi-1 sorts before water-1
        (local(base + 120), False),
        (local(base + 180), False),
    ]
    unsplit = [m for m in messages if "xq00-Avg" not in m.cp]
    assert all(m.header["Flag"] == "4" for m in unsplit)  # no 9014: the 9012 closes it
    assert unsplit[0].cp == {
        "DataTime": local(base + 60),
        "w01001-Min": "7.10",
        "w01001-Avg": "7.20",
        "w01001-Max": "7.30",
        "w01001-Flag": "N",
    }
    assert unsplit[1].cp == {
        "DataTime": local(base + 120),
        "w01001-Min": "7.20",
        "w01001-Avg": "7.30",
        "w01001-Max": "7.40",
        "w01001-Flag": "N",
        "w01001-EFlag": "M",  # the maintenance reading is reported, not lost
    }
    # The 40-quantity minute went out as split packets of one QN, each a valid frame.
    packets = [f for f in data if "PNUM" in f.header]
    assert len(packets) > 1
    assert [f.header["PNO"] for f in packets] == [str(n) for n in range(1, len(packets) + 1)]
    assert {f.header["PNUM"] for f in packets} == {str(len(packets))}
    assert {f.header["Flag"] for f in packets} == {"6"}  # 2017, split, no answer
    assert all(f.cp["DataTime"] == local(base + 120) for f in packets)
    (multi,) = [m for m in messages if "xq00-Avg" in m.cp]
    assert multi.header["Flag"] == "4"
    assert multi.cp == {
        "DataTime": local(base + 120),
        **{
            f"x{q}-{suffix}": value
            for q in MULTI
            for suffix, value in (
                ("Min", "1.250"),
                ("Avg", "1.250"),
                ("Max", "1.250"),
                ("Flag", "N"),
            )
        },
    }

    # Live, the same minute went out split too: one QN (its own), Flag=7, one 9014 each.
    live = live_split(platform)
    assert len({f.header["QN"] for f in live}) == 1
    assert {f.header["Flag"] for f in live} == {"7"}
    joined = reassemble(live)
    assert joined.header["Flag"] == "5"
    assert joined.cp == multi.cp

    empty = platform.replies[qns["empty"]]
    assert [(f.cn, f.cp) for f in empty] == [("9011", {"QnRtn": "1"}), ("9012", {"ExeRtn": "100"})]
    for name in ("reversed", "running", "too_long"):
        assert [(f.cn, f.cp) for f in platform.replies[qns[name]]] == [("9011", {"QnRtn": "2"})]

    (noise,) = uploads(platform.replies[qns["noise"]])
    assert (noise.mn, noise.header["ST"]) == (MN_NOISE, "23")
    assert noise.cp["Leq-Data"] == f"{level_from_energy(energy(50) + energy(60), 2):.1f}"

    by_qn = {a["id"]: a for a in audit}
    assert by_qn[qns["minutes"]]["command"]["cn"] == "2051"
    assert by_qn[qns["minutes"]]["uplink"] == "prov"
    assert by_qn[qns["minutes"]]["result"] == {
        "begin": in_range["BeginTime"],
        "end": in_range["EndTime"],
        "periods": 4,
        "packets": 3 + len(packets),
        "exe_rtn": "1",
    }
    assert by_qn[qns["empty"]]["result"]["exe_rtn"] == "100"
    assert by_qn[qns["reversed"]]["error"] == "bad BeginTime/EndTime"
    assert "running-time" in by_qn[qns["running"]]["error"]
    assert by_qn[qns["too_long"]]["error"] == "range longer than 31 days"


def test_2061_and_2031_history_from_a_stored_day(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OFFSITE_TEST_HJ212_PW", PLATFORM_PW)
    today = dt.datetime.now(BEIJING).replace(hour=0, minute=0, second=0, microsecond=0)
    yesterday = int((today - dt.timedelta(days=1)).timestamp())
    before = yesterday - 86400  # a day with only 2 hours stored: sent, flagged invalid
    aggregates: dict = {}
    for h in range(24):
        level = 62.0 if 6 <= h < 22 else 47.0
        aggregates[("noise-1", "LA", "N", yesterday + h * 3600)] = [
            2, level, level, 2 * level, 2 * energy(level)
        ]  # fmt: skip
    for h in (10, 11):
        aggregates[("noise-1", "LA", "N", before + h * 3600)] = [1, 70.0, 70.0, 70.0, energy(70)]
    hours_qn, days_qn = "20240101000000021", "20240101000000022"

    async def script(platform: StandardPlatform) -> int:
        await wait_for(lambda: any(f.cn == "2031" for f in platform.frames))  # the live day
        cp = {"BeginTime": local(yesterday + 5 * 3600), "EndTime": local(yesterday + 7 * 3600)}
        await platform.send(hours_qn, "2061", cp, MN_NOISE)
        await wait_for(lambda: platform.finished(hours_qn))
        cp = {"BeginTime": local(before), "EndTime": local(yesterday + 3600)}
        await platform.send(days_qn, "2031", cp, MN_NOISE)
        await wait_for(lambda: platform.finished(days_qn))
        return 2

    platform, audit = asyncio.run(run_platform(tmp_path, aggregates, script))

    hours = uploads(platform.replies[hours_qn])
    assert [(m.cn, m.cp["DataTime"]) for m in hours] == [
        ("2061", local(yesterday + h * 3600)) for h in (5, 6, 7)
    ]
    assert [m.cp["Leq-Data"] for m in hours] == ["47.0", "62.0", "62.0"]
    assert platform.replies[hours_qn][-1].cp == {"ExeRtn": "1"}
    early, day = uploads(platform.replies[days_qn])
    # The 2-hour day keeps its values, flagged B (too few valid hours), never N.
    assert early.cp["DataTime"] == local(before)
    assert early.cp["Ld-DayData"] == "70.0"
    flags = {k: v for k, v in early.cp.items() if k.endswith("-Flag")}
    assert set(flags.values()) == {"B"}
    (live,) = [f for f in platform.frames if f.cn == "2031"]
    assert day.cn == "2031"
    assert day.header["Flag"] == "4"
    assert day.cp == live.cp  # the same day frame as the one sent live
    assert (day.cp["Ld-DayData"], day.cp["Ln-NightData"]) == ("62.0", "47.0")
    assert {a["command"]["cn"]: a["result"]["periods"] for a in audit} == {"2061": 3, "2031": 2}


# --- paging and ranges (real SQLite, no network) ------------------------------------------


def test_pages_skip_empty_stretches_and_hold_at_most_an_hour(tmp_path: Path) -> None:
    from cloud_sync.hj212_history import read_page

    db = tmp_path / "gw.db"
    h0 = 1_700_002_800  # an hour boundary (UTC)
    aggregates = {("s", "pH", "N", h0 + 60 * m): [1, 7.0, 7.0, 7.0, 0.0] for m in range(150)}
    aggregates[("s", "pH", "N", h0 + 30 * 86400)] = [1, 7.0, 7.0, 7.0, 0.0]

    async def fill() -> None:
        async with await Store.open(db) as store:
            await store.commit(Batch(aggregates=aggregates, messages=1))

    asyncio.run(fill())
    pages = []
    lo, hi = h0 - 10 * 86400, h0 + 40 * 86400  # fifty days, mostly empty
    while (page := read_page(db, lo, hi)) is not None:
        pages.append(page)
        lo = page.stop
    # Four queries for fifty days, never more than an hour of rows in memory.
    assert [(p.start, p.stop, len(p.rows)) for p in pages] == [
        (h0, h0 + 3600, 60),
        (h0 + 3600, h0 + 7200, 60),
        (h0 + 7200, h0 + 10800, 30),
        (h0 + 30 * 86400, h0 + 30 * 86400 + 3600, 1),
    ]
    assert read_page(db, h0 + 120, h0 + 240) == pages[0].__class__(
        h0 + 120, h0 + 240, [r for r in pages[0].rows if h0 + 120 <= r[3] < h0 + 240]
    )


def test_period_range_is_inclusive_closed_and_aligned() -> None:
    from cloud_sync.hj212_history import period_range
    from cloud_sync.hj212_platform import HistoryRequest
    from edge.hj212 import Hj212Message

    def job(cn: str, begin: dt.datetime, end: dt.datetime) -> HistoryRequest:
        return HistoryRequest(
            request=Hj212Message(header={"CN": cn}),
            cn=cn,
            begin=begin.timestamp(),
            end=end.timestamp(),
            received_at=0.0,
        )

    def at(d: int, h: int, m: int = 0, s: int = 0) -> dt.datetime:
        return dt.datetime(2024, 5, d, h, m, s, tzinfo=BEIJING)

    far = (2**40, 2**40)  # everything closed
    offset = 8 * 3600
    assert period_range(job("2051", at(1, 10, 0, 30), at(1, 10, 5)), far, offset) == (
        at(1, 10, 1).timestamp(),
        at(1, 10, 6).timestamp(),
    )
    assert period_range(job("2061", at(1, 10), at(1, 12)), far, offset) == (
        at(1, 10).timestamp(),
        at(1, 13).timestamp(),
    )
    # Days are local: 1 May 00:00 (Beijing) to 2 May inclusive → up to 3 May 00:00.
    assert period_range(job("2031", at(1, 0), at(2, 0)), far, offset) == (
        at(1, 0).timestamp(),
        at(3, 0).timestamp(),
    )
    # Only closed periods: an hour still open, and the day it lies in, are left out.
    closed = (int(at(2, 9, 30).timestamp()), int(at(2, 9).timestamp()))
    assert period_range(job("2051", at(2, 9), at(2, 10)), closed, offset)[1] == closed[0]
    assert period_range(job("2061", at(2, 8), at(2, 10)), closed, offset)[1] == closed[1]
    assert period_range(job("2031", at(1, 0), at(2, 0)), closed, offset)[1] == (
        at(2, 0).timestamp()
    )

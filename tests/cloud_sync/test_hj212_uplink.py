"""The HJ 212 uplink against platforms that speak the standard: 9014, resends, splitting,
field-by-field frames, platform requests and the 2031 day frame."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import sqlite3
import time
from pathlib import Path

import pytest
from hj212_fakes import BEIJING, MN_NOISE, MN_WATER, PLATFORM_PW, StandardPlatform, platform_cloud

from cloud_sync.config import CloudConfig
from cloud_sync.hj212_uplink import build_packets
from cloud_sync.sync import CloudSync, make_outbox
from edge.batch import Batch
from edge.hj212 import build_data_segment, build_frame, parse_frame
from edge.store import Store

from .conftest import wait_for

pytestmark = pytest.mark.timeout(60)


class FakePlatform:
    """A TCP server speaking HJ 212: answers 9014 to frames with Flag A=1 (optionally late)."""

    def __init__(self, drop_first: int = 0) -> None:
        self.frames: list = []
        self.drop_first = drop_first

    async def handle(self, reader, writer) -> None:
        try:
            while True:
                line = await reader.readuntil(b"\r\n")
                frame = parse_frame(line)
                self.frames.append(frame)
                if int(frame.header["Flag"]) & 1:
                    if self.drop_first > 0:
                        self.drop_first -= 1
                        continue
                    head = {
                        "QN": frame.header["QN"],
                        "ST": "91",
                        "CN": "9014",
                        "PW": frame.header["PW"],
                        "MN": frame.mn,
                        "Flag": "4",
                    }
                    writer.write(build_frame(build_data_segment(head, {})))
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def test_hj212_uplink_minute_data_with_9014_and_resend(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OFFSITE_TEST_HJ212_PW", "123456")
    asyncio.run(_hj212(tmp_path))


async def _hj212(tmp_path: Path) -> None:
    platform = FakePlatform(drop_first=1)
    server = await asyncio.start_server(platform.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    cloud = CloudConfig.model_validate(
        {
            "uplinks": [
                {
                    "type": "hj212",
                    "name": "hj",
                    "host": "127.0.0.1",
                    "port": port,
                    "mn": "010000A8900016F000169DC0",
                    "codes": {"LA": "LA", "pm25": "a34004"},
                    "ack_timeout_s": 0.5,
                    "pw_env": "OFFSITE_TEST_HJ212_PW",
                    "tls": {"enabled": False},  # the fake platform is plain loopback TCP
                }
            ],
            "outbox": {"status_interval_s": 3600, "minute_close_s": 0},
        }
    )
    db = tmp_path / "gw.db"
    base = int(time.time() // 60) * 60 - 180
    outbox = make_outbox("gw-j", cloud, db)
    async with await Store.open(db, hook=outbox) as store:
        stop = asyncio.Event()
        task = asyncio.create_task(CloudSync(store, outbox, cloud).run(stop))
        for i in range(3):
            await store.commit(
                Batch(
                    aggregates={
                        ("s1", "LA", "N", base + 60 * i): [2, 50.0, 60.0, 110.0, 0.0],
                        ("s1", "pm25", "M", base + 60 * i): [2, 10.0, 20.0, 30.0, 0.0],
                    },
                    messages=1,
                )
            )

        def minutes():
            return [f for f in platform.frames if f.cn == "2051"]

        await wait_for(lambda: len({f.header["QN"] for f in minutes()}) >= 3)
        backlog = await store.run(outbox.backlog)
        await wait_for(lambda: True)
        stop.set()
        await task
    server.close()
    await server.wait_closed()
    frame = minutes()[0]
    assert frame.header["ST"] == "22"
    assert frame.header["Flag"] == "5"
    assert frame.mn == "010000A8900016F000169DC0"
    assert {"LA-Avg", "LA-Min", "LA-Max", "LA-Flag", "a34004-Avg", "a34004-Flag"} <= set(frame.cp)
    assert frame.cp["a34004-Flag"] == "M"
    assert any(f.cn == "2011" for f in platform.frames)
    # The first 2051 got no answer: it was resent with the same QN.
    qns = [f.header["QN"] for f in minutes()]
    assert len(qns) > len(set(qns))
    assert "minute" not in backlog.get("hj", {}) or backlog["hj"]["minute"] >= 0


def test_long_data_is_split_with_pnum_pno() -> None:
    items = [(f"a{n:05d}-Avg", "123.456") for n in range(120)]
    packets = build_packets(
        cn="2051",
        qn="20240101000000000",
        st="22",
        pw="123456",
        mn="MN1",
        when="20240101000000",
        items=items,
        ack=True,
    )
    assert len(packets) > 1
    frames = [parse_frame(p) for p in packets]
    assert all(f.header["Flag"] == "7" for f in frames)
    assert [f.header["PNO"] for f in frames] == [str(i + 1) for i in range(len(frames))]
    assert {f.header["PNUM"] for f in frames} == {str(len(frames))}
    got = {k for f in frames for k in f.cp if k != "DataTime"}
    assert got == {k for k, _ in items}


def test_hj212_frames_field_by_field_and_platform_requests(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OFFSITE_TEST_HJ212_PW", PLATFORM_PW)
    # The clock is NTP-synchronised: a platform time-set an hour off is refused.
    monkeypatch.setattr("cloud_sync.hj212_uplink.clock_synchronised", lambda: True)
    asyncio.run(_standard(tmp_path))


async def _standard(tmp_path: Path) -> None:
    from cloud_sync.hj212_frames import Hj212Sensor
    from edge.aggregate import energy, level_from_energy

    platform = StandardPlatform()
    server = await asyncio.start_server(platform.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    cloud = platform_cloud(port, sensor_mn={"noise-1": MN_NOISE}, hourly=False)
    sensors = {
        "water-1": Hj212Sensor(kind="water", profile="gb3838-2002", codes={"pH": "w01001"}),
        "noise-1": Hj212Sensor(kind="noise", profile="gb3096-2008"),
    }
    db = tmp_path / "gw.db"
    minute = int(time.time() // 60) * 60 - 120
    outbox = make_outbox("gw-j", cloud, db)
    async with await Store.open(db, hook=outbox) as store:
        stop = asyncio.Event()
        sync = CloudSync(store, outbox, cloud, hj212_sensors=sensors)
        task = asyncio.create_task(sync.run(stop))
        await store.commit(
            Batch(
                aggregates={
                    # 50 normal pH readings and 10 in maintenance, in one minute
                    ("water-1", "pH", "N", minute): [50, 7.0, 7.4, 50 * 7.2, 0.0],
                    ("water-1", "pH", "M", minute): [10, 6.0, 6.5, 62.0, 0.0],
                    # two normal sound levels and one saturated (T) reading
                    ("noise-1", "LA", "N", minute): [2, 50.0, 60.0, 110.0, energy(50) + energy(60)],
                    ("noise-1", "LA", "T", minute): [1, 130.0, 130.0, 130.0, energy(130)],
                },
                messages=1,
            )
        )

        def minutes(mn: str) -> list:
            return [f for f in platform.frames if f.cn == "2051" and f.mn == mn]

        await wait_for(lambda: bool(minutes(MN_WATER)) and bool(minutes(MN_NOISE)))
        await wait_for(lambda: sum(len(r) for r in platform.replies.values()) >= 7)
        stop.set()
        await task
    server.close()
    await server.wait_closed()

    local_minute = dt.datetime.fromtimestamp(minute, BEIJING).strftime("%Y%m%d%H%M%S")
    # Every frame the gateway originated has its own QN, local time with milliseconds.
    qns = [f.header["QN"] for f in platform.frames]
    assert len(qns) == len(set(qns))
    for qn in qns:
        assert re.fullmatch(r"\d{17}", qn)
        sent = dt.datetime.strptime(qn[:14], "%Y%m%d%H%M%S").replace(tzinfo=BEIJING)
        assert abs(sent.timestamp() - time.time()) < 3600  # UTC would be 8 h off

    (water,) = minutes(MN_WATER)
    assert water.header | {"QN": ""} == {
        "QN": "",
        "ST": "21",  # surface-water quality, not 22
        "CN": "2051",
        "PW": PLATFORM_PW,
        "MN": MN_WATER,
        "Flag": "5",
    }
    assert water.cp == {
        "DataTime": local_minute,
        "w01001-Min": "7.00",  # pH is N2.2
        "w01001-Avg": "7.20",  # the N readings' mean
        "w01001-Max": "7.40",
        "w01001-Flag": "N",
        "w01001-EFlag": "M",  # the maintenance readings are reported, not lost
    }
    realtime = [f for f in platform.frames if f.cn == "2011"]
    assert [f.mn for f in realtime] == [MN_WATER]  # no LA-Rtd from a minute Leq
    assert realtime[0].header["Flag"] == "4"
    assert realtime[0].cp["w01001-Rtd"] == "7.20"

    (noise,) = minutes(MN_NOISE)
    assert noise.header["ST"] == "23"  # acoustic environment
    full = level_from_energy(energy(50) + energy(60) + energy(130), 3)
    assert noise.cp == {
        "DataTime": local_minute,
        "Leq-Data": f"{full:.1f}",
        "Leq-Flag": "T",  # a saturated reading: the values are lower bounds
        "Leq-EFlag": "N",
        "LMx-Data": "130.0",
        "LMx-Flag": "T",
        "LMx-EFlag": "N",
        "LMn-Data": "50.0",
        "LMn-Flag": "T",
        "LMn-EFlag": "N",
    }

    read, set_time, set_again = (platform.replies[qn] for qn in sorted(platform.requests))
    assert [f.cp for f in set_again] == [f.cp for f in set_time]  # every request answered
    assert [(f.header["ST"], f.cn, f.cp) for f in read if f.cn != "1011"] == [
        ("91", "9011", {"QnRtn": "1"}),
        ("91", "9012", {"ExeRtn": "1"}),
    ]
    (upload,) = [f for f in read if f.cn == "1011"]
    gateway_time = dt.datetime.strptime(upload.cp["SystemTime"], "%Y%m%d%H%M%S")
    assert abs(gateway_time.replace(tzinfo=BEIJING).timestamp() - time.time()) < 3600
    # An hour off: recorded, not applied, and answered "condition not met".
    assert [(f.cn, f.cp) for f in set_time] == [("9011", {"QnRtn": "1"}), ("9012", {"ExeRtn": "3"})]
    conn = sqlite3.connect(db)
    bodies = [json.loads(b) for (b,) in conn.execute("SELECT body FROM outbox")]
    conn.close()
    audits = [b for b in bodies if b.get("type") == "command"]
    # Audits are bounded: the second 1012 within audit_every_s only adds to a count.
    assert [a["command"]["cn"] for a in audits] == ["1012"]
    assert audits[0]["result"]["clock_set"] is False
    assert audits[0]["result"]["exe_rtn"] == "3"
    assert audits[0]["result"]["refused"] is True
    assert audits[0]["result"]["clock_synchronised"] is True
    assert audits[0]["uplink"] == "prov"


def test_hj212_day_frame_2031_after_a_full_local_day(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OFFSITE_TEST_HJ212_PW", PLATFORM_PW)
    asyncio.run(_daily(tmp_path))


async def _daily(tmp_path: Path) -> None:
    from cloud_sync.hj212_frames import Hj212Sensor
    from edge.aggregate import energy

    platform = StandardPlatform()
    server = await asyncio.start_server(platform.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    cloud = platform_cloud(port, mn=MN_NOISE, realtime=False)
    today = dt.datetime.now(BEIJING).replace(hour=0, minute=0, second=0, microsecond=0)
    yesterday = int((today - dt.timedelta(days=1)).timestamp())
    aggregates = {}
    for h in range(24):
        level = 62.0 if 6 <= h < 22 else 47.0
        for m in range(45):  # 45 valid minutes: every hour is complete (GB 3095-2012 表4)
            aggregates[("noise-1", "LA", "N", yesterday + h * 3600 + 60 * m)] = [
                2, level, level, 2 * level, 2 * energy(level)
            ]  # fmt: skip
    db = tmp_path / "gw.db"
    outbox = make_outbox("gw-j", cloud, db)
    async with await Store.open(db, hook=outbox) as store:
        stop = asyncio.Event()
        sensors = {"noise-1": Hj212Sensor(kind="noise", profile="gb12348-2008")}
        task = asyncio.create_task(CloudSync(store, outbox, cloud, hj212_sensors=sensors).run(stop))
        await store.commit(Batch(aggregates=aggregates, messages=1))
        await wait_for(lambda: any(f.cn == "2031" for f in platform.frames))
        stop.set()
        await task
    server.close()
    await server.wait_closed()
    assert len([f for f in platform.frames if f.cn == "2061"]) == 24
    (day,) = [f for f in platform.frames if f.cn == "2031"]
    assert day.header["ST"] == "23"
    assert day.header["Flag"] == "5"
    assert day.cp["DataTime"] == (today - dt.timedelta(days=1)).strftime("%Y%m%d%H%M%S")
    assert day.cp["Ld-DayData"] == "62.0"
    assert day.cp["Ln-NightData"] == "47.0"
    assert day.cp["Ld-Flag"] == day.cp["Ln-Flag"] == day.cp["Ldn-Flag"] == "N"
    assert {"Leq-Data", "LMx-Data", "LMn-Data", "Ldn-Data"} <= set(day.cp)

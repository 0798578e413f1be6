"""A data logger's answers to platform requests (1011/1012/1000/…) and the uplink's
retries, checked against HJ 212-2017."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re

import pytest
from hj212_fakes import minute_item as item

from cloud_sync.hj212_platform import Context, answer, parse_system_time
from edge.hj212 import build_data_segment, build_frame, parse_frame

BEIJING = dt.timezone(dt.timedelta(hours=8))
MN = "010000A8900016F000169DC0"
QN_RE = re.compile(r"^\d{17}$")


NOW = dt.datetime(2024, 5, 1, 12, 0, 0, tzinfo=BEIJING).timestamp()
CTX = Context(pw="123456", mns=frozenset({MN}), now=NOW, utc_offset_hours=8.0)


def request(cn, cp, pw="123456", mn=MN, qn="20240501120000123"):
    head = {"QN": qn, "ST": "32", "CN": cn, "PW": pw, "MN": mn, "Flag": "5"}
    return parse_frame(build_frame(build_data_segment(head, cp)))


def replies(out):
    return [parse_frame(f) for f in out.frames]


def test_1011_read_time_answers_9011_upload_9012():
    got = replies(answer(request("1011", {"PolId": "w01018"}), CTX))
    assert [(f.header["ST"], f.cn) for f in got] == [("91", "9011"), ("32", "1011"), ("91", "9012")]
    assert {f.header["QN"] for f in got} == {"20240501120000123"}  # answers echo the QN
    assert all(f.header["Flag"] == "4" for f in got)
    assert got[0].cp == {"QnRtn": "1"}
    assert got[1].cp == {"PolId": "w01018", "SystemTime": "20240501120000"}
    assert got[2].cp == {"ExeRtn": "1"}


def test_1012_set_time_is_audited_never_applied():
    synced = dataclasses.replace(CTX, clock_synced=True)
    near = answer(request("1012", {"SystemTime": "20240501120030"}), synced)
    assert [f.cp for f in replies(near)] == [{"QnRtn": "1"}, {"ExeRtn": "1"}]
    assert near.audit is not None
    assert near.audit["result"]["clock_set"] is False
    assert near.audit["result"]["offset_s"] == 30.0
    assert near.audit["result"]["refused"] is False
    far = answer(request("1012", {"SystemTime": "20240501130000"}), synced)
    assert [f.cp for f in replies(far)] == [{"QnRtn": "1"}, {"ExeRtn": "3"}]
    assert far.audit is not None
    assert far.audit["type"] == "command"
    assert far.audit["command"]["cn"] == "1012"
    assert far.audit["command"]["cp"] == {"SystemTime": "20240501130000"}
    assert far.audit["result"] == {
        "asked": "20240501130000",
        "gateway_time": "20240501120000",
        "offset_s": 3600.0,
        "tolerance_s": 60.0,
        "clock_synchronised": True,
        "refused": True,
        "clock_set": False,
        "exe_rtn": "3",
    }
    bad = answer(request("1012", {"SystemTime": "20241301120000"}), synced)
    assert [f.cp for f in replies(bad)] == [{"QnRtn": "2"}]
    assert bad.audit is not None
    assert bad.audit["ok"] is False


@pytest.mark.parametrize("state", [False, None])
def test_1012_while_the_clock_is_not_trusted_is_accepted_and_recorded(state):
    ctx = dataclasses.replace(CTX, clock_synced=state)
    far = answer(request("1012", {"SystemTime": "20240503120000"}), ctx)
    assert [f.cp for f in replies(far)] == [{"QnRtn": "1"}, {"ExeRtn": "1"}]
    assert far.audit is not None
    result = far.audit["result"]
    assert (result["offset_s"], result["clock_synchronised"]) == (2 * 86400.0, state)
    assert (result["refused"], result["clock_set"], result["exe_rtn"]) == (False, False, "1")


def test_wrong_password_or_mn_is_refused_with_the_right_qnrtn():
    assert replies(answer(request("1011", {}, pw="000000"), CTX))[0].cp == {"QnRtn": "3"}
    assert replies(answer(request("1011", {}, mn="OTHER"), CTX))[0].cp == {"QnRtn": "4"}
    assert replies(answer(request("9999", {}), CTX))[0].cp == {"QnRtn": "8"}
    assert replies(answer(request("1072", {"NewPW": "654321"}), CTX))[0].cp == {"QnRtn": "2"}
    audit = answer(request("1072", {"NewPW": "654321"}), CTX).audit
    assert audit is not None
    assert "NewPW" not in audit["command"]["cp"]


def test_1000_sets_timeouts_within_bounds_only():
    ok = answer(request("1000", {"OverTime": "5", "ReCount": "2"}), CTX)
    assert (ok.timeout_s, ok.retries) == (5.0, 2)
    assert replies(ok)[-1].cp == {"ExeRtn": "1"}
    wild = answer(request("1000", {"OverTime": "100000", "ReCount": "2"}), CTX)
    assert wild.timeout_s is None
    assert replies(wild)[-1].cp == {"ExeRtn": "3"}


def test_intervals_notices_and_answers():
    assert replies(answer(request("1061", {}), CTX))[1].cp == {"RtdInterval": "60"}
    assert replies(answer(request("1063", {}), CTX))[1].cp == {"MinInterval": "1"}
    stop = answer(request("2012", {}), CTX)
    assert [f.cn for f in replies(stop)] == ["9013"]
    assert stop.realtime is False
    assert answer(request("9014", {}), CTX).frames == []


def test_system_time_parsing():
    assert parse_system_time("20240501120000", 8.0) == NOW
    for bad in ("2024050112000", "2024050112000x", "20240230120000", ""):
        assert parse_system_time(bad, 8.0) is None


def _uplink_config(port, **kw):
    from cloud_sync.config import Hj212UplinkConfig

    return Hj212UplinkConfig.model_validate(
        {
            "type": "hj212",
            "name": "prov",
            "host": "127.0.0.1",
            "port": port,
            "mn": MN,
            "pw_env": "OFFSITE_TEST_HJ212_PW",
            "tls": {"enabled": False},
            **kw,
        }
    )


def _minute_record(seq, minute):
    from cloud_sync.outbox import OutRecord

    body = {
        "type": "minute",
        "sensor_id": "s1",
        "minute": minute,
        "correction": False,
        "items": [item("pH", "N", [7.0])],
    }
    return OutRecord(seq, f"r{seq}", "minute", minute, False, body, "")


def test_unanswered_upload_is_sent_retries_plus_one_times(monkeypatch):
    import asyncio

    from cloud_sync.errors import UplinkError
    from cloud_sync.hj212_uplink import Hj212Uplink

    monkeypatch.setenv("OFFSITE_TEST_HJ212_PW", "123456")
    got: list = []

    async def silent(reader, writer):
        try:
            while True:
                got.append(parse_frame(await reader.readuntil(b"\r\n")))
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def run():
        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        uplink = Hj212Uplink(_uplink_config(port, ack_timeout_s=0.2, retries=3), "gw")
        await uplink.connect()
        with pytest.raises(UplinkError, match="no 9014") as failed:
            await uplink.send([_minute_record(7, 1_714_536_000)])
        assert failed.value.acked == []
        await uplink.close()
        server.close()
        await server.wait_closed()

    asyncio.run(run())
    uploads = [f for f in got if f.cn == "2051"]
    assert len(uploads) == 4  # the first send and 3 resends (HJ 212-2017 Table 1)
    assert len({f.header["QN"] for f in uploads}) == 1  # a resend is the same request


def test_platform_settings_apply_to_the_connection(monkeypatch):
    import asyncio

    from cloud_sync.hj212_uplink import Hj212Uplink

    monkeypatch.setenv("OFFSITE_TEST_HJ212_PW", "123456")
    answers: list = []
    audits: list = []

    async def platform(reader, writer):
        head = {"ST": "21", "PW": "123456", "MN": MN, "Flag": "5"}
        for qn, cn, cp in [
            ("20240501120000001", "1000", {"OverTime": "5", "ReCount": "1"}),
            ("20240501120000002", "2012", {}),
        ]:
            writer.write(build_frame(build_data_segment({"QN": qn, "CN": cn, **head}, cp)))
        await writer.drain()
        try:
            while True:
                answers.append(parse_frame(await reader.readuntil(b"\r\n")))
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def audit(body):
        audits.append(body)

    async def run():
        server = await asyncio.start_server(platform, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        uplink = Hj212Uplink(_uplink_config(port), "gw", on_audit=audit)
        await uplink.connect()
        for _ in range(1000):  # bounded: until both requests are answered
            if len(answers) >= 3:
                break
            await asyncio.sleep(0.02)
        settings = (uplink.timeout_s, uplink.retries, uplink.realtime)
        await uplink.close()
        server.close()
        await server.wait_closed()
        return settings

    assert asyncio.run(run()) == (5.0, 1, False)
    assert [(f.cn, f.cp) for f in answers] == [
        ("9011", {"QnRtn": "1"}),
        ("9012", {"ExeRtn": "1"}),
        ("9013", {}),
    ]
    assert [a["command"]["cn"] for a in audits] == ["1000"]
    assert audits[0]["result"] == {"timeout_s": 5.0, "retries": 1, "applied": True}


def test_1000_overtime_and_recount_govern_the_resends(monkeypatch):
    import asyncio

    from cloud_sync.errors import UplinkError
    from cloud_sync.hj212_uplink import Hj212Uplink

    monkeypatch.setenv("OFFSITE_TEST_HJ212_PW", "123456")
    got: list = []
    set_done = asyncio.Event()

    async def platform(reader, writer):
        # Sets OverTime=1 s, ReCount=1, then never answers a data upload.
        head = {"QN": "20240501120000001", "ST": "21", "CN": "1000", "PW": "123456", "MN": MN}
        cp = {"OverTime": "1", "ReCount": "1"}
        writer.write(build_frame(build_data_segment({**head, "Flag": "5"}, cp)))
        await writer.drain()
        try:
            while True:
                frame = parse_frame(await reader.readuntil(b"\r\n"))
                got.append(frame)
                if frame.cn == "9012":
                    set_done.set()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def run():
        server = await asyncio.start_server(platform, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        # The config's 10 s / 3 resends would take 40 s; the platform's 1 s / 1 take 2 s.
        uplink = Hj212Uplink(_uplink_config(port), "gw")
        await uplink.connect()
        await asyncio.wait_for(set_done.wait(), 10)
        with pytest.raises(UplinkError, match="after 1 resends"):
            await uplink.send([_minute_record(3, 1_714_536_000)])
        await uplink.close()
        server.close()
        await server.wait_closed()

    asyncio.run(run())
    assert [f.cp for f in got if f.cn in {"9011", "9012"}] == [{"QnRtn": "1"}, {"ExeRtn": "1"}]
    uploads = [f for f in got if f.cn == "2051"]
    assert len(uploads) == 2  # the first send and ReCount=1 resend
    assert len({f.header["QN"] for f in uploads}) == 1


def test_history_requests_are_checked_before_the_9011():
    cp = {"BeginTime": "20240501100000", "EndTime": "20240501110000"}
    ok = answer(request("2061", cp), dataclasses.replace(CTX, history=True))
    assert [(f.cn, f.cp) for f in replies(ok)] == [("9011", {"QnRtn": "1"})]
    assert ok.history is not None
    assert (ok.history.cn, ok.history.begin, ok.history.end) == (
        "2061",
        NOW - 2 * 3600,
        NOW - 3600,
    )
    assert ok.audit is None  # audited once streamed, with what was sent
    for ctx, error in [
        (CTX, "no store to read history from"),
        (dataclasses.replace(CTX, history=True, history_busy=True), "busy"),
    ]:
        out = answer(request("2051", cp), ctx)
        assert [f.cp for f in replies(out)] == [{"QnRtn": "2"}]
        assert out.history is None
        assert out.audit is not None
        assert error in out.audit["error"]
    missing = answer(
        request("2031", {"BeginTime": "20240501"}), dataclasses.replace(CTX, history=True)
    )
    assert [f.cp for f in replies(missing)] == [{"QnRtn": "2"}]

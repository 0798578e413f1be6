"""Answers to an HJ 212-2017 platform's requests (pure: a request in, reply frames out).

The data logger (this gateway) answers what HJ 212-2017 §6.6 and Appendix C require:

- every *request* gets ``CN=9011`` (``QnRtn``: 1 ready, 2 refused, 3 PW wrong, 4 MN
  unknown, 8 CN unknown); an accepted one then gets its data upload (same QN, CN of the
  request) and ``CN=9012`` (``ExeRtn``: 1 done, 3 condition not met, 100 no data);
- a *notice* (2012 stop real-time, 2022 stop status) gets ``CN=9013``;
- answers from the platform (9011-9014) get nothing.

Supported: 1000 (set timeout/retries, bounded), 1011 (read time), 1012 (set time: audited,
**never** touches the system clock; while the clock is NTP-synchronised a time more than
the tolerance away is refused with ExeRtn=3, else the set is accepted and recorded),
1061/1063 (read the real-time/minute intervals), 2011 (start real-time), and the history
requests 2051/2061/2031 with ``BeginTime``/``EndTime``: :func:`answer` checks the range and
answers 9011; the uplink then streams the stored periods (:mod:`cloud_sync.hj212_history`)
and the 9012. 2041 (facility running time) is refused: the gateway has no facility
running-time data (``SBxxx-RT``). Settings the platform may not change (1062, 1064,
1072, other data and control requests) are refused with QnRtn=2. Every set request and
every history request leaves an audit record.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from edge.hj212 import Hj212Message, packetise

INTERACTION_ST = "91"

QN_READY, QN_REFUSED, QN_PW, QN_MN, QN_CN = "1", "2", "3", "4", "8"
EXE_OK, EXE_FAILED, EXE_CONDITION, EXE_NO_DATA = "1", "2", "3", "100"

HISTORY_PERIOD_S: Mapping[str, int] = {"2051": 60, "2061": 3600, "2031": 86400}
"""History requests the gateway serves from its store, and their period (minute, hour, day)."""
HISTORY_MAX_S: Mapping[str, int] = {"2051": 31 * 86400, "2061": 366 * 86400, "2031": 3660 * 86400}
"""Longest range a history request may ask for; a longer one is refused (QnRtn=2) because
streaming it would hold the link for hours (a month of minutes is ~45 000 frames/sensor)."""

REFUSED = frozenset(
    {"1062", "1064", "1072", "2021", "2041", "2081"} | {str(cn) for cn in range(3011, 3022)}
)
NOTICES = frozenset({"2012", "2022"})
ANSWERS = frozenset({"9011", "9012", "9013", "9014"})
AUDITED = frozenset({"1000", "1012", "1062", "1064", "1072", "2031", "2041", "2051", "2061"})
REFUSAL_REASON: Mapping[str, str] = {
    "2041": "no facility running-time data (SBxxx-RT) on this gateway",
}

TIMEOUT_BOUNDS = (1.0, 120.0)  # seconds a platform may set with 1000 OverTime
RETRY_BOUNDS = (0, 10)  # resends a platform may set with 1000 ReCount


@dataclass(frozen=True, slots=True, kw_only=True)
class Context:
    """What the answers depend on: who we are and what our clock says."""

    pw: str
    mns: frozenset[str]
    now: float
    utc_offset_hours: float
    rtd_interval_s: int = 60
    min_interval_min: int = 1
    time_tolerance_s: float = 60.0
    clock_synced: bool | None = None  # edge.clock.clock_synchronised(); None = unknown
    history: bool = False  # whether the uplink can read the store for history requests
    history_busy: bool = False  # its queue of history requests is full


@dataclass(frozen=True, slots=True, kw_only=True)
class HistoryRequest:
    """An accepted history request: what to stream and where the 9012 goes."""

    request: Hj212Message
    cn: str
    begin: float  # epoch seconds, inclusive: periods starting at or after it
    end: float  # epoch seconds, inclusive: periods starting at or before it
    received_at: float


@dataclass(slots=True)
class Answer:
    """Frames to write, an audit body (or None), and settings the request changed."""

    frames: list[bytes] = field(default_factory=list)
    audit: dict[str, Any] | None = None
    timeout_s: float | None = None
    retries: int | None = None
    realtime: bool | None = None
    history: HistoryRequest | None = None


def _frame(request: Hj212Message, st: str, cn: str, cp: Mapping[str, str]) -> bytes:
    head = {
        "QN": request.header.get("QN", ""),
        "ST": st,
        "CN": cn,
        "PW": request.header.get("PW", ""),
        "MN": request.mn,
        "Flag": "4",  # 2017, no answer required
    }
    # Answers are short; one that is not still goes out as split packets (one QN).
    return b"".join(packetise(head, list(cp.items())))


def _qn_rtn(request: Hj212Message, code: str) -> bytes:
    return _frame(request, INTERACTION_ST, "9011", {"QnRtn": code})


def exe_rtn(request: Hj212Message, code: str) -> bytes:
    """The ``CN=9012`` execution result for ``request`` (``ExeRtn=code``)."""
    return _frame(request, INTERACTION_ST, "9012", {"ExeRtn": code})


def _exe_rtn(request: Hj212Message, code: str) -> bytes:
    return _frame(request, INTERACTION_ST, "9012", {"ExeRtn": code})


def parse_system_time(text: str, utc_offset_hours: float) -> float | None:
    """``YYYYMMDDhhmmss`` in the platform's zone → epoch seconds (None if not a time)."""
    if len(text) != 14 or not text.isdigit():
        return None
    zone = dt.timezone(dt.timedelta(hours=utc_offset_hours))
    try:
        return dt.datetime.strptime(text, "%Y%m%d%H%M%S").replace(tzinfo=zone).timestamp()
    except ValueError:
        return None


def _local(ts: float, utc_offset_hours: float) -> str:
    zone = dt.timezone(dt.timedelta(hours=utc_offset_hours))
    return dt.datetime.fromtimestamp(ts, zone).strftime("%Y%m%d%H%M%S")


def answer(request: Hj212Message, ctx: Context) -> Answer:
    """The reply frames (and audit, and setting changes) for one frame from the platform."""
    cn = request.cn
    if cn in ANSWERS:
        return Answer()
    if request.header.get("PW") != ctx.pw:
        return _audited(request, ctx, Answer([_qn_rtn(request, QN_PW)]), "wrong PW")
    if request.mn not in ctx.mns:
        return _audited(request, ctx, Answer([_qn_rtn(request, QN_MN)]), "unknown MN")
    st = request.header.get("ST", "")
    if cn in NOTICES:
        out = Answer([_frame(request, INTERACTION_ST, "9013", {})])
        if cn == "2012":
            out.realtime = False
        return out
    if cn in REFUSED:
        reason = REFUSAL_REASON.get(cn, "not supported")
        return _audited(request, ctx, Answer([_qn_rtn(request, QN_REFUSED)]), reason)
    if cn in HISTORY_PERIOD_S:
        return _history(request, ctx)
    if cn == "1011":
        cp = {k: v for k, v in request.cp.items() if k == "PolId"}
        cp["SystemTime"] = _local(ctx.now, ctx.utc_offset_hours)
        return _done(request, [_frame(request, st, "1011", cp)])
    if cn == "1012":
        return _set_time(request, ctx)
    if cn == "1061":
        return _done(
            request, [_frame(request, st, "1061", {"RtdInterval": str(ctx.rtd_interval_s)})]
        )
    if cn == "1063":
        interval = {"MinInterval": str(ctx.min_interval_min)}
        return _done(request, [_frame(request, st, "1063", interval)])
    if cn == "1000":
        return _set_timeouts(request, ctx)
    if cn == "2011":
        out = Answer([_qn_rtn(request, QN_READY)])
        out.realtime = True
        return out
    return Answer([_qn_rtn(request, QN_CN)])


def _done(request: Hj212Message, uploads: list[bytes], exe: str = EXE_OK) -> Answer:
    return Answer([_qn_rtn(request, QN_READY), *uploads, _exe_rtn(request, exe)])


def audit_body(
    request: Hj212Message, received_at: float, result: Mapping[str, Any] | None, error: str | None
) -> dict[str, Any]:
    """The audit record of a platform request: what was asked, and its result or error."""
    body: dict[str, Any] = {
        "type": "command",
        "received_at": received_at,
        "command": {
            "type": "hj212",
            "cn": request.cn,
            "st": request.header.get("ST", ""),
            "mn": request.mn,
            # The password never goes into a record.
            "cp": {k: v for k, v in list(request.cp.items())[:16] if k != "NewPW"},
        },
        "id": request.header.get("QN", ""),
        "ok": error is None,
    }
    if error is None:
        body["result"] = dict(result or {})
    else:
        body["error"] = error
    return body


def _audited(request: Hj212Message, ctx: Context, out: Answer, error: str | None) -> Answer:
    if request.cn in AUDITED or error in {"wrong PW", "unknown MN"}:
        out.audit = audit_body(request, ctx.now, out.audit, error)
    return out


def _history(request: Hj212Message, ctx: Context) -> Answer:
    """Check a history request's range; accepted → 9011 now, the uplink streams the rest."""
    refused = Answer([_qn_rtn(request, QN_REFUSED)])
    if not ctx.history:
        return _audited(request, ctx, refused, "no store to read history from")
    if ctx.history_busy:
        return _audited(request, ctx, refused, "busy: too many history requests queued")
    begin = parse_system_time(request.cp.get("BeginTime", ""), ctx.utc_offset_hours)
    end = parse_system_time(request.cp.get("EndTime", ""), ctx.utc_offset_hours)
    if begin is None or end is None or end < begin:
        return _audited(request, ctx, refused, "bad BeginTime/EndTime")
    longest = HISTORY_MAX_S[request.cn]
    if end - begin > longest:
        return _audited(request, ctx, refused, f"range longer than {longest // 86400} days")
    out = Answer([_qn_rtn(request, QN_READY)])
    out.history = HistoryRequest(
        request=request, cn=request.cn, begin=begin, end=end, received_at=ctx.now
    )
    return out


def _set_time(request: Hj212Message, ctx: Context) -> Answer:
    asked = parse_system_time(request.cp.get("SystemTime", ""), ctx.utc_offset_hours)
    if asked is None:
        return _audited(request, ctx, Answer([_qn_rtn(request, QN_REFUSED)]), "bad SystemTime")
    offset = asked - ctx.now
    # A synchronised clock is the trusted one: a platform more than the tolerance away is
    # wrong (or hostile) and refused. An unsynchronised clock (a Pi has no RTC) has nothing
    # better to offer: the set is accepted and recorded, so the evidence shows how far the
    # platform's time was from the gateway's.
    refused = ctx.clock_synced is True and abs(offset) > ctx.time_tolerance_s
    exe = EXE_CONDITION if refused else EXE_OK
    out = _done(request, [], exe)
    # Recorded, never applied: the clock is set by NTP, and a platform that could move it
    # could move every timestamp of the evidence with it.
    out.audit = {
        "asked": request.cp.get("SystemTime", ""),
        "gateway_time": _local(ctx.now, ctx.utc_offset_hours),
        "offset_s": round(offset, 3),
        "tolerance_s": ctx.time_tolerance_s,
        "clock_synchronised": ctx.clock_synced,
        "refused": refused,
        "clock_set": False,
        "exe_rtn": exe,
    }
    return _audited(request, ctx, out, None)


def _set_timeouts(request: Hj212Message, ctx: Context) -> Answer:
    try:
        timeout = float(request.cp["OverTime"])
        retries = int(request.cp["ReCount"])
    except (KeyError, ValueError):
        return _audited(
            request, ctx, Answer([_qn_rtn(request, QN_REFUSED)]), "bad OverTime/ReCount"
        )
    ok = (
        TIMEOUT_BOUNDS[0] <= timeout <= TIMEOUT_BOUNDS[1]
        and RETRY_BOUNDS[0] <= retries <= RETRY_BOUNDS[1]
    )
    out = _done(request, [], EXE_OK if ok else EXE_CONDITION)
    if ok:
        out.timeout_s, out.retries = timeout, retries
    out.audit = {"timeout_s": timeout, "retries": retries, "applied": ok}
    return _audited(request, ctx, out, None)

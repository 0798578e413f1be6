"""History requests (2051 minute, 2061 hour, 2031 day) answered from the gateway's store.

HJ 212-2017 lets the platform fetch a range of stored data (``BeginTime``/``EndTime``):
the data logger answers 9011 (:func:`cloud_sync.hj212_platform.answer`), uploads every
period of the range with the request's QN and CN, then 9012 ``ExeRtn=1`` (done) or
``ExeRtn=100`` (no data in the range). The periods are the ones the live uplink sends:
one frame per sensor and period, ``DataTime`` the period start, items and flags by
:mod:`cloud_sync.hj212_frames` (days by :mod:`cloud_sync.hj212_daily`, only days with
all 24 hours stored, as live). Only the sensors of the request's MN are sent, and only
closed periods (an open minute or hour may still change).

The store is read read-only (:mod:`edge.readonly`) from ``minute_aggregates``, one page
(at most one hour of minute rows) per query in a worker thread, skipping empty stretches
with one indexed query; a huge range therefore costs time on the link, never memory.
Uploads carry ``Flag=4`` (no 9014 expected: the 9012 closes the exchange).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cloud_sync.hj212_daily import DAY_S, HOUR_S, day_items
from cloud_sync.hj212_frames import (
    CodeBook,
    Hj212Sensor,
    build_packets,
    data_items,
    local_stamp,
)
from cloud_sync.hj212_platform import (
    EXE_FAILED,
    EXE_NO_DATA,
    EXE_OK,
    HISTORY_PERIOD_S,
    HistoryRequest,
    audit_body,
    exe_rtn,
)
from cloud_sync.minutes import AggRow, hour_bodies, minute_bodies
from edge.hj212 import FrameError
from edge.readonly import connect_read_only

log = logging.getLogger(__name__)

PAGE_S = HOUR_S
"""One page: the minute aggregates of at most one (UTC-aligned) hour."""

_SELECT = (
    "SELECT sensor_id, quantity, flag, minute, count, min_value, max_value, sum_value,"
    " energy_sum FROM minute_aggregates WHERE minute >= ? AND minute < ?"
)


@dataclass(frozen=True, slots=True)
class Page:
    """Minute aggregate rows of ``[start, stop)``; the next page starts at ``stop``."""

    start: int
    stop: int
    rows: list[AggRow]


def closed_bounds(path: Path) -> tuple[int, int]:
    """(minutes closed before, hours closed before): periods past these may still change."""
    db = connect_read_only(path)
    try:
        got = dict(
            db.execute(
                "SELECT key, value FROM meta WHERE key IN "
                "('minutes_closed_before', 'hours_closed_before')"
            ).fetchall()
        )
    finally:
        db.close()
    minutes = int(got.get("minutes_closed_before", 0))
    return minutes, int(got.get("hours_closed_before", minutes // HOUR_S * HOUR_S))


def read_page(path: Path, lo: int, hi: int, span: int = PAGE_S) -> Page | None:
    """The first non-empty page of ``[lo, hi)``, ending at a ``span`` boundary; None if none.

    One indexed ``min(minute)`` query finds where data resumes, so a range of empty
    months costs one query, not one per hour.
    """
    db = connect_read_only(path)
    try:
        (first,) = db.execute(
            "SELECT min(minute) FROM minute_aggregates WHERE minute >= ? AND minute < ?",
            (lo, hi),
        ).fetchone()
        if first is None:
            return None
        start = int(first)
        stop = min(hi, start - start % span + span)
        rows = [tuple(r) for r in db.execute(_SELECT + " ORDER BY minute", (start, stop))]
    finally:
        db.close()
    return Page(start, stop, rows)


def _ceil(ts: float, step: int, offset: int = 0) -> int:
    """The first ``step`` boundary (shifted by ``offset``) at or after ``ts``."""
    base = int(ts) - (int(ts) + offset) % step
    return base if base >= ts else base + step


def _floor(ts: float, step: int, offset: int = 0) -> int:
    return int(ts) - (int(ts) + offset) % step


def period_range(job: HistoryRequest, closed: tuple[int, int], offset_s: int) -> tuple[int, int]:
    """``[lo, hi)`` of minute rows whose periods start within the job's range and closed.

    The range is inclusive at both ends (a period starting exactly at ``EndTime`` is
    sent); minutes and hours align to UTC minutes/hours as the live records do, days to
    local midnight.
    """
    minutes_closed, hours_closed = closed
    if job.cn == "2051":
        return _ceil(job.begin, 60), min(_floor(job.end, 60) + 60, minutes_closed)
    if job.cn == "2061":
        return _ceil(job.begin, HOUR_S), min(_floor(job.end, HOUR_S) + HOUR_S, hours_closed)
    lo = _ceil(job.begin, DAY_S, offset_s)
    return lo, min(_floor(job.end, DAY_S, offset_s) + DAY_S, _floor(hours_closed, DAY_S, offset_s))


@dataclass(frozen=True, slots=True, kw_only=True)
class HistoryFrames:
    """The uplink's view of its sensors, to turn a stored period into frames."""

    utc_offset_hours: float
    mn_of: Callable[[str], str]
    st_of: Callable[[str], str]
    book_of: Callable[[str], CodeBook]
    sensor_of: Callable[[str], Hj212Sensor]

    def packets(
        self, job: HistoryRequest, sensor_id: str, start: float, items: list[tuple[str, str]]
    ) -> list[bytes]:
        """One period's upload: the request's QN, CN and PW, the sensor's ST and MN, no 9014."""
        return build_packets(
            cn=job.cn,
            qn=job.request.header.get("QN", ""),
            st=self.st_of(sensor_id),
            pw=job.request.header.get("PW", ""),  # checked against ours: it is ours
            mn=self.mn_of(sensor_id),
            when=local_stamp(start, self.utc_offset_hours),
            items=items,
            ack=False,
        )


Write = Callable[[bytes], Awaitable[None]]
Period = tuple[str, float, list[tuple[str, str]]]  # sensor, period start, CP items


def _periods_of_page(job: HistoryRequest, page: Page, frames: HistoryFrames) -> Iterator[Period]:
    bodies = minute_bodies(page.rows) if job.cn == "2051" else hour_bodies(page.rows)
    for body in bodies:
        sensor = str(body["sensor_id"])
        if frames.mn_of(sensor) != job.request.mn:
            continue
        start = float(body["minute"] if job.cn == "2051" else body["hour"])
        try:
            yield sensor, start, data_items(body, frames.book_of(sensor))
        except (ValueError, ArithmeticError) as exc:  # a value no frame can print
            log.warning("hj212 history: %s period %s not sent: %s", sensor, start, exc)


def _day_periods(
    day: int, hours: dict[str, dict[int, dict[str, Any]]], frames: HistoryFrames
) -> Iterator[Period]:
    for sensor, by_hour in sorted(hours.items()):
        if len(by_hour) != DAY_S // HOUR_S:
            # Sent all the same: day_items flags a day short of its valid hours (never N).
            log.info(
                "hj212 history: 2031 for %s day %s from %d of 24 hours (flagged if invalid)",
                sensor,
                local_stamp(day, frames.utc_offset_hours)[:8],
                len(by_hour),
            )
        try:
            items = day_items(
                by_hour, frames.book_of(sensor), frames.sensor_of(sensor), frames.utc_offset_hours
            )
        except (ValueError, ArithmeticError) as exc:
            log.warning("hj212 history: %s day %s not sent: %s", sensor, day, exc)
            continue
        yield sensor, float(day), items


async def _periods(
    job: HistoryRequest, path: Path, frames: HistoryFrames, page_s: int
) -> AsyncIterator[Period]:
    offset_s = int(frames.utc_offset_hours * 3600)
    closed = await asyncio.to_thread(closed_bounds, path)
    lo, hi = period_range(job, closed, offset_s)
    day: int | None = None
    hours: dict[str, dict[int, dict[str, Any]]] = {}
    while lo < hi:
        page = await asyncio.to_thread(read_page, path, lo, hi, page_s)
        if page is None:
            break
        lo = page.stop
        if job.cn != "2031":
            for period in _periods_of_page(job, page, frames):
                yield period
            continue
        # Days: fold each hour page into its sensors' hour bodies; a day is complete
        # (and sent) when the pages move past it. At most one day is held in memory.
        for body in hour_bodies(page.rows):
            hour = int(body["hour"])
            body_day = _floor(hour, DAY_S, offset_s)
            if day is not None and body_day != day:
                for period in _day_periods(day, hours, frames):
                    yield period
                hours = {}
            day = body_day
            sensor = str(body["sensor_id"])
            if frames.mn_of(sensor) == job.request.mn:
                hours.setdefault(sensor, {})[hour] = body
    if day is not None:
        for period in _day_periods(day, hours, frames):
            yield period


async def serve(
    job: HistoryRequest,
    *,
    path: Path,
    frames: HistoryFrames,
    write: Write,
    page_s: int = PAGE_S,
) -> dict[str, Any]:
    """Upload every stored period of ``job``'s range, then its 9012; return the audit result.

    Raises OSError/ConnectionError when the connection is lost midway (no 9012 is sent);
    a store that cannot be read gets ``ExeRtn=2``.
    """
    if job.cn not in HISTORY_PERIOD_S:
        raise ValueError(f"CN={job.cn} is not a history request")
    periods = packets = 0
    exe = EXE_OK
    error: str | None = None
    try:
        async for sensor, start, items in _periods(job, path, frames, page_s):
            try:
                out = frames.packets(job, sensor, start, items)
            except FrameError as exc:  # one code's items longer than a packet
                log.warning("hj212 history: %s period %s not sent: %s", sensor, start, exc)
                continue
            for packet in out:
                await write(packet)
                packets += 1
            periods += 1
    except (sqlite3.Error, FileNotFoundError) as exc:
        exe, error = EXE_FAILED, f"store not readable: {exc}"
        log.error("hj212 history CN=%s: %s", job.cn, error)
    if exe == EXE_OK and periods == 0:
        exe = EXE_NO_DATA
    await write(exe_rtn(job.request, exe))
    result: dict[str, Any] = {
        "begin": job.request.cp.get("BeginTime", ""),
        "end": job.request.cp.get("EndTime", ""),
        "periods": periods,
        "packets": packets,
        "exe_rtn": exe,
    }
    if error is not None:
        result["error"] = error
    return result


async def serve_queue(
    queue: asyncio.Queue[HistoryRequest],
    *,
    path: Path,
    frames: HistoryFrames,
    writer: asyncio.StreamWriter,
    audit: Callable[[HistoryRequest, dict[str, Any]], Awaitable[None]],
) -> None:
    """Serve one connection's history requests in order, each audited; return on a lost link.

    Runs beside the uplink's reader, so 9014 answers to live uploads keep flowing while a
    long range streams; frames are whole ``write`` calls, so the two never interleave.
    """

    async def write(frame: bytes) -> None:
        writer.write(frame)
        await writer.drain()  # TCP flow control paces the stream

    while True:
        job = await queue.get()
        result: dict[str, Any] | None = None
        error: str | None = None
        try:
            result = await serve(job, path=path, frames=frames, write=write)
            log.info(
                "hj212 history CN=%s QN=%s answered: %s",
                job.cn,
                job.request.header.get("QN"),
                result,
            )
        except (OSError, ConnectionError) as exc:
            error = f"connection lost while streaming: {exc!r}"
            log.warning("hj212 history CN=%s: %s", job.cn, error)
        await audit(job, audit_body(job.request, job.received_at, result, error))
        if error is not None:
            return

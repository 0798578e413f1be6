"""HJ 212-2017 uplink over TCP: minute (2051), hour (2061) and real-time (2011) data.

Mapping (docs/protocol.md, "HJ 212 mapping"): a ``minute`` record becomes one 2051 frame
per sensor and minute, an ``hour`` record a 2061 frame, the 24 hour records of a local
day a 2031 frame (:mod:`cloud_sync.hj212_daily`); ``DataTime`` is the period start
in the platform's time zone and ``ST``, pollutant codes, items, flags and decimals come
from :mod:`cloud_sync.hj212_frames`. Data frames carry ``Flag=5`` (2017, answer required);
when the data segment would exceed 1024 bytes the CP items are split with
``PNUM``/``PNO`` and ``Flag=7``. Each packet waits for its 9014 (timeout 10 s, 3 resends,
then reconnect), as HJ 212-2017 Table 1 says. A 2011 frame (no answer) with the minute's
values is sent too, as the platform's real-time view. ``QN`` is local time with
milliseconds and unique per frame the gateway originates.

A reader task takes every frame the platform sends: 9014 answers wake the waiting send;
requests (1011/1012 time, 1000 timeouts, …) are answered by
:mod:`cloud_sync.hj212_platform`, and set requests leave a (bounded) audit record.
History requests (2051/2061/2031 with BeginTime/EndTime) are queued to a history task per
connection that streams the stored periods (:mod:`cloud_sync.hj212_history`), so a long
range never holds up the 9014 answers to live uploads.
Records the standard cannot carry (events, status) are acknowledged without sending.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from cloud_sync.config import Hj212UplinkConfig, read_secret
from cloud_sync.errors import UplinkError
from cloud_sync.hj212_daily import Day, DayCollector, day_items
from cloud_sync.hj212_frames import (
    CodeBook,
    Hj212Sensor,
    QnClock,
    build_packets,
    data_items,
    default_st,
    local_stamp,
    realtime_items,
)
from cloud_sync.hj212_history import HistoryFrames, serve_queue
from cloud_sync.hj212_platform import Context, HistoryRequest, answer
from cloud_sync.outbox import OutRecord
from edge.clock import clock_synchronised
from edge.errors import OffsiteEdgeError
from edge.hj212 import FrameError, Hj212Message, parse_frame
from edge.tls import client_ssl_context

__all__ = ["Hj212Uplink", "build_packets"]

log = logging.getLogger(__name__)

Audit = Callable[[dict[str, Any]], Awaitable[None]]
HISTORY_QUEUE = 4  # history requests waiting on one connection; more are refused (busy)


class Hj212Uplink:
    """One TCP connection to an HJ 212 platform."""

    def __init__(
        self,
        config: Hj212UplinkConfig,
        gateway_id: str,
        *,
        on_audit: Audit | None = None,
        db_path: Path | None = None,
        clock_synced: Callable[[], bool | None] | None = None,
    ) -> None:
        self.name = config.name
        self.config = config
        self.gateway_id = gateway_id
        self.connected = False
        self.far_acks = 0  # 9014 answers; records acknowledged locally do not count
        self.codes = dict(config.codes)
        self.sensors: dict[str, Hj212Sensor] = {}
        self.timeout_s = config.ack_timeout_s
        self.retries = config.retries
        self.realtime = config.realtime
        self._decoder_codes: dict[str, str] = {}
        self._on_audit = on_audit
        self._qn = QnClock(config.utc_offset_hours)
        self._waiting: dict[str, asyncio.Future[None]] = {}
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._read_task: asyncio.Task[None] | None = None
        self._audit_last: dict[str, float] = {}
        self._audit_suppressed: dict[str, int] = {}
        self._days = DayCollector(config.utc_offset_hours, since=time.time())
        self._db_path = db_path  # read-only, for history requests; None: they are refused
        # Whether the clock is NTP-synchronised decides a platform time-set (1012).
        self._clock_synced = clock_synchronised if clock_synced is None else clock_synced
        self._history: asyncio.Queue[HistoryRequest] = asyncio.Queue(HISTORY_QUEUE)
        self._history_task: asyncio.Task[None] | None = None

    # --- what the roof tells us about the sensors ------------------------------------

    def default_codes(self, sensor_codes: Mapping[str, str]) -> None:
        """Pollutant codes by quantity from the sensors' HJ 212 decoders (lowest priority)."""
        for quantity, code in sensor_codes.items():
            self._decoder_codes.setdefault(quantity, code)

    def default_sensors(self, sensors: Mapping[str, Hj212Sensor]) -> None:
        """Each sensor's kind, profile and profile codes (for its ST and pollutant codes)."""
        self.sensors.update(sensors)

    def st_of(self, sensor_id: str) -> str:
        """The sensor's ST: ``sensor_st``, else ``st``, else by its profile and kind."""
        cfg = self.config
        if sensor_id in cfg.sensor_st:
            return cfg.sensor_st[sensor_id]
        if cfg.st is not None:
            return cfg.st
        sensor = self.sensors.get(sensor_id, Hj212Sensor())
        return default_st(sensor.kind, sensor.profile)

    def book_of(self, sensor_id: str) -> CodeBook:
        """Codes (config > profile > decoder > name), decimals and EFlag width of a sensor."""
        sensor = self.sensors.get(sensor_id, Hj212Sensor())
        cfg = self.config
        return CodeBook(
            codes={**self._decoder_codes, **sensor.codes, **self.codes},
            decimals=cfg.decimals,
            default_decimals=cfg.default_decimals,
            eflag_chars=cfg.eflag_chars,
        )

    # --- connection ------------------------------------------------------------------

    async def connect(self) -> None:
        """Open the TCP connection (TLS unless the config says ``tls: {enabled: false}``)."""
        if self._writer is not None:
            await self.close()  # the platform closed the last connection
        tls = self.config.tls
        context = client_ssl_context(tls) if tls.enabled else None
        try:
            async with asyncio.timeout(self.timeout_s):
                self._reader, self._writer = await asyncio.open_connection(
                    self.config.host, self.config.port, ssl=context
                )
        except (OSError, TimeoutError) as exc:
            raise UplinkError(f"connect {self.config.host}:{self.config.port}: {exc}") from None
        self.connected = True
        self._read_task = asyncio.create_task(
            self._read_loop(self._reader, self._writer),
            name=f"offsite-edge.cloud[{self.name}].hj212-read",
        )
        self._history = asyncio.Queue(HISTORY_QUEUE)  # requests die with their connection
        self._history_task = asyncio.create_task(
            self._history_loop(self._history, self._writer),
            name=f"offsite-edge.cloud[{self.name}].hj212-history",
        )

    async def _read_loop(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Take every frame from the platform: 9014 answers and requests."""
        reason = "closed by the platform"
        try:
            while True:
                line = await reader.readuntil(b"\r\n")
                try:
                    frame = parse_frame(line)
                except FrameError as exc:
                    log.warning(
                        "hj212 uplink %s: unreadable frame from platform: %s", self.name, exc
                    )
                    continue
                if frame.cn == "9014":
                    waiter = self._waiting.get(frame.header.get("QN", ""))
                    if waiter is not None and not waiter.done():
                        waiter.set_result(None)
                    continue
                try:
                    await self._on_request(frame, writer)
                except (OffsiteEdgeError, ValueError) as exc:
                    # One odd request must not stop the 9014 answers to our uploads.
                    log.warning(
                        "hj212 uplink %s: request CN=%s not answered: %s", self.name, frame.cn, exc
                    )
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError) as exc:
            reason = f"connection lost: {exc!r}"
        finally:
            self.connected = False
            for waiter in self._waiting.values():
                if not waiter.done():
                    waiter.set_exception(UplinkError(reason))

    async def _on_request(self, frame: Hj212Message, writer: asyncio.StreamWriter) -> None:
        cfg = self.config
        now = time.time()
        try:
            pw = read_secret(cfg.pw_env)
        except OffsiteEdgeError as exc:
            log.warning("hj212 uplink %s: cannot answer CN=%s: %s", self.name, frame.cn, exc)
            return
        ctx = Context(
            pw=pw,
            mns=frozenset({cfg.mn, *cfg.sensor_mn.values()}),
            now=now,
            utc_offset_hours=cfg.utc_offset_hours,
            time_tolerance_s=cfg.time_tolerance_s,
            clock_synced=self._clock_synced(),
            history=self._db_path is not None,
            history_busy=self._history.full(),
        )
        reply = answer(frame, ctx)
        for out in reply.frames:
            writer.write(out)
        await writer.drain()
        if reply.history is not None:
            self._history.put_nowait(reply.history)  # 9011 first, then the uploads
        if reply.timeout_s is not None and reply.retries is not None:
            self.timeout_s, self.retries = reply.timeout_s, reply.retries
        if reply.realtime is not None:
            self.realtime = reply.realtime and cfg.realtime
        log.info("hj212 uplink %s: platform request CN=%s answered", self.name, frame.cn)
        if reply.audit is not None:
            await self._audit(frame.cn, reply.audit, now)

    async def _audit(self, cn: str, body: dict[str, Any], now: float) -> None:
        """Append an audit record, at most one per CN per ``audit_every_s``."""
        if self._on_audit is None:
            return
        last = self._audit_last.get(cn)
        if last is not None and now - last < self.config.audit_every_s:
            self._audit_suppressed[cn] = self._audit_suppressed.get(cn, 0) + 1
            return
        self._audit_last[cn] = now
        suppressed = self._audit_suppressed.pop(cn, 0)
        body = {**body, "uplink": self.name, "suppressed_before": suppressed}
        try:
            await self._on_audit(body)
        except (OffsiteEdgeError, OSError, sqlite3.Error) as exc:
            log.error("hj212 uplink %s: audit of CN=%s not recorded: %s", self.name, cn, exc)

    async def _history_loop(
        self, queue: asyncio.Queue[HistoryRequest], writer: asyncio.StreamWriter
    ) -> None:
        """Serve history requests one at a time on this connection, each audited."""
        cfg = self.config
        frames = HistoryFrames(
            utc_offset_hours=cfg.utc_offset_hours,
            mn_of=lambda s: cfg.sensor_mn.get(s, cfg.mn),
            st_of=self.st_of,
            book_of=self.book_of,
            sensor_of=lambda s: self.sensors.get(s, Hj212Sensor()),
        )

        async def audit(job: HistoryRequest, body: dict[str, Any]) -> None:
            await self._audit(job.cn, body, time.time())

        if self._db_path is not None:
            await serve_queue(queue, path=self._db_path, frames=frames, writer=writer, audit=audit)

    # --- data ------------------------------------------------------------------------

    async def _exchange(self, frame: bytes, qn: str) -> None:
        """Send one packet and wait for its 9014, resending up to ``retries`` times."""
        assert self._writer is not None
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting[qn] = waiter
        try:
            for _attempt in range(self.retries + 1):
                if self._read_task is None or self._read_task.done():
                    raise UplinkError("connection lost")
                self._writer.write(frame)
                await self._writer.drain()
                try:
                    async with asyncio.timeout(self.timeout_s):
                        await asyncio.shield(waiter)
                except TimeoutError:
                    log.info("hj212 uplink %s: no 9014 for QN=%s, resending", self.name, qn)
                    continue
                self.far_acks += 1
                return
        finally:
            self._waiting.pop(qn, None)
        raise UplinkError(f"no 9014 for QN={qn} after {self.retries} resends")

    async def send(self, records: Sequence[OutRecord]) -> list[int]:
        """Send each minute/hour record and wait for its 9014 answers."""
        if self._writer is None:
            raise UplinkError("not connected")
        cfg = self.config
        pw = read_secret(cfg.pw_env)
        acked: list[int] = []
        try:
            for record in records:
                # A record the standard cannot carry (events, status) is acknowledged too.
                await self._send_one(record, pw)
                acked.append(record.seq)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            await self.close()
            raise UplinkError(f"connection lost: {exc}", acked=acked) from None
        except UplinkError as exc:
            await self.close()
            raise UplinkError(str(exc), acked=acked) from None
        return acked

    async def _send_one(self, record: OutRecord, pw: str) -> bool:
        """Send one record's frames; False when the standard cannot carry it."""
        assert self._writer is not None
        cfg = self.config
        body = record.body
        kind = body.get("type")
        if kind not in {"minute", "hour"}:
            return False
        sensor_id = str(body["sensor_id"])
        start = float(body["minute"] if kind == "minute" else body["hour"])
        book = self.book_of(sensor_id)
        try:
            items = data_items(body, book)
            realtime = realtime_items(body, book)
        except (ValueError, ArithmeticError) as exc:  # a value no frame can print
            log.warning(
                "hj212 uplink %s: record %d of %s not sent: %s",
                self.name,
                record.seq,
                sensor_id,
                exc,
            )
            return False
        common = {"st": self.st_of(sensor_id), "pw": pw, "mn": cfg.sensor_mn.get(sensor_id, cfg.mn)}
        if kind == "minute" and self.realtime and realtime and not body.get("correction"):
            for frame in build_packets(
                cn="2011",
                qn=self._qn.next(time.time()),
                when=local_stamp(start + 59, cfg.utc_offset_hours),
                items=realtime,
                ack=False,
                **common,
            ):
                self._writer.write(frame)
        if kind == "minute" or cfg.hourly:
            await self._upload("2051" if kind == "minute" else "2061", start, items, common)
        if kind == "hour":
            day = self._days.add(sensor_id, int(start), body)
            if day is not None and cfg.daily:
                await self._send_day(day, common)
        return True

    async def _upload(
        self, cn: str, start: float, items: list[tuple[str, str]], common: Mapping[str, str]
    ) -> None:
        """Send one data upload (answer required), packet by packet."""
        qn = self._qn.next(time.time())
        for frame in build_packets(
            cn=cn,
            qn=qn,
            when=local_stamp(start, self.config.utc_offset_hours),
            items=items,
            ack=True,
            st=common["st"],
            pw=common["pw"],
            mn=common["mn"],
        ):
            await self._exchange(frame, qn)

    async def _send_day(self, day: Day, common: Mapping[str, str]) -> None:
        """Send a local day's 2031 when all its hours came (or it ran all day: Day.sendable)."""
        if not day.sendable:
            log.warning(
                "hj212 uplink %s: no 2031 for %s day %s: only %d of 24 hour records "
                "(the gateway was not running all day)",
                self.name,
                day.sensor_id,
                local_stamp(day.start, self.config.utc_offset_hours)[:8],
                len(day.hours),
            )
            self._days.done(day)
            return
        sensor = self.sensors.get(day.sensor_id, Hj212Sensor())
        try:
            items = day_items(
                day.hours, self.book_of(day.sensor_id), sensor, self.config.utc_offset_hours
            )
        except (ValueError, ArithmeticError) as exc:  # a value no frame can print
            log.warning("hj212 uplink %s: no 2031 for %s: %s", self.name, day.sensor_id, exc)
            self._days.done(day)
            return
        await self._upload("2031", day.start, items, common)
        self._days.done(day)

    async def close(self) -> None:
        """Close the connection and stop the reader."""
        writer, self._writer, self._reader = self._writer, None, None
        tasks = [t for t in (self._read_task, self._history_task) if t is not None]
        self._read_task = self._history_task = None
        self.connected = False
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, ConnectionError):
                await writer.wait_closed()

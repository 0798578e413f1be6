"""HJ 212-2017 uplink over TCP: minute (2051) and hour (2061) data, 9014 acknowledgement.

Mapping (docs/protocol.md): a ``minute`` record becomes one 2051 frame per sensor and
minute, an ``hour`` record a 2061 frame, with ``DataTime`` = period start in the
platform's time zone, ``xxx-Min/-Avg/-Max/-Flag`` per pollutant and ``Flag=5`` (2017,
answer required). When the data segment would exceed 1024 bytes the CP items are split
over several packets with ``PNUM``/``PNO`` and ``Flag=7``; each packet waits for its
9014 answer (timeout 10 s, 3 resends, then reconnect), as HJ 212-2017 Table 1 says.
A 2011 real-time frame (``-Rtd``) with Flag=4 (no answer) is sent for each minute
record too, as the latest-values view the platform's real-time page shows.
Records the standard cannot carry (events, status) are acknowledged without sending.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
from collections.abc import Mapping, Sequence
from typing import Any

from cloud_sync.config import Hj212UplinkConfig
from cloud_sync.errors import UplinkError
from cloud_sync.outbox import OutRecord
from edge.hj212 import FrameError, build_data_segment, build_frame, parse_frame

MAX_SEGMENT = 1024


def qn_of(ts: float, seq: int) -> str:
    """A request number ``YYYYMMDDhhmmsszzz``, unique per record (ms taken from seq)."""
    stamp = dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y%m%d%H%M%S")
    return f"{stamp}{seq % 1000:03d}"


def data_time(ts: float, utc_offset_hours: float) -> str:
    """``DataTime`` in the platform's time zone."""
    zone = dt.timezone(dt.timedelta(hours=utc_offset_hours))
    return dt.datetime.fromtimestamp(ts, zone).strftime("%Y%m%d%H%M%S")


def cp_items(
    body: Mapping[str, Any], codes: Mapping[str, str], realtime: bool
) -> list[tuple[str, str]]:
    """CP key/value pairs of a minute or hour body (``-Rtd`` only for real-time frames)."""
    items: list[tuple[str, str]] = []
    for item in body["items"]:
        code = codes.get(item["quantity"], item["quantity"])
        value = item.get("leq", item["avg"])
        if realtime:
            items += [(f"{code}-Rtd", f"{value:.3f}"), (f"{code}-Flag", item["flag"])]
        else:
            items += [
                (f"{code}-Min", f"{item['min']:.3f}"),
                (f"{code}-Avg", f"{value:.3f}"),
                (f"{code}-Max", f"{item['max']:.3f}"),
                (f"{code}-Flag", item["flag"]),
            ]
    return items


def build_packets(
    *,
    cn: str,
    qn: str,
    st: str,
    pw: str,
    mn: str,
    when: str,
    items: Sequence[tuple[str, str]],
    ack: bool,
) -> list[bytes]:
    """Frames for one data record, split with PNUM/PNO when longer than 1024 bytes."""
    flag = 5 if ack else 4

    def header(extra: Mapping[str, str], f: int) -> dict[str, str]:
        return {"QN": qn, "ST": st, "CN": cn, "PW": pw, "MN": mn, "Flag": str(f), **extra}

    whole = build_data_segment(header({}, flag), {"DataTime": when, **dict(items)})
    if len(whole.encode()) <= MAX_SEGMENT:
        return [build_frame(whole)]
    # Split: pack items greedily, leaving room for PNUM/PNO fields.
    chunks: list[list[tuple[str, str]]] = [[]]
    for item in items:
        trial = chunks[-1] + [item]
        seg = build_data_segment(
            header({"PNUM": "9999", "PNO": "9999"}, flag | 2), {"DataTime": when, **dict(trial)}
        )
        if len(seg.encode()) > MAX_SEGMENT and chunks[-1]:
            chunks.append([item])
        else:
            chunks[-1] = trial
    total = len(chunks)
    return [
        build_frame(
            build_data_segment(
                header({"PNUM": str(total), "PNO": str(i + 1)}, flag | 2),
                {"DataTime": when, **dict(chunk)},
            )
        )
        for i, chunk in enumerate(chunks)
    ]


def is_ack_for(raw: bytes, qn: str) -> bool:
    """Whether ``raw`` is a valid 9014 data answer for request ``qn``."""
    try:
        frame = parse_frame(raw)
    except FrameError:
        return False
    return frame.cn == "9014" and frame.header.get("QN") == qn


class Hj212Uplink:
    """One TCP connection to an HJ 212 platform."""

    def __init__(self, config: Hj212UplinkConfig, gateway_id: str) -> None:
        self.name = config.name
        self.config = config
        self.gateway_id = gateway_id
        self.connected = False
        self.codes = dict(config.codes)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    def default_codes(self, sensor_codes: Mapping[str, str]) -> None:
        """Fill pollutant codes from the sensors' HJ 212 decoders where not configured."""
        for quantity, code in sensor_codes.items():
            self.codes.setdefault(quantity, code)

    async def connect(self) -> None:
        """Open the TCP connection."""
        try:
            async with asyncio.timeout(self.config.ack_timeout_s):
                self._reader, self._writer = await asyncio.open_connection(
                    self.config.host, self.config.port
                )
        except (OSError, TimeoutError) as exc:
            raise UplinkError(f"connect {self.config.host}:{self.config.port}: {exc}") from None
        self.connected = True

    async def _exchange(self, frame: bytes, qn: str) -> None:
        assert self._reader is not None
        assert self._writer is not None
        for _attempt in range(self.config.retries + 1):
            self._writer.write(frame)
            await self._writer.drain()
            try:
                async with asyncio.timeout(self.config.ack_timeout_s):
                    while True:
                        line = await self._reader.readuntil(b"\r\n")
                        if is_ack_for(line, qn):
                            return
            except TimeoutError:
                continue
        raise UplinkError(f"no 9014 for QN={qn} after {self.config.retries} resends")

    async def send(self, records: Sequence[OutRecord]) -> list[int]:
        """Send each minute/hour record and wait for its 9014 answers."""
        if self._writer is None:
            raise UplinkError("not connected")
        cfg = self.config
        pw = os.environ.get(cfg.pw_env, "123456") if cfg.pw_env else "123456"
        acked: list[int] = []
        try:
            for record in records:
                body = record.body
                kind = body.get("type")
                if kind not in {"minute", "hour"} or (kind == "hour" and not cfg.hourly):
                    acked.append(record.seq)  # nothing the standard can carry
                    continue
                start = float(body["minute"] if kind == "minute" else body["hour"])
                mn = cfg.sensor_mn.get(str(body["sensor_id"]), cfg.mn)
                qn = qn_of(record.created_at, record.seq)
                common = {"st": cfg.st, "pw": pw, "mn": mn}
                if kind == "minute" and cfg.realtime and not body.get("correction"):
                    for frame in build_packets(
                        cn="2011",
                        qn=qn,
                        when=data_time(start + 59, cfg.utc_offset_hours),
                        items=cp_items(body, self.codes, realtime=True),
                        ack=False,
                        **common,
                    ):
                        self._writer.write(frame)
                for frame in build_packets(
                    cn="2051" if kind == "minute" else "2061",
                    qn=qn,
                    when=data_time(start, cfg.utc_offset_hours),
                    items=cp_items(body, self.codes, realtime=False),
                    ack=True,
                    **common,
                ):
                    await self._exchange(frame, qn)
                acked.append(record.seq)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            await self.close()
            raise UplinkError(f"connection lost: {exc}", acked=acked) from None
        except UplinkError as exc:
            await self.close()
            raise UplinkError(str(exc), acked=acked) from None
        return acked

    async def close(self) -> None:
        """Close the connection."""
        writer, self._writer, self._reader = self._writer, None, None
        self.connected = False
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, ConnectionError):
                await writer.wait_closed()

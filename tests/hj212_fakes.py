"""A provincial platform written to HJ 212-2017's text, for uplink tests."""

from __future__ import annotations

import asyncio
import datetime as dt

from cloud_sync.config import CloudConfig
from edge.aggregate import leq
from edge.hj212 import build_data_segment, build_frame, parse_frame, reassemble

MN_WATER = "010000A8900016F000169DC0"
MN_NOISE = "010000A8900016F000169DC1"
PLATFORM_PW = "654321"
PW_ENV = "OFFSITE_TEST_HJ212_PW"
"""The environment variable the test uplinks read the platform's PW from."""


def platform_cloud(port: int, **uplink: object) -> CloudConfig:
    """A cloud section with one HJ 212 uplink ``prov`` to the fake platform on ``port``
    (plain loopback TCP, PW from :data:`PW_ENV`); ``uplink`` adds or overrides fields."""
    return CloudConfig.model_validate(
        {
            "uplinks": [
                {
                    "type": "hj212",
                    "name": "prov",
                    "host": "127.0.0.1",
                    "port": port,
                    "mn": MN_WATER,
                    "pw_env": PW_ENV,
                    "tls": {"enabled": False},  # the fake platform is plain loopback TCP
                    "ack_timeout_s": 2,
                    **uplink,
                }
            ],
            "outbox": {"status_interval_s": 3600, "minute_close_s": 0},
        }
    )


class StandardPlatform:
    """A platform written to HJ 212-2017's text (§6.3-§6.6, Appendix C).

    Answers every frame whose Flag has A=1 with ``ST=91;CN=9014;Flag=4`` and the frame's
    QN; after the first 2051 it sends two requests of its own on the same connection,
    1011 (read time) and 1012 (set time, an hour ahead), and records what comes back
    (``ask_time=False`` leaves them out). A test sends further requests with
    :meth:`send` (e.g. a history request 2051 with BeginTime/EndTime); every frame with
    a request's QN is kept in ``replies[qn]`` in arrival order, split packets included.
    """

    def __init__(self, *, ask_time: bool = True) -> None:
        self.frames: list = []  # data frames from the gateway
        self.replies: dict[str, list] = {}  # request QN -> frames answering it
        self.requests: dict[str, str] = {}  # request QN -> CN
        self.ask_time = ask_time
        self.connected = asyncio.Event()
        self._writer = None

    def _request(self, qn: str, cn: str, cp: dict[str, str], mn: str = MN_WATER) -> bytes:
        self.requests[qn] = cn
        head = {"QN": qn, "ST": "21", "CN": cn, "PW": PLATFORM_PW, "MN": mn, "Flag": "5"}
        return build_frame(build_data_segment(head, cp))

    async def send(self, qn: str, cn: str, cp: dict[str, str], mn: str = MN_WATER) -> None:
        """Send a request on the gateway's connection (wait for ``connected`` first)."""
        assert self._writer is not None, "the gateway has not connected"
        self._writer.write(self._request(qn, cn, cp, mn))
        await self._writer.drain()

    def finished(self, qn: str) -> bool:
        """Whether the request ``qn`` got its last answer (a 9012, or a 9011 refusal)."""
        got = self.replies.get(qn, [])
        return any(f.cn == "9012" for f in got) or any(
            f.cn == "9011" and f.cp.get("QnRtn") != "1" for f in got
        )

    async def handle(self, reader, writer) -> None:
        self._writer = writer
        self.connected.set()
        try:
            while True:
                frame = parse_frame(await reader.readuntil(b"\r\n"))
                qn = frame.header["QN"]
                if qn in self.requests:
                    self.replies.setdefault(qn, []).append(frame)
                    continue
                self.frames.append(frame)
                if int(frame.header["Flag"]) & 1:
                    head = {
                        "QN": qn,
                        "ST": "91",
                        "CN": "9014",
                        "PW": frame.header["PW"],
                        "MN": frame.mn,
                        "Flag": "4",
                    }
                    writer.write(build_frame(build_data_segment(head, {})))
                if self.ask_time and frame.cn == "2051" and not self.requests:
                    ahead = dt.datetime.now(BEIJING) + dt.timedelta(hours=1)
                    writer.write(self._request("20240101000000001", "1011", {}))
                    for qn in ("20240101000000002", "20240101000000003"):
                        cp = {"SystemTime": ahead.strftime("%Y%m%d%H%M%S")}
                        writer.write(self._request(qn, "1012", cp))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def uploads(frames: list) -> list:
    """Data uploads among a request's answers, split packets reassembled (one per message).

    Packets of one message share the QN; a new message starts with PNO=1 (or no PNO).
    """
    messages: list[list] = []
    for frame in frames:
        if frame.cn.startswith("90"):
            continue
        if frame.header.get("PNO", "1") == "1":
            messages.append([])
        messages[-1].append(frame)
    return [reassemble(m) for m in messages]


BEIJING = dt.timezone(dt.timedelta(hours=8))


def minute_item(quantity, flag, values, sound=False):
    """A minute body item as cloud_sync.minutes.item_of makes it."""
    out = {
        "quantity": quantity,
        "flag": flag,
        "count": len(values),
        "min": min(values),
        "max": max(values),
        "avg": sum(values) / len(values),
    }
    if sound:
        out["leq"] = leq(values)
    return out

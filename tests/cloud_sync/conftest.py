"""Fixtures for cloud sync: a persistent "cloud" mosquitto, the reference receiver, helpers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.request
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from cloud_sync.config import CloudConfig
from cloud_sync.receiver import Receiver, ReceiverConfig
from edge.events import Event, EventStatus, Severity


def persistent_conf(directory: Path) -> str:
    """mosquitto settings for a cloud broker that keeps sessions across a restart."""
    return f"persistence true\npersistence_location {directory}/\nautosave_interval 1\n"


@pytest.fixture
def cloud_broker(mosquitto_factory: Callable[..., Any], tmp_path: Path) -> Any:
    """A mosquitto that keeps queued messages over a restart (like a real cloud broker)."""
    data = tmp_path / "broker"
    data.mkdir()
    return mosquitto_factory(persistent_conf(data))


def cloud_config(
    port: int,
    *,
    uplink: dict[str, Any] | None = None,
    sections: dict[str, Any] | None = None,
    **outbox: Any,
) -> CloudConfig:
    """A cloud section with one MQTT uplink to 127.0.0.1:``port``, fast retries.

    ``uplink`` adds or overrides uplink fields, ``sections`` other cloud fields (e.g.
    ``regulator_keys``), ``outbox`` the outbox's.
    """
    return CloudConfig.model_validate(
        {
            "uplinks": [
                {
                    "type": "mqtt",
                    "name": "cloud",
                    "host": "127.0.0.1",
                    "port": port,
                    "ack_timeout_s": 3,
                    "batch_records": 200,
                    "tls": {"enabled": False},  # the test broker is plain loopback
                    **(uplink or {}),
                }
            ],
            "backoff": {"initial_s": 0.1, "max_s": 0.5},
            "outbox": {"status_interval_s": 3600, **outbox},
            **(sections or {}),
        }
    )


def alarm(n: int, *, pad: int = 0) -> Event:
    """An instant alarm with a recognisable detail (``pad`` bytes more of it)."""
    detail: dict[str, Any] = {"n": n}
    if pad:
        detail["pad"] = "x" * pad
    return Event(
        kind="exceedance",
        source="fume-01",
        severity=Severity.ALARM,
        status=EventStatus.INSTANT,
        started_at=time.time(),
        detail=detail,
    )


def info(n: int) -> Event:
    """A routine event."""
    return Event(
        kind="note",
        source="gw",
        severity=Severity.INFO,
        status=EventStatus.INSTANT,
        started_at=time.time(),
        detail={"n": n},
    )


TOKEN = "test-api-token"
"""Bearer token of the receivers the tests start."""

TEST_GATEWAYS = ("gw-1", "gw-h", "gw-kill")
"""Gateway ids the tests use; each signs with the key next to ``tmp_path / "gw.db"``."""


def gateway_key_hex(tmp_path: Path) -> str:
    """The public key of the test gateway whose database is ``tmp_path / "gw.db"``."""
    from cloud_sync.chain import public_key_hex
    from cloud_sync.identity import load_or_create_key

    key = load_or_create_key(tmp_path / "gateway.key")
    return public_key_hex(key.public_key())


@contextlib.asynccontextmanager
async def running_receiver(tmp_path: Path, **kw: Any) -> AsyncIterator[Receiver]:
    """The reference receiver, running in this event loop.

    Unless told otherwise it knows the test gateways' key (registered, as at commissioning)
    and answers its API to :data:`TOKEN`.
    """
    kw.setdefault("trust", dict.fromkeys(TEST_GATEWAYS, gateway_key_hex(tmp_path)))
    kw.setdefault("token", TOKEN)
    receiver = Receiver(ReceiverConfig(db=tmp_path / "cloud.db", **kw))
    stop = asyncio.Event()
    task = asyncio.create_task(receiver.run(stop))
    await asyncio.wait_for(receiver.ready.wait(), 10)
    try:
        yield receiver
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


def api(port: int, path: str) -> Any:
    """GET a receiver API path (plain HTTP)."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


async def wait_for(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    """Poll ``predicate`` until true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("condition not reached in time")

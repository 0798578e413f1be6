"""The sync loop and evidence over a real broker: after alarms and events, before minute data."""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from mqtt_tools import query
from paho.mqtt.enums import CallbackAPIVersion

from cloud_sync.chain import public_key_hex
from cloud_sync.config import CloudConfig
from cloud_sync.evidence_wire import parse_chunk
from cloud_sync.sync import CloudSync, make_outbox
from edge.events import Event, EventStatus, Severity
from edge.store import Store

from .conftest import alarm, cloud_config, wait_for

pytestmark = pytest.mark.timeout(60)

REGULATOR = Ed25519PrivateKey.generate()


def _cloud(port: int) -> CloudConfig:
    # ack_timeout_s far longer than the test: the loop must not wait for the receipt
    keys = [{"name": "bureau", "public_key": public_key_hex(REGULATOR.public_key())}]
    return cloud_config(
        port,
        uplink={"ack_timeout_s": 300, "commands": False},
        sections={"regulator_keys": keys},
    )


class Watcher:
    """Everything the gateway publishes upward, in arrival order."""

    def __init__(self, port: int) -> None:
        self.seen: list[tuple[str, bytes]] = []
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="evidence-watcher")
        self.client.on_message = lambda _c, _u, m: self.seen.append((m.topic, bytes(m.payload)))
        self.client.connect("127.0.0.1", port)
        self.client.subscribe("offsite/gw-1/up/#", qos=1)
        self.client.loop_start()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        self.client.on_message = None


def test_evidence_goes_after_events_before_minutes_and_never_holds_records_back(
    tmp_path, mosquitto_factory
):
    broker = mosquitto_factory()
    watcher = Watcher(broker.port)
    try:
        asyncio.run(_run(tmp_path, broker.port, watcher))
    finally:
        watcher.close()


async def _run(tmp_path: Path, port: int, watcher: Watcher) -> None:
    db = tmp_path / "gw.db"
    image = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 600  # 150 kB: three chunks
    sha = hashlib.sha256(image).hexdigest()
    snapshot = tmp_path / f"{sha}.jpg"
    snapshot.write_bytes(image)
    cloud = _cloud(port)
    outbox = make_outbox("gw-1", cloud, db)
    async with await Store.open(db, hook=outbox) as store:
        minutes = [("minute", {"type": "minute", "n": n}) for n in range(5)]

        async def put(c):
            await outbox.put_bodies(c, minutes, time.time(), True)

        await store.run(put)
        await store.emit(alarm(1))
        await store.emit(
            Event(
                kind="violation",
                source="kitchen-1",
                severity=Severity.INFO,
                status=EventStatus.OPEN,
                started_at=time.time(),
                detail={"snapshot_sha256": sha, "snapshot_path": str(snapshot)},
            )
        )
        stop = asyncio.Event()
        sync = CloudSync(store, outbox, cloud)
        task = asyncio.create_task(sync.run(stop))
        await wait_for(lambda: sum(t.endswith("/evidence") for t, _ in watcher.seen) == 3)
        # no receipt comes (no receiver): the minute records still go, right after
        await wait_for(lambda: any(t.endswith("/minute") for t, _ in watcher.seen))
        await store.emit(alarm(2))
        await wait_for(lambda: sum(t.endswith("/alarm") for t, _ in watcher.seen) == 2)
        stop.set()
        await asyncio.wait_for(task, 20)
    topics = [t.rsplit("/", 1)[1] for t, _ in watcher.seen]
    first_evidence = topics.index("evidence")
    assert {"alarm", "event"} <= set(topics[:first_evidence])
    assert "minute" not in topics[:first_evidence]
    chunks = [parse_chunk(p, max_bytes=1 << 20) for t, p in watcher.seen if t.endswith("evidence")]
    assert b"".join(data for _, data in sorted(chunks, key=lambda c: c[0].chunk)) == image
    assert {h.chunks for h, _ in chunks} == {3}
    # not confirmed (no receipt): pending, to be sent again after its receipt wait
    assert sync.evidence.confirmed == 0
    assert query(db, "SELECT attempts, confirmed_at FROM evidence_uploads") == [(1, None)]

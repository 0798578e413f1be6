"""End to end over a real mosquitto: gateway store → MQTT uplink → reference receiver."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from cloud_sync.sync import CloudSync, make_outbox
from edge.store import Store

from .conftest import alarm, cloud_config, info, running_receiver, wait_for

pytestmark = pytest.mark.timeout(90)


@contextlib.asynccontextmanager
async def gateway(tmp_path: Path, port: int, **outbox_settings):
    cloud = cloud_config(port, **outbox_settings)
    db = tmp_path / "gw.db"
    outbox = make_outbox("gw-1", cloud, db)
    async with await Store.open(db, hook=outbox) as store:
        stop = asyncio.Event()
        sync = CloudSync(store, outbox, cloud, seed=1)
        task = asyncio.create_task(sync.run(stop))
        try:
            yield store, sync
        finally:
            stop.set()
            await asyncio.wait_for(task, 20)


def alarms_of(receiver) -> list[int]:
    return [r["body"]["detail"]["n"] for r in receiver.db.records(data_class="alarm", limit=100000)]


def test_broker_down_for_whole_ingest_then_up(cloud_broker, tmp_path: Path) -> None:
    asyncio.run(_broker_down(cloud_broker, tmp_path))


async def _broker_down(cloud_broker, tmp_path: Path) -> None:
    cloud_broker.stop()
    async with gateway(tmp_path, cloud_broker.port) as (store, sync):
        for n in range(50):
            await store.emit(info(n))
            if n % 5 == 0:
                await store.emit(alarm(n))
        await asyncio.sleep(1.0)
        assert sync.delivered.get("cloud", 0) == 0
        cloud_broker.start()
        async with running_receiver(
            tmp_path, mqtt_host="127.0.0.1", mqtt_port=cloud_broker.port
        ) as receiver:
            await wait_for(lambda: len(receiver.db.records(limit=100000)) >= 61)
            records = receiver.db.records(limit=100000)
            # Alarms first after the reconnect: every alarm arrived before any routine event.
            classes = [r["class"] for r in records if r["class"] in {"alarm", "event"}]
            assert classes[:10] == ["alarm"] * 10
            assert sorted(alarms_of(receiver)) == list(range(0, 50, 5))
            report = receiver.db.verify("gw-1")
            assert report.ok, report.as_dict()


def test_broker_restarted_mid_stream(cloud_broker, tmp_path: Path) -> None:
    asyncio.run(_broker_restart(cloud_broker, tmp_path))


async def _broker_restart(cloud_broker, tmp_path: Path) -> None:
    async with (
        running_receiver(tmp_path, mqtt_host="127.0.0.1", mqtt_port=cloud_broker.port) as receiver,
        gateway(tmp_path, cloud_broker.port) as (store, _sync),
    ):
        for n in range(200):
            await store.emit(alarm(n) if n % 4 == 0 else info(n))
            if n == 100:
                cloud_broker.stop()
            if n == 140:
                cloud_broker.start()
            await asyncio.sleep(0.005)
        await wait_for(lambda: len(set(alarms_of(receiver))) == 50, timeout=40)
        assert sorted(set(alarms_of(receiver))) == list(range(0, 200, 4))
        assert len(alarms_of(receiver)) == 50  # dedup by id: each alarm stored once
        report = receiver.db.verify("gw-1")
        await wait_for(lambda: receiver.db.verify("gw-1").ok)
        assert not report.unexplained_gaps or receiver.db.verify("gw-1").ok

"""Drain benchmark: a 101,000-record backlog (100,000 minute records + 1,000 alarms) queued
while the cloud is unreachable, then drained over MQTT to a mosquitto "cloud" on loopback.

Prints progress, then as its last line one JSON object:
{"records_per_s", "alarms_first", "duplicates", "lost", ...}.
Run: .venv/bin/python benchmarks/drain.py [--minutes 100000] [--alarms 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from broker import Mosquitto, free_port
from paho.mqtt.enums import CallbackAPIVersion

from cloud_sync.config import CloudConfig
from cloud_sync.sync import CloudSync, make_outbox
from edge.store import Store


class Subscriber:
    """A bare paho subscriber recording (class, id) in arrival order."""

    def __init__(self, port: int) -> None:
        self.received: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-cloud")
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe("offsite/+/up/#", qos=1)
        self.client.loop_start()

    def _on_message(self, client, userdata, message) -> None:
        records = json.loads(message.payload)["records"]
        with self.lock:
            self.received.extend((r["class"], r["id"]) for r in records)

    def count(self) -> int:
        with self.lock:
            return len(self.received)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


async def main(minutes: int, alarms: int) -> dict:
    work = Path(tempfile.mkdtemp(prefix="offsite-drain-"))
    port = free_port()
    cloud = CloudConfig.model_validate(
        {
            "uplinks": [
                {
                    "type": "mqtt",
                    "name": "cloud",
                    "host": "127.0.0.1",
                    "port": port,
                    "tls": {"enabled": False},  # plain loopback broker
                }
            ],
            "backoff": {"initial_s": 0.2, "max_s": 0.5},
            "outbox": {"quota_bytes": 2**31, "status_interval_s": 3600},
        }
    )
    db = work / "gw.db"
    outbox = make_outbox("bench", cloud, db)
    async with await Store.open(db, hook=outbox) as store:
        t0 = time.perf_counter()
        every = max(1, minutes // max(alarms, 1))
        chunk: list = []
        made_alarms = 0
        for i in range(minutes):
            chunk.append(
                (
                    "minute",
                    {
                        "type": "minute",
                        "sensor_id": f"s{i % 8}",
                        "minute": 1_700_000_000 + (i // 8) * 60,
                        "correction": False,
                        "items": [
                            {
                                "quantity": "LA",
                                "flag": "N",
                                "count": 60,
                                "min": 50.1,
                                "max": 61.2,
                                "avg": 55.3,
                                "leq": 56.0,
                            }
                        ],
                    },
                )
            )
            if i % every == every - 1 and made_alarms < alarms:
                chunk.append(("alarm", {"type": "event", "kind": "exceedance", "n": made_alarms}))
                made_alarms += 1
            if len(chunk) >= 5000:
                items, chunk = chunk, []
                await store.run(
                    lambda d, items=items: outbox.put_bodies(d, items, time.time(), None)
                )
        if chunk:
            await store.run(lambda d: outbox.put_bodies(d, chunk, time.time(), None))
        total = minutes + made_alarms
        print(f"queued {total} records in {time.perf_counter() - t0:.1f} s (cloud unreachable)")

        with Mosquitto(port=port) as _broker:
            subscriber = Subscriber(port)
            stop = asyncio.Event()
            sync = CloudSync(store, outbox, cloud, seed=1)
            start = time.perf_counter()
            task = asyncio.create_task(sync.run(stop))
            deadline = time.monotonic() + 300
            # Polling a paho thread's counter; an asyncio.Event would need a thread hop per message.
            while subscriber.count() < total and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            elapsed = time.perf_counter() - start
            await asyncio.sleep(0.5)
            stop.set()
            await task
            subscriber.close()

    received = [r for r in subscriber.received if r[0] in {"minute", "alarm"}]
    ids = [rid for _, rid in received]
    first_routine = next((i for i, (c, _) in enumerate(received) if c == "minute"), len(received))
    last_alarm = max((i for i, (c, _) in enumerate(received) if c == "alarm"), default=-1)
    unique = len(set(ids))
    return {
        "records": total,
        "seconds": round(elapsed, 2),
        "records_per_s": round(min(unique, total) / elapsed),
        "alarms_first": last_alarm < first_routine and last_alarm >= 0,
        "duplicates": len(ids) - unique,
        "lost": total - unique,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=int, default=100_000)
    parser.add_argument("--alarms", type=int, default=1_000)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.minutes, args.alarms))))

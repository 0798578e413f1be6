"""Publishing and inspection helpers for tests against a real broker."""

from __future__ import annotations

import itertools
import json
import sqlite3
import time
from collections.abc import Iterable
from contextlib import closing
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

_ids = itertools.count()


def publish_all(
    host: str,
    port: int,
    messages: Iterable[tuple[str, bytes]],
    *,
    qos: int = 1,
    timeout: float = 30.0,
) -> int:
    """Publish and wait until the broker has acknowledged every message (QoS 1)."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"test-pub-{time.time_ns()}-{next(_ids)}"
    )
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect(host, port)
    client.loop_start()
    infos = [client.publish(topic, payload, qos=qos) for topic, payload in messages]
    deadline = time.monotonic() + timeout
    for info in infos:
        info.wait_for_publish(max(0.1, deadline - time.monotonic()))
        assert info.is_published(), "broker did not acknowledge a test message in time"
    client.disconnect()
    client.loop_stop()
    return len(infos)


def subscribe_session(host: str, port: int, client_id: str, topics: list[str]) -> None:
    """Create a persistent session subscribed to ``topics``, then leave (messages queue up)."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
    client.connect(host, port)
    client.loop_start()
    info = client.subscribe([(t, 1) for t in topics])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not client.is_connected():
        time.sleep(0.01)
    time.sleep(0.2)
    assert info[0] == mqtt.MQTT_ERR_SUCCESS
    client.disconnect()
    client.loop_stop()


def noise_payload(la: float, ts_ms: int) -> bytes:
    return json.dumps({"la": la, "ts": ts_ms}).encode()


def query(db: Path, sql: str, *args: object) -> list[tuple]:
    if not db.exists():
        return []
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)) as conn:
        try:
            return conn.execute(sql, args).fetchall()
        except sqlite3.OperationalError:
            return []  # tables not created yet


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()

"""Ingest throughput: the gateway end to end vs a bare paho subscriber, same broker, same run.

Both drain a preloaded persistent session on a loopback mosquitto (so the publisher does
not compete for the cores while we measure):
  (a) ceiling: a bare paho subscriber that only counts messages;
  (b) gateway: `offsite-edge run` as a real process, until every reading is committed
      in SQLite (polled read-only), with and without standards rules on every sensor.
Prints a line per measurement; the last line is one JSON object.

    python benchmarks/ingest.py --qos 1 --readings 100000
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from contextlib import closing
from datetime import datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import yaml
from broker import Mosquitto
from paho.mqtt.enums import CallbackAPIVersion

SENSORS = 10
USCC = "91350100M000100Y43"


def payloads(count: int, seed: int = 1) -> list[tuple[str, bytes]]:
    rng = random.Random(seed)
    # Stamped 1 ms apart up to now: never ahead of receive time (ingest.max_skew_s).
    start_ms = int(time.time() * 1000) - count
    return [
        (
            f"bench/noise/{i % SENSORS:02d}",
            json.dumps({"la": round(rng.uniform(40, 80), 1), "ts": start_ms + i}).encode(),
        )
        for i in range(count)
    ]


def make_session(port: int, client_id: str, topic_filter: str) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
    client.connect("127.0.0.1", port)
    client.loop_start()
    done = threading.Event()
    client.on_subscribe = lambda *a: done.set()
    client.subscribe(topic_filter, 1)
    assert done.wait(10)
    client.disconnect()
    client.loop_stop()


def preload(port: int, messages: list[tuple[str, bytes]], qos: int) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{time.time_ns()}")
    client.max_inflight_messages_set(2000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    infos: deque[mqtt.MQTTMessageInfo] = deque()
    for topic, payload in messages:
        # paho numbers outgoing messages with 16-bit ids: keep well under 65,535 pending.
        if qos and len(infos) >= 20_000:
            infos.popleft().wait_for_publish(120)
        infos.append(client.publish(topic, payload, qos=qos))
    for info in infos:
        info.wait_for_publish(120)
    # Let the broker file everything into the offline session before we time the drain.
    time.sleep(0.5)
    client.disconnect()
    client.loop_stop()


def ceiling(port: int, messages: list[tuple[str, bytes]], qos: int) -> float:
    """Bare paho subscriber draining the preloaded session: messages per second."""
    client_id = f"bench-ceiling-{time.time_ns()}"
    make_session(port, client_id, "bench/#")
    preload(port, messages, qos)
    total = len(messages)
    count = 0
    finished = threading.Event()
    first = [0.0]

    def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        nonlocal count
        if count == 0:
            first[0] = time.perf_counter()
        count += 1
        if count >= total:
            finished.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
    client.on_message = on_message
    start = time.perf_counter()
    client.connect("127.0.0.1", port)
    client.loop_start()
    finished.wait(300)
    elapsed = time.perf_counter() - start
    client.disconnect()
    client.loop_stop()
    assert count >= total, f"ceiling subscriber got {count} of {total}"
    return total / elapsed


def committed(db: Path) -> int:
    try:
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as conn:
            row = conn.execute("SELECT coalesce(sum(count), 0) FROM minute_aggregates").fetchone()
            return int(row[0])
    except sqlite3.OperationalError:
        return 0


def connected_at(log_path: Path) -> float | None:
    """Wall time of the gateway's 'mqtt connected' log line, if it has been written."""
    for line in log_path.read_text(errors="replace").splitlines():
        if "mqtt connected" in line:
            stamp = line.split(" ", 1)[0]
            return datetime.fromisoformat(stamp).timestamp()  # ISO 8601 with its UTC offset
    return None


def proc_status(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in {"VmHWM", "VmRSS"}:
            out[key] = int(value.split()[0])
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in {"write_bytes", "wchar"}:
            out[key] = int(value)
    return out


def gateway(
    port: int, messages: list[tuple[str, bytes]], qos: int, workdir: Path, *, rules: bool
) -> dict[str, float]:
    """The real gateway process draining the preloaded session until all is committed."""
    gateway_id = f"bench-{'rules' if rules else 'plain'}-{time.time_ns() % 10**8}"
    db = workdir / f"{gateway_id}.db"
    sensors = []
    for i in range(SENSORS):
        sensor = {
            "id": f"noise-{i:02d}",
            "kind": "noise",
            "topic": f"bench/noise/{i:02d}",
            "decoder": {
                "type": "json",
                "fields": {"LA": "la"},
                "timestamp": "ts",
                "timestamp_format": "epoch_ms",
            },
            "quantities": [{"name": "LA", "unit": "dB(A)", "range": [0, 140]}],
        }
        if rules:
            sensor["standard"] = {"profile": "gb3096-2008", "params": {"zone": "2"}, "window_s": 60}
            sensor["health"] = {"expected_interval_s": 1, "stuck_after_s": 600}
        sensors.append(sensor)
    config = {
        "gateway": {"id": gateway_id},
        "site": {"name": "bench", "credit_code": USCC},
        "broker": {"host": "127.0.0.1", "port": port},
        "store": {"path": str(db), "commit_interval_ms": 250, "commit_max_readings": 5000},
        "sensors": sensors,
    }
    config_path = workdir / f"{gateway_id}.yaml"
    config_path.write_text(yaml.safe_dump(config))
    make_session(port, f"offsite-edge-{gateway_id}", "bench/#")
    preload(port, messages, qos)
    total = len(messages)
    log_path = workdir / f"{gateway_id}.log"
    log = log_path.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "edge.app.cli", "run", "--config", str(config_path)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        # Time from the gateway's MQTT connection (its log line), so that interpreter
        # start-up is not counted, to the poll that sees every reading committed.
        deadline = time.monotonic() + 300
        while (connected := connected_at(log_path)) is None and time.monotonic() < deadline:
            time.sleep(0.002)
        before = proc_status(process.pid)
        # Poll gently: this process shares the two cores with the broker and the gateway.
        while (done := committed(db)) < total and time.monotonic() < deadline:
            time.sleep(0.02)
        finished = time.time()
        after = proc_status(process.pid)
    finally:
        process.terminate()
        process.wait(60)
        log.close()
    if done < total or connected is None:
        raise SystemExit(
            f"gateway committed only {done} of {total}:\n{log_path.read_text()[-2000:]}"
        )
    wal = db.with_name(db.name + "-wal")
    return {
        "readings_per_s": total / (finished - connected),
        "bytes_written_per_reading": (after["write_bytes"] - before["write_bytes"]) / total,
        "db_bytes_per_reading": (db.stat().st_size + (wal.stat().st_size if wal.exists() else 0))
        / total,
        "rss_mb": after["VmHWM"] / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--qos", type=int, choices=[0, 1], default=1)
    parser.add_argument("--readings", type=int, default=100_000)
    args = parser.parse_args()
    messages = payloads(args.readings)
    with Mosquitto() as broker, tempfile.TemporaryDirectory(prefix="offsite-bench-") as tmp:
        workdir = Path(tmp)
        ceiling_rate = ceiling(broker.port, messages, args.qos)
        print(f"ceiling (bare paho, QoS {args.qos}): {ceiling_rate:,.0f} msg/s")
        plain = gateway(broker.port, messages, args.qos, workdir, rules=False)
        print(f"gateway without rules (QoS {args.qos}): {plain['readings_per_s']:,.0f} readings/s")
        ruled = gateway(broker.port, messages, args.qos, workdir, rules=True)
        print(
            f"gateway with rules (QoS {args.qos}): {ruled['readings_per_s']:,.0f} readings/s, "
            f"{ruled['bytes_written_per_reading']:.1f} B written/reading, RSS {ruled['rss_mb']:.1f} MB"
        )
    result = {
        "qos": args.qos,
        "readings": args.readings,
        "readings_per_s": round(ruled["readings_per_s"]),
        "ceiling_per_s": round(ceiling_rate),
        "ratio": round(ruled["readings_per_s"] / ceiling_rate, 3),
        "readings_per_s_without_rules": round(plain["readings_per_s"]),
        "rules_ratio": round(ruled["readings_per_s"] / plain["readings_per_s"], 3),
        "bytes_written_per_reading": round(ruled["bytes_written_per_reading"], 2),
        "db_bytes_per_reading": round(ruled["db_bytes_per_reading"], 3),
        "rss_mb": round(ruled["rss_mb"], 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()

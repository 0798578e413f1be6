"""Regulator console benchmark: 100,000 alerts in the receiver, page times over HTTP.

Signed event records (20 gateways, alarms, warnings, violations, offline and maintenance
events; every 10th event also gets a closing record) and an hour of minute records are
fed to the receiver's own ingest (``ReceiverDB.ingest_batches``), then folded into the
console's tables by its incremental sync (timed: the catch-up a console does after
starting on an existing database). The console is then mounted on the receiver's real
aiohttp application (``Receiver(..., extensions=[RegulatorConsole()])``, no broker) and a
logged-in session asks, over one keep-alive HTTP connection: the alert list (first page,
filtered by site, a later page), one alert with its chart and chain verdict, and the risk
list, with ``GET /health`` measured in the same run as the baseline.

Prints one line per page, then as its last line one JSON object:
{"alerts", "sync_records_per_s", "<page>_ms_p50", "<page>_ms_p95", "<page>_ratio", ...}.
Run: .venv/bin/python benchmarks/regulator_console.py [--alerts 100000] [--rounds 200]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import random
import re
import sqlite3
import statistics
import tempfile
import threading
import time
import urllib.parse
import uuid
from contextlib import closing
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud_sync.chain import GENESIS, public_key_hex, record_hash, sign_hash
from cloud_sync.receiver import Receiver, ReceiverConfig
from cloud_sync.receiver_store import ReceiverDB
from cloud_sync.regulator_console import RegulatorConsole, add_user
from cloud_sync.regulator_console.accounts import new_password_hash
from cloud_sync.regulator_console.alerts import sync_all
from cloud_sync.regulator_console.schema import ensure_schema

GATEWAYS = 20
KINDS = [("exceedance", 80), ("violation", 10), ("sensor_offline", 5), ("maintenance", 5)]
PASSWORD = "bench-password-1"


def _record(key: Any, gateway: str, seq: int, prev: str, cls: str, body: dict, at: float) -> dict:
    record = {"gateway": gateway, "seq": seq, "id": str(uuid.uuid4()), "class": cls,
              "created_at": at, "clock_synced": True, "body": body, "prev": prev}  # fmt: skip
    record["hash"] = record_hash(record)
    record["sig"] = sign_hash(key, record["hash"])
    return record


def build(db_path: Path, alerts: int) -> tuple[dict[str, str], float, float]:
    """Sign and ingest the records; the trust map, signing and ingest seconds."""
    rng = random.Random(11)
    keys = {f"gw-{i:02d}": Ed25519PrivateKey.generate() for i in range(GATEWAYS)}
    trust = {g: public_key_hex(k.public_key()) for g, k in keys.items()}
    db = ReceiverDB(db_path, trust)
    now = time.time()
    chains = {g: [0, GENESIS] for g in keys}
    kinds = [k for k, w in KINDS for _ in range(w)]
    sign_s = ingest_s = 0.0
    batch: dict[str, list[dict]] = {g: [] for g in keys}

    def add(gateway: str, cls: str, body: dict, at: float) -> None:
        state = chains[gateway]
        state[0] += 1
        body = {**body, "seq": state[0]} if body["type"] == "event" else body
        record = _record(keys[gateway], gateway, state[0], state[1], cls, body, at)
        state[1] = record["hash"]
        batch[gateway].append(record)

    def flush() -> None:
        nonlocal ingest_s
        t = time.perf_counter()
        db.ingest_batches([(g, rs) for g, rs in batch.items() if rs], "mqtt")
        ingest_s += time.perf_counter() - t
        for rs in batch.values():
            rs.clear()

    t_sign = time.perf_counter()
    for n in range(alerts):
        gateway = f"gw-{n % GATEWAYS:02d}"
        kind = rng.choice(kinds)
        severity = rng.choices(["info", "warning", "alarm"], [5, 70, 25])[0]
        started = now - 30 * 86_400 * (1 - n / alerts) - 600
        event_id = str(uuid.uuid4())
        body = {"type": "event", "event_id": event_id, "kind": kind, "source": "fume-01",
                "severity": severity, "status": "open", "started_at": started, "ended_at": None,
                "detail": {"sensor": "fume-01", "site": f"{gateway} kitchen", "quantity": "fume",
                           "unit": "mg/m3", "limit_max": 2.0, "standard": "GB 18483-2001",
                           "clause": "Table 2", "period": "any",
                           "window_value": round(2 + rng.random() * 3, 2)}}  # fmt: skip
        cls = "alarm" if severity == "alarm" else "event"
        add(gateway, cls, body, started + 1)
        if n % 10 == 0:
            add(gateway, cls, {**body, "status": "closed", "ended_at": started + 900},
                started + 901)  # fmt: skip
        if n % 2000 == 1999:  # signing and ingest interleave; flush() times the ingest
            flush()
    last = now - 30 * 86_400 * GATEWAYS / alerts - 600  # gw-00's last event
    for minute in range(60):  # an hour of gw-00's fume minutes around its last event: a chart
        m = int(last - 2400) // 60 * 60 + 60 * minute
        v = 1.0 + 2.5 * max(0.0, 1 - abs(minute - 40) / 10)
        add("gw-00", "minute", {"type": "minute", "sensor_id": "fume-01", "minute": m,
                                "correction": False, "items": [{"quantity": "fume", "flag": "N",
                                "count": 6, "min": v - 0.1, "max": v + 0.1, "avg": v}]},
            now)  # fmt: skip
    flush()
    sign_s = time.perf_counter() - t_sign - ingest_s
    db.close()
    return trust, sign_s, ingest_s


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[max(0, int(len(ordered) * 0.95) - 1)]


class Client:
    """A logged-in browser session over one keep-alive connection."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.cookie = ""

    def get(self, path: str) -> tuple[int, str]:
        self.conn.request("GET", path, headers={"Cookie": self.cookie})
        response = self.conn.getresponse()
        return response.status, response.read().decode()

    def login(self, name: str) -> None:
        self.conn.request("GET", "/regulator/login")
        response = self.conn.getresponse()
        text = response.read().decode()
        self.cookie = response.getheader("Set-Cookie", "").split(";")[0]
        csrf = re.search(r'name="csrf" value="([^"]+)"', text)[1]  # type: ignore[index]
        body = urllib.parse.urlencode({"csrf": csrf, "name": name, "password": PASSWORD})
        self.conn.request("POST", "/regulator/login", body, {
            "Cookie": self.cookie, "Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
        response = self.conn.getresponse()
        response.read()
        assert response.status == 303, response.status
        self.cookie = response.getheader("Set-Cookie", "").split(";")[0]


def measure(receiver: Receiver, alert: int, rounds: int) -> dict[str, list[float]]:
    """Log in, then time every page ``rounds`` times (ms), round-robin."""
    deadline = time.monotonic() + 30
    while not receiver.ready.is_set() and time.monotonic() < deadline:
        time.sleep(0.05)
    client = Client(receiver.http_port)
    client.login("bench")
    status, first = client.get("/regulator/alerts")
    assert status == 200, status
    cursor = re.search(r'href="/regulator/alerts\?([^"]+)" rel="next"', first)
    later = f"/regulator/alerts?{cursor[1].replace('&amp;', '&')}" if cursor else ""
    pages = {
        "health": "/health",
        "alerts": "/regulator/alerts",
        "alerts_site": "/regulator/alerts?gateway=gw-07&severity=alarm",
        "alerts_next": later,
        "alert": f"/regulator/alerts/{alert}",
        "risk": "/regulator/risk",
    }
    samples: dict[str, list[float]] = {name: [] for name in pages}
    for _ in range(rounds):
        for name, path in pages.items():
            t = time.perf_counter()
            status, text = client.get(path)
            samples[name].append((time.perf_counter() - t) * 1000)
            assert status == 200, (name, status, text[:200])
    _, page = client.get(pages["alert"])
    assert "<svg" in page, "the benchmarked alert has no chart"
    return samples


def main(alerts: int, rounds: int) -> dict[str, Any]:
    """Build, sync, serve and measure; the figures."""
    with tempfile.TemporaryDirectory() as folder:
        db_path = Path(folder) / "cloud.db"
        trust, sign_s, ingest_s = build(db_path, alerts)
        print(f"signed {alerts:,} events in {sign_s:.1f} s; ingested in {ingest_s:.1f} s")
        with closing(sqlite3.connect(db_path, isolation_level=None)) as conn:
            ensure_schema(conn)
            t = time.perf_counter()
            folded = sync_all(conn)
            sync_s = time.perf_counter() - t
            count = conn.execute("SELECT count(*) FROM reg_alerts").fetchone()[0]
            # gw-00's latest exceedance: the minutes around it make its chart.
            some = conn.execute(
                "SELECT id FROM reg_alerts WHERE gateway = 'gw-00' AND kind = 'exceedance'"
                " ORDER BY started_at DESC LIMIT 1"
            ).fetchone()[0]
        print(f"console sync: {folded:,} records → {count:,} alerts in {sync_s:.1f} s"
              f" ({folded / sync_s:,.0f} records/s)")  # fmt: skip
        add_user(db_path, "bench", "handling")
        with closing(sqlite3.connect(db_path, isolation_level=None)) as conn:
            conn.execute("UPDATE reg_users SET password_hash = ?, must_change = 0",
                         (new_password_hash(PASSWORD),))  # fmt: skip

        loop = asyncio.new_event_loop()
        stop = asyncio.Event()
        receiver = Receiver(ReceiverConfig(db=db_path, trust=trust, token="bench-token"),
                            extensions=[RegulatorConsole()])  # fmt: skip
        thread = threading.Thread(target=loop.run_until_complete, args=(receiver.run(stop),))
        thread.start()
        try:
            samples = measure(receiver, some, rounds)
        finally:
            loop.call_soon_threadsafe(stop.set)
            thread.join(30)
            loop.close()

    base = statistics.median(samples["health"])
    result: dict[str, Any] = {"alerts": count, "records_folded": folded,
                              "sync_records_per_s": round(folded / sync_s), "rounds": rounds}  # fmt: skip
    for name, values in samples.items():
        p50, p95 = _percentiles(values)
        result[f"{name}_ms_p50"] = round(p50, 2)
        result[f"{name}_ms_p95"] = round(p95, 2)
        if name != "health":
            result[f"{name}_ratio"] = round(p50 / base, 1)
        print(f"{name:12} p50 {p50:7.2f} ms  p95 {p95:7.2f} ms  ({p50 / base:.1f}× /health)")
    result["under_100ms_p95"] = all(result[f"{n}_ms_p95"] < 100 for n in samples if n != "health")
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--alerts", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    print(json.dumps(main(args.alerts, args.rounds)))

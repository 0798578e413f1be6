"""Receiver benchmark: incremental verification of a 1,000,000-record chain, then /api/chain.

A gateway's records are signed beforehand (the gateway's cost, timed apart), shuffled a
little (alarms overtake routine data, some records arrive twice), then fed in batches of
1,000 to the receiver's own ingest (``ReceiverDB.ingest``: schema, registered key, hash,
signature, incremental chain checks, one SQLite transaction per batch) — the path both
intakes use, without a broker in the way. Then ``GET /api/chain`` is asked over HTTP, with
the bearer token, against the real HTTP API (the receiver's aiohttp application, a new
connection per request); it answers from the stored state.

Prints progress, then as its last line one JSON object:
{"records", "ingest_records_per_s", "chain_ms_p50", "chain_ms_max", "verdict", ...}.
Run: .venv/bin/python benchmarks/receiver.py [--records 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud_sync.chain import GENESIS, public_key_hex, record_hash, sign_hash
from cloud_sync.receiver_http import HttpApi
from cloud_sync.receiver_store import ReceiverDB

GATEWAY = "gw-bench"
BATCH = 1000
TOKEN = "bench-token"


def signed_chain(key: Ed25519PrivateKey, count: int) -> Iterator[list[dict[str, Any]]]:
    """The gateway's records, signed, in delivery batches (some out of order, some twice)."""
    rng = random.Random(7)
    prev, t0 = GENESIS, time.time() - count
    batch: list[dict[str, Any]] = []
    held: list[dict[str, Any]] = []
    for seq in range(1, count + 1):
        alarm = seq % 50 == 0
        record = {
            "gateway": GATEWAY,
            "seq": seq,
            "id": str(uuid.uuid4()),
            "class": "alarm" if alarm else "minute",
            "created_at": t0 + seq,
            "clock_synced": True,
            "body": {"type": "minute", "sensor_id": "s1", "minute": int(t0 + seq) // 60 * 60,
                     "items": [{"quantity": "LA", "avg": 55.5, "count": 60}]},
            "prev": prev,
        }  # fmt: skip
        record["hash"] = record_hash(record)
        record["sig"] = sign_hash(key, record["hash"])
        prev = record["hash"]
        # Alarms overtake the routine records held back with them.
        (batch if alarm else held).append(record)
        if rng.random() < 0.001:
            batch.append(record)  # a resend: a duplicate at the receiver
        if len(held) >= BATCH // 2:
            batch.extend(held)
            held = []
        if len(batch) >= BATCH:
            yield batch
            batch = []
    yield batch + held


async def ask_chain(api: HttpApi, times: int) -> list[float]:
    """Latency (ms) of GET /api/chain?gateway= over HTTP with the bearer token."""
    runner = web.AppRunner(api.application(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = int(runner.addresses[0][1])
    request = (
        f"GET /api/chain?gateway={GATEWAY} HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
    ).encode()
    latencies = []
    try:
        for _ in range(times):
            started = time.perf_counter()
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request)
            await writer.drain()
            response = await reader.read()
            latencies.append((time.perf_counter() - started) * 1000)
            writer.close()
            await writer.wait_closed()
            if not response.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(response[:200].decode(errors="replace"))
    finally:
        await runner.cleanup()
    return latencies


def main(count: int) -> dict[str, Any]:
    """Build, ingest and ask; the figures."""
    key = Ed25519PrivateKey.generate()
    with tempfile.TemporaryDirectory(prefix="offsite-bench-receiver-") as work:
        db = ReceiverDB(Path(work) / "cloud.db", {GATEWAY: public_key_hex(key.public_key())})
        sign_s = ingest_s = 0.0
        done = 0
        statuses: dict[str, int] = {}
        started = time.perf_counter()
        batches = signed_chain(key, count)
        while True:
            t = time.perf_counter()
            batch = next(batches, None)
            sign_s += time.perf_counter() - t
            if batch is None:
                break
            t = time.perf_counter()
            for result in db.ingest(batch, "mqtt", gateway=GATEWAY):
                statuses[result.status] = statuses.get(result.status, 0) + 1
            ingest_s += time.perf_counter() - t
            done += len(batch)
            if done // 100_000 != (done - len(batch)) // 100_000:
                print(f"  {done:>9} records ingested, {done / ingest_s:,.0f}/s", flush=True)
        total_s = time.perf_counter() - started
        t = time.perf_counter()
        verdict = db.verify(GATEWAY)
        direct_ms = (time.perf_counter() - t) * 1000
        api = HttpApi(db, token=TOKEN)
        latencies = asyncio.run(ask_chain(api, 50))
        db_bytes = (Path(work) / "cloud.db").stat().st_size
        db.close()
    print(
        f"signed {count} records in {sign_s:.1f} s (gateway side); ingested"
        f" {sum(statuses.values())} in {ingest_s:.1f} s ({count / ingest_s:,.0f}/s);"
        f" /api/chain p50 {statistics.median(latencies):.2f} ms, max {max(latencies):.2f} ms;"
        f" verdict {verdict.verdict}"
    )
    return {
        "records": count,
        "arrivals": sum(statuses.values()),
        "accepted": statuses.get("accepted", 0),
        "duplicates": statuses.get("duplicate", 0),
        "rejected": statuses.get("rejected", 0),
        "sign_s": round(sign_s, 1),
        "ingest_s": round(ingest_s, 1),
        "total_s": round(total_s, 1),
        "ingest_records_per_s": round(count / ingest_s),
        "verify_direct_ms": round(direct_ms, 2),
        "chain_ms_p50": round(statistics.median(latencies), 2),
        "chain_ms_p95": round(sorted(latencies)[int(len(latencies) * 0.95) - 1], 2),
        "chain_ms_max": round(max(latencies), 2),
        "verdict": verdict.verdict,
        "db_bytes": db_bytes,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=1_000_000)
    args = parser.parse_args()
    print(json.dumps(main(args.records)))

"""Soak: many kill -9 trials of a syncing gateway process against a real mosquitto.

Run: .venv/bin/python benchmarks/soak_kill.py [--trials 50]
Last line: one JSON object with the trial count, alarms committed/received, duplicates,
and whether the chain verified with no unexplained gap.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from broker import Mosquitto

from cloud_sync.chain import public_key_hex
from cloud_sync.identity import load_or_create_key
from cloud_sync.receiver import Receiver, ReceiverConfig

ROOT = Path(__file__).resolve().parents[1]
PROC = ROOT / "tests" / "cloud_sync" / "gateway_proc.py"


def committed(log: Path) -> list[int]:
    return [int(x) for x in log.read_text().split()] if log.exists() else []


def spawn(db: Path, port: int, log: Path, start: int, count: int, *extra: str):
    return subprocess.Popen(
        [sys.executable, str(PROC), str(db), str(port), str(log), str(start), str(count), *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def main(trials: int, seed: int) -> dict:
    work = Path(tempfile.mkdtemp(prefix="offsite-soak-"))
    (work / "broker").mkdir()
    rng = random.Random(seed)
    conf = f"persistence true\npersistence_location {work / 'broker'}/\nautosave_interval 1\n"
    with Mosquitto(extra_conf=conf) as broker:
        # Commissioning: the gateway's key exists and is registered before its first record.
        key = load_or_create_key(work / "gateway.key")
        receiver = Receiver(
            ReceiverConfig(
                db=work / "cloud.db",
                mqtt_host="127.0.0.1",
                mqtt_port=broker.port,
                trust={"gw-kill": public_key_hex(key.public_key())},
            )
        )
        stop = asyncio.Event()
        task = asyncio.create_task(receiver.run(stop))
        await receiver.ready.wait()
        db, log = work / "gw.db", work / "committed.log"
        for _ in range(trials):
            done = committed(log)
            proc = spawn(db, broker.port, log, (max(done) + 1) if done else 0, 10**6)
            await asyncio.sleep(rng.uniform(0.5, 2.0))
            proc.kill()
            proc.wait()
        done = committed(log)
        final = spawn(db, broker.port, log, (max(done) + 1) if done else 0, 10, "--drain")
        while final.poll() is None:  # noqa: ASYNC110 - polling a child process
            await asyncio.sleep(0.2)
        done = committed(log)
        want = {n for n in done if n % 3 == 0}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            got = [
                r["body"]["detail"]["n"]
                for r in receiver.db.records(gateway="gw-kill", data_class="alarm", limit=10**7)
            ]
            if want <= set(got):
                break
            await asyncio.sleep(0.5)
        alarm_events = [
            r["body"]["event_id"]
            for r in receiver.db.records(gateway="gw-kill", data_class="alarm", limit=10**7)
        ]
        report = receiver.db.verify("gw-kill")
        gateways = receiver.db.gateways()
        stop.set()
        await task
    return {
        "trials": trials,
        "events_committed": len(done),
        "alarms_committed": len(want),
        "alarms_missing": len(want - set(got)),
        "alarms_duplicated": len(alarm_events) - len(set(alarm_events)),
        "duplicates_dropped": gateways[0]["duplicates"] if gateways else 0,
        "chain_ok": report.ok,
        "unexplained_gaps": report.unexplained_gaps,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.trials, args.seed))))

"""kill -9 of a real gateway process at random points while it syncs to a real mosquitto."""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import running_receiver, wait_for

pytestmark = pytest.mark.timeout(120)

PROC = Path(__file__).with_name("gateway_proc.py")
TRIALS = 10


def committed(log: Path) -> list[int]:
    if not log.exists():
        return []
    return [int(x) for x in log.read_text().split()]


def spawn(db: Path, port: int, log: Path, start: int, count: int, *extra: str):
    return subprocess.Popen(
        [sys.executable, str(PROC), str(db), str(port), str(log), str(start), str(count), *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_kill_minus_9_at_random_points(cloud_broker, tmp_path: Path) -> None:
    asyncio.run(_trials(cloud_broker, tmp_path))


async def _trials(cloud_broker, tmp_path: Path) -> None:
    rng = random.Random(912)
    db, log = tmp_path / "gw.db", tmp_path / "committed.log"
    async with running_receiver(
        tmp_path, mqtt_host="127.0.0.1", mqtt_port=cloud_broker.port
    ) as receiver:
        for _ in range(TRIALS):
            done = committed(log)
            start = (max(done) + 1) if done else 0
            proc = spawn(db, cloud_broker.port, log, start, 100_000)
            await asyncio.sleep(rng.uniform(0.6, 1.4))
            proc.kill()  # SIGKILL
            proc.wait(timeout=10)
        done = committed(log)
        start = (max(done) + 1) if done else 0
        final = spawn(db, cloud_broker.port, log, start, 10, "--drain")
        deadline = time.monotonic() + 60
        while final.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert final.returncode == 0
        done = committed(log)
        alarms_committed = {n for n in done if n % 3 == 0}

        def alarms_received() -> list[int]:
            return [
                r["body"]["detail"]["n"]
                for r in receiver.db.records(gateway="gw-kill", data_class="alarm", limit=10**6)
            ]

        await wait_for(lambda: alarms_committed <= set(alarms_received()), timeout=30)
        received = alarms_received()
        # Exactly once after dedup: no alarm event stored twice. (A number can repeat when
        # the driver was killed between the commit and its log line and emitted it anew,
        # as a new event with its own event_id; that is not a duplicate.)
        event_ids = [
            r["body"]["event_id"]
            for r in receiver.db.records(gateway="gw-kill", data_class="alarm", limit=10**6)
        ]
        assert len(event_ids) == len(set(event_ids))
        assert alarms_committed <= set(received)
        report = receiver.db.verify("gw-kill")
        assert report.ok, report.as_dict()
        assert report.first_seq == 1
        assert not report.explained_gaps  # nothing was evicted, so no gap at all
        resent = [r for r in receiver.db.records(gateway="gw-kill", limit=10**6) if r["resent"]]
        print(
            f"kill -9 trials={TRIALS} committed={len(done)} alarms={len(alarms_committed)}"
            f" records={report.records} resent={len(resent)}"
            f" duplicates={receiver.db.gateways()[0]['duplicates']}"
        )

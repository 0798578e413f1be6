"""A gateway process for kill -9 trials: commits events, syncs them to the cloud broker.

Run: python gateway_proc.py DB PORT LOG START COUNT [--drain]
Emits events START..START+COUNT-1 (every third an alarm), appending each number to LOG
only after Store.emit returned (that is, after the commit: "acknowledged to us").
With --drain it then waits until the outbox has nothing pending and exits cleanly.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from cloud_sync.sync import CloudSync, make_outbox
from edge.events import Event, EventStatus, Severity
from edge.store import Store
from tests.cloud_sync.conftest import cloud_config


async def main(db: Path, port: int, log: Path, start: int, count: int, drain: bool) -> None:
    cloud = cloud_config(port)
    outbox = make_outbox("gw-kill", cloud, db)
    async with await Store.open(db, hook=outbox) as store:
        stop = asyncio.Event()
        sync = CloudSync(store, outbox, cloud)
        task = asyncio.create_task(sync.run(stop))
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        for n in range(start, start + count):
            alarm = n % 3 == 0
            await store.emit(
                Event(
                    kind="exceedance" if alarm else "note",
                    source="s1",
                    severity=Severity.ALARM if alarm else Severity.INFO,
                    status=EventStatus.INSTANT,
                    started_at=time.time(),
                    detail={"n": n},
                )
            )
            os.write(fd, f"{n}\n".encode())
            await asyncio.sleep(0.002)
        os.close(fd)
        if drain:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                backlog = await store.run(outbox.backlog)
                if not any(backlog.values()):
                    break
                await asyncio.sleep(0.2)
            stop.set()
        await task


if __name__ == "__main__":
    db, port, log, start, count = sys.argv[1:6]
    asyncio.run(main(Path(db), int(port), Path(log), int(start), int(count), "--drain" in sys.argv))

"""Trusted time through the real gateway: held before the first sync, judged after it.

A real mosquitto, the real gateway (in a thread), real SQLite. The one fake is the clock
watch's view of the world: its NTP flag and its wall clock (a test cannot step the
machine's clock). The scenario is a Pi booting an hour behind: readings arrive, NTP
steps the clock an hour forward and says synced.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid

from gateway_thread import GatewayThread
from helpers import gateway_config, sensor
from mqtt_tools import publish_all, query, wait_for

from edge.app.config import GatewayConfig
from edge.app.gateway import run_gateway
from edge.app.lock import GatewayLock
from edge.app.runstate import read_state
from edge.app.status import read_status
from edge.app.status_view import read_liveness, status_lines
from edge.clock_watch import ClockWatch

BEHIND_S = 3600.0


class FakeNtp:
    """The sync flag and the wall-clock error the watch sees."""

    def __init__(self) -> None:
        self.synced = False
        self.offset_s = 0.0

    def watch(self) -> ClockWatch:
        watch = ClockWatch(
            source=lambda: self.synced,
            wall=lambda: time.time() + self.offset_s,
            hold_until_synced=True,
            step_tolerance_s=1.0,
        )
        watch.start()
        return watch

    def step_and_sync(self) -> None:
        self.offset_s = BEHIND_S
        self.synced = True


class ClockedGateway(GatewayThread):
    """The gateway thread, with the clock watch given to ``run_gateway``."""

    def __init__(self, config: GatewayConfig, clock: ClockWatch) -> None:
        super().__init__(config)
        self.clock = clock

    def _run(self) -> None:
        async def main() -> None:
            self.stop_event = asyncio.Event()
            await run_gateway(self.config, self.stop_event, clock=self.clock)

        try:
            self.loop.run_until_complete(main())
        except BaseException as exc:  # surfaced by close()
            self.error = exc


def _events(db, kind):
    return query(db, "SELECT started_at, detail FROM events WHERE kind = ?", kind)


def test_readings_before_sync_are_held_then_judged_at_corrected_times(mosquitto, tmp_path):
    tag = uuid.uuid4().hex[:10]
    topic = f"{tag}/noise"
    db = tmp_path / "g.db"
    plain = sensor("noise-01", topic, decoder={"type": "json", "fields": {"LA": "la"}})
    config = gateway_config(
        db,
        port=mosquitto.port,
        gateway_id=f"gw-{tag}",
        sensors=[plain],
        clock={"hold_until_synced": True, "check_interval_s": 0.05},
    )
    ntp = FakeNtp()
    # The lock, as the supervisor holds it: status believes the running gateway's state.
    with GatewayLock.acquire(db), ClockedGateway(config, ntp.watch()):
        assert wait_for(lambda: (read_state(db) or {}).get("broker") == "connected")
        before = time.time()
        publish_all(
            mosquitto.host,
            mosquitto.port,
            [(topic, b'{"la": 55}'), (topic, b'{"la": 500}'), (topic, b'{"la": 56}')],
        )
        # Stored and acknowledged while untrusted, counted as such ...
        assert wait_for(
            lambda: query(db, "SELECT sum(untrusted), sum(refused) FROM minute_quality") == [(2, 1)]
        )
        after = time.time()
        # ... and held: the running gateway says so, and nothing was judged.
        assert wait_for(lambda: (read_state(db) or {}).get("clock", {}).get("held_back") == 3)
        state = read_state(db)
        assert state is not None
        assert (state["clock"]["state"], state["clock"]["trusted"]) == ("unsynced", False)
        assert _events(db, "sensor_out_of_range") == []
        status = read_status(config)
        live = read_liveness(config, status)
        assert live.clock["held_back"] == 3
        lines = status_lines(config, status, live)
        assert any("3 readings held back" in line for line in lines)
        assert (
            "gateway clock: unsynced, NOT trusted (judgement held back); 0 steps this run" in lines
        )

        ntp.step_and_sync()
        assert wait_for(lambda: len(_events(db, "sensor_out_of_range")) == 1)
        assert wait_for(lambda: (read_state(db) or {}).get("clock", {}).get("held_back") == 0)
        live = read_liveness(config, read_status(config))

    # The out-of-range reading is judged at its true time: an hour after the clock said.
    ((started_at, _),) = _events(db, "sensor_out_of_range")
    assert before + BEHIND_S - 1 <= started_at <= after + BEHIND_S + 1
    # The step and the first sync are audit records, in the signed chain for the cloud.
    ((_, step),) = _events(db, "clock_step")
    step = json.loads(step)
    assert step["direction"] == "forward"
    assert abs(step["step_s"] - BEHIND_S) < 1.0
    ((_, sync),) = _events(db, "clock_synchronised")
    sync = json.loads(sync)
    assert (sync["first"], sync["held_replayed"], sync["not_judged"]) == (True, 3, 0)
    assert abs(sync["receipt_offset_s"] - BEHIND_S) < 1.0
    records = query(
        db,
        "SELECT json_extract(body, '$.kind'), clock_synced, hash IS NOT NULL FROM outbox"
        " WHERE json_extract(body, '$.kind') LIKE 'clock_%' ORDER BY seq",
    )
    assert records == [("clock_step", 1, 1), ("clock_synchronised", 1, 1)]
    # Status while it ran: synced and trusted, with the last step.
    assert (live.clock["state"], live.clock["trusted"]) == ("synced", True)
    assert live.clock["last_step"]["direction"] == "forward"

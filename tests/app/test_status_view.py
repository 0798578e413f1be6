"""What `status` makes of the database, the lock and the clock (no gateway needed)."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
from datetime import datetime

from helpers import gateway_config

from edge.app.status import GatewayStatus, read_status
from edge.app.status_view import iso_times, read_liveness, status_json, status_lines
from edge.events import Event, EventStatus, Severity
from edge.store import Store


def _with_camera(tmp_path):
    from vision.synthetic import demo_config

    config = gateway_config(tmp_path / "g.db")
    vision = demo_config(tmp_path / "m.onnx", tmp_path / "clip.avi")
    return config.model_copy(update={"vision": vision})


def test_cameras_show_their_open_offline_event_and_a_stopped_gateway_says_so(tmp_path):
    config = _with_camera(tmp_path)
    since = time.time() - 90

    async def main() -> None:
        async with await Store.open(config.store.path) as store:
            await store.emit(
                Event(
                    kind="camera_offline",
                    source="kitchen-1",
                    severity=Severity.WARNING,
                    status=EventStatus.OPEN,
                    started_at=since,
                    detail={"reason": "open failed"},
                )
            )

    asyncio.run(main())
    status = read_status(config)
    live = read_liveness(config, status)
    assert live.running is False
    assert live.broker == "not running"
    assert live.cameras == [
        {"id": "kitchen-1", "state": "offline", "since": since, "reason": "open failed"}
    ]
    text = "\n".join(status_lines(config, status, live))
    assert "gateway gw-test  NOT RUNNING" in text
    line = next(ln for ln in text.splitlines() if "camera kitchen-1" in ln)
    assert re.fullmatch(r"  camera kitchen-1 +offline since 9\ds ago: open failed", line)
    data = status_json(config, status, live)
    assert data["cameras"][0]["since"] == datetime.fromtimestamp(since).astimezone().isoformat(
        "T", "seconds"
    )
    assert data["gateway_id"] == "gw-test"
    assert data["running"] is False


def test_an_unsynchronised_clock_is_a_warning(tmp_path):
    config = gateway_config(tmp_path / "g.db")
    status = GatewayStatus(
        sensors=[],
        dead_letters_total=0,
        recent_dead_letters=[],
        open_events=[],
        events_total=0,
        database_bytes=0,
    )
    from edge.app.status_view import Liveness

    clock = {
        "synchronised": False,
        "last_record_synchronised": False,
        "records_checked": 40,
        "records_unsynchronised": 40,
        "warning": True,
    }
    live = Liveness(
        running=True,
        pid=42,
        broker="connected",
        broker_since=None,
        uplinks={},
        cameras=[],
        clock=clock,
    )
    lines = status_lines(config, status, live)
    assert lines[0] == "gateway gw-test  RUNNING (pid 42)"
    warning = next(line for line in lines if line.startswith("WARNING clock"))
    assert "40 of the newest 40 records stamped unsynchronised" in warning
    ok = dataclasses.replace(live, clock={**clock, "synchronised": True, "warning": False})
    assert not any("WARNING" in line for line in status_lines(config, status, ok))


def test_json_times_are_iso_8601():
    assert iso_times({"last_seen": 0.0, "seq": 3, "rows": [{"started_at": 60}]}) == {
        "last_seen": datetime.fromtimestamp(0).astimezone().isoformat("T", "seconds"),
        "seq": 3,
        "rows": [{"started_at": datetime.fromtimestamp(60).astimezone().isoformat("T", "seconds")}],
    }

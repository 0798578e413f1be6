"""Log lines a technician can read, and the one-gateway-per-database lock."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import subprocess
import sys
from datetime import datetime

import pytest
import yaml
from helpers import cli, gateway_dict

from edge.app.lock import AlreadyRunningError, GatewayLock, lock_holder, lock_path
from edge.app.logs import EventLog, JsonFormatter, TextFormatter
from edge.events import Event, EventStatus, Severity
from edge.store import Store


def _record(msg: str, **extra: object) -> logging.LogRecord:
    record = logging.getLogger("vision.camera").makeRecord(
        "vision.camera", logging.WARNING, __file__, 1, msg, (), None, extra=extra
    )
    return record


def test_text_lines_carry_the_structured_fields_and_an_iso_time_with_offset():
    one = TextFormatter().format(_record("camera open failed", camera="k1", reason="no device"))
    two = TextFormatter().format(_record("camera open failed", camera="k2", reason="timeout"))
    assert one != two
    assert one.endswith('WARNING vision.camera camera open failed camera=k1 reason="no device"')
    stamp = one.split(" ", 1)[0]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d", stamp)
    assert datetime.fromisoformat(stamp).utcoffset() is not None


def test_json_lines_hold_every_field():
    data = json.loads(JsonFormatter().format(_record("camera offline", camera="k1", silent_s=12.5)))
    assert data["message"] == "camera offline"
    assert data["camera"] == "k1"
    assert data["silent_s"] == 12.5
    assert data["level"] == "WARNING"
    assert datetime.fromisoformat(data["time"]).utcoffset() is not None


def test_alarms_are_logged_when_they_open_and_close(tmp_path, caplog):
    opened = Event(
        kind="exceedance",
        source="noise-01",
        severity=Severity.ALARM,
        status=EventStatus.OPEN,
        started_at=1.0,
        detail={"quantity": "LA", "window_value": 72.5, "limit_max": 60.0},
    )

    async def main() -> None:
        async with await Store.open(tmp_path / "g.db", hook=EventLog(None)) as store:
            await store.emit(opened)
            await store.emit(
                Event(**{**_fields(opened), "status": EventStatus.UPDATE})  # repeats: no line
            )
            await store.emit(Event(**{**_fields(opened), "status": EventStatus.CLOSED}))

    with caplog.at_level(logging.INFO, logger="edge.app.events"):
        asyncio.run(main())
    lines = [(r.levelname, r.getMessage(), r.__dict__["source"]) for r in caplog.records]
    assert lines == [
        ("WARNING", "exceedance opened", "noise-01"),
        ("INFO", "exceedance closed", "noise-01"),
    ]
    assert caplog.records[0].__dict__["window_value"] == 72.5
    assert caplog.records[0].__dict__["event_id"] == opened.event_id


def _fields(event: Event) -> dict[str, object]:
    return {name: getattr(event, name) for name in event.__dataclass_fields__}


def test_one_gateway_per_database(tmp_path):
    db = tmp_path / "g.db"
    assert lock_holder(db) is None
    with GatewayLock.acquire(db):
        assert lock_holder(db) == os.getpid()
        with pytest.raises(AlreadyRunningError, match=rf"already running \(pid {os.getpid()}\)"):
            GatewayLock.acquire(db)
    assert lock_holder(db) is None
    GatewayLock.acquire(db).release()


def test_a_store_path_that_cannot_be_written_is_one_line(tmp_path):
    (tmp_path / "not-a-folder").write_text("")
    data = gateway_dict(tmp_path / "not-a-folder" / "g.db", port=1)
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    result = cli("run", "--config", str(path))
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"cannot create {tmp_path}/not-a-folder/g.db.lock: ")
    assert line.endswith("is store.path right and its folder writable by the gateway's user?")


def test_a_killed_gateways_lock_does_not_block_a_restart(tmp_path):
    db = tmp_path / "g.db"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from edge.app.lock import GatewayLock;"
            f"GatewayLock.acquire(Path({str(db)!r})); print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "held"
    assert lock_holder(db) == holder.pid
    holder.send_signal(signal.SIGKILL)
    holder.wait(10)
    holder.stdout.close()
    assert lock_path(db).read_text().strip() == str(holder.pid), "the stale pid is still there"
    assert lock_holder(db) is None
    GatewayLock.acquire(db).release()


def test_opencv_and_ffmpeg_chatter_is_kept_off_the_log(tmp_path):
    junk = tmp_path / "broken.mp4"
    junk.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40)
    code = (
        "from edge.app.logs import setup_logging; setup_logging('INFO');"
        f"import cv2; print(cv2.VideoCapture({str(junk)!r}).isOpened())"
    )
    quiet = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert quiet.stdout.strip() == "False"
    assert quiet.stderr == ""
    # Without it FFmpeg speaks for itself (what the setting keeps out of the log).
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCV_")}
    loud = subprocess.run(
        [sys.executable, "-c", f"import cv2; cv2.VideoCapture({str(junk)!r})"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert "moov atom not found" in loud.stderr

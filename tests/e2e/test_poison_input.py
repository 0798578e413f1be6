"""Nothing a sensor sends stops a real gateway process (issue 9): every poison payload found
against main is a dead letter with its reason, normal readings around it are stored, and a
restart replays nothing into a crash (every poison message was acknowledged as a dead letter).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone

import yaml
from helpers import gateway_dict, sensor
from mqtt_tools import publish_all, query, subscribe_session, wait_for

from edge import hj212
from edge.app.config import GatewayConfig

BEIJING = timezone(timedelta(hours=8))
GOOD_NOISE = 40
GOOD_FUME = 10


def _frame(cp: str) -> bytes:
    return hj212.build_frame(f"QN=1;ST=31;CN=2011;PW=123456;MN=M1;Flag=4;CP=&&{cp}&&")


def _fume(data_time: str, value: str = "1.5") -> bytes:
    return _frame(f"DataTime={data_time};a34098-Rtd={value},a34098-Flag=N")


def _noise(la: object, ts: object) -> bytes:
    return f'{{"la": {la}, "ts": {ts}}}'.encode()


def _poison(now_ms: int) -> list[tuple[str, bytes, str]]:
    """(sensor, payload, what its dead letter's reason must say), one per reproduction."""
    big = "9" * 400
    year = 365 * 86_400_000
    return [
        ("noise", _noise(50, 10**15), "after the receive time"),  # ValueError: year 33658
        ("noise", _noise(50, -60_000), "before the receive time"),
        ("noise", _noise(50, now_ms + year), "after the receive time"),  # moved the window
        ("noise", b"[" * 1000 + b"]" * 1000, "nested too deeply"),  # RecursionError
        ("noise", _noise(big, now_ms), "LA: value inf is not finite"),  # OverflowError
        ("noise", _noise(50, big), "timestamp is not a finite number"),
        ("noise", b'{"la": 50, "ts": 1e308}', "after the receive time"),  # minute too large
        ("noise", _noise(50, 936_662_400_000), "1999-09-07"),  # a false sensor_stuck ...
        ("noise", _noise(50, 4_092_566_400_000), "2099-09-08"),  # ... with this one
        ("fume", _fume("00010101000000"), "before the receive time"),  # OverflowError
        ("fume", _fume("2024010108"), "not 14 digits"),
        ("fume", _fume("2024010108000"), "not 14 digits"),
        (
            "fume",
            _frame("DataTime=20240101080000;a34098-Rtd=1.5;a34098-Rtd=49"),
            "'a34098-Rtd' appears twice",
        ),
        # Calibrated to infinity: its out-of-range event must not fail every later commit.
        ("soil", b"1e308", "calibrated value inf outside the physical range"),
    ]


def _config(db, port: int, tag: str) -> dict:
    noise = sensor(
        "noise-01",
        f"{tag}/noise",
        standard={"profile": "gb3096-2008", "params": {"zone": "2"}, "window_s": 60},
        health={"expected_interval_s": 60, "stuck_after_s": 600},
    )
    fume = {
        "id": "fume-01",
        "kind": "gas",
        "topic": f"{tag}/fume",
        "decoder": {"type": "hj212", "codes": {"fume": "a34098"}},
        "quantities": [{"name": "fume", "unit": "mg/m3", "range": [0, 50]}],
    }
    soil = {
        "id": "soil-01",
        "kind": "soil",
        "topic": f"{tag}/soil",
        "decoder": {"type": "number"},
        "quantities": [
            {"name": "moisture", "unit": "%", "range": [0, 100], "calibration": {"gain": 10}}
        ],
    }
    data = gateway_dict(db, port=port, gateway_id=f"gw-{tag}", sensors=[noise, fume, soil])
    # Minute records are built as minutes close: the outbox must survive the poison too.
    data["cloud"] = {
        "uplinks": [
            {
                "type": "mqtt",
                "name": "cloud",
                "host": "127.0.0.1",
                "port": port,
                "tls": {"enabled": False},  # plain loopback test broker
            }
        ],
        "outbox": {"minute_close_s": 0},
    }
    return data


def _good(tag: str, count: int, offset_s: int) -> list[tuple[str, bytes]]:
    now = time.time()
    noise = [
        (f"{tag}/noise", _noise(45 + i % 5, int((now - offset_s) * 1000) + i)) for i in range(count)
    ]
    stamp = datetime.fromtimestamp(now - offset_s, UTC).astimezone(BEIJING)
    fume = [(f"{tag}/fume", _fume(stamp.strftime("%Y%m%d%H%M%S")))] * GOOD_FUME
    return noise + fume


class Gateway:
    """``offsite-edge run`` as a child process."""

    def __init__(self, config_path, log_path) -> None:
        self.config_path, self.log_path = config_path, log_path
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Gateway:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "edge.app.cli", "run", "--config", str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def alive(self) -> bool:
        assert self.process is not None
        return self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def __exit__(self, *exc: object) -> None:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
            raise AssertionError("gateway did not stop on SIGTERM:\n" + self.log()) from None
        assert code == 0, f"gateway exited {code}:\n{self.log()}"


def _stored(db, sensor_id: str) -> int:
    rows = query(
        db, "SELECT coalesce(sum(count), 0) FROM minute_aggregates WHERE sensor_id = ?", sensor_id
    )
    return rows[0][0] if rows else 0


def _dead(db) -> list[tuple[str, str]]:
    return query(db, "SELECT sensor_id, reason FROM dead_letters ORDER BY id")


def test_poison_payloads_are_dead_letters_and_the_gateway_survives_a_restart(mosquitto, tmp_path):
    tag = uuid.uuid4().hex[:10]
    db = tmp_path / "g.db"
    data = _config(db, mosquitto.port, tag)
    config_path = tmp_path / "gateway.yaml"
    config_path.write_text(yaml.safe_dump(data, allow_unicode=True))
    client_id = GatewayConfig.model_validate(data).client_id
    subscribe_session(
        mosquitto.host, mosquitto.port, client_id, [f"{tag}/{s}" for s in ("noise", "fume", "soil")]
    )

    poison = _poison(int(time.time() * 1000))
    # Poison first, then normal readings: intake must go on after every one of them.
    messages = [(f"{tag}/{name}", payload) for name, payload, _ in poison]
    messages += _good(tag, GOOD_NOISE, offset_s=0)
    publish_all(mosquitto.host, mosquitto.port, messages)

    with Gateway(config_path, tmp_path / "gateway.log") as gateway:
        assert wait_for(
            lambda: (
                (
                    (_stored(db, "noise-01"), _stored(db, "fume-01"), len(_dead(db)))
                    == (GOOD_NOISE, GOOD_FUME, len(poison))
                )
                or not gateway.alive()
            ),
            60,
            0.1,
        ), gateway.log()
        assert gateway.alive(), gateway.log()
        # Closed minutes became records in the outbox (minute_close_s 0): built, not crashed.
        assert wait_for(
            lambda: (
                query(db, "SELECT count(*) FROM outbox WHERE data_class = 'minute'")[0][0] > 0
                or not gateway.alive()
            ),
            90,
            0.2,
        ), gateway.log()
        assert gateway.alive(), gateway.log()

    dead = _dead(db)
    for (name, _, reason), (sensor_id, stored_reason) in zip(poison, dead, strict=True):
        assert sensor_id == f"{name}-01"
        assert reason in stored_reason, (reason, stored_reason)
    assert query(db, "SELECT count(*) FROM events WHERE kind = 'sensor_stuck'") == [(0,)]
    assert query(
        db, "SELECT json_extract(detail, '$.value') FROM events WHERE kind = 'sensor_out_of_range'"
    ) == [(None,)]
    now = time.time()
    minutes = [m for (m,) in query(db, "SELECT minute FROM minute_aggregates")]
    assert all(now - 3600 < m < now + 600 for m in minutes), minutes
    assert "Traceback" not in gateway.log()

    # A restart: nothing is redelivered (all were acknowledged), intake works, no crash.
    with Gateway(config_path, tmp_path / "gateway.log") as gateway:
        publish_all(mosquitto.host, mosquitto.port, _good(tag, GOOD_NOISE, offset_s=0))
        assert wait_for(
            lambda: _stored(db, "noise-01") == 2 * GOOD_NOISE or not gateway.alive(), 60, 0.1
        ), gateway.log()
        assert wait_for(lambda: _stored(db, "fume-01") == 2 * GOOD_FUME, 10, 0.1)
        assert gateway.alive(), gateway.log()
    assert len(_dead(db)) == len(poison)
    assert json.dumps(_dead(db), ensure_ascii=False).count("internal error") == 0


def test_a_deleted_database_file_stops_acknowledging_and_nothing_is_lost(mosquitto, tmp_path):
    """Readings received after the file was deleted are never acknowledged into the void:
    the gateway stops with a message naming the file, and after a restart they arrive."""
    tag = uuid.uuid4().hex[:10]
    db = tmp_path / "g.db"
    data = _config(db, mosquitto.port, tag)
    del data["cloud"]
    config_path = tmp_path / "gateway.yaml"
    config_path.write_text(yaml.safe_dump(data, allow_unicode=True))
    client_id = GatewayConfig.model_validate(data).client_id
    subscribe_session(mosquitto.host, mosquitto.port, client_id, [f"{tag}/noise"])
    minute_ms = int(time.time() // 60 * 60_000)
    # One reading per minute (the last 50 minutes), so each is its own aggregate row.
    before = [(f"{tag}/noise", _noise(50, minute_ms - k * 60_000)) for k in range(20)]
    after = [(f"{tag}/noise", _noise(50, minute_ms - k * 60_000)) for k in range(20, 50)]
    log_path = tmp_path / "gateway.log"
    gateway = Gateway(config_path, log_path).__enter__()
    assert gateway.process is not None
    try:
        publish_all(mosquitto.host, mosquitto.port, before)
        assert wait_for(lambda: _stored(db, "noise-01") == 20, 30), gateway.log()
        for suffix in ("", "-wal", "-shm"):
            (tmp_path / f"g.db{suffix}").unlink(missing_ok=True)
        publish_all(mosquitto.host, mosquitto.port, after)
        code = gateway.process.wait(30)
    finally:
        if gateway.process.poll() is None:
            gateway.process.kill()
            gateway.process.wait(10)
    assert code == 2, gateway.log()
    assert f"database file {db} (or its -wal file) was deleted" in gateway.log()

    with Gateway(config_path, log_path):
        assert wait_for(lambda: _stored(db, "noise-01") >= len(after), 30), gateway.log()
    minutes = {m for (m,) in query(db, "SELECT minute FROM minute_aggregates")}
    assert {(minute_ms - k * 60_000) // 1000 for k in range(20, 50)} <= minutes

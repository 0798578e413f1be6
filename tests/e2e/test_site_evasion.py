"""A supervised site cannot quietly evade the gateway: real gateway processes, real broker.

Config edits and SIGHUP leave audit records with both SHA-256s; maintenance ends by
itself; a device that flags itself out of service for too long raises an alarm; a lost
signing key with a signed backlog stops the gateway instead of being replaced.
"""

import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml
from helpers import gateway_dict, sensor
from mqtt_tools import publish_all, query, wait_for

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge.app.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


class Gateway:
    """`offsite-edge run` as a child process, its log in a file."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.log_path = config.with_name("gateway.log")
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "edge.app.cli", "run", "--config", str(config)],
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(30)
        finally:
            self._log.close()


def _events(db: Path, kind: str) -> list[dict]:
    rows = query(db, "SELECT status, detail, source FROM events WHERE kind = ? ORDER BY seq", kind)
    return [{"status": r[0], "detail": json.loads(r[1]), "source": r[2]} for r in rows]


def _write(path: Path, data: dict) -> bytes:
    text = yaml.safe_dump(data, allow_unicode=True, sort_keys=False).encode()
    path.write_bytes(text)
    return text


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def tag() -> str:
    return f"ev{os.getpid()}{uuid.uuid4().hex[:6]}"


def test_config_changes_are_audited_with_old_and_new_sha256(tmp_path, mosquitto, tag):
    db = tmp_path / "g.db"
    data = gateway_dict(
        db, port=mosquitto.port, gateway_id=tag, sensors=[sensor("noise-01", f"{tag}/n")]
    )
    data["cloud"] = {
        "uplinks": [
            {
                "type": "mqtt",
                "name": "cloud",
                "host": "127.0.0.1",
                "port": mosquitto.port,
                "tls": {"enabled": False},  # plain loopback test broker
            }
        ]
    }
    path = tmp_path / "gateway.yaml"
    first = _write(path, data)
    gateway = Gateway(path)
    try:
        # The first run remembers what it runs on; its status record carries the digest.
        first_sha = hashlib.sha256(first).hexdigest()
        assert wait_for(lambda: _status_digests(db), 30), gateway.log()
        assert _status_digests(db)[0] == first_sha
        # The config turned TLS off for the loopback broker: said at every start.
        assert "uplink sends without TLS" in gateway.log()
        # A calibration edit and SIGHUP: an audit record with both digests.
        data["sensors"][0]["quantities"][0]["calibration"] = {"gain": 1.0, "offset": 3.0}
        second = _write(path, data)
        gateway.process.send_signal(signal.SIGHUP)
        assert wait_for(lambda: _events(db, "config_changed"), 30), gateway.log()
        change = _events(db, "config_changed")[0]
        second_sha = hashlib.sha256(second).hexdigest()
        assert change["detail"]["old_sha256"] == first_sha
        assert change["detail"]["new_sha256"] == second_sha
        assert change["detail"]["trigger"] == "reload"
        assert change["detail"]["changed_sections"] == ["sensors.noise-01"]
        assert wait_for(lambda: second_sha in _status_digests(db), 30), gateway.log()
        # While it runs, the WAL (created under the gateway's umask) is owner-only too.
        assert _mode(db.with_name("g.db-wal")) == 0o600
    finally:
        assert gateway.stop() == 0, gateway.log()

    # Edited while stopped: the next start records the change.
    data["sensors"][0]["health"] = {"expected_interval_s": 5}
    third = _write(path, data)
    gateway = Gateway(path)
    try:
        assert wait_for(lambda: len(_events(db, "config_changed")) == 2, 30), gateway.log()
    finally:
        assert gateway.stop() == 0, gateway.log()
    change = _events(db, "config_changed")[1]
    assert change["detail"]["trigger"] == "start"
    assert change["detail"]["old_sha256"] == hashlib.sha256(second).hexdigest()
    assert change["detail"]["new_sha256"] == hashlib.sha256(third).hexdigest()

    # Database, WAL, key and the config backups are owner-only; each version is kept.
    assert _mode(db) == 0o600
    assert _mode(tmp_path / "gateway.key") == 0o600
    backups = tmp_path / "config-backups"
    assert _mode(backups) == 0o700
    kept = sorted(backups.iterdir())
    assert [p.read_bytes() for p in kept] == [first, second, third]
    assert all(_mode(p) == 0o600 for p in kept)
    status = json.loads(_cli("status", "--config", str(path), "--json").stdout)
    digests = status.get("running_digests") or status["running"]
    assert digests["config_sha256"] == hashlib.sha256(third).hexdigest()


def _status_digests(db: Path) -> list[str]:
    rows = query(db, "SELECT body FROM outbox WHERE data_class = 'status' ORDER BY seq")
    return [json.loads(r[0]).get("config_sha256") for r in rows]


def test_maintenance_ends_by_itself_and_self_declared_flags_raise_an_alarm(
    tmp_path, mosquitto, tag
):
    db = tmp_path / "g.db"
    noise = sensor("noise-01", f"{tag}/n")
    noise["decoder"]["flags"] = {"LA": "flag"}
    noise["health"] = {"expected_interval_s": 1, "maintenance_max_s": 2, "self_flag_limit_s": 30}
    data = gateway_dict(db, port=mosquitto.port, gateway_id=tag, sensors=[noise])
    path = tmp_path / "gateway.yaml"
    _write(path, data)
    gateway = Gateway(path)
    try:
        assert wait_for(lambda: db.exists() and query(db, "SELECT 1 FROM meta"), 30)
        done = _cli(
            "sensors", "maintenance", "noise-01", "on", "--config", str(path),
            "--who", "tech.li", "--why", "filter change",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert wait_for(lambda: _events(db, "maintenance_expired"), 30), gateway.log()
        expired = _events(db, "maintenance_expired")[0]["detail"]
        assert (expired["who"], expired["why"], expired["max_s"]) == ("tech.li", "filter change", 2)
        assert [e["status"] for e in _events(db, "maintenance")] == ["closed"]

        # The device says M (maintenance) on its own, for 60 s of device time.
        now_ms = int(time.time() * 1000)
        flagged = [
            (
                f"{tag}/n",
                json.dumps({"la": 50.0, "flag": "M", "ts": now_ms - 60_000 + i * 5_000}).encode(),
            )
            for i in range(13)
        ]
        publish_all("127.0.0.1", mosquitto.port, flagged)
        assert wait_for(lambda: _events(db, "sensor_self_flagged"), 30), gateway.log()
        opened = _events(db, "sensor_self_flagged")[0]
        assert opened["status"] == "open"
        # Opened once the run passed 30 s of device time: by then 7 to 13 readings counted.
        assert set(opened["detail"]["flags"]) == {"M"}
        assert 7 <= opened["detail"]["flags"]["M"] <= 13
        assert opened["detail"]["quantity"] == "LA"
        # The stored minute keeps the device's flag with the value.
        assert query(db, "SELECT 1 FROM minute_aggregates WHERE flag = 'M'")
        # A valid reading ends the run.
        valid = json.dumps({"la": 50.0, "flag": "N", "ts": now_ms + 1_000}).encode()
        publish_all("127.0.0.1", mosquitto.port, [(f"{tag}/n", valid)])
        assert wait_for(
            lambda: [e["status"] for e in _events(db, "sensor_self_flagged")] == ["closed"], 30
        ), gateway.log()
        assert _events(db, "sensor_self_flagged")[0]["detail"]["flags"] == {"M": 13}
    finally:
        assert gateway.stop() == 0, gateway.log()


def test_lost_key_with_a_signed_outbox_refuses_to_start(tmp_path, mosquitto, tag):
    db = tmp_path / "g.db"
    data = gateway_dict(
        db, port=mosquitto.port, gateway_id=tag, sensors=[sensor("noise-01", f"{tag}/n")]
    )
    # Nothing listens on port 1: the signed records stay in the outbox.
    data["cloud"] = {
        "uplinks": [
            {
                "type": "mqtt",
                "name": "cloud",
                "host": "127.0.0.1",
                "port": 1,
                "tls": {"enabled": False},
            }
        ]
    }
    path = tmp_path / "gateway.yaml"
    _write(path, data)
    gateway = Gateway(path)
    try:
        assert wait_for(lambda: query(db, "SELECT 1 FROM outbox WHERE sig IS NOT NULL"), 30)
    finally:
        assert gateway.stop() == 0, gateway.log()
    key = tmp_path / "gateway.key"
    key.unlink()
    done = _cli("run", "--config", str(path))
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "gateway key" in lines[0]
    assert "missing" in lines[0]
    assert "restore" in lines[0]
    assert not key.exists()  # no new identity was made
    identity = _cli("identity", "--config", str(path))
    assert identity.returncode == 2
    assert not key.exists()


def test_identity_without_a_cloud_section_creates_and_prints_the_key(tmp_path, tag):
    path = tmp_path / "gateway.yaml"
    _write(path, gateway_dict(tmp_path / "g.db", gateway_id=tag))
    first = _cli("identity", "--config", str(path))
    assert first.returncode == 0, first.stderr
    key = tmp_path / "gateway.key"
    assert _mode(key) == 0o600
    assert "created now" in first.stdout
    again = _cli("identity", "--config", str(path))
    assert "existing" in again.stdout
    public = [line for line in first.stdout.splitlines() if line.startswith("public key")]
    assert public
    assert public == [line for line in again.stdout.splitlines() if line.startswith("public key")]

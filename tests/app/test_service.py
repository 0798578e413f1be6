"""The gateway as a service a technician runs: real `offsite-edge run` processes, real broker.

One gateway per database; SIGHUP with a broken file leaves the running gateway alone; a
boot with a broken file starts on the last good config; `status` says whether it runs
and is connected; log lines carry ISO times with offset and the sensor's id.
"""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import CLI, cli, gateway_dict, sensor
from mqtt_tools import noise_payload, publish_all, query, wait_for

ISO_LINE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d (DEBUG|INFO|WARNING|ERROR) "
)


class Gateway:
    """An `offsite-edge run` process logging to a file."""

    def __init__(self, config: Path, log: Path, *options: str) -> None:
        self.config, self.log = config, log
        self.handle = log.open("ab")
        self.process = subprocess.Popen(
            [str(CLI), *options, "run", "--config", str(config)],
            stdout=self.handle,
            stderr=self.handle,
        )

    def text(self) -> str:
        return self.log.read_text(encoding="utf-8")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(30)
        self.handle.close()
        return code


@pytest.fixture
def site(mosquitto, tmp_path) -> Iterator[dict[str, Any]]:
    tag = f"svc{os.getpid()}{uuid.uuid4().hex[:6]}"
    # A window of one second and no minimum duration: loud readings open an exceedance at once.
    noise = sensor(
        "noise-01",
        f"{tag}/n",
        standard={
            "profile": "gb12348-2008",  # per window (GB 3096 judges whole periods)
            "params": {"zone": "2"},
            "window_s": 1,
            "min_duration_s": 0,
        },
    )
    data = gateway_dict(tmp_path / "g.db", port=mosquitto.port, gateway_id=tag, sensors=[noise])
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    started: list[Gateway] = []

    def start(*options: str) -> Gateway:
        gateway = Gateway(path, tmp_path / "gateway.log", *options)
        started.append(gateway)
        return gateway

    yield {
        "path": path,
        "db": tmp_path / "g.db",
        "topic": f"{tag}/n",
        "start": start,
        "port": mosquitto.port,
    }
    for gateway in started:
        gateway.stop()


def _publish(site: dict[str, Any], count: int, level: float = 90.0) -> None:
    now_ms = int(time.time() * 1000)
    messages = [(site["topic"], noise_payload(level, now_ms + i)) for i in range(count)]
    publish_all("127.0.0.1", site["port"], messages)


def _stored(db: Path) -> int:
    rows = query(db, "SELECT coalesce(sum(count), 0) FROM minute_aggregates")
    return int(rows[0][0]) if rows else 0


def test_a_second_gateway_on_the_same_database_exits_at_once(site):
    first = site["start"]()
    assert wait_for(lambda: "mqtt connected" in first.text(), 30), first.text()
    second = cli("run", "--config", str(site["path"]))
    assert second.returncode == 2
    assert second.stderr.strip() == (
        f"a gateway is already running (pid {first.process.pid}) on {site['db']}; stop it first"
    )
    assert first.process.poll() is None
    assert first.text().count("mqtt connected") == 1, "the first gateway kept its session"


def test_sighup_with_a_broken_file_leaves_the_gateway_untouched(site):
    gateway = site["start"]()
    assert wait_for(lambda: "mqtt connected" in gateway.text(), 30), gateway.text()
    _publish(site, 10)
    assert wait_for(lambda: _stored(site["db"]) == 10, 30)
    good = site["path"].read_text(encoding="utf-8")
    site["path"].write_text(good.replace("kind: noise", "kind: noize"), encoding="utf-8")
    gateway.process.send_signal(signal.SIGHUP)
    assert wait_for(lambda: "config refused" in gateway.text(), 30), gateway.text()
    _publish(site, 10)
    assert wait_for(lambda: _stored(site["db"]) == 20, 30)
    text = gateway.text()
    refused = next(line for line in text.splitlines() if "config refused" in line)
    assert "sensors[0].kind" in refused
    assert "the gateway keeps running on the config in force" in refused
    # Not stopped, not restarted: one start, one MQTT session, never disconnected.
    assert text.count("gateway starting") == 1
    assert text.count("mqtt connected") == 1
    assert "mqtt disconnected" not in text
    # Alarms are in the log, with the sensor's id; every line has an ISO time with offset.
    # (a window closes when a later reading arrives: keep publishing until it has)
    assert wait_for(
        lambda: _publish(site, 1) or "exceedance opened source=noise-01" in gateway.text(),
        30,
        interval=0.5,
    ), gateway.text()
    before_stop = len(gateway.text())
    assert gateway.stop() == 0
    text = gateway.text()
    assert all(ISO_LINE.match(line) for line in text.splitlines()), text
    # A clean shutdown is no warning.
    assert not re.search(r" (WARNING|ERROR) ", text[before_stop:]), text[before_stop:]


def test_a_boot_with_a_broken_file_starts_on_the_last_good_config(site):
    path, db = site["path"], site["db"]
    good = path.read_text(encoding="utf-8")
    gateway = site["start"]()
    last_good = path.with_name(path.name + ".last-good")
    assert wait_for(last_good.exists, 60), gateway.text()
    assert last_good.read_text(encoding="utf-8") == good
    assert stat.S_IMODE(last_good.stat().st_mode) == 0o600
    assert gateway.stop() == 0

    broken = good.replace("kind: noise", "kind: noize")
    path.write_text(broken, encoding="utf-8")
    rebooted = site["start"]()
    assert wait_for(lambda: "mqtt connected" in rebooted.text(), 30), rebooted.text()
    _publish(site, 5)
    assert wait_for(lambda: _stored(db) == 5, 30)
    line = next(ln for ln in rebooted.text().splitlines() if "starting on the last good" in ln)
    assert "sensors[0].kind" in line
    events = query(db, "SELECT detail FROM events WHERE kind = 'config_refused'")
    assert len(events) == 1
    detail = json.loads(events[0][0])
    assert detail["file"] == str(path)
    assert "sensors[0].kind" in detail["reason"]
    assert path.read_text(encoding="utf-8") == broken, "the technician's file is left alone"


def test_status_says_whether_the_gateway_runs_and_is_connected(site):
    gateway = site["start"]("--log-format", "json")
    assert wait_for(lambda: "mqtt connected" in gateway.text(), 30), gateway.text()
    _publish(site, 3)
    publish_all("127.0.0.1", site["port"], [(site["topic"], b"{not json")] * 8)
    assert wait_for(lambda: _stored(site["db"]) == 3, 30)
    assert wait_for(lambda: len(query(site["db"], "SELECT id FROM dead_letters")) == 8, 30)
    assert wait_for(
        lambda: (
            "broker 127.0.0.1" in (out := cli("status", "--config", str(site["path"])).stdout)
            and ": connected" in out
        ),
        30,
    )
    text = cli("status", "--config", str(site["path"])).stdout
    assert f"RUNNING (pid {gateway.process.pid})" in text
    data = json.loads(cli("status", "--config", str(site["path"]), "--json").stdout)
    assert data["gateway_id"] == yaml.safe_load(site["path"].read_text())["gateway"]["id"]
    assert data["database_path"] == str(site["db"])
    assert data["running"] is True
    assert data["pid"] == gateway.process.pid
    assert data["broker"]["state"] == "connected"
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d", data["sensors"][0]["last_seen"]
    )
    assert set(data["clock"]) >= {"synchronised", "records_unsynchronised", "warning"}
    assert len(data["recent_dead_letters"]) == 5
    seven = cli("status", "--config", str(site["path"]), "--json", "--dead-letters", "7")
    assert len(json.loads(seven.stdout)["recent_dead_letters"]) == 7
    gateway.stop()
    records = [json.loads(line) for line in gateway.text().splitlines()]
    assert all(datetime.fromisoformat(r["time"]).utcoffset() is not None for r in records)
    assert {"logger": "sensors.ingest", "level": "INFO"}.items() <= next(
        r for r in records if r["message"].startswith("mqtt connected")
    ).items()
    stopped = cli("status", "--config", str(site["path"]))
    assert "NOT RUNNING" in stopped.stdout
    assert "broker 127.0.0.1" in stopped.stdout
    assert "not running" in stopped.stdout


def test_status_into_head_exits_quietly(tmp_path):
    import asyncio

    from edge.store import Store

    # Enough lines to fill the pipe, so the writer meets a reader that has gone.
    sensors = [sensor(f"s-{i:04d}", f"t/{i}") for i in range(2000)]
    data = gateway_dict(tmp_path / "g.db", sensors=sensors)
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")

    async def create() -> None:
        async with await Store.open(tmp_path / "g.db"):
            pass

    asyncio.run(create())
    result = subprocess.run(
        ["bash", "-c", f"set -o pipefail; '{CLI}' status --config '{path}' | head -1"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.startswith("gateway gw-test  NOT RUNNING")


def test_status_shows_each_cloud_uplinks_connection(site, tmp_path):
    from mosquitto import free_port

    data = yaml.safe_load(site["path"].read_text())
    plain = {"enabled": False}
    data["cloud"] = {
        "uplinks": [
            {"type": "mqtt", "name": "cloud", "host": "127.0.0.1", "port": site["port"],
             "tls": plain},
            {"type": "mqtt", "name": "dead", "host": "127.0.0.1", "port": free_port(),
             "tls": plain},
        ]
    }  # fmt: skip
    site["path"].write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    gateway = site["start"]()

    def uplinks() -> dict[str, str] | None:
        done = cli("status", "--config", str(site["path"]), "--json")
        if done.returncode != 0:  # no database yet: the gateway is still starting
            return None
        return {u["name"]: u["connection"] for u in json.loads(done.stdout)["uplinks"]}

    assert wait_for(lambda: uplinks() == {"cloud": "connected", "dead": "disconnected"}, 30), (
        uplinks(),
        gateway.text()[-2000:],
    )
    text = cli("status", "--config", str(site["path"])).stdout
    assert "cloud uplink cloud (mqtt)" in text
    gateway.stop()
    assert uplinks() == {"cloud": "not running", "dead": "not running"}

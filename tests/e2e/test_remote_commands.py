"""Downlink commands against a real gateway process and a real cloud broker.

ping, maintenance, malformed commands, and a remote config change that is confirmed when
the gateway reaches the cloud again, or rolled back when it cannot.
"""

import json
import os
import queue
import signal
import subprocess
import sys
import time
import uuid

import paho.mqtt.client as mqtt
import pytest
import yaml
from helpers import gateway_dict, sensor
from mqtt_tools import query, wait_for
from paho.mqtt.enums import CallbackAPIVersion


class Cloud:
    """The regulator's side: sends commands, collects replies."""

    def __init__(self, port, gateway_id):
        self.replies = queue.Queue()
        self.prefix = f"offsite/{gateway_id}"
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"cloud-{uuid.uuid4().hex[:8]}"
        )
        self.client.on_message = lambda c, u, m: self.replies.put(json.loads(m.payload))
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(f"{self.prefix}/up/reply", 1)
        self.client.loop_start()

    def command(self, payload, timeout=30.0):
        """Send until the gateway answers (it may still be connecting)."""
        deadline = time.monotonic() + timeout
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        while time.monotonic() < deadline:
            self.client.publish(f"{self.prefix}/down/command", body, qos=1)
            try:
                return self.replies.get(timeout=2.0)
            except queue.Empty:
                continue
        raise AssertionError("the gateway did not answer")

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()
        self.client.on_message = None  # break the cycle so paho's sockets close now


@pytest.fixture
def gateway(mosquitto, mosquitto_factory, tmp_path):
    cloud_broker = mosquitto_factory()
    tag = f"rc{os.getpid()}{uuid.uuid4().hex[:6]}"
    data = gateway_dict(
        tmp_path / "g.db",
        port=mosquitto.port,
        gateway_id=tag,
        sensors=[sensor("noise-01", f"{tag}/n")],
    )
    data["cloud"] = {
        "uplinks": [
            {
                "type": "mqtt",
                "name": "cloud",
                "host": "127.0.0.1",
                "port": cloud_broker.port,
                "protocol": "5",
            }
        ],
        "rollback_timeout_s": 5,
    }
    config_path = tmp_path / "gateway.yaml"
    config_path.write_text(yaml.safe_dump(data, allow_unicode=True))
    log = (tmp_path / "gateway.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "edge.app.cli", "run", "--config", str(config_path)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    cloud = Cloud(cloud_broker.port, tag)
    try:
        yield {
            "data": data,
            "path": config_path,
            "db": tmp_path / "g.db",
            "cloud": cloud,
            "process": process,
            "log": tmp_path / "gateway.log",
        }
    finally:
        cloud.close()
        process.send_signal(signal.SIGTERM)
        process.wait(30)
        log.close()


def _events(db, kind):
    return query(db, "SELECT status, detail FROM events WHERE kind = ? ORDER BY seq", kind)


def test_ping_maintenance_and_malformed_commands(gateway):
    cloud, db = gateway["cloud"], gateway["db"]
    assert cloud.command({"id": "p1", "type": "ping"})["ok"] is True

    reply = cloud.command(
        {
            "id": "m1",
            "type": "maintenance",
            "args": {"sensor_id": "noise-01", "on": True, "why": "swap"},
        }
    )
    assert reply == {
        "id": "m1",
        "ok": True,
        "result": {"sensor_id": "noise-01", "mode": "maintenance"},
    }
    assert wait_for(lambda: _events(db, "maintenance"), 10)
    status, detail = _events(db, "maintenance")[0]
    assert status == "open"
    assert json.loads(detail)["who"] == "cloud command m1"

    bad = cloud.command(b"{not json")
    assert bad["ok"] is False
    assert "not JSON" in bad["error"]
    unknown = cloud.command(
        {"id": "u1", "type": "maintenance", "args": {"sensor_id": "ghost", "on": True}}
    )
    assert unknown == {"id": "u1", "ok": False, "error": "unknown sensor 'ghost'"}
    # Every command and its outcome is an audit record in the outbox.
    audits = query(
        db, "SELECT body FROM outbox WHERE data_class = 'status' OR body LIKE '%\"command\"%'"
    )
    assert sum('"m1"' in body for (body,) in audits) >= 1


def test_remote_config_is_confirmed_when_the_gateway_reconnects(gateway):
    cloud, db, path = gateway["cloud"], gateway["db"], gateway["path"]
    assert cloud.command({"id": "p1", "type": "ping"})["ok"]
    new = json.loads(json.dumps(gateway["data"]))
    new["sensors"].append(sensor("noise-02", f"{new['gateway']['id']}/n2"))
    reply = cloud.command({"id": "c1", "type": "config", "args": {"config": new}})
    assert reply["ok"] is True, reply
    assert wait_for(lambda: _events(db, "config_confirmed"), 30), gateway["log"].read_text()[-3000:]
    assert "noise-02" in path.read_text()
    assert not path.with_name(path.name + ".pending").exists()
    assert cloud.command({"id": "p2", "type": "ping"})["ok"]


def test_remote_config_that_loses_the_cloud_is_rolled_back(gateway):
    cloud, db, path = gateway["cloud"], gateway["db"], gateway["path"]
    assert cloud.command({"id": "p1", "type": "ping"})["ok"]
    original = path.read_text()
    new = json.loads(json.dumps(gateway["data"]))
    new["cloud"]["uplinks"][0]["port"] = 1  # nothing listens there
    reply = cloud.command({"id": "c2", "type": "config", "args": {"config": new}})
    assert reply["ok"] is True, reply
    assert wait_for(lambda: _events(db, "config_rolled_back"), 40), gateway["log"].read_text()[
        -3000:
    ]
    assert path.read_text() == original
    # Back on the old config, the gateway answers again.
    assert cloud.command({"id": "p3", "type": "ping"}, timeout=40)["ok"]


def test_invalid_remote_config_is_refused_and_nothing_changes(gateway):
    cloud, path = gateway["cloud"], gateway["path"]
    original = path.read_text()
    new = json.loads(json.dumps(gateway["data"]))
    new["sensors"][0]["kind"] = "radiation"
    reply = cloud.command({"id": "c3", "type": "config", "args": {"config": new}})
    assert reply["ok"] is False
    assert "invalid config" in reply["error"]
    assert path.read_text() == original
    assert gateway["process"].poll() is None


def test_sighup_reload_refuses_a_bad_file_and_applies_a_good_one(gateway):
    cloud, db, path, process = gateway["cloud"], gateway["db"], gateway["path"], gateway["process"]
    assert cloud.command({"id": "p1", "type": "ping"})["ok"]
    good = path.read_text()
    path.write_text(good.replace("kind: noise", "kind: noize"))
    process.send_signal(signal.SIGHUP)
    assert wait_for(lambda: "config refused" in gateway["log"].read_text(), 20)
    assert "sensors[0].kind" in gateway["log"].read_text()
    assert cloud.command({"id": "p2", "type": "ping"})["ok"], "still running on the old config"
    data = yaml.safe_load(good)
    data["sensors"].append(sensor("noise-03", "x/n3"))
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    process.send_signal(signal.SIGHUP)
    assert wait_for(lambda: "config loaded" in gateway["log"].read_text(), 20)
    assert process.poll() is None
    assert db.exists()

"""Signed downlink commands against a real gateway process and a real cloud broker.

ping, status and maintenance from the regulator's key, and remote config changes: confirmed
only when the cloud acknowledges a record sent under the new config, rolled back when it
cannot (a dead port, or an endpoint that accepts TCP but is no cloud), refused when the
config is invalid or would change the regulator keys. Refusals: test_signed_commands.py.
"""

import json
import signal
import socket
import threading

import pytest
import yaml
from helpers import sensor
from mqtt_tools import query, wait_for
from regulator_tools import (
    PW_ENV,
    REGULATOR_NAME,
    running_site,
)


@pytest.fixture
def gateway(mosquitto, mosquitto_factory, tmp_path):
    with running_site(mosquitto, mosquitto_factory, tmp_path, "rc") as running:
        yield running


def _events(db, kind):
    return query(db, "SELECT status, detail FROM events WHERE kind = ? ORDER BY seq", kind)


def test_signed_ping_status_and_maintenance_act_as_the_regulator_key(gateway):
    cloud, db = gateway["cloud"], gateway["db"]
    assert cloud.command("ping")["ok"] is True
    assert cloud.command("status")["ok"] is True
    reply = cloud.command(
        "maintenance",
        {"sensor_id": "noise-01", "on": True, "why": "swap", "who": "Mallory"},
        command_id="m1",
    )
    assert reply == {
        "id": "m1",
        "ok": True,
        "result": {"sensor_id": "noise-01", "mode": "maintenance"},
    }
    assert wait_for(lambda: _events(db, "maintenance"), 10)
    status, detail = _events(db, "maintenance")[0]
    assert status == "open"
    who = json.loads(detail)["who"]
    assert who.startswith(f"regulator {REGULATOR_NAME} (key ")
    assert who.endswith("command m1")
    assert "Mallory" not in who
    unknown = cloud.command("maintenance", {"sensor_id": "ghost", "on": True}, command_id="u1")
    assert unknown == {"id": "u1", "ok": False, "error": "unknown sensor 'ghost'"}
    # Every executed command is an audit record in the signed chain, with its issuer.
    audits = [
        json.loads(body)
        for (body, sig) in query(db, "SELECT body, sig FROM outbox ORDER BY seq")
        if sig and json.loads(body).get("type") == "command" and "who" in json.loads(body)
    ]
    assert [a["id"] for a in audits][-2:] == ["m1", "u1"]
    assert all(a["who"].startswith(f"regulator {REGULATOR_NAME}") for a in audits)


def test_remote_config_is_confirmed_when_the_cloud_acknowledges_a_record(gateway):
    cloud, db, path = gateway["cloud"], gateway["db"], gateway["path"]
    new = json.loads(json.dumps(gateway["data"]))
    new["sensors"].append(sensor("noise-02", f"{new['gateway']['id']}/n2"))
    reply = cloud.command("config", {"config": new}, command_id="c1")
    assert reply["ok"] is True, reply
    assert wait_for(lambda: _events(db, "config_confirmed"), 30), gateway["process"].log()
    assert "noise-02" in path.read_text()
    assert not path.with_name(path.name + ".pending").exists()
    cloud.ready()
    assert cloud.command("ping")["ok"]


def test_remote_config_that_loses_the_cloud_is_rolled_back(gateway):
    cloud, db, path = gateway["cloud"], gateway["db"], gateway["path"]
    original = path.read_text()
    new = json.loads(json.dumps(gateway["data"]))
    new["cloud"]["uplinks"][0]["port"] = 1  # nothing listens there
    reply = cloud.command("config", {"config": new}, command_id="c2")
    assert reply["ok"] is True, reply
    assert wait_for(lambda: _events(db, "config_rolled_back"), 40), gateway["process"].log()
    assert path.read_text() == original
    # Back on the old config, the gateway answers again.
    cloud.ready(timeout=40)
    assert cloud.command("ping")["ok"]


class _NotACloud:
    """A TCP endpoint that accepts connections but is no cloud: answers HTTP 404, or nothing."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.accepted = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.accepted += 1
            if self.answer:
                conn.settimeout(2)
                try:
                    conn.recv(65536)
                    conn.sendall(self.answer)
                except OSError:
                    pass
                conn.close()
            else:
                self._held.append(conn)  # silent: never a 9014

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for conn in self._held:
            conn.close()
        self.sock.close()


@pytest.mark.parametrize("kind", ["https", "hj212"])
def test_config_pointing_at_an_endpoint_that_only_accepts_tcp_is_rolled_back(gateway, kind):
    """The old watchdog confirmed on a TCP connect (HJ 212) or at once (HTTPS); not any more."""
    cloud, db, path = gateway["cloud"], gateway["db"], gateway["path"]
    original = path.read_text()
    http_404 = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    endpoint = _NotACloud(http_404 if kind == "https" else b"")
    try:
        new = json.loads(json.dumps(gateway["data"]))
        if kind == "https":
            uplink = {"url": f"http://127.0.0.1:{endpoint.port}/v1/records", "timeout_s": 2}
        else:
            # Minute records only: with no readings nothing is sent, so a TCP connect is all
            # that happens; that used to confirm the config.
            uplink = {"host": "127.0.0.1", "port": endpoint.port, "mn": "MN1",
                      "pw_env": PW_ENV, "ack_timeout_s": 1, "retries": 0}  # fmt: skip
        uplink |= {"type": kind, "name": "elsewhere", "tls": {"enabled": False}}
        new["cloud"]["uplinks"] = [uplink]
        reply = cloud.command("config", {"config": new}, command_id=f"c-{kind}")
        assert reply["ok"] is True, reply
        assert wait_for(lambda: _events(db, "config_rolled_back"), 40), gateway["process"].log()
        assert not _events(db, "config_confirmed")
        assert endpoint.accepted >= 1, "the gateway did reach the endpoint"
    finally:
        endpoint.close()
    assert path.read_text() == original
    detail = json.loads(_events(db, "config_rolled_back")[0][1])
    assert "acknowledged no record" in detail["reason"]
    cloud.ready(timeout=40)
    assert cloud.command("ping")["ok"]


def test_invalid_remote_config_is_refused_and_nothing_changes(gateway):
    cloud, path = gateway["cloud"], gateway["path"]
    original = path.read_text()
    new = json.loads(json.dumps(gateway["data"]))
    new["sensors"][0]["kind"] = "radiation"
    reply = cloud.command("config", {"config": new})
    assert reply["ok"] is False
    assert "invalid config" in reply["error"]
    rekeyed = json.loads(json.dumps(gateway["data"]))
    rekeyed["cloud"]["regulator_keys"][0]["public_key"] = "ab" * 32
    reply = cloud.command("config", {"config": rekeyed})
    assert reply["ok"] is False
    assert "regulator keys" in reply["error"]
    assert path.read_text() == original
    assert gateway["process"].alive()


def test_sighup_reload_refuses_a_bad_file_and_applies_a_good_one(gateway):
    cloud, db, path, process = gateway["cloud"], gateway["db"], gateway["path"], gateway["process"]
    good = path.read_text()
    path.write_text(good.replace("kind: noise", "kind: noize"))
    process.process.send_signal(signal.SIGHUP)
    assert wait_for(lambda: "config refused" in process.log_path.read_text(), 20)
    assert "sensors[0].kind" in process.log_path.read_text()
    assert cloud.command("ping")["ok"], "still running on the old config"
    data = yaml.safe_load(good)
    data["sensors"].append(sensor("noise-03", "x/n3"))
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    process.process.send_signal(signal.SIGHUP)
    assert wait_for(lambda: "config loaded" in process.log_path.read_text(), 20)
    assert process.alive()
    assert db.exists()

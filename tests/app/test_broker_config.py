"""The shipped mosquitto snippet in a Debian-style layout, with accounts and ACL written by
`offsite-edge broker-config`: anonymous clients, other sensors' topics and oversized
messages are refused, and a real gateway process ingests through its own account."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import yaml
from helpers import gateway_dict, sensor
from hypothesis import given, settings
from hypothesis import strategies as st
from mosquitto import Mosquitto
from mqtt_tools import noise_payload, query, wait_for
from paho.mqtt.enums import CallbackAPIVersion

from edge.app.broker_config import (
    ACL_FILE,
    PASSWORD_FILE,
    password_entry,
    password_matches,
)

REPO = Path(__file__).resolve().parents[2]
SNIPPET = REPO / "configs" / "mosquitto" / "offsite-edge.conf"
CLI = Path(sys.executable).with_name("offsite-edge")
GATEWAY_ENV = {"SITE_BROKER_USER": "offsite-gateway", "SITE_BROKER_PASSWORD": "gw-secret-1"}

# Debian's /etc/mosquitto/mosquitto.conf, with its paths moved into the test's folder.
DEBIAN_MAIN_CONF = """\
pid_file {dir}/mosquitto.pid
persistence true
persistence_location {dir}/data/
log_dest file {dir}/mosquitto.log
include_dir {dir}/conf.d
"""


def _site_broker() -> Mosquitto:
    """mosquitto started from a Debian-style main conf that includes our snippet unchanged,
    apart from the listener's port and the /etc/mosquitto paths (moved to ``dir/etc``)."""
    broker = Mosquitto()
    etc = broker.dir / "etc"
    (broker.dir / "data").mkdir()
    conf_d = broker.dir / "conf.d"
    conf_d.mkdir()
    snippet = SNIPPET.read_text()
    assert "listener 1883\n" in snippet
    snippet = snippet.replace("listener 1883\n", f"listener {broker.port} 127.0.0.1\n")
    (conf_d / "offsite-edge.conf").write_text(snippet.replace("/etc/mosquitto", str(etc)))
    broker.conf.write_text(DEBIAN_MAIN_CONF.format(dir=broker.dir))
    return broker


def _config_file(tmp_path: Path, port: int) -> Path:
    data = gateway_dict(
        tmp_path / "gateway.db",
        port=port,
        sensors=[sensor("noise-01", "site/noise/01"), sensor("noise-02", "site/noise/02")],
    )
    data["broker"].update(username_env="SITE_BROKER_USER", password_env="SITE_BROKER_PASSWORD")
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


def _broker_config(config: Path, out: Path) -> dict[str, str]:
    """Run `offsite-edge broker-config`; returns the new sensor passwords it printed."""
    env = {**os.environ, **GATEWAY_ENV}
    done = subprocess.run(
        [str(CLI), "broker-config", "--config", str(config), "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    passwords = {}
    for line in done.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and line.startswith("  "):
            passwords[parts[0]] = parts[1]
    return passwords


class Client:
    """A paho client that records whether it got in and what it received."""

    def __init__(self, port: int, user: str | None, password: str | None) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"t-{time.time_ns()}")
        if user is not None:
            self.client.username_pw_set(user, password)
        self.connack: object | None = None
        self.disconnected = threading.Event()
        self.received: list[tuple[str, bytes]] = []
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *args: self.disconnected.set()
        self.client.on_message = lambda c, u, m: self.received.append((m.topic, m.payload))
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert wait_for(lambda: self.connack is not None, 10), "no CONNACK"

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connack = reason_code

    @property
    def accepted(self) -> bool:
        return not getattr(self.connack, "is_failure", True)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _let_mosquitto_in(folder: Path) -> None:
    """As root, mosquitto drops to its own user: give it the folders it writes and reads."""
    if os.geteuid() != 0:
        return
    import pwd

    account = pwd.getpwnam("mosquitto")
    for path in [folder, *folder.rglob("*")]:
        os.chown(path, account.pw_uid, account.pw_gid)


@pytest.fixture
def site(tmp_path):
    broker = _site_broker()
    etc = broker.dir / "etc"
    config = _config_file(tmp_path, broker.port)
    passwords = _broker_config(config, etc)
    _let_mosquitto_in(broker.dir)
    broker.start()
    yield broker, config, passwords, etc
    broker.stop()
    shutil.rmtree(broker.dir, ignore_errors=True)


def test_snippet_starts_in_debians_layout_and_files_are_owner_only(site):
    broker, _, passwords, etc = site
    assert broker.process is not None
    assert broker.process.poll() is None
    assert set(passwords) == {"noise-01", "noise-02"}
    for name in (PASSWORD_FILE, ACL_FILE):
        assert (etc / name).stat().st_mode & 0o077 == 0


def test_anonymous_and_wrong_password_are_refused(site):
    broker, _, passwords, _ = site
    for user, password in [(None, None), ("noise-01", "wrong"), ("nobody", passwords["noise-01"])]:
        client = Client(broker.port, user, password)
        assert not client.accepted, f"{user!r} got in"
        client.close()


def test_a_sensor_publishes_only_to_its_own_topic_and_never_oversized(site):
    broker, _, passwords, _ = site
    gateway = Client(broker.port, *GATEWAY_ENV.values())
    assert gateway.accepted
    gateway.client.subscribe([("site/noise/01", 1), ("site/noise/02", 1)])
    sensor_01 = Client(broker.port, "noise-01", passwords["noise-01"])
    assert sensor_01.accepted
    time.sleep(0.3)
    sensor_01.client.publish("site/noise/02", b"forged", qos=1).wait_for_publish(5)
    sensor_01.client.publish("site/noise/01", b"own", qos=1).wait_for_publish(5)
    assert wait_for(lambda: gateway.received, 10)
    time.sleep(0.3)
    assert gateway.received == [("site/noise/01", b"own")]
    sensor_01.client.publish("site/noise/01", b"x" * 1_000_000, qos=1)
    assert sensor_01.disconnected.wait(10), "a 1 MB message was not refused"
    time.sleep(0.3)
    assert len(gateway.received) == 1
    for client in (gateway, sensor_01):
        client.close()


def test_rerun_keeps_existing_sensor_passwords(site):
    _, config, passwords, etc = site
    before = (etc / PASSWORD_FILE).read_text().splitlines()
    assert _broker_config(config, etc) == {}
    after = (etc / PASSWORD_FILE).read_text().splitlines()
    sensors_before = [line for line in before if line.startswith("noise-")]
    assert sensors_before == [line for line in after if line.startswith("noise-")]
    assert password_matches(sensors_before[0], passwords["noise-01"])


def test_gateway_process_ingests_through_its_own_account(site, tmp_path):
    broker, config, passwords, _ = site
    env = {**os.environ, **GATEWAY_ENV}
    log = tmp_path / "gateway.log"
    with log.open("wb") as stderr:
        gateway = subprocess.Popen(
            [str(CLI), "run", "--config", str(config)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        db = tmp_path / "gateway.db"
        sensor_01 = Client(broker.port, "noise-01", passwords["noise-01"])
        assert wait_for(lambda: "mqtt connected" in log.read_text(), 30), log.read_text()
        time.sleep(0.5)  # SUBACK follows the CONNACK
        now_ms = int(time.time() * 1000)
        for i in range(5):
            sensor_01.client.publish("site/noise/01", noise_payload(50 + i, now_ms), qos=1)
        stored = "SELECT coalesce(sum(count), 0) FROM minute_aggregates"
        assert wait_for(lambda: query(db, stored)[0][0] == 5, 30), log.read_text()[-2000:]
        sensor_01.close()
    finally:
        gateway.terminate()
        gateway.wait(30)


def test_gateway_without_its_own_account_is_refused(tmp_path):
    data = gateway_dict(tmp_path / "g.db")
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    done = subprocess.run(
        [str(CLI), "broker-config", "--config", str(path), "--out", str(tmp_path / "etc")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "broker.username_env" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "etc").exists()


def test_entries_written_by_mosquitto_passwd_are_read_the_same_way(tmp_path):
    tool = shutil.which("mosquitto_passwd")
    if tool is None:
        pytest.skip("mosquitto_passwd is not installed")
    file = tmp_path / "pw"
    subprocess.run([tool, "-c", "-b", str(file), "alice", "s3cret"], check=True)
    entry = file.read_text().strip()
    assert password_matches(entry, "s3cret")
    assert not password_matches(entry, "s3cret ")


@settings(max_examples=25, deadline=None)
@given(
    user=st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True),
    password=st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=40),
    other=st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=40),
)
def test_password_entries_round_trip(user, password, other):
    entry = password_entry(user, password)
    assert entry.startswith(f"{user}:$7$")
    assert password_matches(entry, password)
    assert password_matches(entry, other) == (other == password)

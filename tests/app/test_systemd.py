"""The shipped systemd unit verifies, and a real gateway process speaks sd_notify to a
socket standing in for systemd (the protocol of sd_notify(3): datagrams of KEY=value)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from helpers import gateway_dict

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "configs" / "systemd" / "offsite-edge.service"
CLI = Path(sys.executable).with_name("offsite-edge")


def test_unit_verifies_with_systemd_analyze(tmp_path):
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    # verify checks that ExecStart exists: point it at this checkout's console script.
    text = UNIT.read_text()
    assert "ExecStart=/opt/offsite-edge/bin/offsite-edge run" in text
    unit = tmp_path / "offsite-edge.service"
    unit.write_text(text.replace("/opt/offsite-edge/bin/offsite-edge", str(CLI)))
    done = subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stderr.strip() == ""


def test_unit_runs_as_notify_service_with_watchdog_and_hardening():
    settings = {}
    for line in UNIT.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            settings[key] = value
    assert settings["Type"] == "notify"
    assert int(settings["WatchdogSec"]) > 0
    assert settings["User"] == "offsite-edge"
    assert settings["UMask"] == "0077"
    assert settings["StateDirectory"] == settings["ConfigurationDirectory"] == "offsite-edge"
    assert settings["ProtectSystem"] == "strict"
    assert settings["NoNewPrivileges"] == "yes"


def test_gateway_process_says_ready_feeds_watchdog_and_stops(tmp_path, mosquitto):
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    address = str(tmp_path / "notify.sock")
    notify.bind(address)
    notify.settimeout(30)
    config = tmp_path / "gateway.yaml"
    config.write_text(yaml.safe_dump(gateway_dict(tmp_path / "g.db", port=mosquitto.port)))
    env = {**os.environ, "NOTIFY_SOCKET": address, "WATCHDOG_USEC": "400000"}
    gateway = subprocess.Popen(
        [str(CLI), "run", "--config", str(config)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        seen: list[str] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (
            "READY=1" in seen and seen.count("WATCHDOG=1") >= 3
        ):
            seen += notify.recv(4096).decode().splitlines()
        assert "READY=1" in seen
        assert seen.count("WATCHDOG=1") >= 3
        assert any(line.startswith("STATUS=") for line in seen)
        gateway.send_signal(signal.SIGTERM)
        while "STOPPING=1" not in seen:
            seen += notify.recv(4096).decode().splitlines()
        assert gateway.wait(30) == 0
    finally:
        if gateway.poll() is None:
            gateway.kill()
            gateway.wait()
        notify.close()


def test_install_puts_unit_broker_snippet_and_config_in_place(tmp_path):
    root = tmp_path / "root"
    done = subprocess.run(
        [str(CLI), "install", "--root", str(root)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    unit = root / "etc/systemd/system/offsite-edge.service"
    assert f"ExecStart={CLI} run --config /etc/offsite-edge/gateway.yaml" in unit.read_text()
    assert (root / "etc/mosquitto/conf.d/offsite-edge.conf").read_text() == (
        REPO / "configs/mosquitto/offsite-edge.conf"
    ).read_text()
    config = root / "etc/offsite-edge/gateway.yaml"
    assert "path: /var/lib/offsite-edge/gateway.db" in config.read_text()
    assert config.stat().st_mode & 0o007 == 0
    # A second install keeps the technician's config.
    config.write_text("# edited\n")
    again = subprocess.run(
        [str(CLI), "install", "--root", str(root)], capture_output=True, text=True, timeout=60
    )
    assert again.returncode == 0
    assert config.read_text() == "# edited\n"
    assert "kept" in again.stdout

"""The console's accounts, throttle, LAN rules and config, without a browser."""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import stat
import time
from pathlib import Path

import pytest
import yaml
from helpers import gateway_dict, sensor
from hypothesis import given
from hypothesis import strategies as st
from mqtt_tools import noise_payload, publish_all, query, wait_for
from pydantic import ValidationError

from edge.app.cli import main
from edge.app.config import LAN_NETWORKS, ConsoleConfig, GatewayConfig
from edge.app.console.auth import ADDRESS_FACTOR, LoginThrottle, Sessions, address_allowed
from edge.app.console.users import (
    UsersFileError,
    add_user,
    load_accounts,
    set_password,
    users_path,
    verify,
)

LAN = [ipaddress.ip_network(n) for n in LAN_NETWORKS]


@pytest.mark.parametrize("host", ["8.8.8.8", "2001:4860::8888", "localhost", "example.org"])
def test_the_console_refuses_to_listen_on_a_public_or_named_address(host):
    with pytest.raises(ValidationError, match="host"):
        ConsoleConfig(host=host)


def test_allowed_networks_must_be_lan_networks():
    with pytest.raises(ValidationError, match="not a LAN network"):
        ConsoleConfig(allowed_networks=["0.0.0.0/0"])
    assert ConsoleConfig(host="0.0.0.0", allowed_networks=["192.168.8.0/24"]).port == 8080


@pytest.mark.parametrize(
    ("remote", "allowed"),
    [
        ("127.0.0.1", True),
        ("192.168.1.20", True),
        ("10.1.2.3", True),
        ("::ffff:192.168.1.20", True),
        ("fe80::1%eth0", True),
        ("8.8.8.8", False),
        ("2001:4860::8888", False),
        ("not an address", False),
        (None, False),
    ],
)
def test_only_lan_clients_are_served(remote, allowed):
    assert address_allowed(remote, LAN) is allowed


def test_no_console_unless_configured(tmp_path):
    assert GatewayConfig.model_validate(gateway_dict(tmp_path / "g.db")).console is None


def test_accounts_are_argon2id_hashes_in_an_owner_only_file(tmp_path):
    path = tmp_path / "users.json"
    one_time = add_user(path, "alice")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert one_time not in text
    assert "$argon2id$" in text
    assert verify(path, "alice", one_time).must_change is True
    assert verify(path, "alice", one_time + "x") is None
    assert verify(path, "mallory", one_time) is None
    set_password(path, "alice", "a-long-new-password")
    assert verify(path, "alice", one_time) is None
    assert verify(path, "alice", "a-long-new-password").must_change is False
    with pytest.raises(UsersFileError, match="at least 10"):
        set_password(path, "alice", "short")
    with pytest.raises(UsersFileError, match="exists"):
        add_user(path, "alice")
    again = add_user(path, "alice", reset=True)
    assert verify(path, "alice", again).must_change is True
    with pytest.raises(UsersFileError, match="name"):
        add_user(path, "Robert'); DROP")


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give files away")
def test_as_root_the_file_goes_to_the_data_folders_owner(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    os.chown(folder, 12345, 12345)
    add_user(folder / "users.json", "alice")
    owner = (folder / "users.json").stat()
    assert (owner.st_uid, owner.st_gid) == (12345, 12345)
    assert stat.S_IMODE(owner.st_mode) == 0o600


def test_the_readme_console_snippet_is_a_valid_console_section():
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text(encoding="utf-8")
    blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", readme, re.S)]
    sections = [b["console"] for b in blocks if isinstance(b, dict) and "console" in b]
    assert sections
    for section in sections:
        ConsoleConfig.model_validate(section)


def test_a_damaged_users_file_is_a_clear_error(tmp_path):
    path = tmp_path / "users.json"
    path.write_text("{not json")
    with pytest.raises(UsersFileError, match="unreadable"):
        load_accounts(path)


def test_add_user_prints_a_one_time_password(tmp_path, capsys):
    config = tmp_path / "gateway.yaml"
    data = gateway_dict(tmp_path / "g.db", console={"port": 8181})
    config.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    assert main(["console", "add-user", "bob", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    one_time = out.split("one-time password: ")[1].split()[0]
    path = users_path(GatewayConfig.model_validate(data))
    assert path == tmp_path / "console-users.json"
    assert verify(path, "bob", one_time).must_change is True
    assert main(["console", "add-user", "bob", "--config", str(config)]) == 2
    assert "--reset" in capsys.readouterr().err


@given(st.lists(st.sampled_from(["alice", "bob"]), max_size=30))
def test_an_account_is_locked_exactly_after_its_limit_of_failures(names):
    throttle = LoginThrottle(limit=3, window_s=60)
    counts = {"alice": 0, "bob": 0}
    for i, name in enumerate(names):
        keys = LoginThrottle.keys(name, "192.168.1.9")
        total = sum(counts.values())
        blocked = counts[name] >= 3 or total >= 3 * ADDRESS_FACTOR
        assert (throttle.wait_s(keys, now=float(i)) > 0) is blocked
        if not blocked:
            throttle.failed(keys, now=float(i))
            counts[name] += 1


def test_failures_age_out_and_a_success_clears_the_account():
    throttle = LoginThrottle(limit=2, window_s=60)
    keys = LoginThrottle.keys("alice", "10.0.0.5")
    assert throttle.failed(keys, now=0.0) is False
    assert throttle.failed(keys, now=1.0) is True
    assert throttle.wait_s(keys, now=2.0) == pytest.approx(58.0)
    assert throttle.wait_s(keys, now=60.5) == 0
    throttle.failed(keys, now=70.0)
    throttle.succeeded("alice")
    assert throttle.wait_s(LoginThrottle.keys("alice", "10.0.0.6"), now=71.0) == 0


def test_a_login_gets_a_new_session_and_logout_ends_it():
    sessions = Sessions(idle_s=600)
    anonymous = sessions.new()
    assert sessions.get(anonymous.token) is anonymous
    assert anonymous.csrf_ok(anonymous.csrf)
    assert not anonymous.csrf_ok(None)
    assert not anonymous.csrf_ok(anonymous.token)
    assert sessions.alive(anonymous.token)
    sessions.drop(anonymous.token)
    assert not sessions.alive(anonymous.token)
    alice = sessions.new("alice")
    other = sessions.new("alice")
    assert alice.token != anonymous.token
    assert alice.csrf != anonymous.csrf
    assert sessions.get(anonymous.token) is None
    sessions.drop_user("alice", keep=alice.token)
    assert sessions.get(other.token) is None
    assert sessions.get(alice.token) is alice


def test_a_console_that_cannot_listen_leaves_the_gateway_running(
    mosquitto, tmp_path, caplog, gateway_thread
):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        topic = f"{time.time_ns()}/noise"
        db = tmp_path / "g.db"
        config = GatewayConfig.model_validate(
            gateway_dict(
                db,
                port=mosquitto.port,
                sensors=[sensor("noise-01", topic)],
                console={"port": port},
            )
        )
        gateway = gateway_thread(config)
        gateway.start()
        try:
            payload = noise_payload(50, int(time.time() * 1000))

            def stored():
                publish_all(mosquitto.host, mosquitto.port, [(topic, payload)])
                return query(db, "SELECT count(*) FROM minute_aggregates") not in ([], [(0,)])

            assert wait_for(stored, 20, 0.3)
        finally:
            gateway.close()
    assert any("console disabled" in r.getMessage() for r in caplog.records)

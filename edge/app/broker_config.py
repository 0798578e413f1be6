"""Accounts and ACL for the site's mosquitto, written from the gateway config.

Every sensor gets its own broker account (user name = sensor id) allowed to publish to its
own topic only, and the gateway's account may read exactly the configured sensor topics.
The files are what ``configs/mosquitto/offsite-edge.conf`` points at: a mosquitto 2.x
password file (PBKDF2-SHA512 entries, ``$7$`` as ``mosquitto_passwd`` writes them) and an
ACL file. Existing accounts keep their passwords when the command runs again, so adding a
sensor does not force the technician to reconfigure the others.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import os
import pwd
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from edge.app.config import GatewayConfig
from edge.errors import SetupError

PASSWORD_FILE = "offsite-edge.passwd"  # noqa: S105 (a file name, not a password)
ACL_FILE = "offsite-edge.acl"
# mosquitto_passwd writes 101 iterations; a sensor logs in rarely, so we can afford more.
PBKDF2_ITERATIONS = 20_000


class BrokerConfigError(SetupError):
    """The broker accounts cannot be written from this config."""


@dataclass(frozen=True, slots=True)
class BrokerFiles:
    """What :func:`write_broker_files` wrote: paths and the passwords it created."""

    password_file: Path
    acl_file: Path
    new_passwords: Mapping[str, str]


def password_entry(user: str, password: str, *, salt: bytes | None = None) -> str:
    """One password-file line in mosquitto 2.x's ``$7$`` (PBKDF2-SHA512) format."""
    salt = salt if salt is not None else secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PBKDF2_ITERATIONS)
    encoded = f"$7${PBKDF2_ITERATIONS}${_b64(salt)}${_b64(digest)}"
    return f"{user}:{encoded}"


def password_matches(entry: str, password: str) -> bool:
    """Whether a ``$7$`` password-file entry (``user:hash``) accepts ``password``."""
    _, _, hashed = entry.partition(":")
    parts = hashed.split("$")
    if len(parts) != 5 or parts[1] != "7":
        return False
    salt, expected = base64.b64decode(parts[3]), base64.b64decode(parts[4])
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, int(parts[2]))
    return hmac.compare_digest(digest, expected)


def acl_text(config: GatewayConfig, gateway_user: str) -> str:
    """The mosquitto ACL: each sensor writes its own topic; the gateway reads them all and
    its catch-all patterns."""
    lines = [
        "# Written by `offsite-edge broker-config`; edit the gateway config, not this file.",
        f"user {gateway_user}",
    ]
    lines += [f"topic read {sensor.topic}" for sensor in config.sensors]
    # The catch-all subscriptions turn devices on unexpected topics into dead letters.
    lines += [f"topic read {pattern}" for pattern in config.ingest.catch_all]
    for sensor in config.sensors:
        lines += ["", f"user {sensor.id}", f"topic write {sensor.topic}"]
    return "\n".join(lines) + "\n"


def gateway_account(config: GatewayConfig, environ: Mapping[str, str]) -> tuple[str, str]:
    """The gateway's own broker user and password, from the variables its config names."""
    broker = config.broker
    if broker.username_env is None or broker.password_env is None:
        raise BrokerConfigError(
            "broker.username_env and broker.password_env: not set; the local broker refuses "
            "anonymous clients, so the gateway needs its own account (name both variables)"
        )
    for name in (broker.username_env, broker.password_env):
        if not environ.get(name):
            raise BrokerConfigError(f"environment variable {name} (named by broker): not set")
    return environ[broker.username_env], environ[broker.password_env]


def write_broker_files(
    config: GatewayConfig, out_dir: Path, environ: Mapping[str, str] = os.environ
) -> BrokerFiles:
    """Write the password file and ACL into ``out_dir``, keeping existing sensor passwords.

    Returns the passwords created for sensors that had no account yet (shown once).
    """
    gateway_user, gateway_password = gateway_account(config, environ)
    clash = [sensor.id for sensor in config.sensors if sensor.id == gateway_user]
    if clash:
        raise BrokerConfigError(f"sensor {clash[0]}: its id is the gateway's broker user name")
    password_file = out_dir / PASSWORD_FILE
    existing = _read_entries(password_file)
    entries = {gateway_user: password_entry(gateway_user, gateway_password)}
    new_passwords: dict[str, str] = {}
    for sensor in config.sensors:
        if sensor.id in existing:
            entries[sensor.id] = existing[sensor.id]
        else:
            new_passwords[sensor.id] = secrets.token_urlsafe(18)
            entries[sensor.id] = password_entry(sensor.id, new_passwords[sensor.id])
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_private(password_file, "".join(f"{line}\n" for line in entries.values()))
    acl_file = out_dir / ACL_FILE
    _write_private(acl_file, acl_text(config, gateway_user))
    return BrokerFiles(password_file, acl_file, new_passwords)


def add_broker_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``offsite-edge broker-config``."""
    cmd = commands.add_parser(
        "broker-config", help="write the local mosquitto's accounts and ACL for the sensors"
    )
    cmd.add_argument("--config", required=True, help="the gateway config file")
    cmd.add_argument(
        "--out", type=Path, default=Path("/etc/mosquitto"), help="where to write both files"
    )
    cmd.set_defaults(func=_cmd_broker_config)


def _cmd_broker_config(args: argparse.Namespace) -> int:
    from edge.app.config_file import load_config

    written = write_broker_files(load_config(args.config), args.out)
    print(f"wrote {written.password_file} and {written.acl_file}")
    if written.new_passwords:
        print("new sensor accounts (shown once; enter them in each sensor's MQTT settings):")
        for user, password in written.new_passwords.items():
            print(f"  {user}  {password}")
    print("restart mosquitto (systemctl restart mosquitto) to apply")
    return 0


def _read_entries(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    entries = {}
    for line in path.read_text().splitlines():
        user, sep, _ = line.partition(":")
        if sep and not line.startswith("#"):
            entries[user] = line
    return entries


def _write_private(path: Path, text: str) -> None:
    """Replace ``path`` atomically with an owner-only file (it holds password hashes)."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    _give_to_mosquitto(path)


def _give_to_mosquitto(path: Path) -> None:
    """As root, hand the file to Debian's ``mosquitto`` user: it rereads them on SIGHUP."""
    if os.geteuid() != 0:
        return
    try:
        account = pwd.getpwnam("mosquitto")
    except KeyError:
        return
    os.chown(path, account.pw_uid, account.pw_gid)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()

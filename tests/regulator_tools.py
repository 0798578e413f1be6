"""The regulator's side in end-to-end tests: a signing key, a cloud-broker client, a gateway.

The gateway runs as a real process (``offsite-edge run``) against real mosquitto brokers;
commands are signed with :data:`REGULATOR`, whose public key the gateway's config lists.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from helpers import gateway_dict, sensor
from paho.mqtt.enums import CallbackAPIVersion

from cloud_sync.chain import public_key_hex
from cloud_sync.envelope import sign_command

REGULATOR = Ed25519PrivateKey.generate()
REGULATOR_NAME = "eeb-test"
PW_ENV = "OFFSITE_TEST_HJ212_PW"
"""Set in the gateway process's environment, for configs with an HJ 212 uplink."""


def gateway_data(db: Path, broker_port: int, cloud_port: int, tag: str) -> dict[str, Any]:
    """A gateway config whose cloud uplink and command channel is the cloud broker."""
    data = gateway_dict(
        db, port=broker_port, gateway_id=tag, sensors=[sensor("noise-01", f"{tag}/n")]
    )
    data["cloud"] = {
        "uplinks": [
            {
                "type": "mqtt",
                "name": "cloud",
                "host": "127.0.0.1",
                "port": cloud_port,
                "protocol": "5",
                "tls": {"enabled": False},  # plain loopback test broker
            }
        ],
        "rollback_timeout_s": 5,
        "regulator_keys": [
            {"name": REGULATOR_NAME, "public_key": public_key_hex(REGULATOR.public_key())}
        ],
    }
    return data


class GatewayProcess:
    """``offsite-edge run --config PATH`` as a child process, restartable."""

    def __init__(self, config_path: Path, log_path: Path) -> None:
        self.config_path = config_path
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "edge.app.cli", "run", "--config", str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, PW_ENV: "123456"},
            )

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(30)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]


class Cloud:
    """The regulator's client on the cloud broker: sends commands, collects replies."""

    def __init__(self, port: int, gateway_id: str) -> None:
        self.gateway_id = gateway_id
        self.prefix = f"offsite/{gateway_id}"
        self._replies: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"cloud-{uuid.uuid4().hex[:8]}"
        )
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(f"{self.prefix}/up/reply", 1)
        self.client.loop_start()

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        del client, userdata
        with self._cond:
            self._replies.append(json.loads(message.payload))
            self._cond.notify_all()

    def _wait_reply(self, command_id: str | None, digest: str, timeout: float) -> dict | None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for reply in self._replies:
                    if (command_id is not None and reply.get("id") == command_id) or reply.get(
                        "payload_sha256"
                    ) == digest:
                        self._replies.remove(reply)
                        return reply
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)

    def ready(self, timeout: float = 30.0) -> None:
        """Wait until the gateway answers (an unsigned probe: refused, but answered)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            probe = json.dumps({"probe": uuid.uuid4().hex}).encode()
            self.client.publish(f"{self.prefix}/down/command", probe, qos=1)
            if self._wait_reply(None, hashlib.sha256(probe).hexdigest(), 2.0) is not None:
                return
        raise AssertionError("the gateway did not answer")

    def send(self, payload: bytes, command_id: str | None = None, timeout: float = 20.0) -> dict:
        """Publish once and wait for the gateway's answer to exactly this payload."""
        self.client.publish(f"{self.prefix}/down/command", payload, qos=1)
        reply = self._wait_reply(command_id, hashlib.sha256(payload).hexdigest(), timeout)
        assert reply is not None, "the gateway did not answer"
        return reply

    def signed(
        self,
        command_type: str,
        args: dict[str, Any] | None = None,
        *,
        command_id: str | None = None,
        key: Ed25519PrivateKey = REGULATOR,
        gateway: str | None = None,
        issued_at: int | None = None,
        ttl: int = 300,
    ) -> tuple[str, bytes]:
        """(id, payload) of a signed command."""
        command_id = command_id or uuid.uuid4().hex
        issued = int(time.time()) - 5 if issued_at is None else issued_at
        envelope = sign_command(
            key,
            gateway=gateway or self.gateway_id,
            command_id=command_id,
            command_type=command_type,
            args=args or {},
            issued_at=issued,
            expires_at=issued + ttl,
        )
        return command_id, json.dumps(envelope, ensure_ascii=False).encode()

    def command(self, command_type: str, args: dict[str, Any] | None = None, **kw: Any) -> dict:
        """Sign, send once, return the reply."""
        command_id, payload = self.signed(command_type, args, **kw)
        return self.send(payload, command_id)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        self.client.on_message = None  # break the cycle so paho's sockets close now


def write_config(path: Path, data: dict[str, Any]) -> None:
    path.write_text(yaml.safe_dump(data, allow_unicode=True))


def unique_tag(prefix: str) -> str:
    return f"{prefix}{os.getpid()}{uuid.uuid4().hex[:6]}"


@contextlib.contextmanager
def running_site(mosquitto, mosquitto_factory, tmp_path: Path, prefix: str) -> Iterator[dict]:
    """A gateway process on ``mosquitto`` with an MQTT uplink to its own cloud broker, and a
    regulator-side :class:`Cloud` client on that broker."""
    cloud_broker = mosquitto_factory()
    tag = unique_tag(prefix)
    data = gateway_data(tmp_path / "g.db", mosquitto.port, cloud_broker.port, tag)
    config_path = tmp_path / "gateway.yaml"
    write_config(config_path, data)
    process = GatewayProcess(config_path, tmp_path / "gateway.log")
    process.start()
    cloud = Cloud(cloud_broker.port, tag)
    try:
        cloud.ready()
        yield {"data": data, "path": config_path, "db": tmp_path / "g.db", "cloud": cloud,
               "process": process}  # fmt: skip
    finally:
        cloud.close()
        process.stop()

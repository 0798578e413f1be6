"""Tools of an attacker (and of an honest gateway): signed records, a receiver process.

:class:`Signer` makes protocol records exactly as the gateway's outbox does (envelope,
SHA-256, Ed25519), with any key, seq, prev or clock. :class:`CloudProcess` runs the
reference receiver as `offsite-edge cloud` in its own process (HTTPS, bearer token, a real
broker) and talks to it like a regulator's client and like a gateway's uplink.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID
from mosquitto import free_port
from mqtt_tools import publish_all

from cloud_sync.chain import GENESIS, public_key_hex, record_hash, sign_hash

PROC = Path(__file__).parent / "cloud_sync" / "receiver_proc.py"
ROOT = Path(__file__).resolve().parents[1]


class Signer:
    """Makes signed records for ``gateway`` with ``key``."""

    def __init__(self, gateway: str, key: Ed25519PrivateKey | None = None) -> None:
        self.gateway = gateway
        self.key = key or Ed25519PrivateKey.generate()

    @property
    def public_hex(self) -> str:
        """The public key, as `offsite-edge identity` prints it."""
        return public_key_hex(self.key.public_key())

    def record(
        self,
        seq: int,
        prev: str,
        *,
        cls: str = "event",
        body: dict[str, Any] | None = None,
        created_at: float | None = None,
        gateway: str | None = None,
    ) -> dict[str, Any]:
        """One signed record."""
        record: dict[str, Any] = {
            "gateway": gateway or self.gateway,
            "seq": seq,
            "id": str(uuid.uuid4()),
            "class": cls,
            "created_at": time.time() if created_at is None else created_at,
            "clock_synced": True,
            "body": body or {"type": "event", "kind": "note", "detail": {"seq": seq}},
            "prev": prev,
        }
        record["hash"] = record_hash(record)
        record["sig"] = sign_hash(self.key, record["hash"])
        return record

    def chain(
        self,
        count: int,
        *,
        start: int = 1,
        prev: str = GENESIS,
        t0: float | None = None,
        step_s: float = 1.0,
        cls: str = "event",
    ) -> list[dict[str, Any]]:
        """``count`` linked records from ``start`` (after ``prev``), ``step_s`` apart."""
        base = time.time() - 3600 if t0 is None else t0
        out = []
        for i in range(count):
            out.append(
                self.record(start + i, prev, cls=cls, created_at=base + (start + i) * step_s)
            )
            prev = out[-1]["hash"]
        return out


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A self-signed server certificate for 127.0.0.1 and its key (PEM files)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


def batch(gateway: str, records: list[dict[str, Any]]) -> bytes:
    """An uplink batch (MQTT payload, HTTPS body)."""
    return json.dumps({"gateway": gateway, "records": records}).encode()


class CloudProcess:
    """`offsite-edge cloud` over HTTPS with a bearer token, subscribed to ``broker``."""

    token = "regulator-token-1"

    def __init__(self, tmp_path: Path, broker: Any, cert: Path, key: Path) -> None:
        self.db = tmp_path / "cloud.db"
        self.broker = broker
        self.mqtt_port = broker.port
        self.cert, self.key = cert, key
        self.port = free_port()
        self.stderr = tmp_path / "cloud.log"
        (tmp_path / "token").write_text(self.token + "\n")
        self.token_file = tmp_path / "token"
        self.process: subprocess.Popen[bytes] | None = None
        self.context = ssl.create_default_context(cafile=str(cert))

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run a receiver CLI command to completion (e.g. ``cloud register``)."""
        return subprocess.run(
            [sys.executable, str(PROC), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=ROOT,
        )

    def start(self, *extra: str, subscribed: bool = True) -> CloudProcess:
        """Start the receiver; wait until /health answers and its MQTT intake is subscribed.

        A message published before the receiver's subscription is confirmed is not kept
        for it (a new session), so tests publish only after ``subscribed``; pass
        ``subscribed=False`` when the broker is meant to be unreachable or refusing.
        """
        args = [
            sys.executable, str(PROC), "cloud", "--db", str(self.db),
            "--mqtt-host", "127.0.0.1", "--mqtt-port", str(self.mqtt_port),
            "--http-port", str(self.port), "--tls-cert", str(self.cert),
            "--tls-key", str(self.key), "--token-file", str(self.token_file), *extra,
        ]  # fmt: skip
        with self.stderr.open("ab") as log:
            self.process = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=dict(os.environ)
            )
        self.wait_health("subscribed" if subscribed else None)
        return self

    def wait_health(self, mqtt: str | None = None, timeout: float = 20.0) -> dict[str, Any]:
        """Wait until /health answers (and reports the MQTT intake ``mqtt``); its body."""
        deadline = time.monotonic() + timeout
        health: dict[str, Any] = {}
        while time.monotonic() < deadline:
            assert self.process is not None
            assert self.process.poll() is None, self.log()[-3000:]
            try:
                status, _, health = self.request("GET", "/health", token=None)
            except OSError:
                status = 0
            if status == 200 and (mqtt is None or health.get("mqtt") == mqtt):
                return health
            time.sleep(0.1)
        raise AssertionError(f"receiver health not reached in time (mqtt={mqtt}): {health}")

    def stop(self) -> None:
        """SIGTERM, then wait (the receiver shuts down cleanly)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)
        self.process = None

    def log(self) -> str:
        """What the receiver logged so far."""
        return self.stderr.read_text(errors="replace")

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        *,
        token: str | None = "default",
        headers: dict[str, str] | None = None,
    ) -> tuple[int, str, Any]:
        """(status, reason phrase, decoded JSON body) of one HTTPS request."""
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        if token is not None:
            hdrs["Authorization"] = f"Bearer {self.token if token == 'default' else token}"
        url = f"https://127.0.0.1:{self.port}{path}"
        request = urllib.request.Request(url, data=body, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(request, timeout=20, context=self.context) as response:
                return response.status, response.reason, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, exc.reason, json.loads(exc.read() or b"null")

    def get(self, path: str) -> Any:
        """GET an API path with the token; must answer 200."""
        status, _, body = self.request("GET", path)
        assert status == 200, (status, body)
        return body

    def chain(self, gateway: str) -> dict[str, Any]:
        """The verdict on one gateway."""
        return dict(self.get(f"/api/chain?gateway={gateway}")[gateway])

    def post(self, gateway: str, records: list[dict[str, Any]]) -> tuple[int, Any]:
        """POST a batch like the HTTPS uplink."""
        status, _, body = self.request("POST", "/v1/records", batch(gateway, records))
        return status, body

    def publish(
        self, gateway: str, records: list[dict[str, Any]], *, topic_gateway: str | None = None
    ) -> None:
        """Publish one record per message on ``offsite/<gateway>/up/<class>`` (QoS 1)."""
        publish_all(
            "127.0.0.1",
            self.broker.port,
            [
                (f"offsite/{topic_gateway or gateway}/up/{r.get('class', 'event')}",
                 batch(gateway, [r]))
                for r in records
            ],
        )  # fmt: skip

    def publish_raw(self, topic: str, payload: bytes) -> None:
        """Publish any payload (QoS 1)."""
        publish_all("127.0.0.1", self.broker.port, [(topic, payload)])

    def seen(self, gateway: str) -> int:
        """Records admitted + duplicates + rejected for ``gateway`` so far."""
        for g in self.get("/api/gateways"):
            if g["gateway"] == gateway:
                return int(g["records"]) + int(g["duplicates"]) + int(g["rejected"])
        return 0

    def wait_seen(self, gateway: str, count: int, timeout: float = 20.0) -> None:
        """Wait until the receiver has handled ``count`` records of ``gateway``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.seen(gateway) >= count:
                return
            time.sleep(0.1)
        raise AssertionError(f"receiver saw {self.seen(gateway)} of {count} records in time")

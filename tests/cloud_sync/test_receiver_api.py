"""The receiver's HTTP API and MQTT client, as a separate process: who may ask, how much.

Authentication (operator and per-gateway bearer tokens, health without), bounded pages
and bodies, per-record
reasons on rejection, the HTTPS uplink counting only what the receiver names accepted,
keys registered on a running receiver, MQTT over TLS with a password, broker outages logged.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from http import HTTPStatus
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from cloud_forge import PROC, CloudProcess, Signer, batch, self_signed
from mosquitto import free_port
from paho.mqtt.enums import CallbackAPIVersion

from cloud_sync.config import CloudConfig
from cloud_sync.sync import CloudSync, make_outbox
from edge.store import Store

from .conftest import alarm, gateway_key_hex

pytestmark = pytest.mark.timeout(120)

GW = "gw-api"


@pytest.fixture
def gateway() -> Signer:
    """A gateway whose key is registered."""
    return Signer(GW)


@pytest.fixture
def cloud(
    mosquitto_factory: Callable[..., Any], tmp_path: Path, gateway: Signer
) -> Iterator[CloudProcess]:
    """The receiver process with a 4 KiB body limit and ``gateway`` registered."""
    cert, key = self_signed(tmp_path)
    proc = CloudProcess(tmp_path, mosquitto_factory(), cert, key)
    proc.start("--max-body", "4096", "--trust", f"{GW}={gateway.public_hex}")
    try:
        yield proc
    finally:
        proc.stop()


def wait_log(proc: CloudProcess, text: str, timeout: float = 20.0) -> None:
    """Wait until the receiver logged ``text``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in proc.log():
            return
        time.sleep(0.1)
    raise AssertionError(f"receiver never logged {text!r}: {proc.log()[-2000:]}")


def test_everything_but_health_needs_the_token(cloud: CloudProcess):
    assert cloud.request("GET", "/health", token=None)[:2] == (200, "OK")
    for path in ("/api/chain", "/api/records", "/api/gateways", "/api/rejected"):
        assert cloud.request("GET", path, token=None)[:2] == (401, "Unauthorized")
        assert cloud.request("GET", path, token="guess")[0] == 401
    status, _, _ = cloud.request("POST", "/v1/records", batch(GW, []), token=None)
    assert status == 401
    assert cloud.request("GET", "/api/chain")[0] == 200


def test_pages_and_bodies_are_bounded(cloud: CloudProcess, gateway: Signer):
    for query in ("limit=-1", "limit=0", "limit=1001", "limit=abc", "after=-5"):
        status, reason, body = cloud.request("GET", f"/api/records?{query}")
        assert (status, reason) == (400, "Bad Request"), query
        assert body["error"]
    assert cloud.post(GW, gateway.chain(3))[0] == 200
    assert len(cloud.get("/api/records?limit=2")) == 2
    big = batch(GW, [gateway.record(9, "0" * 64, body={"type": "x", "pad": "y" * 5000})])
    status, reason, body = cloud.request("POST", "/v1/records", big)
    # The phrase of RFC 9110 since Python 3.13 ("Request Entity Too Large" before).
    assert (status, reason) == (413, HTTPStatus(413).phrase)
    assert cloud.request("GET", "/v1/records")[:2] == (405, "Method Not Allowed")
    assert cloud.request("GET", "/nowhere")[:2] == (404, "Not Found")
    status, _, body = cloud.request("POST", "/v1/records", b'{"records": []}')
    assert status == 400
    assert "gateway" in body["error"]


def test_rejected_records_get_a_422_with_a_reason_each(cloud: CloudProcess, gateway: Signer):
    good = gateway.chain(1)[0]
    no_seq = dict(gateway.chain(2)[1], seq="abc")
    forged = Signer(GW).record(2, good["hash"])
    other = gateway.record(2, good["hash"], gateway="gw-elsewhere")
    status, _, body = cloud.request("POST", "/v1/records", batch(GW, [good, no_seq, forged, other]))
    assert status == 422
    assert body["accepted"] == [good["id"]]
    reasons = {r["id"]: r["reason"] for r in body["rejected"]}
    assert reasons[no_seq["id"]] == "schema: seq: not a positive integer"
    assert reasons[forged["id"]].startswith("bad_signature:")
    assert reasons[other["id"]].startswith("gateway_mismatch:")


def test_https_uplink_delivers_only_what_the_receiver_names_accepted(
    mosquitto_factory: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = self_signed(tmp_path)
    proc = CloudProcess(tmp_path, mosquitto_factory(), cert, key).start()
    monkeypatch.setenv("OFFSITE_TEST_CLOUD_TOKEN", proc.token)
    try:
        asyncio.run(_uplink_until_registered(proc, tmp_path, cert))
    finally:
        proc.stop()


async def _uplink_until_registered(proc: CloudProcess, tmp_path: Path, cert: Path) -> None:
    cloud = CloudConfig.model_validate(
        {
            "uplinks": [
                {
                    "type": "https",
                    "name": "web",
                    "url": f"https://127.0.0.1:{proc.port}/v1/records",
                    "tls": {"enabled": True, "ca_file": str(cert)},
                    "token_env": "OFFSITE_TEST_CLOUD_TOKEN",
                }
            ],
            "backoff": {"initial_s": 0.1, "max_s": 0.3},
            "outbox": {"status_interval_s": 3600},
        }
    )
    db = tmp_path / "gw.db"
    outbox = make_outbox("gw-up", cloud, db)
    async with await Store.open(db, hook=outbox) as store:
        stop = asyncio.Event()
        sync = CloudSync(store, outbox, cloud)
        task = asyncio.create_task(sync.run(stop))
        try:
            for n in range(3):
                await store.emit(alarm(n))
            # Not registered yet: every POST is answered 422 and nothing is delivered.
            await _until(lambda: len(proc.get("/api/rejected?gateway=gw-up")) >= 8)
            assert sync.delivered.get("web", 0) == 0
            assert (await store.run(outbox.backlog))["web"]["alarm"] == 3
            done = await asyncio.to_thread(
                proc.cli, "cloud", "register", "--db", str(proc.db), "--gateway", "gw-up",
                "--public-key", gateway_key_hex(tmp_path),
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
            # The three alarms and the gateway's start status record.
            await _until(lambda: sync.delivered.get("web", 0) >= 4)
            verdict = proc.chain("gw-up")
            assert verdict["records"] == 4, verdict
            assert verdict["verdict"] == "ok", verdict
            assert verdict["rejected"]["unregistered"] >= 8
        finally:
            stop.set()
            await task


async def _until(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await asyncio.to_thread(predicate):
            return
        await asyncio.sleep(0.1)
    raise AssertionError("condition not reached in time")


def test_register_refuses_a_different_key_without_replace(cloud: CloudProcess):
    other = Signer(GW).public_hex
    done = cloud.cli("cloud", "register", "--db", str(cloud.db), "--gateway", GW,
                     "--public-key", other)  # fmt: skip
    assert done.returncode == 2
    assert "a different key is already registered" in done.stderr
    bad = cloud.cli("cloud", "register", "--db", str(cloud.db), "--gateway", "g2",
                    "--public-key", "xyz")  # fmt: skip
    assert bad.returncode == 2
    assert "64 hex digits" in bad.stderr


def test_receiver_without_authentication_does_not_start(tmp_path: Path):
    done = subprocess.run(
        [sys.executable, str(PROC), "cloud", "--db", str(tmp_path / "c.db"), "--http-port", "0"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "needs authentication" in done.stderr


def test_broker_outage_is_logged_and_recovered(
    mosquitto_factory: Callable[..., Any], tmp_path: Path, gateway: Signer
):
    broker = mosquitto_factory()
    broker.stop()
    cert, key = self_signed(tmp_path)
    proc = CloudProcess(tmp_path, broker, cert, key)
    proc.start("--trust", f"{GW}={gateway.public_hex}", subscribed=False)
    try:
        wait_log(proc, f"cloud broker unreachable broker=127.0.0.1:{broker.port}")
        assert proc.wait_health()["mqtt"] == "connecting"
        broker.start()
        wait_log(proc, "receiver connected")
        proc.wait_health("subscribed")  # publishing before the SUBACK would lose messages
        proc.publish(GW, gateway.chain(2))
        proc.wait_seen(GW, 2)
    finally:
        proc.stop()


def test_mqtt_over_tls_with_a_password(
    mosquitto_factory: Callable[..., Any],
    tmp_path: Path,
    gateway: Signer,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
):
    cert, key = self_signed(tmp_path)
    # mosquitto drops root for its own user: its files must be readable outside tmp_path.
    shared = Path(tempfile.mkdtemp(prefix="offsite-mqtt-auth-"))
    shared.chmod(0o755)
    request.addfinalizer(lambda: shutil.rmtree(shared, ignore_errors=True))
    for path in (cert, key):
        (shared / path.name).write_bytes(path.read_bytes())
        (shared / path.name).chmod(0o644)
    passwords = shared / "passwd"
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(passwords), "cloud", "s3cret"], check=True,
        capture_output=True, timeout=30,
    )  # fmt: skip
    passwords.chmod(0o644)
    tls_port = free_port()
    broker = mosquitto_factory(
        f"password_file {passwords}\nallow_anonymous false\n"
        f"listener {tls_port} 127.0.0.1\ncertfile {shared / cert.name}\n"
        f"keyfile {shared / key.name}\n"
    )
    monkeypatch.setenv("OFFSITE_TEST_MQTT_PW", "wrong")
    proc = CloudProcess(tmp_path, broker, cert, key)
    proc.mqtt_port = tls_port
    tls = ("--mqtt-ca", str(cert), "--mqtt-username", "cloud")
    proc.start(*tls, "--mqtt-password-env", "OFFSITE_TEST_MQTT_PW", subscribed=False)
    try:
        wait_log(proc, "cloud broker refused the receiver")
    finally:
        proc.stop()
    monkeypatch.setenv("OFFSITE_TEST_MQTT_PW", "s3cret")
    proc.start(*tls, "--mqtt-password-env", "OFFSITE_TEST_MQTT_PW", "--trust",
               f"{GW}={gateway.public_hex}")  # fmt: skip
    try:
        wait_log(proc, "receiver connected")
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-tls-pub")
        client.username_pw_set("cloud", "s3cret")
        client.connect("127.0.0.1", broker.port)
        client.loop_start()
        infos = [
            client.publish(f"offsite/{GW}/up/event", batch(GW, [r]), qos=1)
            for r in gateway.chain(2)
        ]
        for info in infos:
            info.wait_for_publish(10)
        client.disconnect()
        client.loop_stop()
        proc.wait_seen(GW, 2)
        assert proc.chain(GW)["verdict"] == "ok"
    finally:
        proc.stop()


def test_uplink_counts_as_delivered_only_the_ids_the_response_names():
    from cloud_sync.https_uplink import accepted_seqs
    from cloud_sync.outbox import OutRecord

    records = [OutRecord(seq, f"id-{seq}", "alarm", 0.0, False, {}, "{}") for seq in (1, 2, 3)]
    assert accepted_seqs(records, b'{"accepted": ["id-1", "id-3", "id-9"]}') == [1, 3]
    for body in (b"", b"OK", b"{}", b'{"accepted": 3}', b"[1]", b'{"accepted": [null, 2]}'):
        assert accepted_seqs(records, body) == [], body


def _issued_token(stdout: str, gateway: str) -> str:
    lines = [line for line in stdout.splitlines() if line.startswith(f"{gateway}: HTTPS token")]
    assert len(lines) == 1, stdout
    return lines[0].rsplit(" ", 1)[1]


def test_a_gateway_token_posts_only_its_own_records_and_reads_nothing(
    cloud: CloudProcess, gateway: Signer
):
    other = Signer("gw-own")
    done = cloud.cli("cloud", "register", "--db", str(cloud.db), "--gateway", "gw-own",
                     "--public-key", other.public_hex)  # fmt: skip
    assert done.returncode == 0, done.stderr
    token = _issued_token(done.stdout, "gw-own")
    # Only a hash is stored.
    with closing(sqlite3.connect(cloud.db)) as db:
        assert token not in str(db.execute("SELECT * FROM gateway_tokens").fetchall())
    own = other.chain(2)
    status, _, body = cloud.request("POST", "/v1/records", batch("gw-own", own), token=token)
    assert status == 200, body
    assert body["accepted"] == [r["id"] for r in own]
    # Another gateway's batch, and the API, are refused with a reason.
    status, reason, body = cloud.request(
        "POST", "/v1/records", batch(GW, gateway.chain(1)), token=token
    )
    assert (status, reason) == (403, "Forbidden")
    assert "may not send for 'gw-api'" in body["error"]
    for path in ("/api/chain", "/api/records", "/api/gateways", "/api/rejected"):
        status, _, body = cloud.request("GET", path, token=token)
        assert status == 403, path
        assert "only POST its own records" in body["error"]
    assert cloud.chain("gw-own")["records"] == 2
    assert cloud.chain(GW)["records"] == 0
    # Registering again shows no token; --new-token replaces it (the old one stops at once).
    again = cloud.cli("cloud", "register", "--db", str(cloud.db), "--gateway", "gw-own",
                      "--public-key", other.public_hex)  # fmt: skip
    assert "already registered" in again.stdout
    assert "HTTPS token" not in again.stdout
    renewed = cloud.cli("cloud", "register", "--db", str(cloud.db), "--gateway", "gw-own",
                        "--public-key", other.public_hex, "--new-token")  # fmt: skip
    new_token = _issued_token(renewed.stdout, "gw-own")
    more = other.chain(3)[2:]
    assert cloud.request("POST", "/v1/records", batch("gw-own", more), token=token)[0] == 401
    assert cloud.request("POST", "/v1/records", batch("gw-own", more), token=new_token)[0] == 200


def test_a_chunked_body_is_taken_and_bounded_like_any_other(cloud: CloudProcess, gateway: Signer):
    def post_chunked(body: bytes) -> tuple[int, Any]:
        conn = http.client.HTTPSConnection(
            "127.0.0.1", cloud.port, context=cloud.context, timeout=20
        )
        try:
            conn.request(
                "POST",
                "/v1/records",
                body=iter([body[: len(body) // 2], body[len(body) // 2 :]]),
                headers={
                    "Authorization": f"Bearer {cloud.token}",
                    "Content-Type": "application/json",
                },
                encode_chunked=True,
            )
            response = conn.getresponse()
            return response.status, json.loads(response.read())
        finally:
            conn.close()

    records = gateway.chain(2)
    status, body = post_chunked(batch(GW, records))
    assert status == 200, body
    assert body["accepted"] == [r["id"] for r in records]
    big = batch(GW, [gateway.record(3, records[-1]["hash"], body={"type": "x", "pad": "y" * 9000})])
    status, body = post_chunked(big)
    assert status == 413
    assert body["error"] == "body larger than 4096 bytes"
    assert cloud.chain(GW)["records"] == 2

"""`offsite-edge identity rotate`: a signed key_rotation record hands the chain to a new key.

The gateway database and key files are real (SQLite through the store's writer, 0600 PEM
files); the rotation runs as the real CLI process, or in a process killed with SIGKILL
right after one of its steps, and the next start (``load_or_create_key`` with the
database, as the gateway does under its lock) must reconcile: never the old key lost
before the record is committed, never the new key used before it. The chain is then
verified by the reference receiver: its own process fed over the real broker and HTTPS,
or its store in-process for the many crash cases.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cloud_forge import ROOT, CloudProcess, self_signed
from helpers import cli, gateway_dict

import cloud_sync.key_rotation as key_rotation
from cloud_sync.chain import public_key_from_hex, public_key_hex, verify_signature
from cloud_sync.config import CloudConfig
from cloud_sync.identity import (
    RetiredKeyError,
    committed_rotation,
    load_or_create_key,
    next_key_path,
    read_key,
    reconcile_rotation,
)
from cloud_sync.key_rotation import rotate
from cloud_sync.receiver_store import ReceiverDB
from cloud_sync.sync import make_outbox
from edge.app.lock import GatewayLock
from edge.store import Store

pytestmark = pytest.mark.timeout(120)

GW = "gw-rotate"

# Runs rotate() in its own process and SIGKILLs it right after the named step.
KILL_AT = """
import os, signal, sys
from pathlib import Path
from cloud_sync.key_rotation import rotate
from cloud_sync.sync import key_path
from edge.app.config_file import load_config

config = load_config(sys.argv[1])
def step(name):
    if name == sys.argv[2]:
        os.kill(os.getpid(), signal.SIGKILL)
rotate(key_path(config.cloud, config.store.path), config.store.path, config.gateway.id,
       config.cloud, step=step)
"""


class Site:
    """A gateway's config file, database and key file in ``directory``."""

    def __init__(self, directory: Path, mqtt_port: int = 1883) -> None:
        self.db = directory / "gateway.db"
        self.key = directory / "gateway.key"
        cloud = {
            "uplinks": [
                {
                    "type": "mqtt",
                    "name": "cloud",
                    "host": "127.0.0.1",
                    "port": mqtt_port,
                    "tls": {"enabled": False},
                }
            ],
            "outbox": {"status_interval_s": 3600},
        }
        self.cloud = CloudConfig.model_validate(cloud)
        self.config = directory / "gateway.yaml"
        # JSON is YAML: the file a technician would write.
        self.config.write_text(json.dumps(gateway_dict(self.db, gateway_id=GW, cloud=cloud)))

    def start_key(self) -> str:
        """Load the key as the gateway does at start (reconciling); its public key."""
        return public_key_hex(load_or_create_key(self.key, db_path=self.db).public_key())

    def append(self, count: int) -> None:
        """``count`` event records through the outbox, signed with the key file's key."""

        async def run() -> None:
            outbox = make_outbox(GW, self.cloud, self.db)
            async with await Store.open(self.db, hook=outbox) as store:
                items = [("event", {"type": "event", "kind": "note", "n": n}) for n in range(count)]
                await store.run(lambda db: outbox.put_bodies(db, items, time.time(), True))

        asyncio.run(run())

    def records(self) -> list[dict[str, Any]]:
        """Every pending record of the ``cloud`` uplink, as its wire JSON, by seq."""

        async def run() -> list[dict[str, Any]]:
            outbox = make_outbox(GW, self.cloud, self.db)
            async with await Store.open(self.db) as store:
                out = await store.run(lambda db: outbox.pop(db, "cloud", 10_000))
            return sorted((json.loads(r.wire) for r in out), key=lambda r: r["seq"])

        return asyncio.run(run())

    def rotations(self) -> list[dict[str, Any]]:
        """The key_rotation records in the outbox."""
        return [r for r in self.records() if r["body"]["type"] == "key_rotation"]


def receiver_verdict(directory: Path, registered: str, records: list[dict[str, Any]]) -> Any:
    """The reference receiver's verdict on ``records`` with ``registered`` as the key."""
    db = ReceiverDB(directory / "cloud.db", {GW: registered})
    try:
        results = db.ingest(records, "mqtt", gateway=GW)
        assert [r.status for r in results] == ["accepted"] * len(records), results
        return db.verify(GW)
    finally:
        db.close()


@pytest.fixture
def site(tmp_path: Path) -> Site:
    """A gateway with a key and three signed records."""
    s = Site(tmp_path)
    s.start_key()
    s.append(3)
    return s


@pytest.fixture
def cloud(mosquitto_factory: Callable[..., Any], tmp_path: Path) -> Iterator[CloudProcess]:
    """A receiver process on its own broker (not started: keys are registered first)."""
    work = tmp_path / "cloud"
    work.mkdir()
    cert, key = self_signed(work)
    proc = CloudProcess(work, mosquitto_factory(), cert, key)
    try:
        yield proc
    finally:
        proc.stop()


def test_rotate_cli_then_receiver_over_broker_and_https_reports_one_rotation(
    tmp_path: Path, cloud: CloudProcess
):
    (tmp_path / "gw").mkdir()
    site = Site(tmp_path / "gw", cloud.mqtt_port)
    shown = cli("identity", "--config", str(site.config))
    assert shown.returncode == 0, shown.stderr
    old = shown.stdout.split("public key (Ed25519, hex) ")[1].split()[0]
    registered = cloud.cli("cloud", "register", "--db", str(cloud.db), "--gateway", GW,
                           "--public-key", old)  # fmt: skip
    assert registered.returncode == 0, registered.stderr
    site.append(4)

    done = cli("identity", "rotate", "--config", str(site.config))
    assert done.returncode == 0, done.stderr
    new = done.stdout.split("new public key (Ed25519, hex) ")[1].split()[0]
    assert new != old
    assert f"old public key (retired) {old}" in done.stdout
    assert "signed with the old key, queued for: cloud" in done.stdout
    assert "do NOT run `cloud register --replace`" in done.stdout
    assert public_key_hex(read_key(site.key).public_key()) == new
    assert (site.key.stat().st_mode & 0o777) == 0o600
    assert not next_key_path(site.key).exists()
    site.append(4)  # signed with the new key from here on

    records = site.records()
    assert [r["seq"] for r in records] == list(range(1, 10))
    [rotation] = [r for r in records if r["body"]["type"] == "key_rotation"]
    assert rotation["seq"] == 5
    assert rotation["body"]["new_public_key"] == new
    for r in records:  # the rotation record itself is signed with the old key
        signer = new if r["seq"] > rotation["seq"] else old
        assert verify_signature(public_key_from_hex(signer), r["hash"], r["sig"]), r["seq"]

    cloud.start()
    # Alarms overtake: the records under the new key arrive over MQTT before the rotation.
    cloud.publish(GW, records[5:])
    cloud.wait_seen(GW, 4)
    status, body = cloud.post(GW, records[:5])
    assert status == 200, body
    cloud.wait_seen(GW, 9)
    verdict = cloud.chain(GW)
    assert verdict["verdict"] == "ok", verdict
    assert (verdict["records"], verdict["findings"], verdict["rejected"]) == (9, {}, {})
    assert [(r["seq"], r["new_public_key"]) for r in verdict["rotations"]] == [(5, new)]


def test_rotate_refuses_while_the_gateway_holds_its_lock(site: Site):
    before = site.records()
    key_bytes = site.key.read_bytes()
    with GatewayLock.acquire(site.db):  # what the running gateway holds
        done = cli("identity", "rotate", "--config", str(site.config))
    assert done.returncode == 2
    assert "stop the gateway service" in done.stderr
    assert site.key.read_bytes() == key_bytes
    assert not next_key_path(site.key).exists()
    assert [r["hash"] for r in site.records()] == [r["hash"] for r in before]
    assert committed_rotation(site.db) is None


@pytest.mark.parametrize(
    ("killed_after", "finished"),
    [("next_written", False), ("committed", True), ("swapped", True)],
)
def test_kill_9_at_each_step_then_the_next_start_reconciles(
    site: Site, tmp_path: Path, killed_after: str, finished: bool
):
    old = site.start_key()
    proc = subprocess.run(
        [sys.executable, "-c", KILL_AT, str(site.config), killed_after],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    pending = next_key_path(site.key)
    assert pending.exists() == (killed_after != "swapped")
    assert (committed_rotation(site.db) is not None) == finished
    if killed_after != "swapped":
        # The key file still holds the old key: nothing was lost, nothing swapped yet.
        assert public_key_hex(read_key(site.key).public_key()) == old
        # `identity` beside a (possibly running) gateway only reports it, changes nothing.
        shown = cli("identity", "--config", str(site.config))
        assert "interrupted key rotation" in shown.stdout
        assert pending.exists()

    now = site.start_key()  # the gateway's next start, under its lock
    assert not pending.exists()
    if finished:
        assert now == committed_rotation(site.db)["public_key"] != old  # type: ignore[index]
        assert [r["body"]["new_public_key"] for r in site.rotations()] == [now]
    else:
        assert now == old
        assert site.rotations() == []
    site.append(2)
    records = site.records()
    last = records[-1]
    assert verify_signature(public_key_from_hex(now), last["hash"], last["sig"])
    verdict = receiver_verdict(tmp_path, old, records)
    assert verdict.verdict == "ok", verdict.as_dict()
    assert len(verdict.rotations) == (1 if finished else 0)


def test_a_failed_commit_drops_the_new_key(site: Site, monkeypatch: pytest.MonkeyPatch):
    old = site.start_key()

    async def broken(*args: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(key_rotation, "write_meta", broken)
    with pytest.raises(OSError, match="disk full"):
        rotate(site.key, site.db, GW, site.cloud)
    assert not next_key_path(site.key).exists()
    assert site.rotations() == []  # rolled back with the meta value
    assert site.start_key() == old


def test_a_half_written_next_key_is_discarded(site: Site):
    old = site.start_key()
    pending = next_key_path(site.key)
    pending.write_bytes(b"-----BEGIN PRIVATE KEY-----\nMC4CAQAw")  # power cut mid-write
    pending.chmod(0o600)
    assert reconcile_rotation(site.key, site.db) == "discarded"
    assert not pending.exists()
    assert site.start_key() == old


def test_rotating_twice_chains_both_and_a_retired_key_is_refused(site: Site, tmp_path: Path):
    old = site.start_key()
    backup = site.key.read_bytes()
    first = rotate(site.key, site.db, GW, site.cloud)
    site.append(1)
    second = rotate(site.key, site.db, GW, site.cloud)
    site.append(1)
    assert first.old_public_key == old
    assert (second.old_public_key, second.seq) == (first.new_public_key, first.seq + 2)
    verdict = receiver_verdict(tmp_path, old, site.records())
    assert verdict.verdict == "ok", verdict.as_dict()
    assert [r["seq"] for r in verdict.rotations] == [first.seq, second.seq]

    # A restored backup of the first key must never sign again, nor may a lost new key
    # be replaced by the old one.
    site.key.write_bytes(backup)
    with pytest.raises(RetiredKeyError, match="not hold the key the chain was handed to"):
        site.start_key()
    with pytest.raises(RetiredKeyError):
        make_outbox(GW, site.cloud, site.db)
    site.key.unlink()
    with pytest.raises(RetiredKeyError, match="missing"):
        site.start_key()

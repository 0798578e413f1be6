"""Evidence end to end: a camera's violation snapshot reaches the regulator's receiver.

The real gateway (``run_gateway`` in its own thread, a camera replaying a real video file
through onnxruntime) raises a violation; its snapshot travels over a real mosquitto (MQTT
chunks) or over HTTPS (TLS, the gateway's own token) into the reference receiver running
with the :class:`~cloud_sync.receiver_evidence.EvidenceVault` extension, which serves it
byte-identical. Only once the receiver confirmed it (a receipt signed with the regulator
key the gateway trusts, or the TLS response) does the quota delete it first.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import ssl
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from cloud_forge import self_signed
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from gateway_thread import GatewayThread
from helpers import gateway_config
from mqtt_tools import query
from paho.mqtt.enums import CallbackAPIVersion

from cloud_sync.chain import public_key_hex
from cloud_sync.evidence_receipt import sign_receipt
from cloud_sync.identity import load_or_create_key
from cloud_sync.outbox_view import evidence_delivered
from cloud_sync.receiver import Receiver, ReceiverConfig
from cloud_sync.receiver_evidence import EvidenceVault
from vision.config import EvidenceConfig
from vision.evidence import EvidenceStore
from vision.synthetic import demo_config, write_demo_assets

pytestmark = pytest.mark.timeout(240)

TOKEN = "evidence-api-token"
REGULATOR = Ed25519PrivateKey.generate()


class Receipts:
    """How the vault publishes its receipts in this test: a client on the cloud broker.

    While ``hold`` is set, receipts are kept back (the receiver has the snapshot but has
    not said so yet).
    """

    def __init__(self, port: int) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="evidence-receipts")
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.hold = True
        self.held: list[tuple[str, bytes]] = []

    def __call__(self, topic: str, payload: bytes) -> None:
        if self.hold:
            self.held.append((topic, payload))
        else:
            self.client.publish(topic, payload, qos=1)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@contextlib.asynccontextmanager
async def receiver(tmp_path: Path, vault: EvidenceVault, **kw: Any) -> AsyncIterator[Receiver]:
    key = load_or_create_key(tmp_path / "gateway.key")  # the gateway's, beside gw.db
    trust = dict.fromkeys(("gw-1", "gw-h"), public_key_hex(key.public_key()))
    config = ReceiverConfig(db=tmp_path / "cloud.db", trust=trust, token=TOKEN, **kw)
    running = Receiver(config, extensions=[vault])
    stop = asyncio.Event()
    task = asyncio.create_task(running.run(stop))
    await asyncio.wait_for(running.ready.wait(), 20)
    try:
        yield running
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


def _gateway(tmp_path: Path, broker_port: int, gateway_id: str, uplink: dict[str, Any]) -> Any:
    assets = tmp_path / "assets"
    assets.mkdir()
    model, clip = write_demo_assets(assets)
    cloud = {
        "uplinks": [uplink],
        "backoff": {"initial_s": 0.1, "max_s": 0.5},
        "outbox": {"status_interval_s": 3600},
        "regulator_keys": [
            {"name": "bureau", "public_key": public_key_hex(REGULATOR.public_key())}
        ],
    }
    config = gateway_config(
        tmp_path / "gw.db", port=broker_port, gateway_id=gateway_id, cloud=cloud
    )
    return config.model_copy(update={"vision": demo_config(model, clip)})


def _get(url: str, context: ssl.SSLContext | None = None) -> bytes:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=10, context=context) as response:
        return bytes(response.read())


async def _listed(base: str, gateway: str, context: ssl.SSLContext | None = None) -> list[Any]:
    body = await asyncio.to_thread(_get, f"{base}/api/evidence?gateway={gateway}", context)
    return list(json.loads(body)["evidence"])


async def _until(predicate: Any, timeout: float = 90.0) -> Any:
    """Await ``predicate()`` (a coroutine function) until it returns something truthy."""
    async with asyncio.timeout(timeout):
        while not (value := await predicate()):
            await asyncio.sleep(0.2)
    return value


def _snapshot_file(tmp_path: Path, sha: str) -> Path:
    return tmp_path / "evidence" / sha[:2] / f"{sha}.jpg"


def _attempts(db: Path, sha: str) -> int:
    rows = query(db, "SELECT attempts FROM evidence_uploads WHERE sha256 = ?", sha)
    return int(rows[0][0]) if rows else 0


def _quota(tmp_path: Path, db: Path) -> EvidenceStore:
    """The gateway's evidence quota over its snapshot directory, squeezed to nothing; the
    outbox (empty of alarms) lends room for every unconfirmed snapshot."""
    return EvidenceStore(
        EvidenceConfig(quota_mb=0.001),
        tmp_path / "evidence",
        is_delivered=evidence_delivered(db),
        borrow=lambda want: want,
    )


def test_snapshot_over_mqtt_is_served_and_deleted_only_after_a_signed_receipt(
    tmp_path, mosquitto_factory
):
    broker = mosquitto_factory()
    asyncio.run(_over_mqtt(tmp_path, broker.port))


async def _over_mqtt(tmp_path: Path, port: int) -> None:
    db = tmp_path / "gw.db"
    receipts = Receipts(port)
    vault = EvidenceVault(max_bytes=2 * 1024 * 1024, receipt_key=REGULATOR, publish=receipts)
    uplink = {
        "type": "mqtt",
        "name": "cloud",
        "host": "127.0.0.1",
        "port": port,
        "ack_timeout_s": 3,
        "tls": {"enabled": False},
    }
    config = _gateway(tmp_path, port, "gw-1", uplink)
    try:
        async with receiver(tmp_path, vault, mqtt_host="127.0.0.1", mqtt_port=port) as cloud:
            base = f"http://127.0.0.1:{cloud.http_port}"
            with GatewayThread(config):
                listed = await _until(lambda: _listed(base, "gw-1"))
                sha = listed[0]["sha256"]
                served = await asyncio.to_thread(_get, f"{base}/api/evidence/{sha}")
                local = _snapshot_file(tmp_path, sha)
                assert served == local.read_bytes()
                assert hashlib.sha256(served).hexdigest() == sha
                # the receiver knows which violation event it belongs to, and the gateway's
                # signed event record names the same hash
                opened = cloud.db.records(gateway="gw-1", body_type="event")
                bound = [r for r in opened if r["body"]["detail"].get("snapshot_sha256") == sha]
                assert [r["body"]["event_id"] for r in bound][:1] == [listed[0]["event_id"]]
                # the vault found that signed record: the picture is bound to the chain
                assert listed[0]["event_seq"] == bound[0]["seq"]
                # a receipt anyone on the broker could sign is ignored
                forged = sign_receipt(
                    Ed25519PrivateKey.generate(), gateway="gw-1", sha256=sha, size=len(served)
                )
                receipts.client.publish(
                    "offsite/gw-1/down/evidence", json.dumps(forged), qos=1
                ).wait_for_publish(5)
                # the first attempt ran out of time without a trusted receipt: still unconfirmed,
                # and the quota keeps the snapshot while it can
                await _until(lambda: asyncio.to_thread(lambda: _attempts(db, sha) >= 2))
                assert not evidence_delivered(db)(sha)
                assert await asyncio.to_thread(_quota(tmp_path, db).enforce_quota) == []
                assert local.exists()
                # the receiver's signed receipts now go out: confirmed, then deleted first
                receipts.hold = False
                await _until(lambda: asyncio.to_thread(evidence_delivered(db), sha))
                assert sha in await asyncio.to_thread(_quota(tmp_path, db).enforce_quota)
                assert not local.exists()
            # still served by the regulator's side
            again = await asyncio.to_thread(_get, f"{base}/api/evidence/{sha}")
            assert hashlib.sha256(again).hexdigest() == sha
    finally:
        receipts.close()


def test_snapshot_over_https_is_confirmed_by_the_tls_response(
    tmp_path, mosquitto_factory, monkeypatch
):
    broker = mosquitto_factory()  # the site broker the gateway's ingest needs
    asyncio.run(_over_https(tmp_path, broker.port, monkeypatch))


async def _over_https(tmp_path: Path, port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "gw.db"
    cert, key = self_signed(tmp_path)
    context = ssl.create_default_context(cafile=str(cert))
    vault = EvidenceVault(max_bytes=2 * 1024 * 1024)
    async with receiver(tmp_path, vault, tls_cert=cert, tls_key=key) as cloud:
        monkeypatch.setenv("OFFSITE_TEST_GATEWAY_TOKEN", cloud.db.issue_token("gw-h"))
        base = f"https://127.0.0.1:{cloud.http_port}"
        uplink = {
            "type": "https",
            "name": "web",
            "url": f"{base}/v1/records",
            "tls": {"enabled": True, "ca_file": str(cert)},
            "token_env": "OFFSITE_TEST_GATEWAY_TOKEN",
        }
        with GatewayThread(_gateway(tmp_path, port, "gw-h", uplink)):
            await _until(lambda: asyncio.to_thread(_delivered_any, db))
            (sha,) = [r[0] for r in query(db, "SELECT sha256 FROM evidence_uploads")]
            listed = await _listed(base, "gw-h", context)
            assert [(e["sha256"], e["via"]) for e in listed] == [(sha, "https")]
            served = await asyncio.to_thread(_get, f"{base}/api/evidence/{sha}", context)
            assert served == _snapshot_file(tmp_path, sha).read_bytes()
            assert sha in await asyncio.to_thread(_quota(tmp_path, db).enforce_quota)
        # a gateway token cannot read the vault, nor upload as another gateway
        other = cloud.db.issue_token("gw-1")
        request = urllib.request.Request(
            f"{base}/api/evidence/{sha}", headers={"Authorization": f"Bearer {other}"}
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            await asyncio.to_thread(urllib.request.urlopen, request, timeout=10, context=context)
        assert refused.value.code == 403
        refused.value.close()


def _delivered_any(db: Path) -> bool:
    # query() answers [] until the gateway's first start created the table
    return bool(query(db, "SELECT 1 FROM evidence_uploads WHERE confirmed_at IS NOT NULL"))


def test_evidence_quota_takes_minute_data_room_before_deleting_unconfirmed_snapshots(tmp_path):
    """The quota chain with real parts: snapshot store → budget → outbox in SQLite."""
    asyncio.run(_quota_chain(tmp_path))


async def _quota_chain(tmp_path: Path) -> None:
    import time

    import numpy as np

    from cloud_sync.config import OutboxConfig
    from cloud_sync.evidence_budget import EvidenceBudget
    from cloud_sync.outbox import Outbox, classes_of
    from edge.store import Store

    db = tmp_path / "gw.db"
    outbox = Outbox(
        gateway_id="gw-q",
        uplinks={"cloud": classes_of(None)},
        settings=OutboxConfig(quota_bytes=400_000),
    )
    async with await Store.open(db, hook=outbox) as store:
        minutes = [("minute", {"type": "minute", "n": n, "pad": "m" * 1000}) for n in range(300)]

        async def put(c: Any) -> None:
            await outbox.put_bodies(c, minutes, time.time(), True)

        await store.run(put)
        budget = EvidenceBudget(store, outbox, asyncio.get_running_loop())
        images = tmp_path / "evidence"
        snaps = EvidenceStore(
            EvidenceConfig(quota_mb=0.05, jpeg_quality=95),
            images,
            is_delivered=evidence_delivered(db),
            borrow=budget.borrow,
            on_lost=budget.lost,
        )
        rng = np.random.default_rng(7)

        def save(n: int) -> Any:
            image = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
            return snaps.save(image, [], highlight=None, caption=str(n))

        kept = [await asyncio.to_thread(save, n) for n in range(4)]
        # four unconfirmed snapshots over a 50 kB quota: all kept, minute data evicted instead
        assert all(s.path.exists() for s in kept)
        assert snaps.lent > 0
        gaps = query(db, "SELECT body FROM outbox WHERE json_extract(body, '$.type') = 'gap'")
        assert gaps
        assert json.loads(gaps[0][0])["counts"]["minute"] > 0
        assert not query(
            db, "SELECT 1 FROM outbox WHERE json_extract(body, '$.kind') = ?", "evidence_lost"
        )
        # keep saving until the outbox has no minute data left to give: only then do
        # unconfirmed snapshots go, each recorded by an evidence_lost event
        for n in range(4, 40):
            await asyncio.to_thread(save, n)
            if not kept[0].path.exists():
                break
        assert not kept[0].path.exists()
        assert query(db, "SELECT count(*) FROM outbox WHERE data_class = 'minute'") == [(0,)]
        lost = query(
            db,
            "SELECT json_extract(body, '$.detail.snapshots') FROM outbox"
            " WHERE json_extract(body, '$.kind') = 'evidence_lost'",
        )
        assert kept[0].sha256 in json.loads(lost[0][0])

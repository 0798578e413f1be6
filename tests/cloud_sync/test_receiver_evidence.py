"""The evidence vault inside a real receiver: verify, store, receipt, refuse with a reason, serve."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud_sync.chain import public_key_hex
from cloud_sync.envelope import trusted_keys
from cloud_sync.evidence_receipt import open_receipt
from cloud_sync.evidence_wire import ChunkHeader, chunk_messages
from cloud_sync.receiver import Receiver, ReceiverConfig
from cloud_sync.receiver_evidence import EvidenceVault

from .conftest import TOKEN, gateway_key_hex

pytestmark = pytest.mark.timeout(60)

REGULATOR = Ed25519PrivateKey.generate()
KEYS = trusted_keys([("bureau", public_key_hex(REGULATOR.public_key()))])
MAX = 200_000


def _jpeg(n: int, size: int = 150_000) -> bytes:
    return b"\xff\xd8\xff\xe0" + os.urandom(size - 4) + bytes([n])


@contextlib.asynccontextmanager
async def vault_in_receiver(tmp_path: Path) -> AsyncIterator[tuple[Receiver, EvidenceVault, list]]:
    sent: list[tuple[str, bytes]] = []
    vault = EvidenceVault(
        max_bytes=MAX, receipt_key=REGULATOR, publish=lambda t, p: sent.append((t, p))
    )
    trust = dict.fromkeys(("gw-1", "gw-2"), gateway_key_hex(tmp_path))
    receiver = Receiver(
        ReceiverConfig(db=tmp_path / "cloud.db", trust=trust, token=TOKEN), extensions=[vault]
    )
    stop = asyncio.Event()
    task = asyncio.create_task(receiver.run(stop))
    await asyncio.wait_for(receiver.ready.wait(), 10)
    try:
        yield receiver, vault, sent
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


def _call(
    port: int, path: str, *, method: str = "GET", body: bytes | None = None, token: str = TOKEN,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes]:  # fmt: skip
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=body,
        method=method,
        headers={"Authorization": f"Bearer {token}", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, bytes(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, bytes(exc.read())


def _receipt(sent: list[tuple[str, bytes]], gateway: str) -> Any:
    topic, payload = sent[-1]
    assert topic == f"offsite/{gateway}/down/evidence"
    return open_receipt(payload, gateway_id=gateway, keys=KEYS)


def test_mqtt_chunks_in_any_order_are_stored_once_and_receipted(tmp_path):
    async def main() -> None:
        async with vault_in_receiver(tmp_path) as (receiver, vault, sent):
            data = _jpeg(1)
            sha = hashlib.sha256(data).hexdigest()
            messages = list(chunk_messages(data, event_id="ev-1", chunk_bytes=40_000))
            for message in [messages[2], messages[0], messages[2], messages[3], messages[1]]:
                await vault.handle_mqtt("gw-1", "evidence", message)
            receipt = _receipt(sent, "gw-1")
            assert (receipt.accepted, receipt.sha256, receipt.size) == (True, sha, len(data))
            assert vault.path_of(sha).read_bytes() == data
            assert vault.path_of(sha).is_relative_to(tmp_path)
            # sent again (the gateway missed the receipt): one row, a second receipt
            for message in messages:
                await vault.handle_mqtt("gw-1", "evidence", message)
            assert len(sent) == 2
            # another gateway holding the same bytes is recorded for itself
            for message in messages:
                await vault.handle_mqtt("gw-2", "evidence", message)
            port = receiver.http_port
            status, body = await asyncio.to_thread(_call, port, "/api/evidence?gateway=gw-1")
            listed = json.loads(body)["evidence"]
            assert status == 200
            assert [(e["gateway"], e["sha256"], e["event_id"], e["via"]) for e in listed] == [
                ("gw-1", sha, "ev-1", "mqtt")
            ]
            status, image = await asyncio.to_thread(_call, port, f"/api/evidence/{sha}")
            assert (status, image) == (200, data)

    asyncio.run(main())


def test_bad_uploads_are_refused_with_a_reason_and_a_signed_refusal(tmp_path):
    async def main() -> None:
        async with vault_in_receiver(tmp_path) as (receiver, vault, sent):
            data = _jpeg(2)
            sha = hashlib.sha256(data).hexdigest()
            # a chunk altered on the way: the bytes do not hash to the name
            messages = list(chunk_messages(data, event_id=None, chunk_bytes=60_000))
            messages[1] = messages[1][:-1] + bytes([messages[1][-1] ^ 1])
            for message in messages:
                await vault.handle_mqtt("gw-1", "evidence", message)
            refusal = _receipt(sent, "gw-1")
            assert (refusal.accepted, refusal.reason) == (False, "hash_mismatch")
            assert not vault.path_of(sha).exists()
            # not a JPEG
            junk = b"GIF89a" + os.urandom(1000)
            for message in chunk_messages(junk, event_id=None):
                await vault.handle_mqtt("gw-1", "evidence", message)
            assert _receipt(sent, "gw-1").reason == "not_jpeg"
            # too large for the vault, refused from its header
            big = ChunkHeader(sha256=sha, size=MAX + 1, chunk=0, chunks=9).encode()
            await vault.handle_mqtt("gw-1", "evidence", big + b"\n" + b"x" * 10)
            assert _receipt(sent, "gw-1").reason == "too_large"
            # garbage: recorded, nothing to receipt
            await vault.handle_mqtt("gw-1", "evidence", b"not a chunk")
            _, body = await asyncio.to_thread(
                _call, receiver.http_port, "/api/evidence/rejected?gateway=gw-1"
            )
            reasons = [r["reason"] for r in json.loads(body)["rejected"]]
            assert reasons == ["hash_mismatch", "not_jpeg", "too_large", "malformed"]

    asyncio.run(main())


def test_https_put_is_bound_to_the_token_s_gateway(tmp_path):
    async def main() -> None:
        async with vault_in_receiver(tmp_path) as (receiver, _vault, _sent):
            port = receiver.http_port
            token = receiver.db.issue_token("gw-1")
            data = _jpeg(3, 50_000)
            sha = hashlib.sha256(data).hexdigest()
            put = f"/v1/evidence/{sha}"

            async def call(path: str, **kw: Any) -> tuple[int, Any]:
                status, body = await asyncio.to_thread(_call, port, path, **kw)
                return status, (json.loads(body) if body.startswith(b"{") else body)

            assert (await call(put, method="PUT", body=data, token="wrong"))[0] == 401
            status, answer = await call(
                put, method="PUT", body=data, token=token, headers={"X-Offsite-Gateway": "gw-2"}
            )
            assert (status, answer["reason"]) == (403, "wrong_gateway")
            status, answer = await call(put, method="PUT", body=data[:-1] + b"!", token=token)
            assert (status, answer["reason"]) == (422, "hash_mismatch")
            status, answer = await call(
                f"/v1/evidence/{'0' * 64}", method="PUT", body=b"x" * (MAX + 1), token=token
            )
            assert (status, answer["reason"]) == (413, "too_large")
            status, answer = await call(
                put, method="PUT", body=data, token=token, headers={"X-Offsite-Event": "ev-9"}
            )
            assert (status, answer["sha256"], answer["gateway"]) == (200, sha, "gw-1")
            assert open_receipt(
                json.dumps(answer["receipt"]).encode(), gateway_id="gw-1", keys=KEYS
            ).accepted
            # the operator reads; a gateway token may not; an unknown hash is 404
            assert await call(f"/api/evidence/{sha}") == (200, data)
            assert (await call(f"/api/evidence/{sha}", token=token))[0] == 403
            assert (await call(f"/api/evidence/{'1' * 64}"))[0] == 404
            status, listed = await call("/api/evidence?event_id=ev-9")
            assert [(e["gateway"], e["via"]) for e in listed["evidence"]] == [("gw-1", "https")]

    asyncio.run(main())


def test_unfinished_snapshots_of_many_gateways_stay_within_one_memory_budget():
    async def main() -> None:
        vault = EvidenceVault(max_bytes=MAX, max_buffered_total=2 * MAX)
        for g in range(20):
            first = next(chunk_messages(_jpeg(g), event_id=None, chunk_bytes=60_000))
            await vault.handle_mqtt(f"gw-{g}", "evidence", first)
            # each new snapshot may need its whole size: older partials make room for it
            assert vault.buffered <= 2 * MAX
        assert vault.buffered > 0

    asyncio.run(main())

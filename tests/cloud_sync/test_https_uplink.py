"""The HTTPS uplink against the reference receiver: TLS and idempotent batches."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from cloud_forge import self_signed

from cloud_sync.config import CloudConfig
from cloud_sync.https_uplink import HttpsUplink
from cloud_sync.sync import CloudSync, make_outbox
from edge.store import Store

from .conftest import TOKEN, alarm, running_receiver, wait_for

pytestmark = pytest.mark.timeout(60)


def test_https_uplink_with_tls_and_idempotency(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OFFSITE_TEST_CLOUD_TOKEN", TOKEN)
    asyncio.run(_https(tmp_path))


async def _https(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    async with running_receiver(tmp_path, tls_cert=cert, tls_key=key) as receiver:
        cloud = CloudConfig.model_validate(
            {
                "uplinks": [
                    {
                        "type": "https",
                        "name": "web",
                        "url": f"https://127.0.0.1:{receiver.http_port}/v1/records",
                        "tls": {"enabled": True, "ca_file": str(cert)},
                        "token_env": "OFFSITE_TEST_CLOUD_TOKEN",
                    }
                ],
                "outbox": {"status_interval_s": 3600},
            }
        )
        db = tmp_path / "gw.db"
        outbox = make_outbox("gw-h", cloud, db)
        async with await Store.open(db, hook=outbox) as store:
            stop = asyncio.Event()
            task = asyncio.create_task(CloudSync(store, outbox, cloud).run(stop))
            for n in range(20):
                await store.emit(alarm(n))
            await wait_for(lambda: len(receiver.db.records(data_class="alarm")) == 20)
            stop.set()
            await task
        assert receiver.db.verify("gw-h").ok
        # Replaying a batch with the same idempotency key is answered from memory.
        uplink = HttpsUplink(cloud.uplinks[0], "gw-h")  # type: ignore[arg-type]
        empty = b'{"gateway": "gw-h", "records": []}'
        status, _body = await asyncio.to_thread(uplink._post, empty, "k1")
        status2, body2 = await asyncio.to_thread(uplink._post, empty, "k1")
        assert (status, status2) == (200, 200)
        assert b"replayed" in body2

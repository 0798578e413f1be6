"""HTTPS uplink: batch POST; a record is delivered when the response names it accepted.

Each request carries ``Idempotency-Key`` = SHA-256 of the batch's record ids, so a retry
of the same batch has the same key; each record carries its own id as its idempotency
key. The standard library's ``http.client`` runs in a worker thread: one request at a
time, with a timeout, so the event loop never blocks.
"""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import ssl
from collections.abc import Sequence
from urllib.parse import urlsplit

from cloud_sync.config import HttpsUplinkConfig, read_secret
from cloud_sync.errors import UplinkError, UplinkRejectedError
from cloud_sync.outbox import OutRecord, wire_batch
from edge.tls import client_ssl_context


def batch_key(records: Sequence[OutRecord]) -> str:
    """Idempotency key of a batch: stable for the same set of records."""
    return hashlib.sha256("\n".join(sorted(r.id for r in records)).encode()).hexdigest()


def accepted_seqs(records: Sequence[OutRecord], body: bytes) -> list[int]:
    """Seqs of the records the response names accepted (``{"accepted": [id, ...]}``).

    Only a record the receiver names is delivered: a bare 2xx, or a body that cannot be
    read, acknowledges nothing (the records stay pending and are sent again).
    """
    try:
        named = json.loads(body).get("accepted")
    except (ValueError, AttributeError):
        return []
    if not isinstance(named, list):
        return []
    ids = {i for i in named if isinstance(i, str)}
    return [r.seq for r in records if r.id in ids]


class HttpsUplink:
    """POSTs batches to the cloud's ingest URL."""

    def __init__(self, config: HttpsUplinkConfig, gateway_id: str) -> None:
        self.name = config.name
        self.config = config
        self.gateway_id = gateway_id
        self.connected = True  # connectionless: every send opens its own connection
        self.far_acks = 0
        url = urlsplit(config.url)
        self._https = url.scheme == "https"
        self._host = url.hostname or "127.0.0.1"
        self._port = url.port or (443 if self._https else 80)
        self._path = url.path or "/"
        self._context: ssl.SSLContext | None = (
            client_ssl_context(config.tls) if self._https else None
        )

    async def connect(self) -> None:
        """Nothing to do: each batch is one request."""

    def _post(self, body: bytes, key: str) -> tuple[int, bytes]:
        if self._https:
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                self._host, self._port, timeout=self.config.timeout_s, context=self._context
            )
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=self.config.timeout_s)
        headers = {"Content-Type": "application/json", "Idempotency-Key": key}
        if self.config.token_env:
            headers["Authorization"] = f"Bearer {read_secret(self.config.token_env)}"
        try:
            conn.request("POST", self._path, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    async def send(self, records: Sequence[OutRecord]) -> list[int]:
        """POST the batch; the records the response names accepted are delivered."""
        try:
            status, body = await asyncio.to_thread(
                self._post, wire_batch(self.gateway_id, records), batch_key(records)
            )
        except (OSError, http.client.HTTPException, ssl.SSLError) as exc:
            raise UplinkError(f"POST {self.config.url} failed: {exc}") from None
        if 200 <= status < 300 or status == 422:
            acked = accepted_seqs(records, body)
            if acked:
                self.far_acks += 1  # the cloud acknowledged records it names, even in a 422
            if 200 <= status < 300 and len(acked) == len(records):
                return acked
            raise UplinkRejectedError(
                f"POST {self.config.url}: HTTP {status}, {len(records) - len(acked)} of"
                f" {len(records)} records not accepted: {body[:300]!r}",
                acked=acked,
            )
        if 400 <= status < 500 and status not in {408, 429}:
            raise UplinkRejectedError(f"POST {self.config.url}: HTTP {status} {body[:200]!r}")
        raise UplinkError(f"POST {self.config.url}: HTTP {status}")

    async def close(self) -> None:
        """Nothing held open."""

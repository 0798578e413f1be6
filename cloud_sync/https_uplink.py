"""HTTPS uplink: batch POST; a record is delivered when the response names it accepted.

Each request carries ``Idempotency-Key`` = SHA-256 of the batch's record ids, so a retry
of the same batch has the same key; each record carries its own id as its idempotency
key. The standard library's ``http.client`` runs in a worker thread: one request at a
time, with a timeout, so the event loop never blocks.

Evidence snapshots go one per request: ``PUT <base>/evidence/<sha256>`` (``<base>``: the
ingest URL without its last path segment, e.g. ``/v1``), ``image/jpeg``, the gateway's
bearer token. A snapshot is delivered only when the (TLS-verified) 2xx response names
its SHA-256; see docs/protocol.md ("Evidence").
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
from cloud_sync.evidence_wire import EvidenceRejectedError
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
        headers = {"Content-Type": "application/json", "Idempotency-Key": key}
        return self._request("POST", self._path, body, headers)

    def _request(
        self, method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        if self._https:
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                self._host, self._port, timeout=self.config.timeout_s, context=self._context
            )
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=self.config.timeout_s)
        if self.config.token_env:
            headers["Authorization"] = f"Bearer {read_secret(self.config.token_env)}"
        try:
            conn.request(method, path, body=body, headers=headers)
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

    def evidence_path(self, sha256: str) -> str:
        """Where a snapshot is PUT: ``/v1/records`` → ``/v1/evidence/<sha256>``."""
        return f"{self._path.rstrip('/').rpartition('/')[0]}/evidence/{sha256}"

    async def send_evidence(self, sha256: str, data: bytes, *, event_id: str) -> str:
        """PUT one snapshot; delivered when the 2xx response names its SHA-256."""
        path = self.evidence_path(sha256)
        headers = {
            "Content-Type": "image/jpeg",
            "X-Offsite-Gateway": self.gateway_id,
            "X-Offsite-Event": event_id,
        }
        try:
            status, body = await asyncio.to_thread(self._request, "PUT", path, data, headers)
        except (OSError, http.client.HTTPException, ssl.SSLError) as exc:
            raise UplinkError(f"PUT {path} failed: {exc}") from None
        try:
            answer = json.loads(body)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            answer = {}
        if 200 <= status < 300 and answer.get("sha256") == sha256:
            self.far_acks += 1
            return f"{self.name} {'https' if self._https else 'http'} receiver"
        if 400 <= status < 500 and status not in {401, 403, 408, 429}:
            reason = str(answer.get("reason") or answer.get("error") or f"HTTP {status}")
            raise EvidenceRejectedError(reason[:100], f"PUT {path}: HTTP {status}")
        raise UplinkError(f"PUT {path}: HTTP {status} {body[:200]!r}")

    async def close(self) -> None:
        """Nothing held open."""

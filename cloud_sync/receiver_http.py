"""The reference receiver's HTTP(S) side: the JSON API and the HTTPS uplink ingest.

A deliberately small HTTP/1.1 server on :func:`asyncio.start_server`: one request per
connection (``Connection: close``), JSON in and out. Everything but ``GET /health`` needs
``Authorization: Bearer <token>`` (or a verified client certificate when the server
requires them: mutual TLS). Bodies, header counts and page sizes are bounded. Routes are
listed in :mod:`cloud_sync.receiver`; storage and verification live in
:mod:`cloud_sync.receiver_store`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import ssl
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cloud_sync.receiver_store import ReceiverDB, parse_batch

__all__ = ["MAX_PAGE", "HttpApi", "server_ssl_context"]

# The receiver's logger name from before the split, so its log lines keep their tag.
log = logging.getLogger("cloud_sync.receiver")

MAX_PAGE = 1000
"""Largest ``limit`` of a records page."""
MAX_HEADERS = 64
DEFAULT_MAX_BODY = 1024 * 1024


def server_ssl_context(
    cert: Path | None, key: Path | None, client_ca: Path | None
) -> ssl.SSLContext | None:
    """Server TLS with ``cert``/``key`` (client certificates required with ``client_ca``).

    ``None`` (plain HTTP) unless both the certificate and its key are given.
    """
    context = None
    if cert and key:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(cert), str(key))
        if client_ca:
            context.load_verify_locations(str(client_ca))
            context.verify_mode = ssl.CERT_REQUIRED
    return context


class HttpError(ValueError):
    """A request the API refuses: status and reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def _client_name(writer: asyncio.StreamWriter) -> str | None:
    """The common name of the verified client certificate (mutual TLS), if any."""
    cert = writer.get_extra_info("peercert")
    for rdn in (cert or {}).get("subject", ()):
        for name, value in rdn:
            if name == "commonName":
                return str(value)
    return None


def _int_param(query: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    text = query.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise HttpError(400, f"{name}: not an integer") from None
    if not low <= value <= high:
        raise HttpError(400, f"{name}: must be between {low} and {high}")
    return value


class HttpApi:
    """Answers one HTTP request per connection from the receiver's database."""

    def __init__(
        self,
        db: ReceiverDB,
        *,
        token: str | None = None,
        client_certs: bool = False,
        max_body: int = DEFAULT_MAX_BODY,
    ) -> None:
        self.db = db
        self.token = token
        # With client_certs the TLS handshake already refused anyone without a valid one.
        self.client_certs = client_certs
        self.max_body = max_body

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Connection callback for :func:`asyncio.start_server`: answer, then close."""
        try:
            async with asyncio.timeout(30):
                status, body = await self._exchange(reader, _client_name(writer))
        except HttpError as exc:
            status, body = exc.status, {"error": str(exc)}
        except (TimeoutError, ValueError, ConnectionError, asyncio.IncompleteReadError) as exc:
            status, body = 400, {"error": str(exc) or type(exc).__name__}
        data = json.dumps(body, ensure_ascii=False).encode()
        extra = 'WWW-Authenticate: Bearer realm="offsite-cloud"\r\n' if status == 401 else ""
        try:
            writer.write(
                f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
                f"{extra}Connection: close\r\n\r\n".encode()
                + data
            )
            await writer.drain()
        except (ConnectionError, ssl.SSLError):
            log.info("http client went away status=%d", status)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await writer.wait_closed()

    def _authorized(self, headers: dict[str, str]) -> bool:
        if self.client_certs:
            return True
        if not self.token:
            return False  # no token configured and no client certificates: nobody
        given = headers.get("authorization", "").encode()
        return hmac.compare_digest(given, f"Bearer {self.token}".encode())

    async def _exchange(self, reader: asyncio.StreamReader, client: str | None) -> tuple[int, Any]:
        request = (await reader.readline()).decode("latin-1").split()
        if len(request) != 3:
            raise HttpError(400, "bad request line")
        method, target = request[0], request[1]
        headers: dict[str, str] = {}
        for _ in range(MAX_HEADERS + 1):
            line = (await reader.readline()).decode("latin-1").strip()
            if not line:
                break
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        else:
            raise HttpError(431, "too many header fields")
        url = urlsplit(target)
        if url.path == "/health":
            return (200, {"ok": True}) if method == "GET" else (405, {"error": "GET only"})
        if not self._authorized(headers):
            log.warning("http request refused path=%s reason=no valid bearer token", url.path)
            return 401, {"error": "a valid bearer token is required"}
        payload = b""
        if method == "POST":
            if "transfer-encoding" in headers or "content-length" not in headers:
                return 411, {"error": "Content-Length required (no chunked bodies)"}
            length = _int_param(headers, "content-length", 0, 0, 2**62)
            if length > self.max_body:
                return 413, {"error": f"body larger than {self.max_body} bytes"}
            payload = await reader.readexactly(length)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        if url.path == "/v1/records":
            if method != "POST":
                return 405, {"error": "POST only"}
            return self._post_records(payload, headers.get("idempotency-key"), client)
        if method != "GET":
            return 405, {"error": "GET only"}
        return self._get(url.path, query)

    def _get(self, path: str, query: dict[str, str]) -> tuple[int, Any]:
        if path == "/api/gateways":
            return 200, self.db.gateways()
        if path in {"/api/records", "/api/rejected"}:
            after = _int_param(query, "after", 0, 0, 2**62)
            limit = _int_param(query, "limit", 100, 1, MAX_PAGE)
            if path == "/api/rejected":
                return 200, self.db.rejected(gateway=query.get("gateway"), after=after, limit=limit)
            return 200, self.db.records(
                gateway=query.get("gateway"),
                data_class=query.get("class"),
                body_type=query.get("type"),
                after=after,
                limit=limit,
            )
        if path == "/api/chain":
            names = [query["gateway"]] if "gateway" in query else self.db.gateway_names()
            return 200, {name: self.db.verify(name).as_dict() for name in names}
        return 404, {"error": "not found"}

    def _post_records(self, payload: bytes, key: str | None, client: str | None) -> tuple[int, Any]:
        # Idempotency-Key: a retried batch gets the first answer back, marked as replayed.
        if key:
            seen = self.db.idempotent_response(key)
            if seen is not None:
                stored = json.loads(seen)
                return int(stored["status"]), {**stored["body"], "replayed": True}
        try:
            gateway, records = parse_batch(payload)
        except (ValueError, UnicodeDecodeError) as exc:
            return 400, {"error": f"not a record batch: {exc}"}
        if gateway is None:
            return 400, {"error": "the batch names no gateway"}
        if self.client_certs and client != gateway:
            # Mutual TLS ties the sender to its records: a gateway's certificate is issued
            # with the gateway id as its common name.
            log.warning("batch refused gateway=%s client_certificate=%s", gateway, client)
            return 403, {"error": f"client certificate {client!r} may not send for {gateway!r}"}
        results = self.db.ingest(records, "https", gateway=gateway)
        rejected = [r.as_dict() for r in results if r.status == "rejected"]
        response = {
            # Named here = stored (now or before): the uplink counts only these as delivered.
            "accepted": [r.id for r in results if r.status != "rejected"],
            "rejected": rejected,
            "new": sum(r.status == "accepted" for r in results),
            "duplicates": sum(r.status == "duplicate" for r in results),
        }
        if rejected:
            # Not remembered: a retry after the cause is fixed (a key registered) must be
            # checked again, not answered with this refusal.
            return 422, response
        if key:
            self.db.remember(key, json.dumps({"status": 200, "body": response}))
        return 200, response

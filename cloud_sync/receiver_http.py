"""The reference receiver's HTTP(S) side: the JSON API and the HTTPS uplink ingest.

A deliberately small HTTP/1.1 server on :func:`asyncio.start_server`: one request per
connection (``Connection: close``), JSON in and out. Routes are listed in
:mod:`cloud_sync.receiver`; storage and chain verification live in
:mod:`cloud_sync.receiver_store`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cloud_sync.receiver_store import ReceiverDB, parse_batch

__all__ = ["HttpApi", "server_ssl_context"]

# The receiver's logger name from before the split, so its log lines keep their tag.
log = logging.getLogger("cloud_sync.receiver")


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


class HttpApi:
    """Answers one HTTP request per connection from the receiver's database."""

    def __init__(self, db: ReceiverDB) -> None:
        self.db = db

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Connection callback for :func:`asyncio.start_server`: answer, then close."""
        try:
            async with asyncio.timeout(30):
                status, body = await self._exchange(reader)
        except (TimeoutError, ValueError, ConnectionError, asyncio.IncompleteReadError) as exc:
            status, body = 400, {"error": str(exc) or type(exc).__name__}
        data = json.dumps(body, ensure_ascii=False).encode()
        try:
            writer.write(
                f"HTTP/1.1 {status} {'OK' if status < 300 else 'Error'}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
                "Connection: close\r\n\r\n".encode()
                + data
            )
            await writer.drain()
        except (ConnectionError, ssl.SSLError):
            log.info("http client went away status=%d", status)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await writer.wait_closed()

    async def _exchange(self, reader: asyncio.StreamReader) -> tuple[int, Any]:
        request = (await reader.readline()).decode("latin-1").split()
        if len(request) != 3:
            raise ValueError("bad request line")
        method, target = request[0], request[1]
        headers: dict[str, str] = {}
        while True:
            line = (await reader.readline()).decode("latin-1").strip()
            if not line:
                break
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        if length > 64 * 1024 * 1024:
            return 413, {"error": "body too large"}
        payload = await reader.readexactly(length) if length else b""
        url = urlsplit(target)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        if method == "POST" and url.path == "/v1/records":
            return self._post_records(payload, headers.get("idempotency-key"))
        if method != "GET":
            return 405, {"error": "method not allowed"}
        if url.path == "/api/gateways":
            return 200, self.db.gateways()
        if url.path == "/api/records":
            return 200, self.db.records(
                gateway=query.get("gateway"),
                data_class=query.get("class"),
                body_type=query.get("type"),
                after=int(query.get("after", 0)),
                limit=min(int(query.get("limit", 1000)), 10000),
            )
        if url.path == "/api/chain":
            names = (
                [query["gateway"]]
                if "gateway" in query
                else [g["gateway"] for g in self.db.gateways()]
            )
            return 200, {name: self.db.verify(name).as_dict() for name in names}
        return 404, {"error": "not found"}

    def _post_records(self, payload: bytes, key: str | None) -> tuple[int, Any]:
        # Idempotency-Key: a retried batch gets the first answer back, marked as replayed.
        if key:
            seen = self.db.idempotent_response(key)
            if seen is not None:
                return 200, {**json.loads(seen), "replayed": True}
        try:
            records = parse_batch(payload)
        except (ValueError, UnicodeDecodeError) as exc:
            return 400, {"error": str(exc)}
        new, dup = self.db.ingest(records, "https")
        response = {"accepted": new, "duplicates": dup, "ids": [r.get("id") for r in records]}
        if key:
            self.db.remember(key, json.dumps(response))
        return 200, response

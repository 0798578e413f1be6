"""The reference receiver's HTTP(S) side: the JSON API and the HTTPS uplink ingest (aiohttp).

Everything but ``GET /health`` needs ``Authorization: Bearer <token>`` (or a verified
client certificate when the server requires them: mutual TLS). Two kinds of token:
the operator's (full API) and each gateway's own (``offsite-edge cloud register`` issues
it; it may only ``POST /v1/records`` batches of its own gateway). Bodies are bounded by
the application's ``client_max_size`` (413), pages by :data:`MAX_PAGE` (400). Routes are
listed in :mod:`cloud_sync.receiver`; storage and verification live in
:mod:`cloud_sync.receiver_store`. Extensions add their own routes to the same application
and use :meth:`HttpApi.authorize` for the same check.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import ssl
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

from cloud_sync.receiver_extension import Principal
from cloud_sync.receiver_store import ReceiverDB, parse_batch

__all__ = ["DEFAULT_MAX_BODY", "MAX_PAGE", "HttpApi", "server_ssl_context"]

# The receiver's logger name from before the split, so its log lines keep their tag.
log = logging.getLogger("cloud_sync.receiver")

MAX_PAGE = 1000
"""Largest ``limit`` of a records page."""
DEFAULT_MAX_BODY = 1024 * 1024
BODY_TIMEOUT_S = 30.0
"""A record batch's body must arrive within this; a slow sender gets 408."""
JSON_PREFIXES = ("/api/", "/v1/", "/health")
"""Paths whose errors are answered in JSON (``{"error": …}``), whoever routed them."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


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


def _answer(status: int, body: Any) -> web.Response:
    """A JSON response; the reason phrase is the standard one of ``status``."""
    headers = {"WWW-Authenticate": 'Bearer realm="offsite-cloud"'} if status == 401 else None
    return web.json_response(
        body,
        status=status,
        headers=headers,
        dumps=lambda value: json.dumps(value, ensure_ascii=False),
    )


def client_name(request: web.BaseRequest) -> str | None:
    """The common name of the verified client certificate (mutual TLS), if any."""
    cert = request.get_extra_info("peercert")
    for rdn in (cert or {}).get("subject", ()):
        for name, value in rdn:
            if name == "commonName":
                return str(value)
    return None


def _int_param(query: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
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
    """The record API's handlers over the receiver's database."""

    def __init__(
        self,
        db: ReceiverDB,
        *,
        token: str | None = None,
        client_certs: bool = False,
        max_body: int = DEFAULT_MAX_BODY,
        mqtt_state: Callable[[], str] = lambda: "off",
    ) -> None:
        self.db = db
        self.token = token
        # With client_certs the TLS handshake already refused anyone without a valid one.
        self.client_certs = client_certs
        self.max_body = max_body
        self.mqtt_state = mqtt_state

    def application(self) -> web.Application:
        """A new aiohttp application with the API's routes (extensions may add theirs)."""
        # client_max_size bounds every body read with request.read()/post()/json().
        app = web.Application(client_max_size=self.max_body, middlewares=[self._json_errors])
        app.router.add_get("/health", self.health, allow_head=False)
        app.router.add_get("/api/gateways", self._reader(self.gateways), allow_head=False)
        app.router.add_get("/api/records", self._reader(self.records), allow_head=False)
        app.router.add_get("/api/rejected", self._reader(self.rejected), allow_head=False)
        app.router.add_get("/api/chain", self._reader(self.chain), allow_head=False)
        app.router.add_post("/v1/records", self.post_records)
        return app

    @web.middleware
    async def _json_errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Answer the API's errors (and aiohttp's own 404/405/413) as ``{"error": …}`` JSON.

        An extension's routes outside :data:`JSON_PREFIXES` (pages) keep their own answers.
        """
        unrouted = request.match_info.http_exception is not None  # 404/405 of the router
        if not (unrouted or request.path.startswith(JSON_PREFIXES)):
            return await handler(request)
        try:
            return await handler(request)
        except HttpError as exc:
            return _answer(exc.status, {"error": str(exc)})
        except web.HTTPRequestEntityTooLarge:
            return _answer(413, {"error": f"body larger than {self.max_body} bytes"})
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return _answer(exc.status, {"error": exc.reason})

    def authorize(self, request: web.BaseRequest) -> Principal | None:
        """Who sends ``request``: the operator (``api``), one gateway, or ``None`` (refuse).

        With client certificates (mutual TLS) the verified certificate is the credential
        (its common name binds what it may POST); otherwise the bearer token: the
        operator's, or a gateway's (stored as a SHA-256 only).
        """
        if self.client_certs:
            return Principal("api")
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        given = given.strip()
        if scheme.lower() != "bearer" or not given:
            return None
        if self.token and hmac.compare_digest(given.encode(), self.token.encode()):
            return Principal("api")
        gateway = self.db.gateway_of_token(given)
        return None if gateway is None else Principal("gateway", gateway)

    def _principal(self, request: web.Request) -> Principal:
        principal = self.authorize(request)
        if principal is None:
            log.warning("http request refused path=%s reason=no valid bearer token", request.path)
            raise HttpError(401, "a valid bearer token is required")
        return principal

    def _reader(self, answer: Callable[[web.Request], Any]) -> Handler:
        """A GET handler for the operator only: gateway tokens may not read the API."""

        async def handler(request: web.Request) -> web.StreamResponse:
            principal = self._principal(request)
            if principal.kind != "api":
                log.warning(
                    "http read refused path=%s gateway=%s reason=gateway token",
                    request.path, principal.gateway,
                )  # fmt: skip
                raise HttpError(403, "a gateway token may only POST its own records")
            return _answer(200, answer(request))

        return handler

    async def health(self, request: web.Request) -> web.StreamResponse:
        """Liveness and the MQTT intake's state (``off``, ``connecting``, ``subscribed``)."""
        del request
        return _answer(200, {"ok": True, "mqtt": self.mqtt_state()})

    def gateways(self, request: web.Request) -> Any:
        """Per gateway: last seen and counts."""
        del request
        return self.db.gateways()

    def records(self, request: web.Request) -> Any:
        """One page of admitted records."""
        query = request.query
        return self.db.records(
            gateway=query.get("gateway"),
            data_class=query.get("class"),
            body_type=query.get("type"),
            after=_int_param(query, "after", 0, 0, 2**62),
            limit=_int_param(query, "limit", 100, 1, MAX_PAGE),
        )

    def rejected(self, request: web.Request) -> Any:
        """One page of rejected records with their reason."""
        query = request.query
        return self.db.rejected(
            gateway=query.get("gateway"),
            after=_int_param(query, "after", 0, 0, 2**62),
            limit=_int_param(query, "limit", 100, 1, MAX_PAGE),
        )

    def chain(self, request: web.Request) -> Any:
        """The verdict per gateway, from the incrementally kept state (no re-scan)."""
        query = request.query
        names = [query["gateway"]] if "gateway" in query else self.db.gateway_names()
        return {name: self.db.verify(name).as_dict() for name in names}

    async def post_records(self, request: web.Request) -> web.StreamResponse:
        """HTTPS uplink ingest: names each accepted record, 422 with a reason per rejected one."""
        principal = self._principal(request)
        if request.content_length is not None and request.content_length > self.max_body:
            raise HttpError(413, f"body larger than {self.max_body} bytes")
        try:
            async with asyncio.timeout(BODY_TIMEOUT_S):
                payload = await request.read()
        except TimeoutError:
            log.warning("batch body not received in time path=%s", request.path)
            raise HttpError(408, f"body not received within {BODY_TIMEOUT_S:.0f} s") from None
        client = client_name(request) if self.client_certs else None
        # Idempotency-Key: a retried batch gets the first answer back, marked as replayed.
        # Scoped by sender, so nobody can read another sender's answer by guessing its key.
        sender = client or (principal.gateway if principal.kind == "gateway" else "api")
        key = request.headers.get("Idempotency-Key")
        scoped = f"{principal.kind}:{sender}:{key}" if key else None
        if scoped:
            seen = self.db.idempotent_response(scoped)
            if seen is not None:
                stored = json.loads(seen)
                return _answer(int(stored["status"]), {**stored["body"], "replayed": True})
        try:
            gateway, records = parse_batch(payload)
        except (ValueError, UnicodeDecodeError) as exc:
            raise HttpError(400, f"not a record batch: {exc}") from None
        if gateway is None:
            raise HttpError(400, "the batch names no gateway")
        if self.client_certs and client != gateway:
            # Mutual TLS ties the sender to its records: a gateway's certificate is issued
            # with the gateway id as its common name.
            log.warning("batch refused gateway=%s client_certificate=%s", gateway, client)
            raise HttpError(403, f"client certificate {client!r} may not send for {gateway!r}")
        if principal.kind == "gateway" and principal.gateway != gateway:
            log.warning("batch refused gateway=%s token_of=%s", gateway, principal.gateway)
            raise HttpError(
                403, f"the token of gateway {principal.gateway!r} may not send for {gateway!r}"
            )
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
            return _answer(422, response)
        if scoped:
            self.db.remember(scoped, json.dumps({"status": 200, "body": response}))
        return _answer(200, response)

"""The reference receiver's evidence vault: snapshots in, verified, stored, receipted, served.

A :class:`~cloud_sync.receiver_extension.ReceiverExtension`. Snapshots arrive as MQTT
chunks on ``<prefix>/<gateway>/up/evidence`` (reassembled per gateway within a memory
budget, :class:`cloud_sync.evidence_wire.ChunkAssembler`) or as one
``PUT /v1/evidence/<sha256>`` with the gateway's bearer token. Either way the bytes must
hash to their name, be a JPEG and fit ``max_bytes``; the topic's gateway (or the token's)
is the one the snapshot is recorded for, never what the upload says. A stored snapshot is
a content-addressed file ``<data_dir>/evidence/<sha[:2]>/<sha>.jpg`` plus a row of table
``evidence`` (gateway, sha256, size, event id, how and when it came); a refusal is a row
of ``evidence_rejected`` with its reason.

The answer that lets a gateway delete its copy: over HTTPS the (TLS) response naming the
hash; over MQTT a receipt signed with ``receipt_key`` (a regulator key the gateways trust,
:mod:`cloud_sync.evidence_receipt`) published on ``<prefix>/<gateway>/down/evidence``.
Without a key (or without a way to publish) no MQTT receipt is sent and gateways keep
their copies. The operator reads ``GET /api/evidence?gateway=&event_id=&after=&limit=``
and ``GET /api/evidence/<sha256>`` (image/jpeg); ``GET /api/evidence/rejected``. A listed
snapshot's ``event_seq`` is the seq of the gateway's signed record that names its hash
(null while no such record has arrived): that binds the picture to the signed chain.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud_sync.evidence_receipt import sign_receipt
from cloud_sync.evidence_wire import (
    Assembled,
    ChunkAssembler,
    EvidenceRejectedError,
    parse_chunk,
)
from cloud_sync.record_schema import id_problem
from edge.files import write_once

if TYPE_CHECKING:
    from cloud_sync.receiver_extension import Principal, ReceiverContext

__all__ = ["EVIDENCE_SCHEMA", "EvidenceVault"]

log = logging.getLogger("cloud_sync.receiver.evidence")

EVIDENCE_SCHEMA = """
CREATE TABLE IF NOT EXISTS evidence (
    n INTEGER PRIMARY KEY,
    gateway TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    event_id TEXT,
    via TEXT NOT NULL,
    received_at REAL NOT NULL,
    event_seq INTEGER,
    UNIQUE (gateway, sha256)
);
CREATE INDEX IF NOT EXISTS evidence_sha ON evidence (sha256);
CREATE TABLE IF NOT EXISTS evidence_rejected (
    n INTEGER PRIMARY KEY,
    gateway TEXT,
    sha256 TEXT,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    via TEXT NOT NULL,
    received_at REAL NOT NULL
);
"""

DEFAULT_MAX_BYTES = 8 * 1024 * 1024
MAX_PAGE = 1000
BIND_WINDOW = 100_000
"""How many of the newest records are searched for the signed event naming a snapshot (the
gateway sends an event's record before its snapshot, so it is among the newest)."""
_JPEG = b"\xff\xd8\xff"

Publish = Callable[[str, bytes], object]
"""Publishes a message at QoS 1 on the cloud broker (the receiver's own client)."""


class EvidenceVault:
    """Evidence snapshots for the reference receiver (an extension; see the module docstring)."""

    def __init__(
        self,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        receipt_key: Ed25519PrivateKey | None = None,
        publish: Publish | None = None,
        max_partials: int = 4,
        max_buffered_total: int | None = None,
    ) -> None:
        self.max_bytes = max_bytes
        self.max_buffered_total = max_buffered_total or 8 * max_bytes
        """Bytes of unfinished snapshots held across all gateways."""
        self.receipt_key = receipt_key
        self.publish = publish
        self.max_partials = max_partials
        self._assemblers: dict[str, ChunkAssembler] = {}
        self._context: ReceiverContext | None = None
        self._unsigned_said = False

    # -- the extension protocol ----------------------------------------------------------

    def setup(self, app: web.Application, context: ReceiverContext) -> None:
        """Create the tables and the store directory, add the routes."""
        self._context = context
        if self.publish is None:
            self.publish = getattr(context, "publish", None)
        context.db.conn.executescript(EVIDENCE_SCHEMA)
        self.root.mkdir(parents=True, exist_ok=True)
        app.router.add_put(r"/v1/evidence/{sha256:[0-9a-f]{64}}", self.put)
        app.router.add_get("/api/evidence", self.listing, allow_head=False)
        app.router.add_get("/api/evidence/rejected", self.rejections, allow_head=False)
        app.router.add_get(r"/api/evidence/{sha256:[0-9a-f]{64}}", self.image, allow_head=False)

    def claims(self, suffix: str) -> bool:
        """Evidence chunks: ``<prefix>/<gateway>/up/evidence``."""
        return suffix == "evidence"

    async def handle_mqtt(self, gateway: str, suffix: str, payload: bytes) -> None:
        """Take one chunk; store, verify and receipt the snapshot its last chunk completes."""
        del suffix
        sha: str | None = None
        try:
            if id_problem("gateway", gateway):
                raise EvidenceRejectedError("malformed", "topic names no valid gateway")
            header, data = parse_chunk(payload, max_bytes=self.max_bytes)
            sha = header.sha256
            assembler = self._assembler(gateway)
            if sha not in assembler.in_progress():
                self._make_room(header.size)
            whole = assembler.add(header, data)
            if not assembler.in_progress():
                del self._assemblers[gateway]  # nothing held: no state kept per idle gateway
            if whole is None:
                return
            size = await self.store(gateway, whole, via="mqtt")
        except EvidenceRejectedError as exc:
            sha = sha or exc.sha256
            self.reject(gateway, sha, exc, via="mqtt")
            if sha is not None:
                self._receipt(gateway, sha, reason=exc.reason)
            return
        self._receipt(gateway, whole.sha256, size=size)

    # -- storing -----------------------------------------------------------------------

    @property
    def root(self) -> Path:
        """Where snapshot files live: ``<data_dir>/evidence``."""
        return self._ctx.data_dir / "evidence"

    @property
    def _ctx(self) -> ReceiverContext:
        if self._context is None:
            raise RuntimeError("EvidenceVault.setup was not called")
        return self._context

    def path_of(self, sha256: str) -> Path:
        """The content-addressed file of a snapshot."""
        return self.root / sha256[:2] / f"{sha256}.jpg"

    def _assembler(self, gateway: str) -> ChunkAssembler:
        assembler = self._assemblers.get(gateway)
        if assembler is None:
            assembler = self._assemblers[gateway] = ChunkAssembler(
                max_bytes=self.max_bytes, max_partials=self.max_partials
            )
        return assembler

    @property
    def buffered(self) -> int:
        """Bytes of unfinished snapshots held, all gateways together."""
        return sum(a.buffered for a in self._assemblers.values())

    def _make_room(self, size: int) -> None:
        # The gateway holding most gives up its oldest unfinished snapshot first.
        while self.buffered + size > self.max_buffered_total:
            biggest = max(self._assemblers.values(), key=lambda a: a.buffered)
            if not biggest.drop_oldest():
                break

    async def store(self, gateway: str, whole: Assembled, *, via: str) -> int:
        """Write the verified bytes (once) and record them for ``gateway``; return the size."""
        if not whole.data.startswith(_JPEG):
            raise EvidenceRejectedError("not_jpeg", "the bytes are not a JPEG image")
        await asyncio.to_thread(write_once, self.path_of(whole.sha256), whole.data)
        conn = self._ctx.db.conn
        bound = self._bound_seq(gateway, whole.sha256)
        cur = conn.execute(
            "INSERT INTO evidence (gateway, sha256, size, event_id, via, received_at, event_seq)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (gateway, sha256) DO UPDATE SET"
            " event_seq = excluded.event_seq"
            " WHERE event_seq IS NULL AND excluded.event_seq IS NOT NULL",
            (gateway, whole.sha256, len(whole.data), whole.event_id, via, time.time(), bound),
        )
        if cur.rowcount:
            log.info(
                "evidence stored gateway=%s sha256=%s bytes=%d event=%s via=%s event_seq=%s",
                gateway, whole.sha256, len(whole.data), whole.event_id, via, bound,
            )  # fmt: skip
        return len(whole.data)

    def _bound_seq(self, gateway: str, sha256: str) -> int | None:
        """The seq of the gateway's admitted (signed) record naming this hash, if any yet."""
        conn = self._ctx.db.conn
        newest = conn.execute("SELECT coalesce(max(arrival), 0) FROM records").fetchone()[0]
        row = conn.execute(
            "SELECT seq FROM records WHERE arrival > ? AND gateway = ? AND instr(body, ?) > 0"
            " ORDER BY arrival LIMIT 1",
            (newest - BIND_WINDOW, gateway, sha256),
        ).fetchone()
        return None if row is None else int(row[0])

    def reject(
        self, gateway: str | None, sha256: str | None, exc: EvidenceRejectedError, *, via: str
    ) -> None:
        """Keep a refusal aside with its reason."""
        self._ctx.db.conn.execute(
            "INSERT INTO evidence_rejected (gateway, sha256, reason, detail, via, received_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            ((gateway or "")[:128] or None, sha256, exc.reason, exc.detail[:300], via, time.time()),
        )
        log.warning(
            "evidence rejected gateway=%s sha256=%s via=%s reason=%s detail=%s",
            gateway, sha256, via, exc.reason, exc.detail,
        )  # fmt: skip

    def _receipt(
        self, gateway: str, sha256: str, *, size: int | None = None, reason: str | None = None
    ) -> None:
        if self.receipt_key is None or self.publish is None:
            if not self._unsigned_said:
                self._unsigned_said = True
                log.warning(
                    "evidence receipts not sent over MQTT: the vault has no receipt key or no"
                    " publisher; gateways keep their snapshots until a signed receipt arrives"
                )
            return
        envelope = sign_receipt(
            self.receipt_key,
            gateway=gateway,
            sha256=sha256,
            size=size,
            stored_at=time.time(),
            reason=reason,
        )
        topic = f"{self._ctx.topic_prefix}/{gateway}/down/evidence"
        self.publish(topic, json.dumps(envelope).encode())

    # -- HTTP --------------------------------------------------------------------------

    def _principal(self, request: web.Request) -> Principal:
        principal = self._ctx.authorize(request)
        if principal is None:
            raise web.HTTPUnauthorized(reason="a valid bearer token is required")
        return principal

    async def put(self, request: web.Request) -> web.StreamResponse:
        """``PUT /v1/evidence/<sha256>``: one snapshot from the gateway the token names."""
        principal = self._principal(request)
        sha = request.match_info["sha256"]
        claimed = request.headers.get("X-Offsite-Gateway")
        gateway = principal.gateway if principal.kind == "gateway" else claimed
        if gateway is None or id_problem("gateway", gateway):
            return _refuse(400, "malformed", "X-Offsite-Gateway must name the gateway")
        if claimed is not None and claimed != gateway:
            log.warning("evidence refused token_gateway=%s claimed=%s", gateway, claimed)
            return _refuse(403, "wrong_gateway", "a gateway token may only upload its own")
        event_id = request.headers.get("X-Offsite-Event")
        if event_id is not None and id_problem("event_id", event_id):
            event_id = None
        try:
            data = await _read_bounded(request, self.max_bytes)
            if hashlib.sha256(data).hexdigest() != sha:
                raise EvidenceRejectedError("hash_mismatch", "the bytes do not hash to the name")
            size = await self.store(gateway, Assembled(sha, data, event_id), via="https")
        except EvidenceRejectedError as exc:
            self.reject(gateway, sha, exc, via="https")
            return _refuse(413 if exc.reason == "too_large" else 422, exc.reason, exc.detail)
        receipt = None
        if self.receipt_key is not None:
            receipt = sign_receipt(
                self.receipt_key, gateway=gateway, sha256=sha, size=size, stored_at=time.time()
            )
        return web.json_response(
            {"sha256": sha, "size": size, "gateway": gateway, "stored": True, "receipt": receipt}
        )

    def _operator(self, request: web.Request) -> None:
        if self._principal(request).kind != "api":
            raise web.HTTPForbidden(reason="a gateway token may only upload evidence")

    async def image(self, request: web.Request) -> web.StreamResponse:
        """``GET /api/evidence/<sha256>``: the snapshot's bytes (image/jpeg)."""
        self._operator(request)
        sha = request.match_info["sha256"]
        held = self._ctx.db.conn.execute(
            "SELECT 1 FROM evidence WHERE sha256 = ? LIMIT 1", (sha,)
        ).fetchone()
        path = self.path_of(sha)
        if held is None or not path.exists():
            raise web.HTTPNotFound(reason="no such snapshot")
        data = await asyncio.to_thread(path.read_bytes)
        return web.Response(
            body=data,
            content_type="image/jpeg",
            headers={"Cache-Control": "private, max-age=86400"},
        )

    async def listing(self, request: web.Request) -> web.StreamResponse:
        """``GET /api/evidence``: stored snapshots, which gateway and event they belong to."""
        self._operator(request)
        after, limit = _page(request)
        sql = (
            "SELECT n, gateway, sha256, size, event_id, via, received_at, event_seq"
            " FROM evidence WHERE n > ?"
        )
        params: list[Any] = [after]
        for column in ("gateway", "event_id", "sha256"):
            value = request.query.get(column)
            if value:
                sql += f" AND {column} = ?"
                params.append(value)
        sql += " ORDER BY n LIMIT ?"
        keys = ("n", "gateway", "sha256", "size", "event_id", "via", "received_at", "event_seq")
        rows = self._ctx.db.conn.execute(sql, [*params, limit]).fetchall()
        return web.json_response({"evidence": [dict(zip(keys, r, strict=True)) for r in rows]})

    async def rejections(self, request: web.Request) -> web.StreamResponse:
        """``GET /api/evidence/rejected``: refused uploads with their reason."""
        self._operator(request)
        after, limit = _page(request)
        sql = (
            "SELECT n, gateway, sha256, reason, detail, via, received_at FROM evidence_rejected"
            " WHERE n > ?"
        )
        params: list[Any] = [after]
        if request.query.get("gateway"):
            sql += " AND gateway = ?"
            params.append(request.query["gateway"])
        sql += " ORDER BY n LIMIT ?"
        keys = ("n", "gateway", "sha256", "reason", "detail", "via", "received_at")
        rows = self._ctx.db.conn.execute(sql, [*params, limit]).fetchall()
        return web.json_response({"rejected": [dict(zip(keys, r, strict=True)) for r in rows]})


def _page(request: web.Request) -> tuple[int, int]:
    try:
        after = int(request.query.get("after", "0"))
        limit = int(request.query.get("limit", "100"))
    except ValueError:
        raise web.HTTPBadRequest(reason="after and limit must be integers") from None
    if not 1 <= limit <= MAX_PAGE or after < 0:
        raise web.HTTPBadRequest(reason=f"limit must be 1..{MAX_PAGE}, after >= 0")
    return after, limit


def _refuse(status: int, reason: str, detail: str) -> web.Response:
    return web.json_response({"error": f"{reason}: {detail}", "reason": reason}, status=status)


async def _read_bounded(request: web.Request, max_bytes: int) -> bytes:
    declared = request.content_length
    if declared is not None and declared > max_bytes:
        raise EvidenceRejectedError("too_large", f"{declared} bytes > {max_bytes}")
    parts: list[bytes] = []
    held = 0
    while chunk := await request.content.read(64 * 1024):
        held += len(chunk)
        if held > max_bytes:
            raise EvidenceRejectedError("too_large", f"more than {max_bytes} bytes")
        parts.append(chunk)
    if not held:
        raise EvidenceRejectedError("malformed", "empty body")
    return b"".join(parts)

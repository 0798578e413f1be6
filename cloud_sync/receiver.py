"""`offsite-edge cloud`: a small reference supervision cloud (demo and tests, not production).

It subscribes to the cloud broker (persistent session; PUBACK only after its own SQLite
commit), accepts the HTTPS uplink, keeps every record once (deduplicated by id), verifies
each gateway's hash chain and signatures, and serves a JSON API:

- ``GET /api/gateways``  last seen, record and duplicate counts per gateway
- ``GET /api/records?gateway=&class=&type=&after=&limit=``  records in arrival order
- ``GET /api/chain[?gateway=]``  chain verification report per gateway
- ``POST /v1/records``  HTTPS uplink ingest (``Idempotency-Key`` per batch)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cloud_sync.chain import ChainReport, public_key_from_hex, verify_chain
from edge.mqtt import shut_down

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    arrival INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    gateway TEXT NOT NULL,
    seq INTEGER NOT NULL,
    data_class TEXT NOT NULL,
    created_at REAL,
    clock_synced INTEGER,
    body TEXT NOT NULL,
    prev TEXT,
    hash TEXT,
    sig TEXT,
    resent INTEGER NOT NULL,
    via TEXT NOT NULL,
    received_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS records_gateway_seq ON records (gateway, seq);
CREATE TABLE IF NOT EXISTS gateways (
    gateway TEXT PRIMARY KEY,
    last_seen REAL NOT NULL,
    duplicates INTEGER NOT NULL DEFAULT 0,
    public_key TEXT
);
CREATE TABLE IF NOT EXISTS idempotency (
    key TEXT PRIMARY KEY,
    response TEXT NOT NULL
);
"""

REQUIRED = ("gateway", "seq", "id", "class", "body")


class ReceiverDB:
    """The receiver's SQLite: records deduplicated by id."""

    def __init__(self, path: Path | str, trust: Mapping[str, str] | None = None) -> None:
        self.conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.executescript(SCHEMA)
        self.trust = dict(trust or {})

    def ingest(self, records: Sequence[Mapping[str, Any]], via: str) -> tuple[int, int]:
        """Store records (one transaction); return (new, duplicates)."""
        now = time.time()
        new = dup = 0
        cur = self.conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            for r in records:
                if any(k not in r for k in REQUIRED):
                    log.warning("record rejected reason=missing_fields via=%s", via)
                    continue
                cur.execute(
                    "INSERT OR IGNORE INTO records (id, gateway, seq, data_class, created_at,"
                    " clock_synced, body, prev, hash, sig, resent, via, received_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        r["id"],
                        r["gateway"],
                        int(r["seq"]),
                        r["class"],
                        r.get("created_at"),
                        r.get("clock_synced"),
                        json.dumps(r["body"], ensure_ascii=False),
                        r.get("prev"),
                        r.get("hash"),
                        r.get("sig"),
                        int(bool(r.get("resent"))),
                        via,
                        now,
                    ),
                )
                inserted = cur.rowcount == 1
                new += inserted
                dup += not inserted
                key = r["body"].get("public_key") if isinstance(r["body"], dict) else None
                cur.execute(
                    "INSERT INTO gateways (gateway, last_seen, duplicates, public_key)"
                    " VALUES (?, ?, ?, ?) ON CONFLICT (gateway) DO UPDATE SET"
                    " last_seen = excluded.last_seen,"
                    " duplicates = duplicates + excluded.duplicates,"
                    " public_key = coalesce(public_key, excluded.public_key)",
                    (r["gateway"], now, int(not inserted), key),
                )
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        return new, dup

    def records(
        self,
        *,
        gateway: str | None = None,
        data_class: str | None = None,
        body_type: str | None = None,
        after: int = 0,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        """Records in arrival order, filtered."""
        sql = (
            "SELECT arrival, id, gateway, seq, data_class, created_at, clock_synced, body, prev,"
            " hash, sig, resent, received_at FROM records WHERE arrival > ?"
        )
        params: list[Any] = [after]
        if gateway:
            sql += " AND gateway = ?"
            params.append(gateway)
        if data_class:
            sql += " AND data_class = ?"
            params.append(data_class)
        if body_type:
            sql += " AND json_extract(body, '$.type') = ?"
            params.append(body_type)
        sql += " ORDER BY arrival LIMIT ?"
        params.append(limit)
        return [
            {
                "arrival": row[0],
                "id": row[1],
                "gateway": row[2],
                "seq": row[3],
                "class": row[4],
                "created_at": row[5],
                "clock_synced": None if row[6] is None else bool(row[6]),
                "body": json.loads(row[7]),
                "prev": row[8],
                "hash": row[9],
                "sig": row[10],
                "resent": bool(row[11]),
                "received_at": row[12],
            }
            for row in self.conn.execute(sql, params)
        ]

    def gateways(self) -> list[dict[str, Any]]:
        """Per-gateway last seen, counts and key source."""
        out = []
        for gateway, last_seen, dups, key in self.conn.execute(
            "SELECT gateway, last_seen, duplicates, public_key FROM gateways ORDER BY gateway"
        ):
            (count,) = self.conn.execute(
                "SELECT count(*) FROM records WHERE gateway = ?", (gateway,)
            ).fetchone()
            out.append(
                {
                    "gateway": gateway,
                    "last_seen": last_seen,
                    "records": count,
                    "duplicates": dups,
                    "key_source": "configured"
                    if gateway in self.trust
                    else ("tofu" if key else None),
                }
            )
        return out

    def verify(self, gateway: str) -> ChainReport:
        """Verify a gateway's chain with its configured key, else the key it announced."""
        row = self.conn.execute(
            "SELECT public_key FROM gateways WHERE gateway = ?", (gateway,)
        ).fetchone()
        key_hex = self.trust.get(gateway) or (row[0] if row else None)
        key = public_key_from_hex(key_hex) if key_hex else None
        records = [
            {
                "gateway": gateway,
                "seq": r[0],
                "id": r[1],
                "class": r[2],
                "created_at": r[3],
                "clock_synced": None if r[4] is None else bool(r[4]),
                "body": json.loads(r[5]),
                "prev": r[6],
                "hash": r[7],
                "sig": r[8],
            }
            for r in self.conn.execute(
                "SELECT seq, id, data_class, created_at, clock_synced, body, prev, hash, sig"
                " FROM records WHERE gateway = ? ORDER BY seq",
                (gateway,),
            )
        ]
        return verify_chain(records, key)

    def idempotent_response(self, key: str) -> str | None:
        """The stored response of an already processed batch."""
        row = self.conn.execute("SELECT response FROM idempotency WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def remember(self, key: str, response: str) -> None:
        """Store a batch response under its idempotency key."""
        self.conn.execute(
            "INSERT OR IGNORE INTO idempotency (key, response) VALUES (?, ?)", (key, response)
        )

    def close(self) -> None:
        """Close the database."""
        self.conn.close()


def parse_batch(payload: bytes) -> list[dict[str, Any]]:
    """Records of an uplink message/body (``{"gateway", "records": [...]}``)."""
    data = json.loads(payload)
    records = data.get("records") if isinstance(data, dict) else None
    if not isinstance(records, list):
        raise ValueError("payload has no records list")
    return [r for r in records if isinstance(r, dict)]


@dataclass(slots=True, kw_only=True)
class ReceiverConfig:
    """Where the receiver listens and what it trusts."""

    db: Path
    mqtt_host: str | None = None
    mqtt_port: int = 1883
    topic_prefix: str = "offsite"
    client_id: str = "offsite-cloud-receiver"
    http_host: str = "127.0.0.1"
    http_port: int = 0
    tls_cert: Path | None = None
    tls_key: Path | None = None
    client_ca: Path | None = None
    trust: dict[str, str] = field(default_factory=dict)


class Receiver:
    """The running reference cloud: MQTT subscriber, HTTP(S) server, database."""

    def __init__(self, config: ReceiverConfig) -> None:
        self.config = config
        self.db = ReceiverDB(config.db, config.trust)
        self.http_port = config.http_port
        self.ready = asyncio.Event()
        self._messages: asyncio.Queue[tuple[bytes, int, int]] = asyncio.Queue()
        self._client: Any = None
        self._server: asyncio.Server | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set."""
        context = None
        if self.config.tls_cert and self.config.tls_key:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(self.config.tls_cert), str(self.config.tls_key))
            if self.config.client_ca:
                context.load_verify_locations(str(self.config.client_ca))
                context.verify_mode = ssl.CERT_REQUIRED
        self._server = await asyncio.start_server(
            self._http, self.config.http_host, self.config.http_port, ssl=context
        )
        self.http_port = int(self._server.sockets[0].getsockname()[1])
        log.info("receiver listening http_port=%d tls=%s", self.http_port, context is not None)
        try:
            async with asyncio.TaskGroup() as tasks:
                if self.config.mqtt_host:
                    self._start_mqtt()
                    tasks.create_task(self._mqtt_writer(stop), name="offsite-cloud.mqtt-writer")
                self.ready.set()
                await stop.wait()
        finally:
            self._server.close()
            await self._server.wait_closed()
            if self._client is not None:
                await shut_down(self._client)
            self.db.close()

    # -- MQTT --------------------------------------------------------------------------
    def _start_mqtt(self) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        loop = asyncio.get_running_loop()
        topic = f"{self.config.topic_prefix}/+/up/#"
        # manual_ack: PUBACK only after our commit, so the broker keeps what we have not stored.
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.config.client_id,
            clean_session=False,
            manual_ack=True,
        )

        def on_connect(c: Any, u: Any, flags: Any, rc: Any, props: Any) -> None:
            del u, flags, props
            if not rc.is_failure:
                c.subscribe(topic, qos=1)

        def on_message(c: Any, u: Any, message: Any) -> None:
            del c, u
            loop.call_soon_threadsafe(
                self._messages.put_nowait, (bytes(message.payload), message.mid, message.qos)
            )

        client.on_connect = on_connect
        client.on_message = on_message
        client.reconnect_delay_set(1, 5)
        client.connect_async(str(self.config.mqtt_host), self.config.mqtt_port, keepalive=30)
        client.loop_start()
        self._client = client

    async def _mqtt_writer(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                async with asyncio.timeout(0.5):
                    first = await self._messages.get()
            except TimeoutError:
                continue
            items = [first]
            while not self._messages.empty() and len(items) < 500:
                items.append(self._messages.get_nowait())
            records: list[dict[str, Any]] = []
            for payload, _, _ in items:
                try:
                    records.extend(parse_batch(payload))
                except (ValueError, UnicodeDecodeError) as exc:
                    log.warning("message rejected reason=%s", exc)
            self.db.ingest(records, "mqtt")
            for _, mid, qos in items:
                if qos:
                    self._client.ack(mid, qos)

    # -- HTTP --------------------------------------------------------------------------
    async def _http(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(30):
                status, body = await self._http_exchange(reader)
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

    async def _http_exchange(self, reader: asyncio.StreamReader) -> tuple[int, Any]:
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


async def run_receiver(config: ReceiverConfig, stop: asyncio.Event) -> None:
    """Run the reference cloud until ``stop``."""
    await Receiver(config).run(stop)

"""The reference receiver's registry of gateway keys: registered at commissioning, never learned.

A gateway's Ed25519 public key is entered by a person (``offsite-edge cloud register``,
``cloud --trust``/``--keys-file``), never taken from what a gateway (or anyone claiming
to be one) announces. Records of a gateway without a registered key, or signed with
another key, are rejected by the receiver. The key is read from the database on every
lookup, so a key registered or replaced by another process counts at once.

Two more things live here. A gateway's **HTTPS token** (issued at registration, shown
once, stored only as its SHA-256: it is 32 random bytes, so a plain hash is enough) lets
that gateway, and only it, POST its records. A **key rotation** is a record of the chain
(body ``{"type": "key_rotation", "new_public_key": …}``) signed with the key in force at
its seq; from the next seq on, the gateway's records verify under the new key only.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import sqlite3
import time
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from cloud_sync.chain import public_key_from_hex
from cloud_sync.errors import CloudSyncError
from cloud_sync.record_schema import id_problem
from edge.errors import SetupError

__all__ = ["KEYS_SCHEMA", "KeyRegistrationError", "KeyRegistry"]

# The receiver's logger name from before the split, so its log lines keep their tag.
log = logging.getLogger("cloud_sync.receiver")

KEYS_SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (
    gateway TEXT PRIMARY KEY,
    public_key TEXT NOT NULL,
    registered_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS gateway_tokens (
    gateway TEXT PRIMARY KEY,
    token_sha256 TEXT NOT NULL UNIQUE,
    issued_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS key_rotations (
    gateway TEXT NOT NULL,
    seq INTEGER NOT NULL,
    new_public_key TEXT NOT NULL,
    id TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (gateway, seq)
);
"""


class KeyRegistrationError(CloudSyncError, SetupError):
    """A gateway key cannot be registered (malformed, or a different key is registered)."""


class KeyRegistry:
    """Registered gateway keys in the receiver's SQLite (table ``keys``)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self._parsed: dict[str, Ed25519PublicKey] = {}

    def register(self, gateway: str, key_hex: str, *, replace: bool = False) -> bool:
        """Register ``gateway``'s public key; True when it was new.

        Registering the same key again is a no-op; a different key needs ``replace``.
        """
        problem = id_problem("gateway", gateway)
        if problem:
            raise KeyRegistrationError(f"gateway id {gateway!r}: {problem}")
        key_hex = key_hex.strip().lower()
        try:
            public_key_from_hex(key_hex)
        except ValueError:
            raise KeyRegistrationError(
                f"{gateway}: public key is not 64 hex digits (see `offsite-edge identity`)"
            ) from None
        current = self.registered_hex(gateway)
        if current == key_hex:
            return False
        if current is not None and not replace:
            raise KeyRegistrationError(
                f"{gateway}: a different key is already registered (use --replace to rotate)"
            )
        self.conn.execute(
            "INSERT INTO keys VALUES (?, ?, ?) ON CONFLICT (gateway) DO UPDATE SET"
            " public_key = excluded.public_key, registered_at = excluded.registered_at",
            (gateway, key_hex, time.time()),
        )
        log.info("gateway key registered gateway=%s replaced=%s", gateway, current is not None)
        return True

    def registered_hex(self, gateway: str) -> str | None:
        """The registered key of ``gateway`` as hex (``None``: not registered)."""
        row = self.conn.execute("SELECT public_key FROM keys WHERE gateway = ?", (gateway,))
        found = row.fetchone()
        return None if found is None else str(found[0])

    def key_of(self, gateway: str, seq: int | None = None) -> Ed25519PublicKey | None:
        """The key ``gateway`` signs its record ``seq`` with (``None``: not registered).

        Without ``seq``: the registered key. With it: the key of the last rotation before
        ``seq`` (the rotation record itself is signed with the key before it), else the
        registered key.
        """
        if seq is None:
            key_hex = self.registered_hex(gateway)
        else:
            # One statement per record (the ingest's hot path): the rotation's key or else
            # the registered one, and nothing without a registration.
            row = self.conn.execute(
                "SELECT coalesce((SELECT new_public_key FROM key_rotations WHERE gateway = :gw"
                " AND seq < :seq ORDER BY seq DESC LIMIT 1), public_key) FROM keys"
                " WHERE gateway = :gw",
                {"gw": gateway, "seq": seq},
            ).fetchone()
            key_hex = None if row is None else str(row[0])
        if key_hex is None:
            return None
        key = self._parsed.get(key_hex)
        if key is None:
            key = self._parsed[key_hex] = public_key_from_hex(key_hex)
        return key

    def rotate(self, gateway: str, seq: int, new_key_hex: str, rid: str, created_at: float) -> bool:
        """Store an admitted rotation record's key; False when seq already had one (kept)."""
        cur = self.conn.execute(
            "INSERT OR IGNORE INTO key_rotations VALUES (?, ?, ?, ?, ?)",
            (gateway, seq, new_key_hex, rid, created_at),
        )
        if cur.rowcount == 1:
            log.info("gateway key rotated gateway=%s from_seq=%d", gateway, seq + 1)
        return cur.rowcount == 1

    def rotations(self, gateway: str) -> list[dict[str, Any]]:
        """The gateway's admitted key rotations, in seq order."""
        return [
            {"seq": seq, "new_public_key": key, "id": rid, "created_at": at}
            for seq, key, rid, at in self.conn.execute(
                "SELECT seq, new_public_key, id, created_at FROM key_rotations WHERE gateway = ?"
                " ORDER BY seq",
                (gateway,),
            )
        ]

    # -- per-gateway HTTPS tokens ---------------------------------------------------------

    def issue_token(self, gateway: str) -> str:
        """A new HTTPS token for a registered ``gateway`` (replacing its old one); shown once."""
        if self.registered_hex(gateway) is None:
            raise KeyRegistrationError(f"{gateway}: register its key before issuing a token")
        token = secrets.token_urlsafe(32)
        self.conn.execute(
            "INSERT INTO gateway_tokens VALUES (?, ?, ?) ON CONFLICT (gateway) DO UPDATE SET"
            " token_sha256 = excluded.token_sha256, issued_at = excluded.issued_at",
            (gateway, _digest(token), time.time()),
        )
        log.info("gateway token issued gateway=%s", gateway)
        return token

    def has_token(self, gateway: str) -> bool:
        """Whether ``gateway`` has an HTTPS token."""
        row = self.conn.execute("SELECT 1 FROM gateway_tokens WHERE gateway = ?", (gateway,))
        return row.fetchone() is not None

    def gateway_of_token(self, token: str) -> str | None:
        """The gateway whose HTTPS token ``token`` is (``None``: nobody's)."""
        row = self.conn.execute(
            "SELECT gateway FROM gateway_tokens WHERE token_sha256 = ?", (_digest(token),)
        ).fetchone()
        return None if row is None else str(row[0])


def _digest(token: str) -> str:
    # The token is 256 random bits: a fast hash cannot be brute-forced, no KDF is needed.
    return hashlib.sha256(token.encode()).hexdigest()

"""The reference receiver's registry of gateway keys: registered at commissioning, never learned.

A gateway's Ed25519 public key is entered by a person (``offsite-edge cloud register``,
``cloud --trust``/``--keys-file``), never taken from what a gateway (or anyone claiming
to be one) announces. Records of a gateway without a registered key, or signed with
another key, are rejected by the receiver. The key is read from the database on every
lookup, so a key registered or replaced by another process counts at once.
"""

from __future__ import annotations

import logging
import sqlite3
import time

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

    def key_of(self, gateway: str) -> Ed25519PublicKey | None:
        """The registered key of ``gateway`` (``None``: not registered)."""
        key_hex = self.registered_hex(gateway)
        if key_hex is None:
            return None
        key = self._parsed.get(key_hex)
        if key is None:
            key = self._parsed[key_hex] = public_key_from_hex(key_hex)
        return key

"""The gateway's Ed25519 identity: generated on first start, kept in a 0600 file.

A key is made only for a gateway that has never signed anything: when the key file is
gone while the outbox still holds records it signed, a new key would silently break the
cloud's verification of everything signed and sent afterwards (and hide the loss), so the
gateway refuses to start and says to restore the key instead.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from contextlib import closing, suppress
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

from cloud_sync.chain import public_key_hex
from cloud_sync.errors import IdentityError
from edge.readonly import connect_read_only

log = logging.getLogger(__name__)


class MissingKeyError(IdentityError):
    """The key file is gone although the outbox holds records signed with it."""


def signed_record_count(db_path: Path) -> int:
    """How many outbox records in the database at ``db_path`` carry a signature (0: none)."""
    try:
        db = connect_read_only(db_path)
    except FileNotFoundError:
        return 0
    with closing(db):
        try:
            row = db.execute("SELECT count(*) FROM outbox WHERE sig IS NOT NULL").fetchone()
        except sqlite3.OperationalError:
            return 0  # a database from before the outbox (or one never opened by a gateway)
    return int(row[0])


def load_or_create_key(path: Path, *, db_path: Path | None = None) -> Ed25519PrivateKey:
    """Load the key at ``path``; create it (mode 0600, atomically) if it does not exist.

    With ``db_path``, a missing key is created only when that database's outbox holds no
    signed record; otherwise :class:`MissingKeyError` (a SetupError) says what to do.
    """
    if path.exists():
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise IdentityError(f"key file {path} has mode {mode:o}; it must be 0600")
        try:
            key = load_pem_private_key(path.read_bytes(), password=None)
        except ValueError as exc:
            raise IdentityError(f"key file {path} is not a PEM private key: {exc}") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise IdentityError(f"key file {path} does not hold an Ed25519 key")
        return key
    signed = 0 if db_path is None else signed_record_count(db_path)
    if signed:
        raise MissingKeyError(
            f"gateway key {path} is missing but the outbox in {db_path} holds {signed} records "
            "signed with it: restore the key file from its backup (a new key would break "
            "their verification), or move the database aside to start a new identity"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    tmp = path.with_name(path.name + ".tmp")
    # A power cut can leave a half-written tmp: it never became the key, so drop it.
    with suppress(FileNotFoundError):
        tmp.unlink()
    # O_EXCL + 0600 from the start: the key is never readable by others, not even briefly.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, pem)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    log.info("gateway key created path=%s public_key=%s", path, public_key_hex(key.public_key()))
    return key

"""The gateway's Ed25519 identity: generated on first start, kept in a 0600 file.

A key is made only for a gateway that has never signed anything: when the key file is
gone while the outbox still holds records it signed, a new key would silently break the
cloud's verification of everything signed and sent afterwards (and hide the loss), so the
gateway refuses to start and says to restore the key instead.

A key rotation (``cloud_sync.key_rotation``) keeps the new key in ``<key>.next`` until the
``key_rotation`` record that hands the chain to it is committed (with the ``meta`` row
:data:`META_KEY`). :func:`reconcile_rotation`, run by :func:`load_or_create_key` for the
gateway at start-up, finishes such a swap or discards an uncommitted ``<key>.next``, and
refuses a key file whose key the chain was handed away from (a restored old backup).
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
from contextlib import closing, suppress
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

from cloud_sync.chain import public_key_hex
from cloud_sync.errors import IdentityError
from edge.files import fsync_dir
from edge.readonly import connect_read_only

log = logging.getLogger(__name__)


class MissingKeyError(IdentityError):
    """The key file is gone although the outbox holds records signed with it."""


class RetiredKeyError(IdentityError):
    """The key file holds a key the chain was handed away from (or a rotation's key is lost)."""


META_KEY = "key_rotation"
"""``meta`` row of the last rotation: JSON ``{public_key, seq, record_id, at}``."""


def next_key_path(key_path: Path) -> Path:
    """Where a rotation keeps the new key until its record is committed."""
    return key_path.with_name(key_path.name + ".next")


def committed_rotation(db_path: Path) -> dict[str, Any] | None:
    """The last committed rotation of the database at ``db_path`` (read-only), or None."""
    try:
        db = connect_read_only(db_path)
    except FileNotFoundError:
        return None
    with closing(db):
        try:
            row = db.execute("SELECT value FROM meta WHERE key = ?", (META_KEY,)).fetchone()
        except sqlite3.OperationalError:
            return None  # no meta table: a database never opened by a gateway
    return None if row is None else dict(json.loads(row[0]))


def _public_hex_of(path: Path) -> str | None:
    """The public key of the key file at ``path``; None when it is unreadable or partial."""
    try:
        return public_key_hex(read_key(path).public_key())
    except (OSError, IdentityError):
        return None


def reconcile_rotation(key_path: Path, db_path: Path) -> str:
    """Finish or discard an interrupted rotation; refuse a retired key. What was done.

    Returns ``"finished"`` (``<key>.next`` became the key file), ``"discarded"`` (an
    uncommitted ``<key>.next`` was deleted) or ``"none"``. Only for the gateway lock's
    holder. Raises :class:`RetiredKeyError` when the key file's key is not the one the
    last committed rotation handed the chain to.
    """
    committed = committed_rotation(db_path) or {}
    wanted = committed.get("public_key")
    seq = committed.get("seq")
    pending = next_key_path(key_path)
    done = "none"
    if pending.exists():
        if wanted is not None and _public_hex_of(pending) == wanted:
            os.replace(pending, key_path)
            done = "finished"
            log.warning(
                "finished an interrupted key rotation: the committed rotation record seq=%s "
                "names the key in %s, now the key file %s public_key=%s",
                seq, pending, key_path, wanted,
            )  # fmt: skip
        else:
            pending.unlink()
            done = "discarded"
            log.warning(
                "discarded %s: its key rotation was interrupted before its record was "
                "committed; the gateway keeps signing with %s (run `offsite-edge identity "
                "rotate` again to rotate)",
                pending, key_path,
            )  # fmt: skip
        fsync_dir(key_path.parent)
    # A crashed first attempt of rotate() may leave its temp file; it never was the key.
    with suppress(FileNotFoundError):
        pending.with_name(pending.name + ".tmp").unlink()
    if wanted is not None and key_path.exists() and _public_hex_of(key_path) != wanted:
        raise RetiredKeyError(
            f"key file {key_path} does not hold the key the chain was handed to by the "
            f"key_rotation record seq={seq} (public key "
            f"{wanted}): it is an older key (a restored backup?). Restore the key file from "
            "after that rotation; records signed with a retired key are reported as "
            "tampering by the receiver"
        )
    if wanted is not None and not key_path.exists():
        raise RetiredKeyError(
            f"key file {key_path} is missing; the chain was handed to public key {wanted} "
            f"by the key_rotation record seq={seq}: restore "
            "that key file from its backup"
        )
    return done


def check_signing_key(key: Ed25519PrivateKey, db_path: Path) -> None:
    """Refuse to sign with ``key`` when the database's last rotation named another key.

    Read-only: for callers that load the key without the gateway lock's reconcile.
    """
    committed = committed_rotation(db_path)
    if committed is not None and committed["public_key"] != public_key_hex(key.public_key()):
        raise RetiredKeyError(
            f"the gateway key is not the one the key_rotation record seq={committed['seq']} "
            f"handed the chain to (public key {committed['public_key']}): restore that key "
            "file; the gateway must not sign with a retired key"
        )


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


def read_key(path: Path) -> Ed25519PrivateKey:
    """The Ed25519 key in the PEM file at ``path``; refuses a file readable by others."""
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


def key_pem(key: Ed25519PrivateKey) -> bytes:
    """The key as unencrypted PKCS#8 PEM (the key file's format)."""
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())


def write_new_file(path: Path, data: bytes) -> None:
    """Create ``path`` (mode 0600 from the start) holding ``data``, fsynced; never replaces.

    Raises FileExistsError when ``path`` exists. The caller renames it into place.
    """
    # O_EXCL + 0600 from the start: the key is never readable by others, not even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def load_or_create_key(
    path: Path, *, db_path: Path | None = None, reconcile: bool = True
) -> Ed25519PrivateKey:
    """Load the key at ``path``; create it (mode 0600, atomically) if it does not exist.

    With ``db_path``, a missing key is created only when that database's outbox holds no
    signed record; otherwise :class:`MissingKeyError` (a SetupError) says what to do.
    With ``db_path`` and ``reconcile`` (only for the holder of the database's gateway
    lock: it may rename or delete ``<key>.next``), an interrupted key rotation is first
    finished or discarded, and a key file the chain was handed away from is refused
    (:class:`cloud_sync.key_rotation.RetiredKeyError`).
    """
    if db_path is not None and reconcile:
        reconcile_rotation(path, db_path)
    if path.exists():
        return read_key(path)
    signed = 0 if db_path is None else signed_record_count(db_path)
    if signed:
        raise MissingKeyError(
            f"gateway key {path} is missing but the outbox in {db_path} holds {signed} records "
            "signed with it: restore the key file from its backup (a new key would break "
            "their verification), or move the database aside to start a new identity"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    tmp = path.with_name(path.name + ".tmp")
    # A power cut can leave a half-written tmp: it never became the key, so drop it.
    with suppress(FileNotFoundError):
        tmp.unlink()
    write_new_file(tmp, key_pem(key))
    os.replace(tmp, path)
    fsync_dir(path.parent)  # the rename itself survives a power cut
    log.info("gateway key created path=%s public_key=%s", path, public_key_hex(key.public_key()))
    return key

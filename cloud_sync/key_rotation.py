"""Gateway key rotation: a signed ``key_rotation`` record hands the chain to a new key.

The receiver learns the new key from the record itself (signed with the old key, chained
like any record; ``cloud_sync.receiver_rotation``). On the gateway the rotation must
survive kill -9 and power loss at any moment without ever losing the old key before the
record is committed, nor signing with the new key before it. So :func:`rotate` goes:

1. the new key is written to ``<key>.next`` (0600, fsynced, renamed into place, folder
   fsynced): nothing refers to it yet;
2. ONE store transaction appends the ``key_rotation`` record (signed with the old key)
   and sets the ``key_rotation`` meta value (the new public key and the record's seq);
3. ``<key>.next`` atomically replaces the key file.

At start-up the gateway runs :func:`cloud_sync.identity.reconcile_rotation` before it
loads its key: a ``<key>.next`` whose public key the database does not name was never
handed the chain, so it is deleted; one it names finishes the swap. A key file whose key
the chain was handed away from is refused (``RetiredKeyError``): its signatures would be
``bad_signature`` or ``retired_key`` at the receiver.

Both run only for the holder of the database's gateway lock (``edge.app.lock``): the
gateway at start-up, or ``offsite-edge identity rotate`` with the gateway stopped. The
database is written through the store's single writer, as always.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import aiosqlite
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud_sync.chain import public_key_hex
from cloud_sync.config import CloudConfig
from cloud_sync.errors import IdentityError
from cloud_sync.identity import (
    META_KEY,
    key_pem,
    next_key_path,
    read_key,
    reconcile_rotation,
    write_new_file,
)
from cloud_sync.outbox import Outbox, classes_of
from edge.clock import clock_synchronised
from edge.counters import write_meta
from edge.files import fsync_dir
from edge.store import Store

log = logging.getLogger(__name__)

__all__ = ["Rotation", "rotate"]

Step = Callable[[str], None]
"""Called after each step of :func:`rotate` (``next_written``, ``committed``, ``swapped``):
tests kill the process there to check the crash safety."""


@dataclass(frozen=True, slots=True)
class Rotation:
    """A committed rotation: the record at ``seq`` hands the chain to ``new_public_key``."""

    seq: int
    record_id: str
    old_public_key: str
    new_public_key: str


def _write_next(key_path: Path, key: Ed25519PrivateKey) -> None:
    """Put ``key`` at ``<key>.next`` whole or not at all (temp file, fsync, rename, fsync)."""
    pending = next_key_path(key_path)
    tmp = pending.with_name(pending.name + ".tmp")
    with suppress(FileNotFoundError):
        tmp.unlink()  # left by a killed attempt; we hold the gateway lock
    write_new_file(tmp, key_pem(key))
    os.replace(tmp, pending)
    fsync_dir(key_path.parent)


async def _append(db_path: Path, outbox: Outbox, new_hex: str) -> tuple[int, str]:
    """The rotation record and the meta value, in one transaction: (seq, record id)."""

    async def op(db: aiosqlite.Connection) -> tuple[int, str]:
        body = {"type": "key_rotation", "new_public_key": new_hex}
        [seq] = await outbox.put_bodies(db, [("event", body)], time.time(), clock_synchronised())
        async with db.execute("SELECT id FROM outbox WHERE seq = ?", (seq,)) as cursor:
            row = await cursor.fetchone()
        record_id = str(row[0]) if row is not None else ""
        meta = {"public_key": new_hex, "seq": seq, "record_id": record_id, "at": time.time()}
        await write_meta(db, META_KEY, json.dumps(meta))
        return seq, record_id

    async with await Store.open(db_path) as store:
        result: tuple[int, str] = await store.run(op)
    return result


def rotate(
    key_path: Path,
    db_path: Path,
    gateway_id: str,
    cloud: CloudConfig,
    *,
    step: Step | None = None,
) -> Rotation:
    """Hand the gateway's chain to a new key (the caller holds the gateway lock).

    Runs its own event loop for the one store transaction (call it from sync code).

    The ``key_rotation`` record goes to every uplink that carries events, like any event.
    """
    reconcile_rotation(key_path, db_path)
    if not key_path.exists():
        raise IdentityError(
            f"no gateway key at {key_path}: nothing to rotate (`offsite-edge identity` "
            "creates the first one)"
        )
    if not db_path.exists():
        raise IdentityError(f"no gateway database at {db_path}: nothing is signed yet")
    old = read_key(key_path)
    new = Ed25519PrivateKey.generate()
    new_hex = public_key_hex(new.public_key())
    _write_next(key_path, new)
    if step is not None:
        step("next_written")
    outbox = Outbox(
        gateway_id=gateway_id,
        key=old,
        uplinks={u.name: classes_of(u.classes) for u in cloud.uplinks},
        settings=cloud.outbox,
    )
    try:
        seq, record_id = asyncio.run(_append(db_path, outbox, new_hex))
    except BaseException:
        # Committed or not, the database decides: finish the swap or drop the new key.
        reconcile_rotation(key_path, db_path)
        raise
    if step is not None:
        step("committed")
    os.replace(next_key_path(key_path), key_path)
    fsync_dir(key_path.parent)
    if step is not None:
        step("swapped")
    log.info(
        "gateway key rotated seq=%d old_public_key=%s new_public_key=%s",
        seq, public_key_hex(old.public_key()), new_hex,
    )  # fmt: skip
    return Rotation(
        seq=seq,
        record_id=record_id,
        old_public_key=public_key_hex(old.public_key()),
        new_public_key=new_hex,
    )

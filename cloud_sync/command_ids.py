"""Replay protection for signed commands: executed ids and a high-water mark, in the store.

A command id is consumed (written to ``command_ids``) in the store's transaction *before*
the command runs, so a replay is refused even after a restart or kill -9, and a crash
between consumption and execution loses the command rather than running it twice.

The high-water mark ``command_high_water`` (table ``meta``) is the newest ``issued_at``
ever accepted. A command issued more than ``MAX_LIFETIME_S`` before it is refused as
stale: it expired before the newest accepted command was issued, whatever the gateway
clock says. That rule is also what lets ids older than the window be forgotten.
Tables: ``edge.schema`` (version 3). These functions run as store operations
(:meth:`edge.store.Store.run`), never on their own connection.
"""

from __future__ import annotations

import time

import aiosqlite

from cloud_sync.envelope import MAX_LIFETIME_S, SignedCommand
from cloud_sync.errors import CommandRefusedError

HIGH_WATER_KEY = "command_high_water"


async def high_water(db: aiosqlite.Connection) -> int | None:
    """The newest ``issued_at`` of an accepted command, if any."""
    async with db.execute("SELECT value FROM meta WHERE key = ?", (HIGH_WATER_KEY,)) as cursor:
        row = await cursor.fetchone()
    return None if row is None else int(row[0])


async def consume(db: aiosqlite.Connection, command: SignedCommand) -> None:
    """Mark ``command`` as used; raise CommandRefusedError if replayed or stale.

    Runs inside the writer's transaction: check and insert commit together.
    """
    mark = await high_water(db)
    if mark is not None and command.issued_at < mark - MAX_LIFETIME_S:
        raise CommandRefusedError(
            "stale",
            f"issued {mark - command.issued_at} s before the newest accepted command",
            command_id=command.id,
        )
    async with db.execute(
        "SELECT accepted_at FROM command_ids WHERE id = ?", (command.id,)
    ) as cursor:
        row = await cursor.fetchone()
    if row is not None:
        raise CommandRefusedError(
            "replayed", f"command id {command.id} was accepted before", command_id=command.id
        )
    await db.execute(
        "INSERT INTO command_ids (id, issued_at, expires_at, key, accepted_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (command.id, command.issued_at, command.expires_at, command.key.public_hex, time.time()),
    )
    if mark is None or command.issued_at > mark:
        mark = command.issued_at
        await db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (HIGH_WATER_KEY, str(mark)),
        )
    # Ids below the window are refused as stale anyway: no need to remember them.
    await db.execute("DELETE FROM command_ids WHERE issued_at < ?", (mark - MAX_LIFETIME_S,))

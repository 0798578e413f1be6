"""Bookkeeping values in the gateway database: named counters and ``meta`` entries.

Counters hold the gateway sequence (``seq``: every record the gateway produces gets the
next number, whichever part produced it), totals and byte usage; ``meta`` holds single
values such as the chain head. All functions run inside the caller's transaction.
"""

from __future__ import annotations

import aiosqlite


async def read_counter(db: aiosqlite.Connection, name: str) -> int:
    """The counter's value (0 when it was never bumped)."""
    async with db.execute("SELECT value FROM counters WHERE name = ?", (name,)) as cursor:
        row = await cursor.fetchone()
    return 0 if row is None else int(row[0])


async def bump_counter(db: aiosqlite.Connection, name: str, by: int) -> int:
    """Add ``by`` to the counter inside the caller's transaction; return the new value."""
    async with db.execute(
        "INSERT INTO counters (name, value) VALUES (?, ?)"
        " ON CONFLICT (name) DO UPDATE SET value = value + excluded.value RETURNING value",
        (name, by),
    ) as cursor:
        row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


async def reserve_seqs(db: aiosqlite.Connection, count: int) -> int:
    """Reserve ``count`` consecutive gateway sequence numbers; return the first."""
    return await bump_counter(db, "seq", count) - count + 1


async def read_meta(db: aiosqlite.Connection, key: str) -> str | None:
    """A ``meta`` value, or None when it was never written."""
    async with db.execute("SELECT value FROM meta WHERE key = ?", (key,)) as cursor:
        row = await cursor.fetchone()
    return None if row is None else str(row[0])


async def write_meta(db: aiosqlite.Connection, key: str, value: str) -> None:
    """Set a ``meta`` value."""
    await db.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, value),
    )

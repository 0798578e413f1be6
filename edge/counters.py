"""Named integer counters in the gateway database (sequence numbers, totals, byte usage)."""

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

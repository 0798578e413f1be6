"""Waiting on events: the one way our long-running loops sleep and stop."""

from __future__ import annotations

import asyncio


async def wait_any(*events: asyncio.Event, at_most: float | None = None) -> None:
    """Return as soon as any of ``events`` is set, or after ``at_most`` seconds (not an error).

    Loops sleep with ``await wait_any(stop, at_most=interval)`` so that a shutdown never
    waits for an interval to run out.
    """
    if any(event.is_set() for event in events):
        return
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, timeout=at_most, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()

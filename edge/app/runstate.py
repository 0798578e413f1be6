"""What the running gateway knows and the database does not: is it connected right now.

The gateway keeps ``<db>.state.json`` (owner-only, replaced atomically, written only when
something changed) with its pid and the connection state of the broker and of each cloud
uplink, with the time it last changed, and its clock (state, last step, readings held
back from judgement: ``edge.app.trusted_time``) and each sensor's evaluation periods
(latest verdicts and counts: ``edge.app.status_periods``). ``offsite-edge status`` reads
it beside the database lock (``edge.app.lock``): a state file is believed only while its
pid holds the lock, so a killed gateway's last "connected" is never shown as current.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from edge.waits import wait_any

POLL_S = 1.0


def state_path(db: Path) -> Path:
    """The runtime state file of the database at ``db``."""
    return db.with_name(db.name + ".state.json")


def _write(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, json.dumps(state).encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)


def read_state(db: Path) -> dict[str, Any] | None:
    """The state the gateway last wrote, or None when there is none (or it is unreadable)."""
    try:
        data = json.loads(state_path(db).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


async def publish_state(
    db: Path,
    broker: asyncio.Event,
    stop: asyncio.Event,
    uplinks: Callable[[], Mapping[str, bool]] | None = None,
    clock: Callable[[], dict[str, Any]] | None = None,
    *,
    periods: Callable[[], dict[str, Any]] | None = None,
) -> None:
    """Keep the state file current until ``stop``; on the way out say the gateway stopped.

    ``uplinks`` tells whether each cloud uplink is connected (name → bool); ``clock`` the
    clock's state as status shows it; ``periods`` each sensor's evaluation periods."""
    path = state_path(db)
    last: str | None = None
    last_uplinks: dict[str, str] = {}
    last_clock: dict[str, Any] | None = None
    last_periods: dict[str, Any] | None = None
    state: dict[str, Any] = {"pid": os.getpid(), "started_at": time.time(), "uplinks": {}}
    try:
        while not stop.is_set():
            now = "connected" if broker.is_set() else "disconnected"
            links = {
                name: "connected" if up else "disconnected"
                for name, up in (uplinks() if uplinks is not None else {}).items()
            }
            clock_now = None if clock is None else clock()
            changed = clock_now != last_clock
            if changed:
                state["clock"], last_clock = clock_now, clock_now
            periods_now = None if periods is None else periods()
            if periods_now != last_periods:
                state["periods"], last_periods, changed = periods_now, periods_now, True
            if changed or now != last or links != last_uplinks:
                if now != last:
                    state |= {"broker": now, "broker_since": time.time()}
                for name, link in links.items():
                    if last_uplinks.get(name) != link:
                        state["uplinks"][name] = {"state": link, "since": time.time()}
                last, last_uplinks = now, links
                with contextlib.suppress(OSError):  # a status view is not worth a crash
                    await asyncio.to_thread(_write, path, state)
            await wait_any(stop, at_most=POLL_S)
    finally:
        state |= {"broker": "stopped", "broker_since": time.time()}
        with contextlib.suppress(OSError):
            _write(path, state)

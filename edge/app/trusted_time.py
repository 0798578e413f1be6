"""Trusted time, wired: the clock watch's task, its audit records and the held readings.

One task of the gateway's TaskGroup checks the clock every ``clock.check_interval_s``
(``edge.clock_watch``). What it finds becomes an audit event committed through the store
(so it enters the signed chain and reaches the cloud like any event):

* ``clock_step`` (warning): the wall clock jumped forward or back, by how much, from when;
* ``clock_synchronised`` (info): NTP sync found. If readings were held back from
  judgement, they are replayed to their monitors first, under the ingest's lock, with
  corrected times; the record says how many, how many were refused by the skew rules or
  dropped from the full buffer, and the offset of the stored receipt times;
* ``clock_unsynchronised`` (warning): the kernel lost sync (the clock free-runs).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from edge.app.audit import clock_audit_event
from edge.clock_watch import ClockChange, ClockWatch
from edge.events import Event
from edge.store import Store
from edge.waits import wait_any
from sensors.batch_builder import BatchBuilder
from sensors.monitor import SensorMonitor

log = logging.getLogger(__name__)

Tick = Callable[[float], list[Event]]


def monitors_tick(watch: ClockWatch, monitors: Mapping[str, SensorMonitor]) -> Tick:
    """Tick every monitor; judge nothing while the clock is not trusted.

    The monitors see no readings meanwhile (they are held), so a tick would only find
    every sensor silent and raise false offline alarms, at a time that is wrong anyway.
    """

    def tick(now: float) -> list[Event]:
        if not watch.trusted:
            return []
        events: list[Event] = []
        for monitor in monitors.values():
            events.extend(monitor.tick(now))
        return events

    return tick


def clock_view(watch: ClockWatch, builder: BatchBuilder) -> Callable[[], dict[str, Any]]:
    """The clock as the state file shows it: state, last step, readings held back."""

    def view() -> dict[str, Any]:
        return {
            **watch.view(),
            "held_back": len(builder.held),
            "not_judged": builder.held.not_judged,
        }

    return view


def on_change(
    change: ClockChange, watch: ClockWatch, builder: BatchBuilder, lock: threading.Lock
) -> Event:
    """The audit event of one change; a first sync releases the held readings first."""
    detail = dict(change.detail)
    if change.kind == "clock_synchronised" and not watch.trusted:
        with lock:
            released = builder.release(watch.corrected)
            watch.trust()
        detail |= {
            "held_replayed": released.replayed,
            "held_skew_refused": released.skew_refused,
            "not_judged": released.not_judged,
            "held_first_received": released.first_received,
            "held_last_received": released.last_received,
            "receipt_offset_s": released.offset_s,
        }
        log.warning(
            "clock synchronised; held readings judged replayed=%d skew_refused=%d "
            "not_judged=%d receipt_offset_s=%s",
            released.replayed,
            released.skew_refused,
            released.not_judged,
            released.offset_s,
        )
    elif change.kind == "clock_step":
        log.warning(
            "clock step %s by %.3f s (records before it may be dated wrongly)",
            detail["direction"],
            detail["step_s"],
        )
    elif change.kind == "clock_unsynchronised":
        log.warning("clock lost NTP synchronisation; check timedatectl")
    return clock_audit_event(change.kind, change.at, detail)


async def watch_clock(
    watch: ClockWatch,
    builder: BatchBuilder,
    lock: threading.Lock,
    store: Store,
    stop: asyncio.Event,
    *,
    interval_s: float,
) -> None:
    """Check the clock until ``stop``; commit an audit event per change."""
    if not watch.trusted:
        log.warning(
            "clock not synchronised at start: readings are stored but held back from "
            "judgement until NTP syncs (clock.hold_until_synced); check timedatectl"
        )
    try:
        while not stop.is_set():
            await wait_any(stop, at_most=interval_s)
            for change in watch.check():
                await store.emit(on_change(change, watch, builder, lock))
    finally:
        if len(builder.held):
            # They are stored; only their judgement is lost with this process's memory.
            log.warning(
                "stopping with readings held back that were never judged held=%d "
                "reason=the clock never synchronised in this run",
                len(builder.held),
            )

"""Maintenance and calibration modes of sensors: state, rules and how requests arrive.

While a technician has a sensor in maintenance or calibration, its readings are stored
with the HJ 212 flag ``M`` or ``C`` and never raise an exceedance. The mode is one event
(kind ``maintenance``) that opens when the mode starts, updates when it changes, and
closes when the sensor returns to normal; an open one is resumed after a restart.

Requests arrive two ways, both at one :class:`ModeDesk`:

* from a technician's ``offsite-edge sensors maintenance`` (another process): the CLI
  files the request as a small JSON file beside the database (:func:`file_request`),
  since only the gateway's single writer may write the database;
* from a remote command inside the gateway (:meth:`ModeDesk.submit`): an in-process queue.

The gateway takes each request, applies it to the sensor's monitor and commits the
``maintenance`` event; only then is a filed request's file removed, so a power cut
between the two loses no request.

A mode cannot hide a sensor for ever: :class:`ModeGuard` ends one that has lasted its
sensor's ``health.maintenance_max_s`` (a ``maintenance_expired`` warning beside the
closing ``maintenance`` event) and raises ``maintenance_repeated`` when a sensor enters
a mode more than ``maintenance_repeat_limit`` times within the repeat window.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import os
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from edge.events import Event, EventStatus, Severity

__all__ = [
    "Mode",
    "ModeDesk",
    "ModeGuard",
    "ModeLimits",
    "ModeRequest",
    "ModeState",
    "apply_request",
    "change_mode",
    "file_request",
    "filed_requests",
    "requests_dir",
]

log = logging.getLogger(__name__)


class Mode(enum.StrEnum):
    """Operating mode of a sensor, as set from the CLI or a regulator's command."""

    NORMAL = "normal"
    MAINTENANCE = "maintenance"
    CALIBRATION = "calibration"

    @property
    def flag(self) -> str | None:
        """The HJ 212-2017 Table 8 data flag forced onto readings in this mode."""
        return {Mode.NORMAL: None, Mode.MAINTENANCE: "M", Mode.CALIBRATION: "C"}[self]


@dataclass(frozen=True, slots=True, kw_only=True)
class ModeState:
    """The current mode, who set it, why and when."""

    mode: Mode = Mode.NORMAL
    who: str = ""
    why: str = ""
    since: float = 0.0


def change_mode(
    state: ModeState, mode: Mode, who: str, why: str, at: float
) -> tuple[ModeState, EventStatus]:
    """Return the new state and the status of the ``maintenance`` event to emit.

    OPEN when leaving normal, CLOSED when returning to it, UPDATE when switching between
    maintenance and calibration (or re-stating who/why). Raises ValueError for normal →
    normal, which is a technician's mistake worth reporting rather than recording.
    """
    if not who.strip() or not why.strip():
        raise ValueError("who and why are required to change a sensor's mode")
    if mode is Mode.NORMAL:
        if state.mode is Mode.NORMAL:
            raise ValueError("sensor is not in maintenance or calibration")
        return ModeState(mode=mode, who=who, why=why, since=at), EventStatus.CLOSED
    if state.mode is Mode.NORMAL:
        return ModeState(mode=mode, who=who, why=why, since=at), EventStatus.OPEN
    return ModeState(mode=mode, who=who, why=why, since=state.since), EventStatus.UPDATE


@dataclass(frozen=True, slots=True, kw_only=True)
class ModeRequest:
    """A mode someone asked for a sensor, with who, why and when."""

    sensor_id: str
    mode: Mode
    who: str
    why: str
    requested_at: float

    @classmethod
    def make(cls, sensor_id: str, mode: Mode | str, who: str, why: str) -> ModeRequest:
        """A request made now; raises ValueError for an unknown mode or a missing who/why."""
        if not who.strip() or not why.strip():
            raise ValueError("who and why are required")
        return cls(sensor_id=sensor_id, mode=Mode(mode), who=who, why=why, requested_at=time.time())


class ModeSubject(Protocol):
    """What a mode request acts on: a sensor's monitor (``sensors.monitor.SensorMonitor``)."""

    @property
    def mode(self) -> ModeState:
        """The current mode."""
        ...

    def set_mode(self, mode: Mode | str, who: str, why: str, ts: float) -> Event:
        """Enter or leave a mode; return the ``maintenance`` event."""
        ...


def requests_dir(db_path: Path) -> Path:
    """Where the technician's CLI files requests for the gateway using ``db_path``."""
    return db_path.with_name(db_path.name + ".mode-requests")


def file_request(db_path: Path, request: ModeRequest) -> Path:
    """File a request for the gateway (atomically: a reader never sees half a file)."""
    folder = requests_dir(db_path)
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{time.time_ns():020d}-{request.sensor_id}.json"
    tmp = folder / f".{name}.tmp"
    with tmp.open("w", encoding="utf-8") as handle:
        json.dump(
            {
                "sensor_id": request.sensor_id,
                "mode": str(request.mode),
                "who": request.who,
                "why": request.why,
                "requested_at": request.requested_at,
            },
            handle,
            ensure_ascii=False,
        )
        handle.flush()
        os.fsync(handle.fileno())
    path = folder / name
    os.replace(tmp, path)
    return path


def filed_requests(db_path: Path) -> list[tuple[Path, ModeRequest]]:
    """Requests filed and not yet applied, oldest first; unreadable files are set aside."""
    folder = requests_dir(db_path)
    if not folder.is_dir():
        return []
    out: list[tuple[Path, ModeRequest]] = []
    for path in sorted(folder.glob("[0-9]*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            request = ModeRequest(
                sensor_id=str(data["sensor_id"]),
                mode=Mode(data["mode"]),
                who=str(data["who"]),
                why=str(data["why"]),
                requested_at=float(data["requested_at"]),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.error("mode request unreadable file=%s reason=%s; set aside as .bad", path, exc)
            with contextlib.suppress(OSError):
                os.replace(path, path.with_suffix(".bad"))
            continue
        out.append((path, request))
    return out


class ModeDesk:
    """Where mode requests arrive for a running gateway: filed by the CLI or submitted."""

    def __init__(self, db_path: Path, sensor_ids: frozenset[str]) -> None:
        self._db_path = db_path
        self._sensor_ids = sensor_ids
        self._queue: asyncio.Queue[ModeRequest] = asyncio.Queue()

    async def set_sensor_mode(self, sensor_id: str, mode: str, who: str, why: str) -> None:
        """Queue a request from inside the gateway (a remote command).

        Raises ValueError for an unknown sensor or mode, or a missing who/why.
        """
        if sensor_id not in self._sensor_ids:
            raise ValueError(f"unknown sensor {sensor_id!r}")
        await self._queue.put(ModeRequest.make(sensor_id, mode, who, why))

    async def take(
        self, stop: asyncio.Event, poll_s: float
    ) -> list[tuple[Path | None, ModeRequest]]:
        """Wait up to ``poll_s`` for a submitted request; return it with every filed one.

        A filed request comes with its file, to remove with :meth:`done` once applied.
        """
        taken: list[tuple[Path | None, ModeRequest]] = []
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0 if stop.is_set() else poll_s):
                taken.append((None, await self._queue.get()))
        while not self._queue.empty():
            taken.append((None, self._queue.get_nowait()))
        taken.extend(await asyncio.to_thread(filed_requests, self._db_path))
        return taken

    @staticmethod
    def done(path: Path | None) -> None:
        """Forget a filed request once its event is committed."""
        if path is not None:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def apply_request(subjects: Mapping[str, ModeSubject], request: ModeRequest) -> Event | None:
    """Apply a request to its sensor's monitor; return the ``maintenance`` event, if any.

    A request for an unknown sensor, or back to normal for a sensor already normal, changes
    nothing and is only logged.
    """
    subject = subjects.get(request.sensor_id)
    if subject is None:
        log.warning("mode request ignored sensor=%s reason=not configured", request.sensor_id)
        return None
    if request.mode is Mode.NORMAL and subject.mode.mode is Mode.NORMAL:
        log.info("mode request ignored sensor=%s reason=already normal", request.sensor_id)
        return None
    event = subject.set_mode(request.mode, request.who, request.why, request.requested_at)
    log.info(
        "sensor mode sensor=%s mode=%s who=%s why=%r",
        request.sensor_id,
        request.mode,
        request.who,
        request.why,
    )
    return event


GATEWAY_WHO = "offsite-edge"
"""Who ends a mode that ran past its maximum duration."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ModeLimits:
    """How long, and how often, one sensor may be in maintenance or calibration."""

    max_s: float
    repeat_limit: int
    repeat_window_s: float


class ModeGuard:
    """Ends modes past their maximum duration and notices repeated maintenance.

    Pure bookkeeping: the gateway asks :meth:`expired` for the requests that end overdue
    modes, applies them like any other request, and passes each applied ``maintenance``
    event to :meth:`after`, which returns the warnings to commit with it.
    """

    def __init__(self, limits: Mapping[str, ModeLimits]) -> None:
        self._limits = dict(limits)
        self._entries: dict[str, deque[float]] = {}

    def seed(self, sensor_id: str, started_at: float) -> None:
        """Count a mode entry from before a restart (so restarting resets no count)."""
        entries = self._entries.setdefault(sensor_id, deque())
        entries.append(started_at)

    def seed_window_s(self) -> float:
        """How far back :meth:`seed` needs entries: the longest repeat window."""
        return max((lim.repeat_window_s for lim in self._limits.values()), default=0.0)

    def expired(self, subjects: Mapping[str, ModeSubject], now: float) -> list[ModeRequest]:
        """Requests back to normal for every sensor whose mode has lasted its maximum."""
        out: list[ModeRequest] = []
        for sensor_id, subject in subjects.items():
            limits = self._limits.get(sensor_id)
            state = subject.mode
            if limits is None or state.mode is Mode.NORMAL or now - state.since < limits.max_s:
                continue
            why = f"maximum {state.mode} duration of {limits.max_s:g} s reached"
            out.append(
                ModeRequest(
                    sensor_id=sensor_id,
                    mode=Mode.NORMAL,
                    who=GATEWAY_WHO,
                    why=why,
                    requested_at=now,
                )
            )
        return out

    def after(self, event: Event, before: ModeState, request: ModeRequest) -> list[Event]:
        """The warnings that go with an applied ``maintenance`` event.

        ``before`` is the sensor's mode before ``request`` was applied.
        """
        sensor_id = event.source
        limits = self._limits.get(sensor_id)
        if limits is None:
            return []
        at = request.requested_at
        base = {"sensor": sensor_id, "mode": str(before.mode), "since": before.since}
        if event.status is EventStatus.CLOSED and request.who == GATEWAY_WHO:
            detail = {**base, "who": before.who, "why": before.why, "max_s": limits.max_s}
            return [_warning("maintenance_expired", sensor_id, at, detail)]
        if event.status is not EventStatus.OPEN:
            return []
        window_start = at - limits.repeat_window_s
        entries = deque(t for t in self._entries.get(sensor_id, ()) if t > window_start)
        entries.append(at)
        self._entries[sensor_id] = entries
        if len(entries) <= limits.repeat_limit:
            return []
        detail = {
            "sensor": sensor_id,
            "mode": str(request.mode),
            "who": request.who,
            "why": request.why,
            "entries": len(entries),
            "repeat_limit": limits.repeat_limit,
            "repeat_window_s": limits.repeat_window_s,
        }
        return [_warning("maintenance_repeated", sensor_id, at, detail)]


def _warning(kind: str, sensor_id: str, at: float, detail: dict[str, object]) -> Event:
    return Event(
        kind=kind,
        source=sensor_id,
        severity=Severity.WARNING,
        status=EventStatus.INSTANT,
        started_at=at,
        detail=detail,
    )

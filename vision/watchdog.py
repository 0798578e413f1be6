"""Camera watchdog: ``camera_offline`` events and reopening stalled or ended readers.

One :meth:`Watchdog.supervise` task runs per camera. ``camera_offline`` is OPEN when a
camera has delivered no frame for ``watchdog_s`` and CLOSED (same ``event_id``) when
frames flow again, or with ``closed_by: <reason>`` when the service stops. Severity
warning. A dead or stalled reader is reopened with jittered exponential backoff; a
non-looping video file that played to its end is finished, not offline.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable

from edge.events import Event, EventStatus, Severity
from vision.camera_state import CameraState
from vision.config import source_kind

__all__ = ["Watchdog"]

log = logging.getLogger(__name__)


class Watchdog:
    """Supervises cameras: offline after ``watchdog_s`` silence, reopen with backoff.

    ``emit`` sends an event. ``start_reader`` and ``retire`` are the service's: retiring a
    pulled reader releases its capture on the inference worker, which the service owns.
    """

    def __init__(
        self,
        emit: Callable[[Event], Awaitable[None]],
        *,
        start_reader: Callable[[CameraState], None],
        retire: Callable[[CameraState], None],
    ) -> None:
        self._emit = emit
        self._start_reader = start_reader
        self._retire = retire

    async def supervise(self, cam: CameraState) -> None:
        """Watchdog: offline after ``watchdog_s`` silence; reopen stalled/ended readers."""
        cfg = cam.config
        tick = min(0.5, cfg.watchdog_s / 4)
        attempt = 0
        while True:
            await asyncio.sleep(tick)
            reader = cam.reader
            assert reader is not None
            now = time.monotonic()
            if reader.last_frame_at is not None:
                cam.last_frame_at = max(cam.last_frame_at, reader.last_frame_at)
                if reader.pull_mode and reader.alive and reader.pulling_since is None:
                    # A replay waiting for its turn at the detector is not silent; only a
                    # pull that blocks counts.
                    cam.last_frame_at = now
            silent = now - cam.last_frame_at
            cam.refresh_stats()
            if reader.last_frame_at is not None and not cam.stats.online:
                await self._camera_online(cam)
            if silent >= cfg.watchdog_s and cam.stats.offline_event_id is None:
                await self._camera_offline(cam, silent, reader.failure)
            if (
                not reader.alive
                and reader.failure == "end of stream"
                and source_kind(cfg.source) == "file"
                and not cfg.loop
            ):
                # A replayed file that ended is finished, not offline: nothing to reopen.
                log.info("camera file finished", extra={"camera": cfg.id})
                cam.finished = True
                return
            stalled = reader.alive and silent >= cfg.watchdog_s
            if not reader.alive or stalled:
                if reader.last_frame_at is not None:
                    attempt = 0
                delay = min(cfg.backoff_max_s, cfg.backoff_min_s * 2**attempt)
                delay *= random.uniform(0.8, 1.2)  # jitter: cameras on one NVR do not stampede
                attempt += 1
                log.info(
                    "reopening camera",
                    extra={
                        "camera": cfg.id,
                        "reason": "stalled" if stalled else reader.failure,
                        "delay_s": round(delay, 2),
                    },
                )
                self._retire(cam)
                cam.stats.reopens += 1
                await asyncio.sleep(delay)
                self._start_reader(cam)

    async def close_all(self, cameras: Iterable[CameraState], reason: str, now: float) -> None:
        """Close every open ``camera_offline`` event with ``closed_by: reason``."""
        for cam in cameras:
            event_id = cam.stats.offline_event_id
            if event_id is not None:
                cam.stats.offline_event_id = None
                await self._emit(_offline_closed(cam, event_id, reason, now))

    async def _camera_offline(self, cam: CameraState, silent: float, reason: str | None) -> None:
        cam.stats.online = False
        event = Event(
            kind="camera_offline",
            source=cam.config.id,
            severity=Severity.WARNING,
            status=EventStatus.OPEN,
            started_at=time.time(),
            detail={"silent_s": round(silent, 1), "reason": reason or "no frames"},
        )
        cam.stats.offline_event_id = event.event_id
        log.warning("camera offline", extra={"camera": cam.config.id, "reason": reason})
        await self._emit(event)

    async def _camera_online(self, cam: CameraState) -> None:
        cam.stats.online = True
        event_id = cam.stats.offline_event_id
        if event_id is None:
            return
        cam.stats.offline_event_id = None
        log.info("camera online", extra={"camera": cam.config.id})
        await self._emit(_offline_closed(cam, event_id, "frames", time.time()))


def _offline_closed(cam: CameraState, event_id: str, reason: str, now: float) -> Event:
    """The record that closes a camera's open ``camera_offline`` event."""
    return Event(
        kind="camera_offline",
        source=cam.config.id,
        severity=Severity.WARNING,
        status=EventStatus.CLOSED,
        started_at=now,
        ended_at=now,
        event_id=event_id,
        detail={"closed_by": reason},
    )

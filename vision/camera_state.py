"""What the vision service keeps per camera: its frame queue, current reader and counters.

A camera's reader is replaced whenever the watchdog reopens it (see
:mod:`vision.watchdog`); :class:`CameraState` keeps the counters of retired readers so
that :class:`CameraStats` counts across reopens.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vision.camera import CameraReader, Frame, FrameQueue, pulls_on_demand
from vision.config import CameraConfig

if TYPE_CHECKING:
    from vision.detector import Detection

__all__ = ["CameraState", "CameraStats", "LastSample"]


@dataclass(frozen=True, slots=True, kw_only=True)
class LastSample:
    """The newest frame that went through the detector, and what it found (read-only).

    The frame's image is the reader's own array, never written after it was read; holding
    it keeps one frame per camera alive, for the technician console.
    """

    frame: Frame
    detections: tuple[Detection, ...]


@dataclass(slots=True, kw_only=True)
class CameraStats:
    """Counters of one camera, for logs, tests and benchmarks."""

    decoded: int = 0
    sampled: int = 0
    inferences: int = 0
    inference_s: float = 0.0  # total time from handing a frame to detection to its result
    dropped: int = 0
    reopens: int = 0
    last_inference_at: float | None = None  # monotonic, when the last detection finished
    online: bool = False
    offline_event_id: str | None = None
    last_sample: LastSample | None = None


class CameraState:
    """One camera's runtime state: config, frame queue, current reader and counters.

    ``notify`` is called after each frame is queued (the service wakes its inference loop).
    """

    def __init__(self, config: CameraConfig, notify: Callable[[], None]) -> None:
        self.config = config
        self.queue = FrameQueue(config.queue_size, notify)
        self.reader: CameraReader | None = None
        self.stats = CameraStats()
        self.generation = 0
        self.last_frame_at = time.monotonic()  # watchdog counts from start-up
        self._retired_decoded = 0
        self._retired_sampled = 0
        self.finished = False  # a non-looping video file played to its end

    def start_reader(self, opener: Callable[[str | int], Any]) -> CameraReader:
        """Start a new reader (next generation) for this camera and return it."""
        self.generation += 1
        reader = CameraReader(
            self.config,
            self.queue,
            generation=self.generation,
            opener=opener,
            pull=pulls_on_demand(self.config),
        )
        self.reader = reader
        reader.start()
        return reader

    def refresh_stats(self) -> None:
        """Update :attr:`stats` from the current reader, retired readers and the queue."""
        r = self.reader
        self.stats.decoded = self._retired_decoded + (r.decoded if r else 0)
        self.stats.sampled = self._retired_sampled + (r.sampled if r else 0)
        self.stats.dropped = self.queue.dropped

    def retire_reader(self) -> CameraReader | None:
        """Stop the current reader, keep its counters and return it (``None`` if none)."""
        r = self.reader
        if r is not None:
            r.stop()
            self._retired_decoded += r.decoded
            self._retired_sampled += r.sampled
            self.reader = None
        return r

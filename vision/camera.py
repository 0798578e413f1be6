"""Camera readers: one thread per camera decodes, samples, motion-gates and queues frames.

OpenCV's ``read()`` blocks (an RTSP stall can block for long), so each camera gets its own
thread, and the asyncio side never waits on it. The reader samples at ``sample_fps``
(skipped frames are only ``grab()``-bed, not decoded), runs the motion gate, and puts the
frames worth inferring into a :class:`FrameQueue` that keeps only the newest
``queue_size`` frames. The watchdog lives in the service: a reader that stalls is
abandoned (its thread exits when its blocking call returns) and a new one is started.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from vision.config import CameraConfig, source_kind
from vision.motion import GateDecision, MotionGate

__all__ = ["CameraReader", "Frame", "FrameQueue", "open_capture"]

log = logging.getLogger(__name__)

_OPEN_TIMEOUT_MS = 10_000
_READ_TIMEOUT_MS = 10_000


@dataclass(frozen=True, slots=True, kw_only=True)
class Frame:
    """A sampled frame. ``ts`` is the media clock (file time or monotonic), ``wall`` Unix time."""

    camera_id: str
    seq: int
    ts: float
    wall: float
    image: npt.NDArray[np.uint8]
    gate: GateDecision


class FrameQueue:
    """Thread-safe bounded frame queue.

    ``put(drop_oldest=True)`` never blocks: when full, the oldest frame is discarded and
    counted, so a slow detector sees recent frames instead of a growing backlog.
    ``put(drop_oldest=False)`` waits for space (deterministic file replays). ``notify``
    is called after each put (the service uses it to wake its inference loop).
    """

    def __init__(self, maxsize: int, notify: Callable[[], None] | None = None) -> None:
        self.maxsize = maxsize
        self._items: deque[Frame] = deque()
        self._cond = threading.Condition()
        self._notify = notify
        self.dropped = 0
        self.put_count = 0

    def put(
        self,
        frame: Frame,
        *,
        drop_oldest: bool = True,
        cancelled: threading.Event | None = None,
    ) -> bool:
        """Queue ``frame``; returns False if ``cancelled`` was set while waiting for space."""
        with self._cond:
            if drop_oldest:
                while len(self._items) >= self.maxsize:
                    self._items.popleft()
                    self.dropped += 1
            else:
                while len(self._items) >= self.maxsize:
                    if cancelled is not None and cancelled.is_set():
                        return False
                    self._cond.wait(timeout=0.1)
            self._items.append(frame)
            self.put_count += 1
            self._cond.notify_all()
        if self._notify is not None:
            self._notify()
        return True

    def get(self, timeout: float | None = None) -> Frame | None:
        """Oldest queued frame, waiting up to ``timeout`` seconds (for thread consumers)."""
        with self._cond:
            if not self._cond.wait_for(lambda: bool(self._items), timeout):
                return None
            frame = self._items.popleft()
            self._cond.notify_all()
            return frame

    def pop_nowait(self) -> Frame | None:
        """Oldest queued frame, or None."""
        with self._cond:
            if not self._items:
                return None
            frame = self._items.popleft()
            self._cond.notify_all()
            return frame

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)


def open_capture(source: str | int) -> Any:
    """Open a ``cv2.VideoCapture`` for an RTSP/HTTP URL, USB index or file."""
    kind = source_kind(source)
    if kind == "rtsp":
        # Bounded open/read timeouts so a dead stream fails instead of hanging for minutes.
        return cv2.VideoCapture(
            source,
            cv2.CAP_FFMPEG,
            [
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
                _OPEN_TIMEOUT_MS,
                cv2.CAP_PROP_READ_TIMEOUT_MSEC,
                _READ_TIMEOUT_MS,
            ],
        )
    return cv2.VideoCapture(source)


class CameraReader:
    """Reads one camera in a daemon thread until stopped or the source ends.

    ``last_frame_at`` (monotonic) is updated on every decoded frame, whether or not the
    gate lets it through; the service's watchdog reads it. Attribute reads and writes of
    floats and ints are atomic in CPython, so no lock is needed for these counters.
    """

    def __init__(
        self,
        config: CameraConfig,
        queue: FrameQueue,
        *,
        generation: int = 0,
        opener: Callable[[str | int], Any] = open_capture,
        niceness: int = 5,
    ) -> None:
        self.config = config
        self.queue = queue
        self.gate = MotionGate(config.motion)
        self._opener = opener
        self.niceness = niceness
        self._stop = threading.Event()
        self.started_at = time.monotonic()
        self.last_frame_at: float | None = None
        self.opened = False
        self.failure: str | None = None
        self.decoded = 0
        self.sampled = 0
        self._thread = threading.Thread(
            target=self._run, name=f"vision[{config.id}].reader#{generation}", daemon=True
        )

    def start(self) -> None:
        """Start the reader thread."""
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to exit; it does so at its next frame or timeout."""
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the thread to exit."""
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        """True while the reader thread runs."""
        return self._thread.is_alive()

    def _run(self) -> None:
        cap: Any = None
        if self.niceness and hasattr(os, "setpriority"):
            # Linux niceness is per thread. Decoding at a lower priority than inference
            # keeps the reader from pre-empting one of onnxruntime's intra-op threads,
            # which stalls the whole parallel operator (a convoy), not just one core.
            try:
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self.niceness)
            except OSError:
                log.debug("cannot lower reader thread priority", extra={"camera": self.config.id})
        try:
            cap = self._opener(self.config.source)
            if cap is None or not cap.isOpened():
                self.failure = "open failed"
                log.warning("camera open failed", extra={"camera": self.config.id})
                return
            self.opened = True
            self._loop(cap)
        except cv2.error as exc:
            self.failure = f"opencv error: {exc}"
            log.warning("camera read error", extra={"camera": self.config.id, "error": str(exc)})
        finally:
            if cap is not None:
                cap.release()

    def _loop(self, cap: Any) -> None:
        cfg = self.config
        is_file = source_kind(cfg.source) == "file"
        fps = float(cap.get(cv2.CAP_PROP_FPS)) if is_file else 0.0
        if not fps or math.isnan(fps) or fps > 1000:  # unknown or NaN frame rate: use the clock
            is_file_clock = False
            fps = 25.0
        else:
            is_file_clock = is_file
        period = 1.0 / cfg.sample_fps
        drop = not is_file or cfg.realtime
        start_mono = time.monotonic()
        start_wall = time.time()
        index = 0  # frames of the media read so far, across file loops
        next_sample = 0.0
        while not self._stop.is_set():
            if not cap.grab():
                if is_file and cfg.loop and index > 0:
                    cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                    continue
                self.failure = "end of stream"
                return
            now = time.monotonic()
            self.last_frame_at = now
            self.decoded += 1
            if is_file_clock:
                ts = index / fps
                if cfg.realtime:
                    delay = start_mono + ts - now
                    if delay > 0 and self._stop.wait(delay):
                        return
            else:
                ts = now - start_mono
            index += 1
            if ts + 1e-6 < next_sample:
                continue
            # Never schedule a burst to catch up after a stall; resume sampling from now.
            next_sample += period
            if next_sample <= ts:
                next_sample = ts + period
            ok, image = cap.retrieve()
            if not ok or image is None:
                continue
            self.sampled += 1
            decision = self.gate.decide(image, ts)
            if not decision.infer:
                continue
            wall = start_wall + ts if is_file_clock and cfg.realtime else time.time()
            frame = Frame(camera_id=cfg.id, seq=index, ts=ts, wall=wall, image=image, gate=decision)
            if not self.queue.put(frame, drop_oldest=drop, cancelled=self._stop):
                return

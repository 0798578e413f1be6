"""Camera readers: sample, motion-gate and hand over frames for inference.

Live sources (RTSP/HTTP/USB) and realtime file playback get one thread per camera:
OpenCV's ``grab()`` blocks (an RTSP stall can block for long) and a live stream that is
not read continuously goes stale, so the thread reads every frame and the asyncio side
never waits on it. Frames between samples are only ``grab()``-bed (FFmpeg still decodes
them, but they are never converted into a BGR image); sampled frames go through the
motion gate, and the ones worth inferring go into a :class:`FrameQueue` that keeps only
the newest ``queue_size`` frames. The watchdog lives in the service: a reader that stalls
is abandoned (its thread exits when its blocking call returns) and a new one is started.

File replays (``realtime: false``) have no thread: the inference worker pulls the next
frame when it is ready for one (:meth:`CameraReader.pull`), so decoding never competes
with onnxruntime for the cores and never builds a backlog.
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

__all__ = ["CameraReader", "Frame", "FrameQueue", "open_capture", "pulls_on_demand"]

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
    if kind == "file":
        # One decoder thread: FFmpeg's default frame threads keep decoding in the
        # background after grab() returns, on the cores onnxruntime is using (and a
        # replay is pulled by the inference worker, so it gains nothing from them).
        return cv2.VideoCapture(source, cv2.CAP_ANY, [cv2.CAP_PROP_N_THREADS, 1])
    return cv2.VideoCapture(source)


_END = object()  # a step that ends the reader (end of stream, stop, realtime wait stopped)


def pulls_on_demand(config: CameraConfig) -> bool:
    """True if the inference worker reads this camera itself instead of a reader thread.

    Only file replays (``realtime: false``) qualify: nothing goes stale while nobody reads
    them. Live sources (RTSP/HTTP/USB) and realtime file playback need a thread that reads
    continuously, or the stream falls behind.
    """
    return source_kind(config.source) == "file" and not config.realtime


class CameraReader:
    """Reads one camera: in its own daemon thread, or on demand by the inference worker.

    *Threaded* (``start()``; live sources and realtime files): the thread reads until
    stopped or the source ends and puts gated frames into ``queue``.

    *Pulled* (``pull=True``; file replays, see :func:`pulls_on_demand`): no thread. The
    inference worker calls :meth:`pull` when it is ready for a frame, so decoding never
    runs concurrently with onnxruntime's intra-op threads (on a 2- or 4-core Pi a decoding
    thread that pre-empts one of them stalls the whole parallel operator), and no frame
    is decoded only to be dropped. ``queue`` is not used. The capture is opened by the
    first pull and released by :meth:`close`, both in the worker thread.

    ``last_frame_at`` (monotonic) is updated on every frame read, whether or not the gate
    lets it through; the service's watchdog reads it (and, for a pulled reader,
    ``pulling_since``: a replay waiting for its turn at the detector is not silent).
    Attribute reads and writes of floats and ints are atomic in CPython, so no lock is
    needed for these counters.
    """

    def __init__(
        self,
        config: CameraConfig,
        queue: FrameQueue,
        *,
        generation: int = 0,
        opener: Callable[[str | int], Any] = open_capture,
        niceness: int = 5,
        pull: bool = False,
    ) -> None:
        if pull and not pulls_on_demand(config):
            raise ValueError("only file replays (realtime: false) can be read on demand")
        self.config = config
        self.queue = queue
        self.gate = MotionGate(config.motion)
        self.pull_mode = pull
        self._opener = opener
        self.niceness = niceness
        self._stop = threading.Event()
        self.started_at = time.monotonic()
        self.last_frame_at: float | None = None
        self.pulling_since: float | None = None
        self.opened = False
        self.failure: str | None = None
        self.decoded = 0
        self.sampled = 0
        self._cap: Any = None
        self._done = False  # pulled reader: ended, failed or closed
        self._pending: Frame | None = None  # pulled reader: a frame read ahead
        # sampling state, set by _begin() when the capture is open
        self._is_file = source_kind(config.source) == "file"
        self._file_clock = False
        self._fps = 25.0
        self._period = 1.0 / config.sample_fps
        self._drop = not self._is_file or config.realtime
        self._start_mono = 0.0
        self._start_wall = 0.0
        self._index = 0  # frames of the media read so far, across file loops
        self._next_sample = 0.0
        self._thread = threading.Thread(
            target=self._run, name=f"vision[{config.id}].reader#{generation}", daemon=True
        )

    def start(self) -> None:
        """Start the reader thread (a pulled reader has none: this does nothing)."""
        if not self.pull_mode:
            self._thread.start()

    def stop(self) -> None:
        """Ask the reader to exit; it does so at its next frame or timeout."""
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the thread to exit."""
        if not self.pull_mode:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        """True while the reader thread runs (pulled: until the source ends or fails)."""
        if self.pull_mode:
            return (not self._done or self._pending is not None) and not self._stop.is_set()
        return self._thread.is_alive()

    # -- pulled mode (called by the inference worker) ------------------------------------

    def pull(self, max_reads: int = 50) -> Frame | None:
        """Read up to ``max_reads`` frames; return the first one the gate passes, or None.

        None means nothing to infer yet (static scene; call again) or the reader is done
        (``alive`` is False, ``failure`` says why). The bound keeps one camera from holding
        the shared worker for long while its motion gate skips a static scene. A frame
        read ahead by :meth:`prefetch` is returned first.
        """
        if self._stop.is_set():
            self.close()
            return None
        frame, self._pending = self._pending, None
        if frame is not None:
            return frame
        if self._done:
            return None
        self.pulling_since = time.monotonic()
        try:
            if self._cap is None:
                cap = self._open()
                if cap is None:
                    self._done = True
                    return None
                self._cap = cap
            for _ in range(max_reads):
                step = self._step(self._cap)
                if step is _END:
                    self.close()
                    return None
                if isinstance(step, Frame):
                    return step
        except cv2.error as exc:
            self._read_error(exc)
            self.close()
        finally:
            self.pulling_since = None
        return None

    def prefetch(self, max_reads: int = 50) -> None:
        """Read the next gated frame now, for the next :meth:`pull` (at most one is held).

        The inference worker calls this right after a detection, while the event loop
        handles the result: the decode overlaps that work instead of following it, and it
        still never runs at the same time as onnxruntime (same thread).
        """
        if self._pending is None:
            self._pending = self.pull(max_reads)

    def close(self) -> None:
        """Release a pulled reader's capture (call from the thread that pulls)."""
        self._done = True
        self._pending = None
        cap, self._cap = self._cap, None
        if cap is not None:
            cap.release()

    # -- shared ---------------------------------------------------------------------------

    def _open(self) -> Any:
        """Open the source and reset the sampling clock; None (and ``failure``) if it fails."""
        cap = self._opener(self.config.source)
        if cap is None or not cap.isOpened():
            self.failure = "open failed"
            log.warning("camera open failed", extra={"camera": self.config.id})
            if cap is not None:
                cap.release()
            return None
        self.opened = True
        fps = float(cap.get(cv2.CAP_PROP_FPS)) if self._is_file else 0.0
        if not fps or math.isnan(fps) or fps > 1000:  # unknown or NaN frame rate: use the clock
            self._file_clock = False
            self._fps = 25.0
        else:
            self._file_clock = self._is_file
            self._fps = fps
        self._start_mono = time.monotonic()
        self._start_wall = time.time()
        self._index = 0
        self._next_sample = 0.0
        return cap

    def _read_error(self, exc: cv2.error) -> None:
        self.failure = f"opencv error: {exc}"
        log.warning("camera read error", extra={"camera": self.config.id, "error": str(exc)})

    def _step(self, cap: Any) -> Frame | object | None:
        """Read one frame: a gated-in :class:`Frame`, None (skipped) or ``_END``."""
        cfg = self.config
        if self._stop.is_set():
            return _END
        if not cap.grab():
            if self._is_file and cfg.loop and self._index > 0:
                cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                return None
            self.failure = "end of stream"
            return _END
        now = time.monotonic()
        self.last_frame_at = now
        self.decoded += 1
        if self._file_clock:
            ts = self._index / self._fps
            if cfg.realtime:
                delay = self._start_mono + ts - now
                if delay > 0 and self._stop.wait(delay):
                    return _END
        else:
            ts = now - self._start_mono
        self._index += 1
        if ts + 1e-6 < self._next_sample:
            return None  # not a sample: grabbed, never decoded into an image
        # Never schedule a burst to catch up after a stall; resume sampling from now.
        self._next_sample += self._period
        if self._next_sample <= ts:
            self._next_sample = ts + self._period
        ok, image = cap.retrieve()
        if not ok or image is None:
            return None
        self.sampled += 1
        decision = self.gate.decide(image, ts)
        if not decision.infer:
            return None
        wall = self._start_wall + ts if self._file_clock and cfg.realtime else time.time()
        return Frame(
            camera_id=cfg.id, seq=self._index, ts=ts, wall=wall, image=image, gate=decision
        )

    # -- threaded mode --------------------------------------------------------------------

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
            cap = self._open()
            if cap is None:
                return
            while True:
                step = self._step(cap)
                if step is _END:
                    return
                if isinstance(step, Frame) and not self.queue.put(
                    step, drop_oldest=self._drop, cancelled=self._stop
                ):
                    return
        except cv2.error as exc:
            self._read_error(exc)
        finally:
            if cap is not None:
                cap.release()

"""Inference scheduling: cameras share one detector worker thread, round-robin.

Inference never runs on the event loop: a single dedicated worker thread runs the
detector (onnxruntime itself uses ``detector.threads`` cores). :class:`InferenceScheduler`
visits the cameras round-robin and takes at most one frame per camera per round, so
cameras share the inference budget fairly. A live camera's reader thread fills a queue
that keeps only its newest frames; a file replay (``realtime: false``) has no reader
thread, the worker pulls its next frame itself when it gets to it, and reads one frame
ahead while the loop handles a result (:func:`_pull_and_detect`, see :mod:`vision.camera`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from vision.camera import CameraReader, Frame
from vision.camera_state import CameraState, LastSample
from vision.detector import Detection, Detector

__all__ = ["InferenceScheduler"]

log = logging.getLogger(__name__)


class InferenceScheduler:
    """Feeds the detector from every camera, one frame per camera per round.

    ``pool`` is the single inference worker thread (it also owns pulled readers'
    captures). ``work`` is set whenever a frame may be ready. ``handle(camera_id, frame,
    detections)`` is awaited on the loop for each detection result. ``busy`` is true
    while a frame is being detected or handled.
    """

    def __init__(
        self,
        cameras: Sequence[CameraState],
        detector: Detector,
        *,
        pool: ThreadPoolExecutor,
        loop: asyncio.AbstractEventLoop,
        work: asyncio.Event,
        handle: Callable[[str, Frame, list[Detection]], Awaitable[None]],
    ) -> None:
        self._cameras = list(cameras)
        self._detector = detector
        self._pool = pool
        self._loop = loop
        self._work = work
        self._handle = handle
        self.busy = False

    async def run(self) -> None:
        """Detect on frames as they become available, until cancelled."""
        detector, loop = self._detector, self._loop
        order = self._cameras
        start = 0
        while True:
            await self._work.wait()
            self._work.clear()
            progressed = True
            while progressed:
                progressed = False
                # One frame per camera per round, starting with a different camera each
                # round: a busy camera cannot starve the others.
                for i in range(len(order)):
                    cam = order[(start + i) % len(order)]
                    reader = cam.reader
                    self.busy = True
                    began = time.monotonic()
                    try:
                        if reader is not None and reader.pull_mode:
                            if not reader.alive:
                                continue
                            progressed = True
                            done: asyncio.Future[_Pulled] = loop.create_future()
                            self._pool.submit(_pull_and_detect, reader, detector, loop, done)
                            pulled = await done
                            if pulled is None:
                                continue
                            frame, detections = pulled
                        else:
                            queued = cam.queue.pop_nowait()
                            if queued is None:
                                continue
                            progressed = True
                            frame = queued
                            detections = await loop.run_in_executor(
                                self._pool, detector.detect, frame.image
                            )
                        cam.stats.inferences += 1
                        cam.stats.last_inference_at = time.monotonic()
                        cam.stats.inference_s += cam.stats.last_inference_at - began
                        cam.stats.last_sample = LastSample(
                            frame=frame, detections=tuple(detections)
                        )
                        await self._handle(cam.config.id, frame, detections)
                    finally:
                        self.busy = False
                start = (start + 1) % len(order)


_Pulled = tuple[Frame, list[Detection]] | None


def _resolve(done: asyncio.Future[_Pulled], result: _Pulled, exc: BaseException | None) -> None:
    if done.done():  # cancelled: the service is shutting down
        return
    if exc is not None:
        done.set_exception(exc)
    else:
        done.set_result(result)


def _pull_and_detect(
    reader: CameraReader,
    detector: Detector,
    loop: asyncio.AbstractEventLoop,
    done: asyncio.Future[_Pulled],
) -> None:
    """Inference worker: detect on a replayed camera's next frame, then read ahead.

    The result is handed to the loop before the read-ahead, so the loop evaluates the
    rules while this thread decodes the camera's next frame (one frame held, at most).
    """
    try:
        frame = reader.pull()
        result = None if frame is None else (frame, detector.detect(frame.image))
    except Exception as exc:  # noqa: BLE001 - re-raised in the inference task
        _hand_over(loop, done, None, exc)
        return
    _hand_over(loop, done, result, None)
    if result is None:
        return
    try:
        reader.prefetch()
    except Exception as exc:  # nobody awaits a read-ahead: log it, the watchdog reopens
        log.exception("camera read-ahead failed", extra={"camera": reader.config.id})
        reader.failure = f"read-ahead failed: {exc}"
        reader.close()


def _hand_over(
    loop: asyncio.AbstractEventLoop,
    done: asyncio.Future[_Pulled],
    result: _Pulled,
    exc: BaseException | None,
) -> None:
    with contextlib.suppress(RuntimeError):  # loop already closed
        loop.call_soon_threadsafe(_resolve, done, result, exc)

"""The vision runtime: cameras → motion gate → detector → rules → events + evidence.

The gateway runs it as an async context manager; it runs until the block exits::

    async with VisionService(config, sink, data_dir=Path("/var/lib/offsite-edge")) as vision:
        await stop.wait()

Entering loads the model (in a worker thread, with its warm-up run) and starts one
reader thread per camera plus, in one task group owned by the service, a supervisor task
per camera (watchdog, reopen with backoff) and one inference task. Exiting stops intake,
closes open episodes with ``closed_by: shutdown`` and awaits every task: no orphans.

Inference never runs on the event loop: a single dedicated worker thread runs the
detector (onnxruntime itself uses ``detector.threads`` cores). The inference task visits
the cameras round-robin and takes at most one frame per camera per round, so cameras
share the inference budget fairly. A live camera's reader thread fills a queue that keeps
only its newest frames; a file replay (``realtime: false``) has no reader thread, the
worker pulls its next frame itself when it gets to it, and reads one frame ahead while
the loop handles a result (see :mod:`vision.camera`).

The pieces live in their own modules: per-camera state and counters in
:mod:`vision.camera_state`, the watchdog in :mod:`vision.watchdog`, the inference
scheduler and worker in :mod:`vision.inference`, violation episodes in
:mod:`vision.episodes`. This module wires them together and owns their lifecycle.

Events emitted (``source`` = camera id):

* ``violation`` OPEN when an episode is confirmed (with an evidence snapshot), CLOSED
  with the same ``event_id`` when it ends; severity from the rule's tier.
* ``camera_offline`` OPEN when a camera has delivered no frame for ``watchdog_s``,
  CLOSED (same ``event_id``) when frames flow again. Severity warning.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from edge.events import Event, EventSink
from vision.camera import open_capture
from vision.camera_state import CameraState, CameraStats
from vision.config import VisionConfig
from vision.detector import Detector
from vision.episodes import ViolationEpisodes
from vision.evidence import EvidenceStore
from vision.inference import InferenceScheduler
from vision.watchdog import Watchdog

# CameraStats is re-exported: callers read it from here (``stats()`` returns it).
__all__ = ["CameraStats", "VisionService"]


class VisionService:
    """Runs the vision pipeline for :class:`VisionConfig`, emitting to ``sink``.

    ``data_dir``: evidence goes to ``data_dir / config.evidence.dir`` (unless absolute).
    ``is_delivered(sha256)``: tells the evidence quota which snapshots a receiver confirmed
    holding (default: none); ``borrow`` and ``on_lost`` are the quota's questions to the
    outbox (see :class:`vision.evidence.EvidenceStore`).
    """

    def __init__(
        self,
        config: VisionConfig,
        sink: EventSink,
        *,
        data_dir: Path,
        is_delivered: Callable[[str], bool] | None = None,
        borrow: Callable[[int], int | None] | None = None,
        on_lost: Callable[[Sequence[Mapping[str, object]]], None] | None = None,
        opener: Callable[[str | int], Any] = open_capture,
    ) -> None:
        self.config = config
        self.sink = sink
        self.data_dir = data_dir
        self._is_delivered = is_delivered
        self._borrow = borrow
        self._on_lost = on_lost
        self._opener = opener
        self._state = "unopened"
        self._work = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._cameras = {c.id: CameraState(c, self._notify) for c in config.cameras}
        self._watchdog = Watchdog(self._emit, start_reader=self._start_reader, retire=self._retire)
        self._infer_pool = ThreadPoolExecutor(1, thread_name_prefix="vision.infer")
        self._io_pool = ThreadPoolExecutor(1, thread_name_prefix="vision.evidence")
        self._main: asyncio.Task[None] | None = None
        # Built on entry, once the detector and evidence store exist.
        self._episodes: ViolationEpisodes | None = None
        self._inference: InferenceScheduler | None = None
        self.detector: Detector | None = None
        self.evidence: EvidenceStore | None = None
        self.events: list[Event] = []  # emitted events, newest last (bounded)

    # -- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._state != "unopened":
            raise RuntimeError(f"VisionService cannot be entered when {self._state}")
        self._state = "opened"
        self._loop = loop = asyncio.get_running_loop()
        dcfg = self.config.detector
        self.detector = detector = await loop.run_in_executor(
            self._infer_pool,
            lambda: Detector(
                dcfg.model_path,
                conf_threshold=dcfg.conf_threshold,
                iou_threshold=dcfg.iou_threshold,
                threads=dcfg.threads,
                class_names=dcfg.class_names,
                max_detections=dcfg.max_detections,
            ),
        )
        root = Path(self.config.evidence.dir)
        self.evidence = EvidenceStore(
            self.config.evidence,
            root if root.is_absolute() else self.data_dir / root,
            is_delivered=self._is_delivered,
            borrow=self._borrow,
            on_lost=self._on_lost,
        )
        self._episodes = ViolationEpisodes(
            self.config,
            self._emit,
            detector=detector,
            evidence=self.evidence,
            io_pool=self._io_pool,
            loop=loop,
        )
        self._inference = InferenceScheduler(
            list(self._cameras.values()),
            detector,
            pool=self._infer_pool,
            loop=loop,
            work=self._work,
            handle=self._episodes.handle,
        )
        for cam in self._cameras.values():
            self._start_reader(cam)
        self._main = asyncio.create_task(self._run(self._inference), name="vision.main")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._state = "closed"
        for cam in self._cameras.values():
            if cam.reader is not None:
                cam.reader.stop()
        main = self._main
        failure: BaseException | None = None
        if main is not None:
            if main.done():
                failure = main.exception() if not main.cancelled() else None
            else:
                main.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await main
        try:
            await self._close_all("shutdown")
        finally:
            for cam in self._cameras.values():
                cam.refresh_stats()
                self._retire(cam)
            self._infer_pool.shutdown(wait=True)
            # Off the loop: a snapshot being saved may still ask the outbox for room
            # (vision.evidence borrow/on_lost), which is answered on this loop.
            await asyncio.to_thread(self._io_pool.shutdown, True)
        if failure is not None and exc is None:
            raise failure

    async def _run(self, inference: InferenceScheduler) -> None:
        async with asyncio.TaskGroup() as tg:
            for cam in self._cameras.values():
                tg.create_task(
                    self._watchdog.supervise(cam), name=f"vision[{cam.config.id}].watchdog"
                )
            tg.create_task(inference.run(), name="vision.inference")

    async def _close_all(self, reason: str) -> None:
        # Violations first, then offline cameras, all closed at the same instant.
        now = time.time()
        if self._episodes is not None:
            await self._episodes.close_all(reason, now)
        await self._watchdog.close_all(self._cameras.values(), reason, now)

    async def _emit(self, event: Event) -> None:
        await self.sink.emit(event)
        self.events.append(event)
        del self.events[:-1000]

    # -- cameras -------------------------------------------------------------------------

    def _notify(self) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # loop closing during shutdown
            loop.call_soon_threadsafe(self._work.set)

    def _start_reader(self, cam: CameraState) -> None:
        cam.start_reader(self._opener)
        self._work.set()  # a pulled reader is ready at once: wake the inference loop

    def _retire(self, cam: CameraState) -> None:
        reader = cam.retire_reader()
        if reader is not None and reader.pull_mode:
            # Its capture belongs to the inference worker: release it there, after any
            # pull in progress.
            self._infer_pool.submit(reader.close)

    # -- introspection -------------------------------------------------------------------

    async def wait_finished(self, poll_s: float = 0.05) -> None:
        """Wait until every camera is a finished video file and all its frames are processed.

        For replays, tests and the demo; with a live camera this never returns (use a timeout).
        """
        while True:
            main = self._main
            if main is not None and main.done():
                return  # failed or cancelled: __aexit__ reports it
            busy = self._inference is not None and self._inference.busy
            if all(c.finished and not len(c.queue) for c in self._cameras.values()) and not busy:
                return
            await asyncio.sleep(poll_s)

    def stats(self) -> dict[str, CameraStats]:
        """Per-camera counters (a snapshot)."""
        for cam in self._cameras.values():
            cam.refresh_stats()
        return {cid: cam.stats for cid, cam in self._cameras.items()}

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

Events emitted (``source`` = camera id):

* ``violation`` OPEN when an episode is confirmed (with an evidence snapshot), CLOSED
  with the same ``event_id`` when it ends; severity from the rule's tier.
* ``camera_offline`` OPEN when a camera has delivered no frame for ``watchdog_s``,
  CLOSED (same ``event_id``) when frames flow again. Severity warning.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from edge.events import Event, EventSink, EventStatus, Severity
from vision.camera import CameraReader, Frame, FrameQueue, open_capture, pulls_on_demand
from vision.config import CameraConfig, VisionConfig, source_kind
from vision.detector import Detection, Detector
from vision.evidence import EvidenceStore
from vision.violations import RuleEngine, Transition, TransitionKind, tier_severity

__all__ = ["CameraStats", "VisionService"]

log = logging.getLogger(__name__)


@dataclass(slots=True, kw_only=True)
class CameraStats:
    """Counters of one camera, for logs, tests and benchmarks."""

    decoded: int = 0
    sampled: int = 0
    inferences: int = 0
    dropped: int = 0
    reopens: int = 0
    last_inference_at: float | None = None  # monotonic, when the last detection finished
    online: bool = False
    offline_event_id: str | None = None


class _Camera:
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

    def refresh_stats(self) -> None:
        r = self.reader
        self.stats.decoded = self._retired_decoded + (r.decoded if r else 0)
        self.stats.sampled = self._retired_sampled + (r.sampled if r else 0)
        self.stats.dropped = self.queue.dropped

    def retire_reader(self) -> CameraReader | None:
        r = self.reader
        if r is not None:
            r.stop()
            self._retired_decoded += r.decoded
            self._retired_sampled += r.sampled
            self.reader = None
        return r


class VisionService:
    """Runs the vision pipeline for :class:`VisionConfig`, emitting to ``sink``.

    ``data_dir``: evidence goes to ``data_dir / config.evidence.dir`` (unless absolute).
    ``is_delivered(sha256)``: tells the evidence quota which snapshots belong to events
    already delivered upstream (default: none are).
    """

    def __init__(
        self,
        config: VisionConfig,
        sink: EventSink,
        *,
        data_dir: Path,
        is_delivered: Callable[[str], bool] | None = None,
        opener: Callable[[str | int], Any] = open_capture,
    ) -> None:
        self.config = config
        self.sink = sink
        self.data_dir = data_dir
        self._is_delivered = is_delivered
        self._opener = opener
        self._state = "unopened"
        self._work = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._cameras = {c.id: _Camera(c, self._notify) for c in config.cameras}
        self._engine = RuleEngine(config)
        self._episode_ids: dict[tuple[str, int], str] = {}
        self._infer_pool = ThreadPoolExecutor(1, thread_name_prefix="vision.infer")
        self._io_pool = ThreadPoolExecutor(1, thread_name_prefix="vision.evidence")
        self._main: asyncio.Task[None] | None = None
        self._busy = False
        self.detector: Detector | None = None
        self.evidence: EvidenceStore | None = None
        self.events: list[Event] = []  # emitted events, newest last (bounded)

    # -- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._state != "unopened":
            raise RuntimeError(f"VisionService cannot be entered when {self._state}")
        self._state = "opened"
        self._loop = asyncio.get_running_loop()
        dcfg = self.config.detector
        self.detector = await self._loop.run_in_executor(
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
        )
        for cam in self._cameras.values():
            self._start_reader(cam)
        self._main = asyncio.create_task(self._run(), name="vision.main")
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
            self._io_pool.shutdown(wait=True)
        if failure is not None and exc is None:
            raise failure

    async def _run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            for cam in self._cameras.values():
                tg.create_task(self._supervise(cam), name=f"vision[{cam.config.id}].watchdog")
            tg.create_task(self._inference_loop(), name="vision.inference")

    # -- cameras -------------------------------------------------------------------------

    def _notify(self) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # loop closing during shutdown
            loop.call_soon_threadsafe(self._work.set)

    def _start_reader(self, cam: _Camera) -> None:
        cam.generation += 1
        reader = CameraReader(
            cam.config,
            cam.queue,
            generation=cam.generation,
            opener=self._opener,
            pull=pulls_on_demand(cam.config),
        )
        cam.reader = reader
        reader.start()
        self._work.set()  # a pulled reader is ready at once: wake the inference loop

    def _retire(self, cam: _Camera) -> None:
        reader = cam.retire_reader()
        if reader is not None and reader.pull_mode:
            # Its capture belongs to the inference worker: release it there, after any
            # pull in progress.
            self._infer_pool.submit(reader.close)

    async def _supervise(self, cam: _Camera) -> None:
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

    async def _camera_offline(self, cam: _Camera, silent: float, reason: str | None) -> None:
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

    async def _camera_online(self, cam: _Camera) -> None:
        cam.stats.online = True
        event_id = cam.stats.offline_event_id
        if event_id is None:
            return
        cam.stats.offline_event_id = None
        log.info("camera online", extra={"camera": cam.config.id})
        await self._emit(
            Event(
                kind="camera_offline",
                source=cam.config.id,
                severity=Severity.WARNING,
                status=EventStatus.CLOSED,
                started_at=time.time(),
                ended_at=time.time(),
                event_id=event_id,
                detail={"closed_by": "frames"},
            )
        )

    # -- inference -----------------------------------------------------------------------

    async def _inference_loop(self) -> None:
        assert self.detector is not None
        assert self._loop is not None
        detector, loop = self.detector, self._loop
        order = list(self._cameras.values())
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
                    self._busy = True
                    try:
                        if reader is not None and reader.pull_mode:
                            if not reader.alive:
                                continue
                            progressed = True
                            done: asyncio.Future[_Pulled] = loop.create_future()
                            self._infer_pool.submit(_pull_and_detect, reader, detector, loop, done)
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
                                self._infer_pool, detector.detect, frame.image
                            )
                        cam.stats.inferences += 1
                        cam.stats.last_inference_at = time.monotonic()
                        await self._handle(cam, frame, detections)
                    finally:
                        self._busy = False
                start = (start + 1) % len(order)

    async def _handle(self, cam: _Camera, frame: Frame, detections: list[Detection]) -> None:
        for tr in self._engine.evaluate(cam.config.id, detections, frame.wall):
            if tr.kind is TransitionKind.OPENED:
                await self._open_violation(frame, detections, tr)
            else:
                await self._close_violation(tr, closed_by="absent", ended_at=frame.wall)

    async def _open_violation(
        self, frame: Frame, detections: list[Detection], tr: Transition
    ) -> None:
        assert self.evidence is not None
        assert self.detector is not None
        assert self._loop is not None
        rule, det = tr.rule, tr.detection
        caption = f"{frame.camera_id} {rule.violation} median={tr.median_score:.2f}"
        evidence, detector = self.evidence, self.detector
        snap = await self._loop.run_in_executor(
            self._io_pool,
            lambda: evidence.save(frame.image, detections, highlight=det, caption=caption),
        )
        cam_cfg = self._cameras[frame.camera_id].config
        zone_poly = next((z.polygon for z in cam_cfg.zones if z.name == tr.zone), None)
        detail: dict[str, Any] = {
            "violation": rule.violation,
            "class_name": rule.class_name,
            "tier": rule.tier.value,
            "median_score": round(tr.median_score, 4),
            "score": round(det.score, 4) if det else None,
            "box": det.as_list() if det else None,
            "frame_size": [int(frame.image.shape[1]), int(frame.image.shape[0])],
            "zone": tr.zone,
            "zone_polygon": [list(p) for p in zone_poly] if zone_poly else None,
            "snapshot_sha256": snap.sha256,
            "snapshot_path": str(snap.path),
            "model_sha256": detector.model_sha256,
            "model_file": detector.model_path.name,
            "thresholds": {
                "conf": detector.conf_threshold,
                "iou": detector.iou_threshold,
                "min_score": rule.min_score,
                "median_threshold": rule.median_threshold,
                "confirm_samples": rule.confirm_samples,
                "end_after_samples": rule.end_after_samples,
            },
        }
        if rule.rectify_deadline_s is not None:
            detail["rectify_by"] = frame.wall + rule.rectify_deadline_s
        event = Event(
            kind="violation",
            source=frame.camera_id,
            severity=Severity(tier_severity(rule.tier)),
            status=EventStatus.OPEN,
            started_at=tr.started_at,
            detail=detail,
        )
        self._episode_ids[(tr.camera_id, tr.rule_index)] = event.event_id
        log.warning(
            "violation confirmed",
            extra={"camera": frame.camera_id, "violation": rule.violation, "sha256": snap.sha256},
        )
        await self._emit(event)

    async def _close_violation(self, tr: Transition, *, closed_by: str, ended_at: float) -> None:
        event_id = self._episode_ids.pop((tr.camera_id, tr.rule_index), None)
        if event_id is None:
            return
        rule = tr.rule
        await self._emit(
            Event(
                kind="violation",
                source=tr.camera_id,
                severity=Severity(tier_severity(rule.tier)),
                status=EventStatus.CLOSED,
                started_at=tr.started_at,
                ended_at=ended_at,
                event_id=event_id,
                detail={
                    "violation": rule.violation,
                    "class_name": rule.class_name,
                    "peak_median_score": round(tr.median_score, 4),
                    "closed_by": closed_by,
                },
            )
        )

    async def _close_all(self, reason: str) -> None:
        now = time.time()
        for tr in self._engine.close_all(now):
            await self._close_violation(tr, closed_by=reason, ended_at=now)
        for cam in self._cameras.values():
            event_id = cam.stats.offline_event_id
            if event_id is not None:
                cam.stats.offline_event_id = None
                await self._emit(
                    Event(
                        kind="camera_offline",
                        source=cam.config.id,
                        severity=Severity.WARNING,
                        status=EventStatus.CLOSED,
                        started_at=now,
                        ended_at=now,
                        event_id=event_id,
                        detail={"closed_by": reason},
                    )
                )

    async def _emit(self, event: Event) -> None:
        await self.sink.emit(event)
        self.events.append(event)
        del self.events[:-1000]

    # -- introspection -------------------------------------------------------------------

    async def wait_finished(self, poll_s: float = 0.05) -> None:
        """Wait until every camera is a finished video file and all its frames are processed.

        For replays, tests and the demo; with a live camera this never returns (use a timeout).
        """
        while True:
            main = self._main
            if main is not None and main.done():
                return  # failed or cancelled: __aexit__ reports it
            if (
                all(c.finished and not len(c.queue) for c in self._cameras.values())
                and not self._busy
            ):
                return
            await asyncio.sleep(poll_s)

    def stats(self) -> dict[str, CameraStats]:
        """Per-camera counters (a snapshot)."""
        for cam in self._cameras.values():
            cam.refresh_stats()
        return {cid: cam.stats for cid, cam in self._cameras.items()}


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

"""Violation episodes: rule transitions become ``violation`` events with evidence.

:class:`~vision.violations.RuleEngine` decides when an episode opens and ends;
:class:`ViolationEpisodes` turns that into events (``source`` = camera id): OPEN when an
episode is confirmed, with an evidence snapshot and everything needed to audit the
decision (model hash, thresholds, zone), CLOSED with the same ``event_id`` when it ends.
Severity comes from the rule's tier.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from edge.events import Event, EventStatus, Severity
from vision.camera import Frame
from vision.config import VisionConfig
from vision.detector import Detection, Detector
from vision.evidence import EvidenceStore
from vision.violations import RuleEngine, Transition, TransitionKind, tier_severity

__all__ = ["ViolationEpisodes"]

log = logging.getLogger(__name__)


class ViolationEpisodes:
    """Evaluates the rules on each result and emits ``violation`` OPEN/CLOSED events.

    Snapshots are written to ``evidence`` on ``io_pool``, off the event loop. ``detector``
    is only read, for the model hash and thresholds recorded with each violation.
    """

    def __init__(
        self,
        config: VisionConfig,
        emit: Callable[[Event], Awaitable[None]],
        *,
        detector: Detector,
        evidence: EvidenceStore,
        io_pool: ThreadPoolExecutor,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._cameras = {c.id: c for c in config.cameras}
        self._engine = RuleEngine(config)
        self._emit = emit
        self._detector = detector
        self._evidence = evidence
        self._io_pool = io_pool
        self._loop = loop
        # (camera id, rule index) -> event_id of the OPEN event, so CLOSED reuses it
        self._episode_ids: dict[tuple[str, int], str] = {}

    async def handle(self, camera_id: str, frame: Frame, detections: list[Detection]) -> None:
        """Evaluate one sample's detections and emit the episodes it opens or ends."""
        for tr in self._engine.evaluate(camera_id, detections, frame.wall):
            if tr.kind is TransitionKind.OPENED:
                await self._open_violation(frame, detections, tr)
            else:
                await self._close_violation(tr, closed_by="absent", ended_at=frame.wall)

    async def close_all(self, reason: str, now: float) -> None:
        """End every open episode at ``now`` with ``closed_by: reason``."""
        for tr in self._engine.close_all(now):
            await self._close_violation(tr, closed_by=reason, ended_at=now)

    async def _open_violation(
        self, frame: Frame, detections: list[Detection], tr: Transition
    ) -> None:
        rule, det = tr.rule, tr.detection
        caption = f"{frame.camera_id} {rule.violation} median={tr.median_score:.2f}"
        evidence, detector = self._evidence, self._detector
        snap = await self._loop.run_in_executor(
            self._io_pool,
            lambda: evidence.save(frame.image, detections, highlight=det, caption=caption),
        )
        cam_cfg = self._cameras[frame.camera_id]
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

"""Motion gate: decide per frame whether the detector needs to run.

A downscaled, blurred grey frame is compared with a running-average background; the
fraction of changed, unmasked pixels is the motion measure. Inference runs on motion,
for ``hold_s`` after it, and at least every ``force_interval_s`` on a static scene (so a
violation that stands still is still sampled). Times are frame timestamps, so replays of
files behave the same at any speed.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from vision.config import MotionConfig

__all__ = ["GateDecision", "GateReason", "MotionGate"]


class GateReason(enum.StrEnum):
    """Why the gate let a frame through or not."""

    FIRST = "first"
    MOTION = "motion"
    HOLD = "hold"
    FORCED = "forced"
    DISABLED = "disabled"
    STATIC = "static"


@dataclass(frozen=True, slots=True, kw_only=True)
class GateDecision:
    """The gate's verdict for one frame."""

    infer: bool
    reason: GateReason
    motion_fraction: float


class MotionGate:
    """Stateful motion gate for one camera (not thread-safe; one per camera thread)."""

    def __init__(self, config: MotionConfig) -> None:
        self.config = config
        self._background: npt.NDArray[np.float32] | None = None
        self._mask: npt.NDArray[np.uint8] | None = None  # 255 = counted, 0 = masked out
        self._mask_shape: tuple[int, int] | None = None
        self._last_motion_ts = float("-inf")
        self._last_infer_ts = float("-inf")
        self.frames = 0
        self.inferences = 0

    def _small(self, bgr: npt.NDArray[np.uint8]) -> tuple[npt.NDArray[Any], float]:
        h, w = bgr.shape[:2]
        scale = min(1.0, self.config.width / w)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        # Grey first: the area resize then averages one channel instead of three (half
        # the cost of the whole measure at 640x480).
        grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        if scale < 1:
            grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
        # Blur so sensor noise and compression artefacts do not count as motion.
        return cv2.GaussianBlur(grey, (5, 5), 0), scale

    def _build_mask(self, shape: tuple[int, int], scale: float) -> npt.NDArray[np.uint8]:
        mask = np.full(shape, 255, np.uint8)
        for poly in self.config.masks:
            pts = np.round(np.asarray(poly, np.float64) * scale).astype(np.int32)
            cv2.fillPoly(mask, [pts], 0)
        return mask

    def _mask_for(self, shape: tuple[int, int], scale: float) -> npt.NDArray[np.uint8]:
        if self._mask is None or self._mask_shape != shape:
            self._mask = self._build_mask(shape, scale)
            self._mask_shape = shape
        return self._mask

    def measure(self, bgr: npt.NDArray[np.uint8]) -> float:
        """Update the background with ``bgr`` and return the changed fraction (0..1)."""
        grey, scale = self._small(bgr)
        mask = self._mask_for(grey.shape[:2], scale)
        if self._background is None or self._background.shape != grey.shape:
            self._background = grey.astype(np.float32)
            return 1.0
        diff = cv2.absdiff(grey, cv2.convertScaleAbs(self._background))
        changed = (diff >= self.config.threshold) & (mask > 0)
        counted = int(np.count_nonzero(mask))
        fraction = float(np.count_nonzero(changed)) / counted if counted else 0.0
        cv2.accumulateWeighted(grey, self._background, self.config.background_alpha)
        return fraction

    def decide(self, bgr: npt.NDArray[np.uint8], ts: float) -> GateDecision:
        """Measure motion on ``bgr`` taken at ``ts`` (seconds) and decide whether to infer."""
        self.frames += 1
        cfg = self.config
        if not cfg.enabled:  # nothing to measure: every frame is inferred
            self._last_infer_ts = ts
            self.inferences += 1
            return GateDecision(infer=True, reason=GateReason.DISABLED, motion_fraction=0.0)
        first = self._background is None
        fraction = self.measure(bgr)
        if first:
            reason = GateReason.FIRST
        elif fraction >= cfg.min_area:
            self._last_motion_ts = ts
            reason = GateReason.MOTION
        elif ts - self._last_motion_ts <= cfg.hold_s:
            reason = GateReason.HOLD
        elif ts - self._last_infer_ts >= cfg.force_interval_s:
            reason = GateReason.FORCED
        else:
            return GateDecision(infer=False, reason=GateReason.STATIC, motion_fraction=fraction)
        self._last_infer_ts = ts
        self.inferences += 1
        return GateDecision(infer=True, reason=reason, motion_fraction=fraction)

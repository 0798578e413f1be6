"""Violation rules: zones, minimum scores and temporal confirmation (pure, no I/O).

Each inference on a camera is one *sample*. For every rule that applies to the camera,
the sample's score is the best score of a detection of the rule's class that passes
``min_score`` and whose box's bottom-centre lies in one of the rule's zones (0 if none).

An episode *opens* when the last ``confirm_samples`` (N) sample scores have a median that
reaches ``median_threshold``. The median is the lower median, so one hit among N ≥ 2
samples (its other N-1 scores are 0) can never reach it: single-frame hits never open an
episode. An open episode *ends* after ``end_after_samples`` (M) consecutive samples
without a qualifying detection. There is one episode per (camera, rule) at a time; two
offenders of the same kind in one view are one episode.
"""

from __future__ import annotations

import enum
import statistics
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from vision.config import Point, Tier, ViolationRuleConfig, VisionConfig
from vision.detector import Detection

__all__ = [
    "Episode",
    "RuleEngine",
    "Transition",
    "TransitionKind",
    "point_in_polygon",
    "tier_severity",
]


def point_in_polygon(x: float, y: float, polygon: Sequence[Point]) -> bool:
    """Even-odd rule test of ``(x, y)`` against a simple polygon.

    Points exactly on an edge may fall either way; zones are drawn generously, so this
    does not matter in practice.
    """
    inside = False
    n = len(polygon)
    j = n - 1
    for i in range(n):
        xi, yi = polygon[i]
        xj, yj = polygon[j]
        if (yi > y) != (yj > y):
            x_cross = xi + (y - yi) * (xj - xi) / (yj - yi)
            if x < x_cross:
                inside = not inside
        j = i
    return inside


def tier_severity(tier: Tier) -> str:
    """Event severity value (``alarm``/``warning``/``info``) for a tier."""
    return {Tier.IMMEDIATE: "alarm", Tier.DEADLINE: "warning", Tier.ROUTINE: "info"}[tier]


class TransitionKind(enum.StrEnum):
    """What happened to an episode."""

    OPENED = "opened"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True, kw_only=True)
class Transition:
    """An episode opened or closed on this sample."""

    kind: TransitionKind
    camera_id: str
    rule_index: int
    rule: ViolationRuleConfig
    started_at: float
    ts: float
    median_score: float
    detection: Detection | None  # best qualifying detection of the opening sample
    zone: str | None


@dataclass(slots=True, kw_only=True)
class Episode:
    """Temporal state of one rule on one camera."""

    window: deque[float]
    open: bool = False
    misses: int = 0
    started_at: float = 0.0
    peak_median: float = 0.0


class RuleEngine:
    """Evaluates detections of each sample against all rules; keeps episode state."""

    def __init__(self, config: VisionConfig) -> None:
        self._rules = list(config.rules)
        self._zones = {c.id: {z.name: z.polygon for z in c.zones} for c in config.cameras}
        self._episodes: dict[tuple[str, int], Episode] = {}

    def rules_for(self, camera_id: str) -> Iterable[tuple[int, ViolationRuleConfig]]:
        """Rules that apply to ``camera_id`` with their indices."""
        for i, rule in enumerate(self._rules):
            if rule.cameras is None or camera_id in rule.cameras:
                yield i, rule

    def qualifying(
        self, camera_id: str, rule: ViolationRuleConfig, detections: Iterable[Detection]
    ) -> tuple[Detection, str | None] | None:
        """Best detection for ``rule`` on ``camera_id`` and the zone it stands in."""
        zones = self._zones.get(camera_id, {})
        best: tuple[Detection, str | None] | None = None
        for det in detections:
            if det.class_name != rule.class_name or det.score < rule.min_score:
                continue
            zone: str | None = None
            if rule.zones is not None:
                x, y = det.bottom_centre
                zone = next(
                    (
                        name
                        for name in rule.zones
                        if name in zones and point_in_polygon(x, y, zones[name])
                    ),
                    None,
                )
                if zone is None:
                    continue
            if best is None or det.score > best[0].score:
                best = (det, zone)
        return best

    def evaluate(
        self, camera_id: str, detections: Sequence[Detection], ts: float
    ) -> list[Transition]:
        """Feed one sample (all detections of one inference) and return transitions."""
        out: list[Transition] = []
        for idx, rule in self.rules_for(camera_id):
            ep = self._episodes.get((camera_id, idx))
            if ep is None:
                ep = Episode(window=deque(maxlen=rule.confirm_samples))
                self._episodes[(camera_id, idx)] = ep
            hit = self.qualifying(camera_id, rule, detections)
            score = hit[0].score if hit else 0.0
            ep.window.append(score)
            median = statistics.median_low(ep.window) if len(ep.window) == ep.window.maxlen else 0.0
            if not ep.open:
                if hit is not None and median >= rule.median_threshold:
                    ep.open, ep.misses, ep.started_at, ep.peak_median = True, 0, ts, median
                    out.append(
                        Transition(
                            kind=TransitionKind.OPENED,
                            camera_id=camera_id,
                            rule_index=idx,
                            rule=rule,
                            started_at=ts,
                            ts=ts,
                            median_score=median,
                            detection=hit[0],
                            zone=hit[1],
                        )
                    )
                continue
            if hit is not None:
                ep.misses = 0
                ep.peak_median = max(ep.peak_median, median)
                continue
            ep.misses += 1
            if ep.misses >= rule.end_after_samples:
                out.append(self._close(camera_id, idx, ep, ts))
        return out

    def _close(self, camera_id: str, idx: int, ep: Episode, ts: float) -> Transition:
        """End an episode; a new one needs N fresh samples, not the tail of this one."""
        rule = self._rules[idx]
        self._episodes[(camera_id, idx)] = Episode(window=deque(maxlen=rule.confirm_samples))
        return Transition(
            kind=TransitionKind.CLOSED,
            camera_id=camera_id,
            rule_index=idx,
            rule=rule,
            started_at=ep.started_at,
            ts=ts,
            median_score=ep.peak_median,
            detection=None,
            zone=None,
        )

    def close_all(self, ts: float) -> list[Transition]:
        """Close every open episode (shutdown) and return the transitions."""
        out: list[Transition] = []
        for (camera_id, idx), ep in list(self._episodes.items()):
            if not ep.open:
                continue
            out.append(self._close(camera_id, idx, ep, ts))
        return out

"""Evidence snapshots: annotated JPEGs named by their SHA-256, under a disk quota.

A snapshot is written once, atomically (temp file + rename), to
``<dir>/<sha[:2]>/<sha>.jpg``; the event carries the hash, so the record and the image
bind each other. Quota policy (:func:`plan_quota`, oldest first within each step):

1. snapshots a receiver confirmed holding (``is_delivered(sha256)``) are deleted first;
2. if unconfirmed ones still exceed the quota, ``borrow(bytes)`` asks for room elsewhere
   (the roof lends the outbox's budget: delivered records and routine minute data go
   before unconfirmed evidence); an answer of None means "cannot say now": nothing
   unconfirmed is deleted this time;
3. only what is still over quota plus the loan is deleted unconfirmed, logged at ERROR
   and reported through ``on_lost`` (the roof records an ``evidence_lost`` event),
   because a full disk would stop all evidence.

Without cloud sync ``is_delivered`` says "never" and nothing is lent.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from edge.files import write_once
from vision.config import EvidenceConfig
from vision.detector import Detection

__all__ = [
    "EvidenceStore",
    "QuotaPlan",
    "Snapshot",
    "StoredSnapshot",
    "annotate",
    "blur_heads",
    "plan_quota",
]

log = logging.getLogger(__name__)

_RED = (0, 0, 255)
_GREEN = (0, 200, 0)


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    """A stored evidence image."""

    sha256: str
    path: Path
    size: int


@dataclass(frozen=True, slots=True)
class StoredSnapshot:
    """A snapshot on disk as the quota sees it (``mtime`` orders oldest first)."""

    sha256: str
    size: int
    mtime: float
    confirmed: bool


@dataclass(frozen=True, slots=True)
class QuotaPlan:
    """What the quota deletes: confirmed snapshots, then (lost) unconfirmed ones."""

    confirmed: list[StoredSnapshot] = field(default_factory=list)
    unconfirmed: list[StoredSnapshot] = field(default_factory=list)
    over: int = 0
    """Bytes by which unconfirmed snapshots exceed the quota once confirmed ones are gone."""


def plan_quota(
    files: Sequence[StoredSnapshot], quota: int, *, keep: str | None = None, lent: int | None = 0
) -> QuotaPlan:
    """Choose snapshots to delete so that they fit in ``quota`` plus ``lent`` bytes (pure).

    Confirmed snapshots go first, oldest first. An unconfirmed one goes only while the
    rest still exceed ``quota + lent``; with ``lent`` None (room unknown) none goes.
    ``keep`` (the snapshot just written) is never chosen.
    """
    ordered = sorted(files, key=lambda f: (f.mtime, f.sha256))
    total = sum(f.size for f in ordered)
    plan = QuotaPlan()
    for f in ordered:
        if total <= quota:
            break
        if f.confirmed and f.sha256 != keep:
            plan.confirmed.append(f)
            total -= f.size
    over = max(0, total - quota)
    if lent is not None:
        for f in ordered:
            if total <= quota + lent:
                break
            if not f.confirmed and f.sha256 != keep:
                plan.unconfirmed.append(f)
                total -= f.size
    return QuotaPlan(plan.confirmed, plan.unconfirmed, over)


def blur_heads(
    image: npt.NDArray[np.uint8],
    detections: Sequence[Detection],
    classes: Sequence[str],
    head_fraction: float,
) -> None:
    """Blur, in place, the top ``head_fraction`` of every box of a class in ``classes``.

    There is no face model on the device; the head of a person box is where faces are.
    """
    h, w = image.shape[:2]
    for d in detections:
        if d.class_name not in classes:
            continue
        x1, x2 = max(0, int(d.x1)), min(w, int(np.ceil(d.x2)))
        y1 = max(0, int(d.y1))
        y2 = min(h, int(np.ceil(d.y1 + (d.y2 - d.y1) * head_fraction)))
        if x2 - x1 < 2 or y2 - y1 < 2:
            continue
        roi = image[y1:y2, x1:x2]
        k = max(3, (min(roi.shape[:2]) // 3) | 1)
        image[y1:y2, x1:x2] = cv2.GaussianBlur(roi, (k, k), 0)


def annotate(
    image: npt.NDArray[np.uint8],
    detections: Sequence[Detection],
    highlight: Detection | None,
    caption: str,
) -> None:
    """Draw boxes and labels in place; ``highlight`` (the violation) in red."""
    for d in detections:
        colour = _RED if d == highlight else _GREEN
        p1, p2 = (round(d.x1), round(d.y1)), (round(d.x2), round(d.y2))
        cv2.rectangle(image, p1, p2, colour, 2)
        label = f"{d.class_name} {d.score:.2f}"
        cv2.putText(
            image, label, (p1[0], max(12, p1[1] - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.4, colour, 1
        )
    cv2.putText(image, caption, (4, image.shape[0] - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.4, _RED, 1)


class EvidenceStore:
    """Writes snapshots and enforces the quota. Blocking: call from a worker thread."""

    def __init__(
        self,
        config: EvidenceConfig,
        root: Path,
        *,
        is_delivered: Callable[[str], bool] | None = None,
        borrow: Callable[[int], int | None] | None = None,
        on_lost: Callable[[Sequence[Mapping[str, object]]], None] | None = None,
    ) -> None:
        self.config = config
        self.root = root
        self.is_delivered = is_delivered or (lambda _sha: False)
        self.borrow = borrow
        self.on_lost = on_lost
        self.quota_bytes = int(config.quota_mb * 1024 * 1024)
        self.lent = 0
        """Bytes the outbox currently lends to unconfirmed snapshots."""

    def save(
        self,
        image: npt.NDArray[np.uint8],
        detections: Sequence[Detection],
        *,
        highlight: Detection | None,
        caption: str,
    ) -> Snapshot:
        """Annotate a copy of ``image``, store it as JPEG and enforce the quota."""
        canvas = image.copy()
        if self.config.face_blur:
            blur_heads(canvas, detections, self.config.blur_classes, self.config.head_fraction)
        annotate(canvas, detections, highlight, caption)
        ok, buf = cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, self.config.jpeg_quality])
        if not ok:
            raise OSError("JPEG encoding failed")
        data = buf.tobytes()
        sha = hashlib.sha256(data).hexdigest()
        path = self.root / sha[:2] / f"{sha}.jpg"
        write_once(path, data)
        self.enforce_quota(keep=sha)
        return Snapshot(sha256=sha, path=path, size=len(data))

    def snapshots(self) -> list[tuple[float, int, Path]]:
        """``(mtime, size, path)`` of every stored snapshot, oldest first."""
        out: list[tuple[float, int, Path]] = []
        if not self.root.exists():
            return out
        for sub in self.root.iterdir():
            if not sub.is_dir():
                continue
            for entry in os.scandir(sub):
                if entry.name.endswith(".jpg"):
                    st = entry.stat()
                    out.append((st.st_mtime, st.st_size, Path(entry.path)))
        out.sort()
        return out

    def enforce_quota(self, *, keep: str | None = None) -> list[str]:
        """Keep to the quota (see the module docstring); returns the deleted hashes."""
        files = self.snapshots()
        total = sum(size for _, size, _ in files)
        if total <= self.quota_bytes:
            if self.lent and self.borrow is not None:
                returned = self.borrow(0)  # give the outbox its room back
                self.lent = self.lent if returned is None else returned
            return []
        paths = {path.stem: path for _, _, path in files}
        stored = [
            StoredSnapshot(path.stem, size, mtime, self.is_delivered(path.stem))
            for mtime, size, path in files
        ]
        over = plan_quota(stored, self.quota_bytes, keep=keep, lent=None).over
        lent: int | None = 0
        if self.borrow is not None and (over or self.lent):
            lent = self.borrow(over)
            self.lent = self.lent if lent is None else lent
        plan = plan_quota(stored, self.quota_bytes, keep=keep, lent=lent)
        for f in plan.confirmed:
            paths[f.sha256].unlink(missing_ok=True)
        for f in plan.unconfirmed:
            log.error(
                "evidence quota exceeded: deleting an undelivered snapshot sha256=%s bytes=%d"
                " quota_mb=%s lent_bytes=%s reason=no receiver confirmed it and no room is left;"
                " check the cloud uplink or raise vision.evidence.quota_mb",
                f.sha256,
                f.size,
                self.config.quota_mb,
                lent,
            )
            paths[f.sha256].unlink(missing_ok=True)
        if plan.unconfirmed and self.on_lost is not None:
            self.on_lost([{"sha256": f.sha256, "size": f.size} for f in plan.unconfirmed])
        return [f.sha256 for f in plan.confirmed + plan.unconfirmed]

"""Evidence snapshots: annotated JPEGs named by their SHA-256, under a disk quota.

A snapshot is written once, atomically (temp file + rename), to
``<dir>/<sha[:2]>/<sha>.jpg``; the event carries the hash, so the record and the image
bind each other. Quota policy, oldest first: snapshots whose events are delivered
(``is_delivered(sha256)``) are deleted first; if that is not enough, undelivered
evidence is deleted too and logged at ERROR, because a full disk would stop all evidence.
Until cloud sync exists the default ``is_delivered`` says "never", so only the
over-quota path deletes anything.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from vision.config import EvidenceConfig
from vision.detector import Detection

__all__ = ["EvidenceStore", "Snapshot", "annotate", "blur_heads"]

log = logging.getLogger(__name__)

_RED = (0, 0, 255)
_GREEN = (0, 200, 0)


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    """A stored evidence image."""

    sha256: str
    path: Path
    size: int


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
    ) -> None:
        self.config = config
        self.root = root
        self.is_delivered = is_delivered or (lambda _sha: False)
        self.quota_bytes = int(config.quota_mb * 1024 * 1024)

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
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
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
        """Delete oldest snapshots until under quota; returns the deleted hashes."""
        files = self.snapshots()
        total = sum(size for _, size, _ in files)
        deleted: list[str] = []
        if total <= self.quota_bytes:
            return deleted
        candidates = [f for f in files if f[2].stem != keep]
        delivered = [f for f in candidates if self.is_delivered(f[2].stem)]
        undelivered = [f for f in candidates if not self.is_delivered(f[2].stem)]
        for _, size, path in delivered + undelivered:
            if total <= self.quota_bytes:
                break
            sha = path.stem
            if not self.is_delivered(sha):
                log.error(
                    "evidence quota exceeded: deleting snapshot of an undelivered event",
                    extra={"sha256": sha, "quota_mb": self.config.quota_mb},
                )
            path.unlink(missing_ok=True)
            total -= size
            deleted.append(sha)
        return deleted

"""Decoding raw detector outputs, one function per export layout.

Three layouts cover the common Ultralytics exports, told apart by the output shape:

* ``yolov5``: ``[1, N, 5+nc]`` rows ``cx, cy, w, h, objectness, class scores``;
  score = objectness × class score.
* ``yolov8`` (also YOLO11): ``[1, 4+nc, N]``, rows ``cx, cy, w, h`` then class scores.
* ``end2end`` (YOLOv10/YOLO26 or exported with NMS): ``[1, K, 6]`` rows
  ``x1, y1, x2, y2, score, class``; needs no NMS.

Every decoder returns :class:`Candidates` in model-input pixels, already filtered by the
confidence threshold. The only ambiguity is a ``[1, 6, 6]`` output (it could be any layout)
and a YOLOv5 head with ``N < 5+nc``; :func:`detect_layout` prefers the reading where the long
axis holds the candidates, which is what real exports have.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from vision.errors import LayoutError

__all__ = [
    "Candidates",
    "Layout",
    "LayoutError",
    "decode",
    "decode_end2end",
    "decode_yolov5",
    "decode_yolov8",
    "detect_layout",
]


class Layout(enum.StrEnum):
    """Output layout of a detection model."""

    YOLOV5 = "yolov5"
    YOLOV8 = "yolov8"
    END2END = "end2end"


@dataclass(frozen=True, slots=True, kw_only=True)
class Candidates:
    """Detections before NMS: ``boxes`` ``[K, 4]`` xyxy in input pixels, scores, classes."""

    boxes: npt.NDArray[np.float32]
    scores: npt.NDArray[np.float32]
    class_ids: npt.NDArray[np.int64]
    needs_nms: bool


def detect_layout(shape: tuple[int | str | None, ...], num_classes: int | None = None) -> Layout:
    """Tell the layout from the (static) output shape of the model.

    ``num_classes`` (from metadata or config), when known, resolves the shape exactly;
    otherwise the longer of the last two axes is taken to hold the candidates.
    """
    if len(shape) != 3 or not all(isinstance(d, int) for d in shape[1:]):
        raise LayoutError(f"expected a static [1, a, b] output, got {shape}")
    a, b = int(shape[1]), int(shape[2])  # type: ignore[arg-type]
    if num_classes is not None:
        if a == 4 + num_classes and b != 5 + num_classes:
            return Layout.YOLOV8
        if b == 5 + num_classes:
            return Layout.YOLOV5
        if b == 6:
            return Layout.END2END
        raise LayoutError(f"output {shape} fits no layout for {num_classes} classes")
    if b == 6 and a >= 6:
        return Layout.END2END
    if a > 4 and b > a:
        return Layout.YOLOV8
    if b > 5 and a >= b:
        return Layout.YOLOV5
    raise LayoutError(f"output {shape} fits no supported layout")


def _cxcywh_to_xyxy(
    cx: npt.NDArray[np.float32],
    cy: npt.NDArray[np.float32],
    w: npt.NDArray[np.float32],
    h: npt.NDArray[np.float32],
) -> npt.NDArray[np.float32]:
    half_w = w / 2
    half_h = h / 2
    return np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=1).astype(
        np.float32, copy=False
    )


def decode_yolov8(out: npt.NDArray[np.float32], conf: float) -> Candidates:
    """Decode ``[1, 4+nc, N]``: keep candidates whose best class score exceeds ``conf``."""
    pred = out[0]
    cls = pred[4:]
    # Reduce over classes on the [nc, N] array first, and gather only the survivors: the
    # full transpose of 84×8400 floats would cost more than the rest of the postprocess.
    # max() over axis 0 is a row-wise pass over contiguous memory; argmax() over axis 0
    # is not (NumPy copies the array transposed), so it runs on the survivors only.
    best = cls.max(axis=0)
    keep = np.flatnonzero(best > conf)
    class_ids = cls[:, keep].argmax(axis=0)  # the first maximal class, as before
    boxes = _cxcywh_to_xyxy(pred[0, keep], pred[1, keep], pred[2, keep], pred[3, keep])
    return Candidates(
        boxes=boxes,
        scores=best[keep].astype(np.float32, copy=False),
        class_ids=class_ids.astype(np.int64, copy=False),
        needs_nms=True,
    )


def decode_yolov5(out: npt.NDArray[np.float32], conf: float) -> Candidates:
    """Decode ``[1, N, 5+nc]``: score is objectness × class score."""
    pred = out[0]
    obj = pred[:, 4]
    # Objectness bounds the final score, so it prunes most rows before the class product.
    rows = pred[obj > conf]
    cls_scores = rows[:, 5:] * rows[:, 4:5]
    class_ids = cls_scores.argmax(axis=1)
    scores = cls_scores[np.arange(len(rows)), class_ids]
    keep = scores > conf
    rows = rows[keep]
    boxes = _cxcywh_to_xyxy(rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3])
    return Candidates(
        boxes=boxes,
        scores=scores[keep].astype(np.float32, copy=False),
        class_ids=class_ids[keep].astype(np.int64, copy=False),
        needs_nms=True,
    )


def decode_end2end(out: npt.NDArray[np.float32], conf: float) -> Candidates:
    """Decode ``[1, K, 6]``; rows with score ≤ ``conf`` (including empty padding) are dropped."""
    pred = out[0]
    rows = pred[pred[:, 4] > conf]
    return Candidates(
        boxes=np.ascontiguousarray(rows[:, :4], dtype=np.float32),
        scores=rows[:, 4].astype(np.float32),
        class_ids=np.rint(rows[:, 5]).astype(np.int64),
        needs_nms=False,
    )


def decode(layout: Layout, out: npt.NDArray[np.float32], conf: float) -> Candidates:
    """Decode ``out`` according to ``layout``."""
    if layout is Layout.YOLOV8:
        return decode_yolov8(out, conf)
    if layout is Layout.YOLOV5:
        return decode_yolov5(out, conf)
    return decode_end2end(out, conf)

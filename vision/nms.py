"""Class-aware non-maximum suppression in vectorised NumPy."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["box_iou", "nms", "nms_classwise"]

# Same trick as Ultralytics: shift each class's boxes far apart so one NMS pass never
# lets boxes of different classes suppress each other.
_CLASS_OFFSET = 7680.0


def box_iou(
    box: npt.NDArray[np.float32], boxes: npt.NDArray[np.float32]
) -> npt.NDArray[np.float32]:
    """IoU of one xyxy ``box`` against ``[K, 4]`` ``boxes`` (areas without the +1)."""
    xx1 = np.maximum(box[0], boxes[:, 0])
    yy1 = np.maximum(box[1], boxes[:, 1])
    xx2 = np.minimum(box[2], boxes[:, 2])
    yy2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(xx2 - xx1, 0, None) * np.clip(yy2 - yy1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, inter / union, 0.0)
    return iou.astype(np.float32, copy=False)


def nms(
    boxes: npt.NDArray[np.float32], scores: npt.NDArray[np.float32], iou_threshold: float
) -> npt.NDArray[np.int64]:
    """Greedy NMS; returns kept indices in descending score order.

    A box is dropped when its IoU with an already kept, higher-scoring box exceeds
    ``iou_threshold`` (the torchvision rule).
    """
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        if order.size == 1:
            break
        rest = order[1:]
        iou = box_iou(boxes[i], boxes[rest])
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def nms_classwise(
    boxes: npt.NDArray[np.float32],
    scores: npt.NDArray[np.float32],
    class_ids: npt.NDArray[np.int64],
    iou_threshold: float,
    *,
    max_candidates: int = 30000,
    max_detections: int = 300,
) -> npt.NDArray[np.int64]:
    """NMS within each class only; returns at most ``max_detections`` kept indices."""
    if boxes.shape[0] == 0:
        return np.empty(0, dtype=np.int64)
    order = np.argsort(-scores, kind="stable")[:max_candidates]
    shifted = boxes[order] + (class_ids[order, None].astype(np.float32) * _CLASS_OFFSET)
    kept = nms(shifted, scores[order], iou_threshold)[:max_detections]
    return order[kept]

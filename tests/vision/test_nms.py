from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from vision.nms import box_iou, nms, nms_classwise


def test_iou_hand_computed():
    a = np.array([0, 0, 10, 10], np.float32)
    bs = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 5, 5]], np.float32)
    np.testing.assert_allclose(box_iou(a, bs), [1.0, 50 / 150, 0.0, 0.25], rtol=1e-6)


def test_nms_keeps_best_of_overlapping_and_distinct():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]], np.float32)
    scores = np.array([0.8, 0.9, 0.7], np.float32)
    assert nms(boxes, scores, 0.45).tolist() == [1, 2]


def test_classwise_nms_never_suppresses_across_classes():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]], np.float32)
    scores = np.array([0.9, 0.8, 0.7], np.float32)
    ids = np.array([0, 1, 0], np.int64)
    assert nms_classwise(boxes, scores, ids, 0.45).tolist() == [0, 1]


def test_empty():
    empty = np.empty((0, 4), np.float32)
    out = nms_classwise(empty, np.empty(0, np.float32), np.empty(0, np.int64), 0.5)
    assert out.size == 0


box = st.tuples(
    st.floats(0, 200, width=32),
    st.floats(0, 200, width=32),
    st.floats(1, 80, width=32),
    st.floats(1, 80, width=32),
)


@settings(max_examples=150)
@given(
    items=st.lists(
        st.tuples(box, st.integers(1, 100).map(lambda v: v / 100), st.integers(0, 2)),
        min_size=1,
        max_size=40,
    ),
    thr=st.floats(0.1, 0.9),
)
def test_classwise_nms_invariants(items, thr):
    boxes = np.array([[x, y, x + w, y + h] for (x, y, w, h), _, _ in items], np.float32)
    scores = np.array([s for _, s, _ in items], np.float32)
    ids = np.array([c for _, _, c in items], np.int64)
    keep = nms_classwise(boxes, scores, ids, thr)
    kept = set(keep.tolist())
    # sorted by score, unique
    assert len(kept) == len(keep)
    assert np.all(np.diff(scores[keep]) <= 0)
    # kept boxes of one class do not overlap beyond the threshold
    for i in keep:
        same = [j for j in keep if j != i and ids[j] == ids[i]]
        if same:
            assert np.all(box_iou(boxes[i], boxes[same]) <= thr + 1e-4)
    # every dropped box is covered by a kept box of its class with a score at least its own
    for j in range(len(items)):
        if j in kept:
            continue
        cover = [i for i in keep if ids[i] == ids[j] and scores[i] >= scores[j]]
        assert cover
        assert np.max(box_iou(boxes[j], boxes[cover])) > thr - 1e-4
    # the best box of every present class survives
    for c in set(ids.tolist()):
        best = max(np.flatnonzero(ids == c), key=lambda k: (scores[k], -k))
        assert scores[best] in scores[[i for i in keep if ids[i] == c]]

from __future__ import annotations

import numpy as np
import pytest

from vision.layouts import (
    Layout,
    LayoutError,
    decode_end2end,
    decode_yolov5,
    decode_yolov8,
    detect_layout,
)


@pytest.mark.parametrize(
    ("shape", "nc", "expected"),
    [
        ((1, 84, 8400), None, Layout.YOLOV8),
        ((1, 84, 8400), 80, Layout.YOLOV8),
        ((1, 10, 2100), 6, Layout.YOLOV8),
        ((1, 25200, 85), None, Layout.YOLOV5),
        ((1, 25200, 85), 80, Layout.YOLOV5),
        ((1, 300, 6), None, Layout.END2END),
        ((1, 300, 6), 80, Layout.END2END),
        ((1, 7, 6), 3, Layout.YOLOV8),  # tiny head: the class count decides
        ((1, 6, 8), 3, Layout.YOLOV5),
    ],
)
def test_detect_layout(shape, nc, expected):
    assert detect_layout(shape, nc) is expected


@pytest.mark.parametrize(("shape", "nc"), [((1, 84), None), ((1, "n", 6), None), ((1, 9, 9), 80)])
def test_detect_layout_rejects(shape, nc):
    with pytest.raises(LayoutError):
        detect_layout(shape, nc)


def test_decode_yolov8_hand_made():
    # 2 classes, 3 candidates: [cx, cy, w, h, s0, s1] per column
    out = np.array(
        [[[50, 10, 0], [60, 20, 0], [20, 4, 2], [10, 4, 2], [0.9, 0.1, 0.2], [0.3, 0.6, 0.1]]],
        np.float32,
    )
    c = decode_yolov8(out, 0.25)
    np.testing.assert_allclose(c.boxes, [[40, 55, 60, 65], [8, 18, 12, 22]])
    np.testing.assert_allclose(c.scores, [0.9, 0.6])
    assert c.class_ids.tolist() == [0, 1]
    assert c.needs_nms


def test_decode_yolov5_multiplies_objectness():
    # rows: cx, cy, w, h, obj, c0, c1
    out = np.array(
        [
            [
                [50, 60, 20, 10, 0.8, 0.5, 0.9],
                [10, 10, 2, 2, 0.2, 1.0, 0.0],
                [5, 5, 2, 2, 0.9, 0.2, 0.1],
            ]
        ],
        np.float32,
    )
    c = decode_yolov5(out, 0.25)
    np.testing.assert_allclose(c.boxes, [[40, 55, 60, 65]])
    np.testing.assert_allclose(c.scores, [0.72], rtol=1e-6)  # 0.8 * 0.9; row 3: 0.18 < 0.25
    assert c.class_ids.tolist() == [1]


def test_decode_end2end_filters_empty_rows():
    out = np.array(
        [[[1, 2, 30, 40, 0.8, 3], [0, 0, 0, 0, 0, 0], [5, 5, 9, 9, 0.2, 1], [0, 0, 1, 1, 0.5, 2]]],
        np.float32,
    )
    c = decode_end2end(out, 0.25)
    np.testing.assert_allclose(c.boxes, [[1, 2, 30, 40], [0, 0, 1, 1]])
    assert c.class_ids.tolist() == [3, 2]
    assert not c.needs_nms


def test_decode_yolov8_matches_the_full_argmax():
    rng = np.random.default_rng(0)
    out = rng.random((1, 10, 500), dtype=np.float32)
    out[0, 4:, ::7] = 0.8  # ties between all classes: the first one wins
    cand = decode_yolov8(out, 0.5)
    scores = out[0, 4:].max(axis=0)
    keep = np.flatnonzero(scores > 0.5)
    np.testing.assert_array_equal(cand.class_ids, out[0, 4:, keep].argmax(axis=1))
    np.testing.assert_array_equal(cand.scores, scores[keep])
    assert (cand.class_ids[keep % 7 == 0] == 0).all()

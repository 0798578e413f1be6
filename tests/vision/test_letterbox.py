from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from vision.letterbox import PAD_VALUE, LetterboxBuffers, compute_letterbox, unletterbox_boxes


@pytest.mark.parametrize(
    ("w", "h", "s", "expected"),
    [
        # 1280x720 -> 640: r=0.5, 640x360, dh=140 each side
        (1280, 720, 640, (640, 360, 140, 140, 0, 0)),
        # 640x480 -> 640: r=1, pad 80 top and bottom
        (640, 480, 640, (640, 480, 80, 80, 0, 0)),
        # 320x240 -> 320: r=1, pad 40
        (320, 240, 320, (320, 240, 40, 40, 0, 0)),
        # 100x33 -> 64: r=0.64, 64x21, dh=21.5 -> top round(21.4)=21, bottom round(21.6)=22
        (100, 33, 64, (64, 21, 21, 22, 0, 0)),
        # portrait 300x500 -> 320: r=0.64, 192x320, dw=64 -> left 64, right 64
        (300, 500, 320, (192, 320, 0, 0, 64, 64)),
        # 333x100 -> 320: r=0.96096, 320x96, dh=112
        (333, 100, 320, (320, 96, 112, 112, 0, 0)),
    ],
)
def test_letterbox_geometry_hand_computed(w, h, s, expected):
    lb = compute_letterbox(w, h, s, s)
    assert (lb.new_w, lb.new_h, lb.top, lb.bottom, lb.left, lb.right) == expected
    assert lb.new_h + lb.top + lb.bottom == s
    assert lb.new_w + lb.left + lb.right == s


def test_box_mapping_hand_computed():
    # 1280x720 in a 640 input: input box (100, 190, 300, 240) -> subtract pad 140 -> /0.5
    lb = compute_letterbox(1280, 720, 640, 640)
    out = unletterbox_boxes(np.array([[100, 190, 300, 240]], np.float32), lb)
    np.testing.assert_allclose(out, [[200, 100, 600, 200]])
    # clipped to the image: a box reaching into the padding
    out = unletterbox_boxes(np.array([[-10, 100, 700, 520]], np.float32), lb)
    np.testing.assert_allclose(out, [[0, 0, 1280, 720]])


def test_preprocess_tensor_pad_rgb_and_scale():
    img = np.zeros((240, 320, 3), np.uint8)
    img[:, :] = (10, 20, 30)  # BGR
    tensor, lb = LetterboxBuffers(320, 320)(img)
    assert tensor.shape == (1, 3, 320, 320)
    assert tensor.dtype == np.float32
    assert lb.top == 40
    np.testing.assert_allclose(tensor[0, :, 0, 0], PAD_VALUE / 255, rtol=1e-6)
    np.testing.assert_allclose(tensor[0, :, 319, 319], PAD_VALUE / 255, rtol=1e-6)
    # RGB order inside the image area
    np.testing.assert_allclose(tensor[0, :, 100, 100], np.array([30, 20, 10]) / 255, rtol=1e-6)


def test_preprocess_reuses_its_buffer():
    prep = LetterboxBuffers(64, 64)
    a, _ = prep(np.zeros((48, 64, 3), np.uint8))
    b, _ = prep(np.full((64, 48, 3), 200, np.uint8))
    assert a is b


@given(
    w=st.integers(16, 2000),
    h=st.integers(16, 2000),
    s=st.sampled_from([64, 160, 320, 640]),
    fx=st.tuples(st.floats(0, 1), st.floats(0, 1)),
    fy=st.tuples(st.floats(0, 1), st.floats(0, 1)),
)
def test_box_mapping_round_trip(w, h, s, fx, fy):
    lb = compute_letterbox(w, h, s, s)
    assert 0 <= lb.top <= lb.bottom <= lb.top + 1
    assert 0 <= lb.left <= lb.right <= lb.left + 1
    x1, x2 = sorted(v * w for v in fx)
    y1, y2 = sorted(v * h for v in fy)
    # forward: what the model sees, in input pixels
    fwd = np.array(
        [
            [
                x1 * lb.gain_x + lb.left,
                y1 * lb.gain_y + lb.top,
                x2 * lb.gain_x + lb.left,
                y2 * lb.gain_y + lb.top,
            ]
        ],
        np.float32,
    )
    assert fwd.min() >= -1e-3
    assert fwd.max() <= s + 1e-3
    back = unletterbox_boxes(fwd, lb)
    tol = max(w, h) * 1e-5 + 1e-3
    np.testing.assert_allclose(back[0], [x1, y1, x2, y2], atol=tol)


def _pad_then_convert(bgr, size):
    """The straightforward letterbox (allocating), as the reference for the reused buffers."""
    h, w = bgr.shape[:2]
    lb = compute_letterbox(w, h, size, size)
    img = bgr
    if (w, h) != (lb.new_w, lb.new_h):
        img = cv2.resize(bgr, (lb.new_w, lb.new_h), interpolation=cv2.INTER_LINEAR)
    pad = (PAD_VALUE,) * 3
    img = cv2.copyMakeBorder(
        img, lb.top, lb.bottom, lb.left, lb.right, cv2.BORDER_CONSTANT, value=pad
    )
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB).transpose(2, 0, 1)[None] / np.float32(255)


def test_reused_buffers_match_the_allocating_letterbox_exactly():
    rng = np.random.default_rng(0)
    prep = LetterboxBuffers(320, 320)
    first = None
    # landscape, portrait, exact fit, upscale, and back: a change of geometry must not
    # leave the previous image in the new padding
    for h, w in [(480, 640), (500, 300), (320, 320), (33, 100), (720, 1280), (480, 640)]:
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        tensor, _ = prep(img)
        first = tensor if first is None else first
        assert tensor is first
        np.testing.assert_array_equal(tensor, _pad_then_convert(img, 320))

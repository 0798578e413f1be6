"""Letterbox preprocessing and the inverse box mapping.

The formula is the Ultralytics one, reproduced exactly, because detectors (random ones
especially) are sensitive to single-pixel shifts: ``r = min(S_h/h, S_w/w)``, resize to
``(round(w*r), round(h*r))`` with ``INTER_LINEAR``, pad centred with
``top = round(dh/2 - 0.1)``, ``left = round(dw/2 - 0.1)`` and value 114.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

PAD_VALUE = 114

# uint8 -> float32 / 255, as a lookup table (bit-identical to dividing, and faster).
_SCALE: npt.NDArray[np.float32] = (np.arange(256, dtype=np.float32) / np.float32(255)).reshape(
    1, 256
)

__all__ = ["PAD_VALUE", "Letterbox", "LetterboxBuffers", "compute_letterbox", "unletterbox_boxes"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Letterbox:
    """Geometry of one letterbox transform from an ``orig_w``×``orig_h`` image."""

    orig_w: int
    orig_h: int
    new_w: int
    new_h: int
    top: int
    bottom: int
    left: int
    right: int

    @property
    def gain_x(self) -> float:
        """Horizontal scale actually applied by the resize."""
        return self.new_w / self.orig_w

    @property
    def gain_y(self) -> float:
        """Vertical scale actually applied by the resize."""
        return self.new_h / self.orig_h


def _round_half_even(x: float) -> int:
    # Python's round() is banker's rounding, the same as the reference implementation.
    return round(x)


def compute_letterbox(orig_w: int, orig_h: int, size_w: int, size_h: int) -> Letterbox:
    """Return the letterbox geometry mapping an ``orig_w``×``orig_h`` image to the input."""
    if orig_w <= 0 or orig_h <= 0:
        raise ValueError(f"image size must be positive, got {orig_w}x{orig_h}")
    r = min(size_h / orig_h, size_w / orig_w)
    new_w = _round_half_even(orig_w * r)
    new_h = _round_half_even(orig_h * r)
    dw = (size_w - new_w) / 2
    dh = (size_h - new_h) / 2
    top, bottom = _round_half_even(dh - 0.1), _round_half_even(dh + 0.1)
    left, right = _round_half_even(dw - 0.1), _round_half_even(dw + 0.1)
    return Letterbox(
        orig_w=orig_w,
        orig_h=orig_h,
        new_w=new_w,
        new_h=new_h,
        top=top,
        bottom=bottom,
        left=left,
        right=right,
    )


def unletterbox_boxes(
    boxes: npt.NDArray[np.float32], lb: Letterbox, *, clip: bool = True
) -> npt.NDArray[np.float32]:
    """Map ``[K, 4]`` xyxy boxes from model-input pixels back to original-image pixels.

    Subtracts the padding and divides by the per-axis gain of the resize, then clips to
    the image. Returns a new array.
    """
    out = np.empty_like(boxes, dtype=np.float32)
    out[:, 0] = (boxes[:, 0] - lb.left) / lb.gain_x
    out[:, 2] = (boxes[:, 2] - lb.left) / lb.gain_x
    out[:, 1] = (boxes[:, 1] - lb.top) / lb.gain_y
    out[:, 3] = (boxes[:, 3] - lb.top) / lb.gain_y
    if clip:
        np.clip(out[:, 0::2], 0, lb.orig_w, out=out[:, 0::2])
        np.clip(out[:, 1::2], 0, lb.orig_h, out=out[:, 1::2])
    return out


class LetterboxBuffers:
    """Preprocesses BGR frames into a reused ``[1, 3, H, W]`` float32 tensor.

    Nothing is allocated per frame: the resize writes straight into the image area of a
    reused padded canvas (whose border is filled with the pad value once per geometry),
    ``cv2.split`` into three reused planes, and a 256-entry table (``v / 255`` in float32,
    the same values as dividing) maps each plane into its tensor channel, in RGB order.
    One instance per worker thread: the returned tensor is overwritten by the next call.
    """

    def __init__(self, size_w: int, size_h: int) -> None:
        self.size_w = size_w
        self.size_h = size_h
        self._tensor: npt.NDArray[np.float32] = np.empty((1, 3, size_h, size_w), np.float32)
        self._planes = [np.empty((size_h, size_w), np.uint8) for _ in range(3)]
        self._canvas: npt.NDArray[np.uint8] = np.empty((size_h, size_w, 3), np.uint8)
        self._geometry: Letterbox | None = None

    def __call__(self, bgr: npt.NDArray[np.uint8]) -> tuple[npt.NDArray[np.float32], Letterbox]:
        """Letterbox ``bgr`` (HxWx3 uint8) and return the input tensor and its geometry."""
        h, w = bgr.shape[:2]
        lb = self._geometry
        if lb is None or (lb.orig_w, lb.orig_h) != (w, h):
            lb = compute_letterbox(w, h, self.size_w, self.size_h)
            self._canvas.fill(PAD_VALUE)
            self._geometry = lb
        area = self._canvas[lb.top : lb.top + lb.new_h, lb.left : lb.left + lb.new_w]
        if (w, h) != (lb.new_w, lb.new_h):
            cv2.resize(bgr, (lb.new_w, lb.new_h), dst=area, interpolation=cv2.INTER_LINEAR)
        else:
            np.copyto(area, bgr)
        cv2.split(self._canvas, self._planes)
        for channel, plane in enumerate(reversed(self._planes)):  # B, G, R -> R, G, B
            cv2.LUT(plane, _SCALE, dst=self._tensor[0, channel])
        return self._tensor, lb

"""Synthetic, hand-weighted ONNX detectors and kitchen clips for tests and the demo.

No model is downloaded, ever. These graphs are built with ``onnx.helper`` and their
weights are set by hand so that they really detect something simple: a saturated square
of one colour on a plain background. Per class ``c`` with colour channel ``k`` a 1×1
convolution computes ``8·(x_k − Σ_{j≠k} x_j − 0.5)``; its sigmoid is the class map. The
score is the map's maximum, the box the extent of the pixels above 0.5. So a full red
square scores ≈0.98, a dimmer one less (intensity 140 ≈ 0.6), which lets tests exercise
the score thresholds. Each image yields one box per class (two squares of one colour
merge into one box).

The same core is wrapped in each export layout, with extra rows that exercise the
decoders: YOLOv5/YOLOv8 add a shifted duplicate of every box at 0.9× the score (NMS must
remove it), end-to-end appends empty rows (the score filter must remove them).

Requires the ``onnx`` package (a test/demo dependency), imported lazily.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from vision.config import (
    CameraConfig,
    DetectorConfig,
    EvidenceConfig,
    MotionConfig,
    Tier,
    ViolationRuleConfig,
    VisionConfig,
    ZoneConfig,
)
from vision.layouts import Layout

__all__ = [
    "SYNTHETIC_CLASSES",
    "Square",
    "build_model",
    "demo_config",
    "kitchen_frames",
    "write_clip",
    "write_demo_assets",
]

SYNTHETIC_CLASSES: tuple[str, ...] = ("no_chef_hat", "smoking", "rodent")
"""Class names of the synthetic models; class i detects colour channel i (R, G, B)."""

_BGR = {0: (0, 0, 1), 1: (0, 1, 0), 2: (1, 0, 0)}  # class -> BGR unit colour
_GAIN = 8.0
_BIG = 1e6
_DUP_SHIFT = (3.0, 2.0)
_DUP_FACTOR = 0.9
_E2E_EMPTY_ROWS = 2


def _core_nodes(size: int, nc: int) -> tuple[list[Any], list[Any]]:
    """Nodes computing ``x1, y1, x2, y2, score`` (each ``[1, nc]``) from ``images``."""
    from onnx import TensorProto, helper, numpy_helper

    w = np.full((nc, 3, 1, 1), -1.0, np.float32)
    for c in range(nc):
        w[c, c % 3, 0, 0] = 1.0  # RGB channel c: +1 on its colour, -1 on the others
    w *= _GAIN
    b = np.full((nc,), -0.5 * _GAIN, np.float32)
    pos = np.arange(size, dtype=np.float32)
    inits = [
        numpy_helper.from_array(w, "colour_w"),
        numpy_helper.from_array(b, "colour_b"),
        numpy_helper.from_array(pos, "pos"),
        numpy_helper.from_array(np.array(0.5, np.float32), "half"),
        numpy_helper.from_array(np.array(1.0, np.float32), "one"),
        numpy_helper.from_array(np.array(_BIG, np.float32), "big"),
    ]
    n = helper.make_node
    nodes = [
        n("Conv", ["images", "colour_w", "colour_b"], ["logits"]),
        n("Sigmoid", ["logits"], ["prob"]),  # [1, nc, S, S]
        n("Greater", ["prob", "half"], ["hard_b"]),
        n("Cast", ["hard_b"], ["hard"], to=TensorProto.FLOAT),
        n("ReduceMax", ["prob"], ["score"], axes=[2, 3], keepdims=0),  # [1, nc]
    ]
    for axis, (lo, hi) in ((2, ("x1", "x2")), (3, ("y1", "y2"))):
        # Reducing over H (axis 2) leaves the column profile; over W, the row profile.
        p = f"prof{axis}"
        nodes += [
            n("ReduceMax", ["hard"], [p], axes=[axis], keepdims=0),  # [1, nc, S]
            n("Mul", [p, "pos"], [f"{p}_pos"]),
            n("Sub", ["one", p], [f"{p}_inv"]),
            n("Mul", [f"{p}_inv", "big"], [f"{p}_big"]),
            n("Add", [f"{p}_pos", f"{p}_big"], [f"{p}_lo"]),
            n("ReduceMin", [f"{p}_lo"], [lo], axes=[2], keepdims=0),
            n("ReduceMax", [f"{p}_pos"], [f"{hi}_last"], axes=[2], keepdims=0),
            n("Add", [f"{hi}_last", "one"], [hi]),
        ]
    return nodes, inits


def build_model(
    path: Path,
    layout: Layout,
    *,
    size: int = 320,
    class_names: Sequence[str] = SYNTHETIC_CLASSES,
    metadata: bool = True,
) -> Path:
    """Write a hand-weighted colour-square detector in ``layout`` to ``path``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nc = len(class_names)
    nodes, inits = _core_nodes(size, nc)
    n = helper.make_node
    eye = np.eye(nc, dtype=np.float32)[None]  # [1, nc, nc]
    inits += [
        numpy_helper.from_array(eye, "eye"),
        numpy_helper.from_array(np.array(2.0, np.float32), "two"),
        numpy_helper.from_array(np.array(_DUP_FACTOR, np.float32), "dup_factor"),
        numpy_helper.from_array(
            np.array([_DUP_SHIFT[0], _DUP_SHIFT[1], 0, 0], np.float32).reshape(1, 4, 1),
            "dup_shift",
        ),
        numpy_helper.from_array(np.array([1], np.int64), "ax1"),
        numpy_helper.from_array(np.array([2], np.int64), "ax2"),
    ]
    if layout is Layout.END2END:
        inits += [
            numpy_helper.from_array(np.arange(nc, dtype=np.float32)[None], "class_col"),
            numpy_helper.from_array(np.zeros((1, _E2E_EMPTY_ROWS, 6), np.float32), "empty"),
        ]
        cols = ["x1", "y1", "x2", "y2", "score", "class_col"]
        nodes += [n("Unsqueeze", [c, "ax2"], [f"{c}_u"]) for c in cols]
        nodes += [
            n("Concat", [f"{c}_u" for c in cols], ["rows"], axis=2),  # [1, nc, 6]
            n("Concat", ["rows", "empty"], ["output0"], axis=1),
        ]
        out_shape = [1, nc + _E2E_EMPTY_ROWS, 6]
    else:
        nodes += [
            n("Add", ["x1", "x2"], ["sx"]),
            n("Div", ["sx", "two"], ["cx"]),
            n("Add", ["y1", "y2"], ["sy"]),
            n("Div", ["sy", "two"], ["cy"]),
            n("Sub", ["x2", "x1"], ["bw"]),
            n("Sub", ["y2", "y1"], ["bh"]),
        ]
        nodes += [n("Unsqueeze", [c, "ax1"], [f"{c}_u"]) for c in ("cx", "cy", "bw", "bh")]
        nodes += [
            n("Concat", ["cx_u", "cy_u", "bw_u", "bh_u"], ["boxes"], axis=1),  # [1, 4, nc]
            n("Add", ["boxes", "dup_shift"], ["boxes_dup"]),
            n("Unsqueeze", ["score", "ax1"], ["score_row"]),  # [1, 1, nc]
            n("Mul", ["score_row", "dup_factor"], ["score_row_dup"]),
        ]
        if layout is Layout.YOLOV8:
            nodes += [
                n("Mul", ["eye", "score_row"], ["cls"]),  # [1, nc, nc], diagonal = scores
                n("Mul", ["cls", "dup_factor"], ["cls_dup"]),
                n("Concat", ["boxes", "cls"], ["cand"], axis=1),
                n("Concat", ["boxes_dup", "cls_dup"], ["cand_dup"], axis=1),
                n("Concat", ["cand", "cand_dup"], ["output0"], axis=2),
            ]
            out_shape = [1, 4 + nc, 2 * nc]
        else:  # YOLOv5: objectness carries the score, class columns are one-hot
            nodes += [
                n("Concat", ["boxes", "score_row", "eye"], ["cand"], axis=1),
                n("Concat", ["boxes_dup", "score_row_dup", "eye"], ["cand_dup"], axis=1),
                n("Concat", ["cand", "cand_dup"], ["cand_all"], axis=2),  # [1, 5+nc, 2nc]
                n("Transpose", ["cand_all"], ["output0"], perm=[0, 2, 1]),
            ]
            out_shape = [1, 2 * nc, 5 + nc]
    used = {name for node in nodes for name in node.input}
    inits = [t for t in inits if t.name in used]  # onnxruntime warns about unused ones
    graph = helper.make_graph(
        nodes,
        f"colour_squares_{layout.value}",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, out_shape)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # readable by every onnxruntime the Pi images ship
    if metadata:
        names = "{" + ", ".join(f"{i}: {name!r}" for i, name in enumerate(class_names)) + "}"
        helper.set_model_props(
            model, {"names": names, "imgsz": f"[{size}, {size}]", "task": "detect"}
        )
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


@dataclass(frozen=True, slots=True, kw_only=True)
class Square:
    """A coloured square in a synthetic clip, visible for frames ``[start, stop)``."""

    class_id: int
    x: int
    y: int
    size: int
    start: int
    stop: int
    intensity: int = 255
    dx: int = 0  # pixels per frame, to make it move

    def at(self, i: int) -> tuple[int, int, int, int] | None:
        """Box ``(x1, y1, x2, y2)`` on frame ``i`` or None if not visible."""
        if not self.start <= i < self.stop:
            return None
        x = self.x + self.dx * (i - self.start)
        return x, self.y, x + self.size, self.y + self.size

    def colour(self) -> tuple[int, int, int]:
        """BGR colour."""
        b, g, r = _BGR[self.class_id % 3]
        return (b * self.intensity, g * self.intensity, r * self.intensity)


def kitchen_frames(
    n: int,
    *,
    width: int = 320,
    height: int = 240,
    squares: Sequence[Square] = (),
    worker: bool = True,
    noise: float = 2.0,
    seed: int = 0,
) -> Iterable[npt.NDArray[np.uint8]]:
    """Yield ``n`` BGR frames of a plain synthetic kitchen.

    Grey walls, a darker counter and stove (static), optionally a pale "worker" walking
    back and forth (motion), the given squares, and mild sensor noise.
    """
    rng = np.random.default_rng(seed)
    base = np.full((height, width, 3), 170, np.uint8)
    cv2.rectangle(base, (0, int(height * 0.7)), (width, height), (120, 125, 130), -1)
    cv2.rectangle(
        base,
        (int(width * 0.7), int(height * 0.45)),
        (width - 10, int(height * 0.7)),
        (60, 60, 70),
        -1,
    )
    for i in range(n):
        img = base.copy()
        if worker:
            span = width - 60
            phase = (i * 4) % (2 * span)
            x = phase if phase < span else 2 * span - phase
            cv2.rectangle(
                img, (x, int(height * 0.3)), (x + 40, int(height * 0.9)), (170, 200, 220), -1
            )
        for sq in squares:
            box = sq.at(i)
            if box is not None:
                cv2.rectangle(img, box[:2], (box[2] - 1, box[3] - 1), sq.colour(), -1)
        if noise > 0:
            jitter = rng.normal(0, noise, img.shape)
            img = np.clip(img.astype(np.float32) + jitter, 0, 255).astype(np.uint8)
        yield img


def write_clip(
    path: Path, frames: Iterable[npt.NDArray[np.uint8]], fps: float = 10.0, fourcc: str = "MJPG"
) -> Path:
    """Write BGR frames with ``cv2.VideoWriter`` (MJPG ``.avi`` or ``mp4v`` ``.mp4``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer: Any = None
    try:
        for img in frames:
            if writer is None:
                h, w = img.shape[:2]
                writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*fourcc), fps, (w, h))
                if not writer.isOpened():
                    raise OSError(f"OpenCV cannot write {fourcc} video to {path}")
            writer.write(img)
    finally:
        if writer is not None:
            writer.release()
    return path


DEMO_FPS = 10.0
DEMO_SECONDS = 6.0


def demo_squares() -> list[Square]:
    """The demo scenario: a worker without a chef hat, and a one-frame rodent flicker."""
    return [
        # A red "bare head" riding on the walking worker from 1.5 s to 4.5 s: a violation.
        Square(class_id=0, x=68, y=48, size=24, start=15, stop=45, dx=4),
        # A blue "rodent" on a single frame: noise that must never raise an event.
        Square(class_id=2, x=40, y=190, size=16, start=8, stop=9),
    ]


def write_demo_assets(directory: Path, *, layout: Layout = Layout.YOLOV8) -> tuple[Path, Path]:
    """Write the synthetic model and kitchen clip into ``directory``; return their paths."""
    model = build_model(directory / f"colour_squares_{layout.value}.onnx", layout)
    frames = int(DEMO_FPS * DEMO_SECONDS)
    clip = write_clip(
        directory / "kitchen_demo.avi",
        kitchen_frames(frames, squares=demo_squares(), worker=True),
        DEMO_FPS,
    )
    return model, clip


def demo_config(
    model_path: Path, clip_path: Path, *, evidence_dir: str = "evidence"
) -> VisionConfig:
    """A :class:`VisionConfig` for the demo clip: one replayed camera, three rules."""
    return VisionConfig(
        cameras=[
            CameraConfig(
                id="kitchen-1",
                source=str(clip_path),
                sample_fps=DEMO_FPS,
                realtime=False,
                watchdog_s=20.0,
                motion=MotionConfig(force_interval_s=5.0, masks=[[(0, 0), (40, 0), (40, 20)]]),
                zones=[
                    ZoneConfig(name="kitchen", polygon=[(0, 0), (320, 0), (320, 240), (0, 240)]),
                    ZoneConfig(name="floor", polygon=[(0, 168), (320, 168), (320, 240), (0, 240)]),
                ],
            )
        ],
        detector=DetectorConfig(model_path=str(model_path), threads=2),
        rules=[
            ViolationRuleConfig(
                class_name="no_chef_hat",
                violation="no_chef_hat",
                tier=Tier.ROUTINE,
                zones=["kitchen"],
                confirm_samples=3,
                median_threshold=0.6,
                end_after_samples=5,
            ),
            ViolationRuleConfig(
                class_name="smoking",
                violation="smoking",
                tier=Tier.DEADLINE,
                rectify_deadline_s=3600.0,
            ),
            ViolationRuleConfig(
                class_name="rodent",
                violation="rodent",
                tier=Tier.IMMEDIATE,
                zones=["floor"],
                confirm_samples=2,
            ),
        ],
        evidence=EvidenceConfig(dir=evidence_dir, quota_mb=50.0),
    )

"""The object detector: one onnxruntime CPU session plus pre- and postprocessing.

Usage::

    from vision import Detector
    det = Detector("model.onnx", conf_threshold=0.25, iou_threshold=0.45)
    for d in det.detect(cv2.imread("frame.jpg")):
        print(d.class_name, d.score, d.x1, d.y1, d.x2, d.y2)

``detect`` is blocking and CPU-bound; async code must call it from a worker thread (the
vision service does). A ``Detector`` is not thread-safe: it reuses its input buffer.
"""

from __future__ import annotations

import ast
import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from vision.errors import DetectorError
from vision.layouts import Layout, decode, detect_layout
from vision.letterbox import Letterbox, LetterboxBuffers, unletterbox_boxes
from vision.nms import nms_classwise

__all__ = [
    "Detection",
    "Detector",
    "DetectorError",
    "file_sha256",
    "parse_class_names",
    "session_options",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class Detection:
    """One detected object; the box is in original-image pixels (xyxy)."""

    x1: float
    y1: float
    x2: float
    y2: float
    score: float
    class_id: int
    class_name: str

    @property
    def bottom_centre(self) -> tuple[float, float]:
        """The point that zones test: where the object stands on the floor."""
        return ((self.x1 + self.x2) / 2, self.y2)

    def as_list(self) -> list[float]:
        """The box as ``[x1, y1, x2, y2]`` rounded to 0.1 px, for event details."""
        return [round(self.x1, 1), round(self.y1, 1), round(self.x2, 1), round(self.y2, 1)]


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def parse_class_names(raw: str) -> dict[int, str]:
    """Parse Ultralytics' ``names`` metadata (a Python dict literal, or a list)."""
    value = ast.literal_eval(raw)
    if isinstance(value, dict):
        return {int(k): str(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return {i: str(v) for i, v in enumerate(value)}
    raise DetectorError(f"cannot read class names from metadata: {raw[:80]!r}")


def session_options(threads: int | None) -> ort.SessionOptions:
    """onnxruntime options for a small ARM board.

    ``threads`` intra-op threads (None: one per core), one inter-op thread and sequential
    execution (a detector graph is a chain; parallel branches only add thread contention),
    all graph optimisations (constant folding, fusions; applied once at load). The
    intra-op threads still spin between the operators of one run, but stop spinning when
    ``run()`` returns, so they leave the cores to decoding, pre/postprocessing and the
    event loop between frames.
    """
    opts = ort.SessionOptions()
    if threads is not None:
        opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.force_spinning_stop", "1")
    return opts


class Detector:
    """An ONNX object detector on the CPU.

    ``model_path``: an ONNX file in one of the layouts of :mod:`vision.layouts`.
    ``class_names`` overrides the names stored in the model's metadata. ``threads`` sets
    onnxruntime's intra-op threads (default: all cores). The constructor runs one warm-up
    inference so the first real frame is not slow.
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        *,
        conf_threshold: float = 0.25,
        iou_threshold: float = 0.45,
        threads: int | None = None,
        class_names: Sequence[str] | None = None,
        max_detections: int = 300,
        warmup: bool = True,
    ) -> None:
        self.model_path = Path(model_path)
        self.conf_threshold = conf_threshold
        self.iou_threshold = iou_threshold
        self.max_detections = max_detections
        self.model_sha256 = file_sha256(self.model_path)
        opts = session_options(threads)
        try:
            self.session = ort.InferenceSession(
                str(self.model_path), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors; translate once
            raise DetectorError(f"cannot load {self.model_path}: {exc}") from exc
        inp = self.session.get_inputs()[0]
        self.input_name: str = inp.name
        shape = inp.shape
        if len(shape) != 4 or not isinstance(shape[2], int) or not isinstance(shape[3], int):
            raise DetectorError(f"model input must be a static [1, 3, H, W], got {shape}")
        self.input_h: int = shape[2]
        self.input_w: int = shape[3]
        out = self.session.get_outputs()[0]
        self.output_name: str = out.name
        meta = self.session.get_modelmeta().custom_metadata_map
        names: dict[int, str] = {}
        if class_names is not None:
            names = dict(enumerate(class_names))
        elif "names" in meta:
            names = parse_class_names(meta["names"])
        nc = len(names) if names else None
        self.layout: Layout = detect_layout(tuple(out.shape), nc)
        if not names:
            names = self._default_names(tuple(out.shape))
        self.class_names: dict[int, str] = names
        self._prep = LetterboxBuffers(self.input_w, self.input_h)
        if warmup:
            self.session.run(
                [self.output_name],
                {
                    self.input_name: self._prep.__call__(
                        np.full((self.input_h, self.input_w, 3), 114, np.uint8)
                    )[0]
                },
            )
        log.info(
            "detector loaded",
            extra={
                "model": str(self.model_path),
                "sha256": self.model_sha256,
                "layout": self.layout.value,
                "input": [self.input_h, self.input_w],
                "classes": len(self.class_names),
            },
        )

    def _default_names(self, shape: tuple[int, ...]) -> dict[int, str]:
        if self.layout is Layout.YOLOV8:
            nc = shape[1] - 4
        elif self.layout is Layout.YOLOV5:
            nc = shape[2] - 5
        else:
            nc = 0
        return {i: f"class{i}" for i in range(nc)}

    def class_name(self, class_id: int) -> str:
        """Name of ``class_id``, or ``class<id>`` if unnamed."""
        return self.class_names.get(class_id, f"class{class_id}")

    def preprocess(self, bgr: npt.NDArray[np.uint8]) -> tuple[npt.NDArray[np.float32], Letterbox]:
        """Letterbox a BGR image into the (reused) input tensor."""
        return self._prep(bgr)

    def infer(self, tensor: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Run the session on a preprocessed ``[1, 3, H, W]`` tensor; returns the raw output."""
        out: npt.NDArray[np.float32] = self.session.run(
            [self.output_name], {self.input_name: tensor}
        )[0]
        return out

    def postprocess(self, raw: npt.NDArray[np.float32], lb: Letterbox) -> list[Detection]:
        """Decode, NMS and map boxes back to the original image."""
        cand = decode(self.layout, raw, self.conf_threshold)
        if cand.needs_nms:
            keep = nms_classwise(
                cand.boxes,
                cand.scores,
                cand.class_ids,
                self.iou_threshold,
                max_detections=self.max_detections,
            )
        else:
            keep = np.argsort(-cand.scores, kind="stable")[: self.max_detections]
        boxes = unletterbox_boxes(cand.boxes[keep], lb)
        scores = cand.scores[keep]
        ids = cand.class_ids[keep]
        return [
            Detection(
                x1=float(b[0]),
                y1=float(b[1]),
                x2=float(b[2]),
                y2=float(b[3]),
                score=float(s),
                class_id=int(c),
                class_name=self.class_name(int(c)),
            )
            for b, s, c in zip(boxes, scores, ids, strict=True)
        ]

    def detect(self, bgr: npt.NDArray[np.uint8]) -> list[Detection]:
        """Detect objects in a BGR ``HxWx3`` uint8 image, best score first."""
        tensor, lb = self.preprocess(bgr)
        return self.postprocess(self.infer(tensor), lb)

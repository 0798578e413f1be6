from __future__ import annotations

import json

import cv2
import numpy as np
import onnxruntime as ort
import pytest

from vision import Detector
from vision.layouts import Layout
from vision.synthetic import SYNTHETIC_CLASSES, Square, build_model, kitchen_frames


def _frame(squares, w=320, h=240):
    return next(iter(kitchen_frames(1, width=w, height=h, squares=squares, worker=False, noise=0)))


@pytest.mark.parametrize("layout", list(Layout))
def test_synthetic_model_finds_squares_in_each_layout(synthetic_models, layout):
    det = Detector(synthetic_models[layout], conf_threshold=0.25, iou_threshold=0.45)
    assert det.layout is layout
    assert det.class_names == dict(enumerate(SYNTHETIC_CLASSES))
    img = _frame(
        [
            Square(class_id=0, x=100, y=80, size=40, start=0, stop=1),
            Square(class_id=2, x=10, y=200, size=16, start=0, stop=1, intensity=160),
        ]
    )
    dets = det.detect(img)
    # the duplicates the graph adds (v5/v8) are removed by NMS; one box per square
    assert [(d.class_name, d.x1, d.y1, d.x2, d.y2) for d in dets] == [
        ("no_chef_hat", 100, 80, 140, 120),
        ("rodent", 10, 200, 26, 216),
    ]
    assert dets[0].score == pytest.approx(0.982, abs=1e-3)  # sigmoid(8 * 0.5)
    assert dets[1].score < dets[0].score


def test_box_mapping_on_a_non_square_portrait_frame(tmp_path):
    # 480x640 portrait into 320: r=0.5, left pad 40; square 100..180 maps to 90..130 in input
    det = Detector(build_model(tmp_path / "m.onnx", Layout.YOLOV8, size=320))
    img = _frame([Square(class_id=1, x=100, y=300, size=80, start=0, stop=1)], w=480, h=640)
    (d,) = det.detect(img)
    assert d.class_name == "smoking"
    assert (d.x1, d.y1, d.x2, d.y2) == (100, 300, 180, 380)


def test_plain_background_detects_nothing(synthetic_models):
    det = Detector(synthetic_models[Layout.YOLOV8])
    assert det.detect(_frame([])) == []


def test_class_names_override_and_no_metadata(tmp_path):
    path = build_model(tmp_path / "bare.onnx", Layout.YOLOV5, metadata=False)
    assert Detector(path).class_name(0) == "class0"
    det = Detector(path, class_names=["hatless", "cig", "rat"])
    (d,) = det.detect(_frame([Square(class_id=2, x=5, y=5, size=20, start=0, stop=1)]))
    assert d.class_name == "rat"


def test_model_hash_is_file_sha256(synthetic_models):
    import hashlib

    path = synthetic_models[Layout.END2END]
    assert Detector(path).model_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def _iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def test_reproduces_reference_detections_of_shared_yolov8n(shared_model):
    model = shared_model("yolov8n-random-640.onnx")
    ref = json.loads((model.parent / "yolov8n-random-640.reference.json").read_text())
    args = ref["predict_args"]
    det = Detector(
        model,
        conf_threshold=args["conf"],
        iou_threshold=args["iou"],
        max_detections=args["max_det"],
    )
    assert det.layout is Layout.YOLOV8
    for name, expected in ref["results"].items():
        img = cv2.imread(str(model.parent / name))
        assert img is not None
        assert list(img.shape[:2]) == expected["orig_shape"]
        dets = det.detect(img)
        assert len(dets) == expected["num_boxes"], name
        unmatched = list(dets)
        for box, score, cls in zip(
            expected["boxes_xyxy"], expected["scores"], expected["class_ids"], strict=True
        ):
            candidates = [
                d
                for d in unmatched
                if d.class_id == cls and _iou(box, (d.x1, d.y1, d.x2, d.y2)) >= 0.99
            ]
            assert candidates, f"{name}: no match for {cls} {box} {score}"
            # coinciding boxes after clipping: match on the closest score
            best = min(candidates, key=lambda d: abs(d.score - score))
            assert abs(best.score - score) <= 1e-3, (name, box, best)
            unmatched.remove(best)
        assert not unmatched


def test_detect_is_deterministic_and_rejects_nothing_on_odd_sizes(synthetic_models):
    det = Detector(synthetic_models[Layout.YOLOV8])
    img = np.full((37, 53, 3), 170, np.uint8)
    img[10:20, 10:20] = (0, 0, 255)
    first = det.detect(img)
    assert first == det.detect(img)
    (d,) = first
    assert d.x1 == pytest.approx(10, abs=0.5)
    assert d.x2 == pytest.approx(20, abs=0.5)


def test_session_options_suit_a_small_board(synthetic_models):
    det = Detector(synthetic_models[Layout.YOLOV8], threads=3)
    opts = det.session.get_session_options()
    assert opts.intra_op_num_threads == 3
    assert opts.inter_op_num_threads == 1
    assert opts.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    assert opts.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert opts.get_session_config_entry("session.force_spinning_stop") == "1"

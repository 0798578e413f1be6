from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from vision.config import (
    CameraConfig,
    DetectorConfig,
    Tier,
    ViolationRuleConfig,
    VisionConfig,
    ZoneConfig,
)
from vision.detector import Detection
from vision.violations import RuleEngine, TransitionKind, point_in_polygon, tier_severity

FLOOR = [(0.0, 160.0), (320.0, 160.0), (320.0, 240.0), (0.0, 240.0)]


def _config(n=3, thr=0.5, m=3, zones=None, min_score=0.4):
    return VisionConfig(
        cameras=[
            CameraConfig(id="cam", source="x.avi", zones=[ZoneConfig(name="floor", polygon=FLOOR)]),
            CameraConfig(id="other", source="y.avi"),
        ],
        detector=DetectorConfig(model_path="m.onnx"),
        rules=[
            ViolationRuleConfig(
                class_name="rodent",
                violation="rodent",
                tier=Tier.IMMEDIATE,
                confirm_samples=n,
                median_threshold=thr,
                end_after_samples=m,
                zones=zones,
                cameras=["cam"],
                min_score=min_score,
            )
        ],
    )


def _det(score, y2=200.0, name="rodent"):
    return Detection(x1=10, y1=y2 - 20, x2=30, y2=y2, score=score, class_id=2, class_name=name)


def _run(engine, samples, camera="cam"):
    out = []
    for i, s in enumerate(samples):
        dets = [] if s is None else [s if isinstance(s, Detection) else _det(s)]
        out += [(i, t) for t in engine.evaluate(camera, dets, float(i))]
    return out


def test_confirms_after_n_samples_and_closes_after_m_misses():
    engine = RuleEngine(_config(n=3, thr=0.5, m=3))
    trs = _run(engine, [0.9, 0.9, 0.9, 0.9, None, None, None, None])
    assert [(i, t.kind) for i, t in trs] == [(2, TransitionKind.OPENED), (6, TransitionKind.CLOSED)]
    opened = trs[0][1]
    assert opened.median_score == pytest.approx(0.9)
    assert opened.detection is not None
    assert trs[1][1].started_at == opened.started_at


def test_a_miss_inside_an_episode_resets_the_end_count():
    engine = RuleEngine(_config(n=2, thr=0.5, m=2))
    trs = _run(engine, [0.9, 0.9, None, 0.8, None, 0.8, None, None])
    assert [(i, t.kind) for i, t in trs] == [(1, TransitionKind.OPENED), (7, TransitionKind.CLOSED)]


def test_low_median_never_opens():
    engine = RuleEngine(_config(n=3, thr=0.7))
    assert _run(engine, [0.6, 0.9, 0.65] * 5) == []


def test_scores_below_min_score_do_not_count():
    engine = RuleEngine(_config(n=2, thr=0.5, min_score=0.5))
    assert _run(engine, [0.45] * 10) == []


def test_zone_uses_bottom_centre():
    engine = RuleEngine(_config(n=2, zones=["floor"]))
    # box bottom at y=150: above the floor zone
    assert _run(engine, [_det(0.9, y2=150)] * 5) == []
    trs = _run(engine, [_det(0.9, y2=200)] * 2)
    assert trs[0][1].zone == "floor"


def test_rule_applies_only_to_its_cameras():
    engine = RuleEngine(_config(n=2))
    assert _run(engine, [0.9] * 5, camera="other") == []


def test_other_classes_ignored():
    engine = RuleEngine(_config(n=2))
    assert _run(engine, [_det(0.9, name="person")] * 5) == []


def test_close_all_on_shutdown():
    engine = RuleEngine(_config(n=2))
    _run(engine, [0.9, 0.9])
    (tr,) = engine.close_all(99.0)
    assert tr.kind is TransitionKind.CLOSED
    assert engine.close_all(100.0) == []  # nothing left open


def test_tier_severity():
    assert [tier_severity(t) for t in Tier] == ["alarm", "warning", "info"]


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(2, 6),
    gaps=st.lists(st.integers(0, 12), min_size=1, max_size=12),
    score=st.floats(0.5, 1.0),
)
def test_isolated_single_frame_hits_never_open(n, gaps, score):
    # hits separated by at least n-1 misses: no window of n samples holds two of them
    samples: list[float | None] = []
    for g in gaps:
        samples += [None] * (n - 1 + g) + [score]
    engine = RuleEngine(_config(n=n, thr=0.5))
    assert _run(engine, samples) == []


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(2, 5),
    m=st.integers(1, 5),
    samples=st.lists(st.one_of(st.none(), st.floats(0.0, 1.0)), max_size=60),
)
def test_one_open_and_one_close_per_episode(n, m, samples):
    engine = RuleEngine(_config(n=n, thr=0.5, m=m))
    kinds = [t.kind for _, t in _run(engine, samples)]
    # strictly alternating, starting with OPENED: one event per episode, never one per frame
    for i, k in enumerate(kinds):
        assert k is (TransitionKind.OPENED if i % 2 == 0 else TransitionKind.CLOSED)
    # an opening needs a majority of the last n samples at the threshold (lower median)
    engine = RuleEngine(_config(n=n, thr=0.5, m=m))
    for i, t in _run(engine, samples):
        if t.kind is TransitionKind.OPENED:
            window = samples[i - n + 1 : i + 1]
            assert len(window) == n
            hits = sum(1 for s in window if s is not None and s >= 0.5)
            assert hits >= n - (n - 1) // 2
            assert hits >= 2


polygons = st.lists(st.tuples(st.integers(0, 100), st.integers(0, 100)), min_size=3, max_size=8)


@settings(max_examples=300)
@given(poly=polygons, x=st.integers(0, 100), y=st.integers(0, 100))
def test_point_in_polygon_matches_opencv(poly, x, y):
    contour = np.array(poly, np.float32).reshape(-1, 1, 2)
    assume(abs(cv2.contourArea(contour)) > 1)
    # offset by half a pixel; a point still exactly on a slanted edge (either answer is
    # fine there) is skipped
    px, py = x + 0.5, y + 0.5
    assume(abs(cv2.pointPolygonTest(contour, (px, py), True)) > 1e-6)
    expected = cv2.pointPolygonTest(contour, (px, py), False) > 0
    pts = [(float(a), float(b)) for a, b in poly]
    assert point_in_polygon(px, py, pts) == expected

from __future__ import annotations

import numpy as np

from vision.config import MotionConfig
from vision.motion import GateReason, MotionGate
from vision.synthetic import kitchen_frames


def _static(n, seed=0):
    return list(kitchen_frames(n, worker=False, noise=3.0, seed=seed))


def test_static_noisy_scene_infers_only_first_and_forced():
    gate = MotionGate(MotionConfig(force_interval_s=5.0, hold_s=1.0))
    reasons = [gate.decide(img, i / 10).reason for i, img in enumerate(_static(120))]
    assert reasons[0] is GateReason.FIRST
    inferred = [i for i, r in enumerate(reasons) if r is not GateReason.STATIC]
    # first frame, then one forced inference every 5 s of media time
    assert inferred == [0, 50, 100]
    assert all(reasons[i] is GateReason.FORCED for i in inferred[1:])


def test_moving_worker_is_motion():
    gate = MotionGate(MotionConfig())
    frames = list(kitchen_frames(20, worker=True, noise=2.0))
    reasons = [gate.decide(img, i / 10).reason for i, img in enumerate(frames)]
    assert all(r is GateReason.MOTION for r in reasons[1:])


def test_hold_keeps_inferring_after_motion_stops():
    gate = MotionGate(MotionConfig(hold_s=0.5, force_interval_s=100))
    moving = list(kitchen_frames(5, worker=True, noise=0))
    still = _static(60)
    for i, img in enumerate(moving):
        gate.decide(img, i / 10)
    # the worker leaves, then the scene stays still; the background forgets the worker
    reasons = [gate.decide(img, 0.5 + i / 10).reason for i, img in enumerate(still)]
    assert reasons[0] is GateReason.MOTION
    first_quiet = next(i for i, r in enumerate(reasons) if r is not GateReason.MOTION)
    # 0.5 s of hold at 10 fps, then static for good
    assert reasons[first_quiet : first_quiet + 5] == [GateReason.HOLD] * 5
    assert set(reasons[first_quiet + 6 :]) == {GateReason.STATIC}


def test_mask_ignores_motion_inside_it():
    # a flickering "TV" in the top-left corner
    mask = [(0.0, 0.0), (100.0, 0.0), (100.0, 80.0), (0.0, 80.0)]
    masked = MotionGate(MotionConfig(masks=[mask], force_interval_s=100))
    unmasked = MotionGate(MotionConfig(force_interval_s=100))
    out_m, out_u = [], []
    for i, still in enumerate(_static(10)):
        img = still.copy()
        img[10:70, 10:90] = 255 if i % 2 else 0
        out_m.append(masked.decide(img, i).reason)
        out_u.append(unmasked.decide(img, i).reason)
    assert all(r is GateReason.STATIC for r in out_m[1:])
    assert all(r is GateReason.MOTION for r in out_u[1:])


def test_disabled_gate_infers_every_frame():
    gate = MotionGate(MotionConfig(enabled=False))
    frames = _static(10)
    assert all(gate.decide(img, i).infer for i, img in enumerate(frames))


def test_sensitivity_threshold():
    base = np.full((240, 320, 3), 170, np.uint8)
    small = base.copy()
    small[100:104, 100:104] = 0  # 16 px of 76800: 0.02 %
    coarse = MotionGate(MotionConfig(min_area=0.01, force_interval_s=100))
    fine = MotionGate(MotionConfig(min_area=0.0001, force_interval_s=100))
    for gate in (coarse, fine):
        gate.decide(base, 0)
    assert coarse.decide(small, 1).reason is GateReason.STATIC
    assert fine.decide(small, 1).reason is GateReason.MOTION

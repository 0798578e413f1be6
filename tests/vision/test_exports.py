from __future__ import annotations

import vision


def test_all_matches_exports():
    public = {n for n in dir(vision) if not n.startswith("_")}
    modules = {
        "camera",
        "camera_state",
        "config",
        "detector",
        "episodes",
        "errors",
        "evidence",
        "inference",
        "layouts",
        "letterbox",
        "motion",
        "nms",
        "service",
        "synthetic",
        "violations",
        "watchdog",
    }
    assert set(vision.__all__) == public - modules
    for name in vision.__all__:
        assert getattr(vision, name).__module__.startswith("vision")

from __future__ import annotations

import pytest
import yaml
from pydantic import ValidationError

from vision.config import VisionConfig, source_kind
from vision.synthetic import demo_config

EXAMPLE = """
cameras:
  - id: kitchen-1
    source: rtsp://user:pass@192.168.1.20:554/stream2
    sample_fps: 2
    watchdog_s: 20
    motion:
      force_interval_s: 10
      masks: [[[0, 0], [200, 0], [200, 120], [0, 120]]]   # the TV
    zones:
      - name: prep
        polygon: [[0, 300], [1280, 300], [1280, 720], [0, 720]]
  - id: kitchen-2
    source: 0
detector:
  model_path: /var/lib/offsite-edge/models/kitchen.onnx
  threads: 3
  conf_threshold: 0.3
rules:
  - {class_name: rodent, violation: rodent, tier: immediate, confirm_samples: 2}
  - {class_name: smoking, violation: smoking, tier: deadline, rectify_deadline_s: 3600}
  - {class_name: no_hat, violation: no_chef_hat, tier: routine, zones: [prep],
     cameras: [kitchen-1]}
evidence:
  quota_mb: 2000
  face_blur: true
"""


def test_example_yaml_validates():
    cfg = VisionConfig.model_validate(yaml.safe_load(EXAMPLE))
    assert [source_kind(c.source) for c in cfg.cameras] == ["rtsp", "usb"]
    assert cfg.cameras[0].motion.masks[0][2] == (200, 120)
    assert cfg.rules[0].median_threshold == 0.5


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("cameras", 0, "bogus"), 1),
        (("cameras", 0, "sample_fps"), 0),
        (("cameras", 0, "watchdog_s"), 0.01),
        (("cameras", 0, "source"), 99),
        (("detector", "threads"), 0),
        (("rules", 0, "confirm_samples"), 1),  # N=1 would let single frames open episodes
        (("rules", 0, "median_threshold"), 0.1),  # below min_score
        (("rules", 2, "zones"), ["nowhere"]),
        (("rules", 2, "cameras"), ["kitchen-9"]),
        (("evidence", "quota_mb"), 0),
    ],
)
def test_rejects_bad_values(path, value):
    data = yaml.safe_load(EXAMPLE)
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(ValidationError):
        VisionConfig.model_validate(data)


def test_validation_touches_no_files(tmp_path):
    # a model path and a video file that do not exist are fine at validation time
    cfg = demo_config(tmp_path / "missing.onnx", tmp_path / "missing.avi")
    assert cfg.cameras[0].id == "kitchen-1"


def test_duplicate_camera_ids_rejected():
    data = yaml.safe_load(EXAMPLE)
    data["cameras"][1]["id"] = "kitchen-1"
    with pytest.raises(ValidationError):
        VisionConfig.model_validate(data)

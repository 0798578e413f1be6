"""Kitchen video inference (明厨亮灶): cameras, motion gate, ONNX detector, violation rules.

Public API::

    from vision import Detector, VisionConfig, VisionService

See :mod:`vision.service` for how the gateway runs the pipeline and
:mod:`vision.detector` for using the detector on its own.
"""

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
from vision.detector import Detection, Detector, DetectorError
from vision.layouts import Layout, LayoutError
from vision.service import VisionService

__all__ = [
    "CameraConfig",
    "Detection",
    "Detector",
    "DetectorConfig",
    "DetectorError",
    "EvidenceConfig",
    "Layout",
    "LayoutError",
    "MotionConfig",
    "Tier",
    "ViolationRuleConfig",
    "VisionConfig",
    "VisionService",
    "ZoneConfig",
]

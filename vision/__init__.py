"""Kitchen video inference (明厨亮灶): cameras, motion gate, ONNX detector, violation rules.

Public API::

    from vision import Detector, VisionConfig, VisionService

See :mod:`vision.service` for how the gateway runs the pipeline and
:mod:`vision.detector` for using the detector on its own.
"""

import importlib as _importlib
import typing as _typing

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

if _typing.TYPE_CHECKING:
    from vision.detector import Detection, Detector, DetectorError
    from vision.layouts import Layout, LayoutError
    from vision.service import VisionService

# The detector and service pull in numpy, OpenCV and onnxruntime (~60 MB): load them on
# first use, so that a gateway without cameras can read its config without paying for them.
_LAZY = {
    "Detection": "vision.detector",
    "Detector": "vision.detector",
    "DetectorError": "vision.detector",
    "Layout": "vision.layouts",
    "LayoutError": "vision.layouts",
    "VisionService": "vision.service",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'vision' has no attribute {name!r}")
    return getattr(_importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


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

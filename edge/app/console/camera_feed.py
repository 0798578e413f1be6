"""Where the console finds the running cameras: filled by the gateway's vision task.

Kept free of the camera stack's imports (OpenCV, onnxruntime), so a gateway without
cameras does not load them for the console's sake.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vision.camera_state import CameraStats


@dataclass(slots=True)
class CameraFeed:
    """The vision service's per-camera counters and last samples, once its cameras run."""

    stats: Callable[[], Mapping[str, CameraStats]] | None = None
    """``VisionService.stats`` (None: vision not configured, not started yet, or failed)."""

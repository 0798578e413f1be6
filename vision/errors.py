"""Errors of the vision side. All derive from :class:`VisionError`.

VisionError               (edge.errors.OffsiteEdgeError)
├── DetectorError         the model cannot be loaded or is not a supported detector
└── LayoutError           the model's output shape matches no supported layout
"""

from __future__ import annotations

from edge.errors import OffsiteEdgeError


class VisionError(OffsiteEdgeError):
    """Root of every vision error."""


class DetectorError(VisionError, RuntimeError):
    """The model cannot be loaded or does not look like a supported detector."""


class LayoutError(VisionError, ValueError):
    """The model's output shape matches none of the supported layouts."""

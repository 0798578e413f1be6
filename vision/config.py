"""Configuration models for the ``vision:`` section of the gateway YAML.

Validators only check values: no file is read and no camera is opened here (the model
file and camera sources are touched when :class:`vision.service.VisionService` starts).
"""

from __future__ import annotations

import enum
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from edge.config import StrictModel

__all__ = [
    "CameraConfig",
    "DetectorConfig",
    "EvidenceConfig",
    "MotionConfig",
    "Point",
    "Polygon",
    "Tier",
    "ViolationRuleConfig",
    "VisionConfig",
    "ZoneConfig",
    "source_kind",
]

Point = tuple[Annotated[float, Field(ge=0)], Annotated[float, Field(ge=0)]]
"""A point ``(x, y)`` in frame pixels."""

Polygon = Annotated[list[Point], Field(min_length=3, max_length=64)]
"""A simple polygon in frame pixels, at least three points."""

_ID = r"^[A-Za-z0-9_.-]{1,64}$"


class Tier(enum.StrEnum):
    """Supervision tier of a violation (Hubei-style grading), mapped to event severity."""

    IMMEDIATE = "immediate"  # alarm at once (rodents, pests)
    DEADLINE = "deadline"  # rectify within a deadline (smoking, bin open)
    ROUTINE = "routine"  # routine supervision (no gloves)


class MotionConfig(StrictModel):
    """Motion gate: run the detector only when the scene changes, or periodically."""

    enabled: bool = Field(True, description="Gate inference on motion; off = infer every sample.")
    threshold: int = Field(
        25, ge=1, le=255, description="Grey-level difference that counts a pixel as changed."
    )
    min_area: float = Field(
        0.003,
        gt=0,
        le=1,
        description="Fraction of unmasked pixels that must change to count as motion "
        "(sensitivity: lower is more sensitive).",
    )
    width: int = Field(
        160, ge=32, le=1280, description="Frames are downscaled to this width for motion."
    )
    background_alpha: float = Field(
        0.1, gt=0, le=1, description="Learning rate of the running-average background."
    )
    hold_s: float = Field(
        2.0, ge=0, le=60, description="Keep inferring this long after the last motion."
    )
    force_interval_s: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="Force one inference this often on a static scene, so a still "
        "violation is still seen.",
    )
    masks: list[Polygon] = Field(
        default_factory=list,
        max_length=32,
        description="Polygons (frame pixels) ignored by motion, e.g. a TV or a window.",
    )


class ZoneConfig(StrictModel):
    """A named area of a camera's frame."""

    name: str = Field(pattern=_ID, description="Zone name that rules refer to.")
    polygon: Polygon = Field(description="Zone outline in frame pixels.")


class CameraConfig(StrictModel):
    """One camera: where frames come from and how they are sampled."""

    id: str = Field(pattern=_ID, description="Camera id, the event source.")
    source: str | int = Field(
        description="rtsp://… / http://… URL, USB device index (int), or a video file path."
    )
    sample_fps: float = Field(
        2.0, gt=0, le=60, description="Frames per second decoded and offered to the detector."
    )
    queue_size: int = Field(
        2, ge=1, le=64, description="Frames held per camera; older ones are dropped."
    )
    watchdog_s: float = Field(
        20.0,
        ge=0.2,
        le=3600,
        description="Reopen the camera and report it offline after this long without a frame.",
    )
    backoff_min_s: float = Field(1.0, ge=0.05, le=600, description="First reopen delay.")
    backoff_max_s: float = Field(60.0, ge=0.05, le=3600, description="Longest reopen delay.")
    loop: bool = Field(False, description="Video files: start again at the end.")
    realtime: bool = Field(
        True,
        description="Video files: play at the file's frame rate, dropping stale frames like a "
        "live camera. False replays as fast as inference allows and never drops a frame "
        "(deterministic replays and tests).",
    )
    motion: MotionConfig = Field(default_factory=MotionConfig, description="Motion gate.")
    zones: list[ZoneConfig] = Field(
        default_factory=list, max_length=32, description="Named zones of this camera."
    )

    @field_validator("source")
    @classmethod
    def _source_shape(cls, v: str | int) -> str | int:
        if isinstance(v, int):
            if not 0 <= v <= 63:
                raise ValueError("USB device index must be 0..63")
        elif not v.strip():
            raise ValueError("source must not be empty")
        return v

    @model_validator(mode="after")
    def _check(self) -> CameraConfig:
        if self.backoff_max_s < self.backoff_min_s:
            raise ValueError("backoff_max_s must be >= backoff_min_s")
        names = [z.name for z in self.zones]
        if len(names) != len(set(names)):
            raise ValueError(f"camera {self.id}: duplicate zone names")
        return self


class DetectorConfig(StrictModel):
    """The ONNX detector. The input size and layout are read from the model itself."""

    model_path: str = Field(min_length=1, description="Path of the user's ONNX model.")
    threads: int = Field(2, ge=1, le=64, description="onnxruntime intra-op threads.")
    conf_threshold: float = Field(0.25, gt=0, lt=1, description="Minimum detection score.")
    iou_threshold: float = Field(0.45, gt=0, le=1, description="Class-wise NMS IoU threshold.")
    max_detections: int = Field(100, ge=1, le=1000, description="Detections kept per frame.")
    class_names: list[str] | None = Field(
        None, min_length=1, max_length=1000, description="Overrides the names in the metadata."
    )


class ViolationRuleConfig(StrictModel):
    """Turns detections of one model class into violation episodes."""

    class_name: str = Field(min_length=1, max_length=64, description="Model class to watch.")
    violation: str = Field(
        pattern=_ID, description="Violation type, e.g. no_chef_hat, smoking, rodent."
    )
    tier: Tier = Field(description="immediate → alarm, deadline → warning, routine → info.")
    min_score: float = Field(0.4, gt=0, lt=1, description="Detections below are ignored.")
    cameras: list[str] | None = Field(
        None, description="Cameras the rule applies to; None = all cameras."
    )
    zones: list[str] | None = Field(
        None,
        description="Zone names; a detection counts only if its box's bottom-centre lies in "
        "one of them. None = the whole frame.",
    )
    confirm_samples: int = Field(
        3, ge=2, le=100, description="N: window of samples whose median score must pass."
    )
    median_threshold: float = Field(
        0.5, gt=0, lt=1, description="Episode opens when the window median reaches this."
    )
    end_after_samples: int = Field(
        5, ge=1, le=1000, description="M: episode ends after this many samples without it."
    )
    rectify_deadline_s: float | None = Field(
        None, gt=0, le=7 * 86400, description="Deadline tier: time allowed to rectify."
    )

    @model_validator(mode="after")
    def _check(self) -> ViolationRuleConfig:
        if self.median_threshold < self.min_score:
            raise ValueError("median_threshold must be >= min_score")
        return self


class EvidenceConfig(StrictModel):
    """Where and how evidence snapshots are kept."""

    dir: str = Field(
        "evidence", min_length=1, description="Directory; relative paths are under data_dir."
    )
    quota_mb: float = Field(500.0, gt=0, le=1_000_000, description="Disk quota for snapshots.")
    jpeg_quality: int = Field(90, ge=30, le=100, description="JPEG quality of snapshots.")
    face_blur: bool = Field(False, description="Blur heads of person-like boxes for privacy.")
    blur_classes: list[str] = Field(
        default_factory=lambda: ["person", "face", "head"],
        max_length=64,
        description="Classes whose head area (top of the box) is blurred when face_blur is on.",
    )
    head_fraction: float = Field(
        0.35, gt=0, le=1, description="Top fraction of a blurred box treated as the head."
    )


class VisionConfig(StrictModel):
    """The ``vision:`` section: cameras, one shared detector, rules, evidence."""

    cameras: list[CameraConfig] = Field(min_length=1, max_length=32, description="Cameras.")
    detector: DetectorConfig = Field(description="The shared detector.")
    rules: list[ViolationRuleConfig] = Field(
        min_length=1, max_length=256, description="Violation rules."
    )
    evidence: EvidenceConfig = Field(default_factory=EvidenceConfig, description="Evidence.")
    inference_timeout_s: float = Field(
        30.0, gt=0, le=600, description="An inference slower than this is logged as stuck."
    )

    @model_validator(mode="after")
    def _cross_check(self) -> VisionConfig:
        ids = [c.id for c in self.cameras]
        if len(ids) != len(set(ids)):
            raise ValueError("duplicate camera ids")
        zones = {c.id: {z.name for z in c.zones} for c in self.cameras}
        for rule in self.rules:
            cams = rule.cameras if rule.cameras is not None else ids
            for cam in cams:
                if cam not in zones:
                    raise ValueError(f"rule {rule.violation}: unknown camera {cam!r}")
            if rule.zones is not None:
                known = set().union(*(zones[c] for c in cams))
                missing = set(rule.zones) - known
                if missing:
                    raise ValueError(f"rule {rule.violation}: unknown zones {sorted(missing)}")
        return self


SourceKind = Literal["rtsp", "usb", "file"]


def source_kind(source: str | int) -> SourceKind:
    """Classify a camera source without touching it."""
    if isinstance(source, int):
        return "usb"
    if "://" in source:
        return "rtsp"
    return "file"

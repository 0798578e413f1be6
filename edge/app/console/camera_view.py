"""What the console shows of a camera: counters, the last sample and its detections.

Everything is read from the running vision service's per-camera state
(``VisionService.stats``, filled in by :class:`~edge.app.console.camera_feed.CameraFeed`):
no frame is read from a camera for the console, and the console never writes to that
state. The JPEG of the last sample is encoded on request in a worker thread.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from edge.app.console.camera_feed import CameraFeed
from edge.app.status import printable

if TYPE_CHECKING:
    from vision.camera_state import CameraStats, LastSample
    from vision.config import CameraConfig

JPEG_QUALITY = 80
BOX_COLOUR = (0, 0, 255)  # BGR red: a detection


def shown_source(source: str | int) -> str:
    """A camera source for the page: an RTSP URL without its password."""
    if isinstance(source, int):
        return f"USB camera {source}"
    parts = urlsplit(source)
    if parts.password is None:
        return printable(source, 300)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    netloc = f"{parts.username}:***@{host}" if parts.username else host
    return printable(urlunsplit(parts._replace(netloc=netloc)), 300)


def _zones_of(x: float, y: float, camera: CameraConfig) -> list[str]:
    from vision.violations import point_in_polygon

    return [z.name for z in camera.zones if point_in_polygon(x, y, z.polygon)]


@dataclass(frozen=True, slots=True, kw_only=True)
class CameraView:
    """One camera as the console shows it."""

    config: CameraConfig
    running: bool
    counters: dict[str, Any]
    sample: LastSample | None

    @property
    def size(self) -> tuple[int, int] | None:
        """The last sample's width and height in pixels (None: no sample yet)."""
        if self.sample is None:
            return None
        height, width = self.sample.frame.image.shape[:2]
        return int(width), int(height)

    def detections(self) -> list[dict[str, Any]]:
        """The last sample's detections, each with the zones its bottom centre lies in."""
        if self.sample is None:
            return []
        return [
            {
                "class_name": printable(d.class_name, 64),
                "score": d.score,
                "box": [round(v) for v in (d.x1, d.y1, d.x2, d.y2)],
                "zones": _zones_of(*d.bottom_centre, self.config),
            }
            for d in self.sample.detections
        ]


def _counters(stats: CameraStats | None) -> dict[str, Any]:
    if stats is None:
        return {}
    # A sampled frame is gated in (queued for inference) or skipped as still; a gated-in
    # frame a live camera's full queue displaced is dropped.
    skipped = max(0, stats.sampled - stats.inferences - stats.dropped)
    ago = None
    if stats.last_inference_at is not None:
        ago = max(0.0, time.monotonic() - stats.last_inference_at)
    return {
        "online": stats.online,
        "decoded": stats.decoded,
        "sampled": stats.sampled,
        "motion_skipped": skipped,
        "inferences": stats.inferences,
        "dropped": stats.dropped,
        "reopens": stats.reopens,
        "mean_inference_ms": (
            1000 * stats.inference_s / stats.inferences if stats.inferences else None
        ),
        "last_inference_s_ago": ago,
    }


def camera_views(cameras: list[CameraConfig], feed: CameraFeed) -> list[CameraView]:
    """Every configured camera with what the running service knows of it."""
    stats: dict[str, CameraStats] = dict(feed.stats()) if feed.stats is not None else {}
    return [
        CameraView(
            config=camera,
            running=camera.id in stats,
            counters=_counters(stats.get(camera.id)),
            sample=None if camera.id not in stats else stats[camera.id].last_sample,
        )
        for camera in cameras
    ]


def frame_jpeg(sample: LastSample) -> bytes:
    """The sample as a JPEG with its detections boxed (blocking: run it in a thread).

    Zones and masks are drawn by the page over the image (they can be edited there).
    """
    import cv2

    canvas = sample.frame.image.copy()
    for d in sample.detections:
        top_left = (round(d.x1), round(d.y1))
        cv2.rectangle(canvas, top_left, (round(d.x2), round(d.y2)), BOX_COLOUR, 2)
        label = f"{d.class_name} {d.score:.2f}"
        cv2.putText(
            canvas,
            label,
            (top_left[0], max(12, top_left[1] - 4)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.4,
            BOX_COLOUR,
            1,
            cv2.LINE_AA,
        )
    ok, encoded = cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ValueError("the frame could not be encoded as JPEG")
    return bytes(encoded.tobytes())

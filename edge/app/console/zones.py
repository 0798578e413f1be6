"""A camera's zone drawn on its frame in the console: the polygon and the config edit."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from edge.app.console.config_save import EditRefusedError

MIN_POINTS = 3
MAX_POINTS = 64
"""As ``vision.config.Polygon`` allows."""
ZONE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def parse_polygon(text: str, size: tuple[int, int] | None) -> list[list[int]]:
    """The clicked points (JSON ``[[x, y], …]``) as whole pixels inside the frame.

    Raises ValueError saying what is wrong. ``size`` is the frame's width and height
    (None: not known, only non-negative is checked).
    """
    try:
        points = json.loads(text)
    except ValueError:
        raise ValueError("the polygon is not a list of points") from None
    if not isinstance(points, list) or not all(isinstance(p, list) and len(p) == 2 for p in points):
        raise ValueError("the polygon is not a list of [x, y] points")
    if not MIN_POINTS <= len(points) <= MAX_POINTS:
        raise ValueError(
            f"a zone needs {MIN_POINTS} to {MAX_POINTS} points; {len(points)} were clicked"
        )
    out: list[list[int]] = []
    for x, y in points:
        if isinstance(x, bool) or isinstance(y, bool) or not isinstance(x, int | float):
            raise ValueError("every point must be two numbers")
        if not isinstance(y, int | float) or not (math.isfinite(x) and math.isfinite(y)):
            raise ValueError("every point must be two finite numbers")
        px, py = round(x), round(y)
        if px < 0 or py < 0 or (size is not None and (px > size[0] or py > size[1])):
            raise ValueError(f"point ({px}, {py}) lies outside the frame")
        out.append([px, py])
    return out


def check_name(name: str) -> str:
    """A zone name rules can refer to; ValueError otherwise."""
    if not ZONE_NAME.fullmatch(name):
        raise ValueError(
            "a zone name is 1 to 64 letters, digits, '_', '.' or '-', starting with a letter "
            "or digit"
        )
    return name


def set_zone(data: Any, camera_id: str, name: str, polygon: list[list[int]] | None) -> None:
    """Replace (or add) a camera's zone in the config data; ``None`` removes it.

    An ``edit`` for :func:`edge.app.console.config_save.propose`: raises EditRefusedError when
    the file has no such camera or no such zone to remove.
    """
    vision = data.get("vision") if isinstance(data, dict) else None
    cameras = vision.get("cameras") if isinstance(vision, dict) else None
    camera = next(
        (c for c in cameras or [] if isinstance(c, dict) and c.get("id") == camera_id), None
    )
    if camera is None:
        raise EditRefusedError([f"vision.cameras: the config file has no camera {camera_id!r}"])
    zones = camera.setdefault("zones", [])
    index = next((i for i, z in enumerate(zones) if z.get("name") == name), None)
    if polygon is None:
        if index is None:
            raise EditRefusedError([f"camera {camera_id} has no zone {name!r} to remove"])
        del zones[index]
    elif index is None:
        zones.append({"name": name, "polygon": polygon})
    else:
        zones[index] = {**zones[index], "polygon": polygon}

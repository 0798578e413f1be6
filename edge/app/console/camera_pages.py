"""Camera pages: the last frame with zones and masks, counters, detections, zone editing."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from edge.app.console import zones
from edge.app.console.camera_view import CameraView, camera_views, frame_jpeg, shown_source
from edge.app.console.config_save import EditRefusedError, sha256_text
from edge.app.console.edits import NO_FILE, can_save, commit, review
from edge.app.console.pages import technician
from edge.app.console.state import ConsoleState, log, render, state_of


def _views(state: ConsoleState) -> list[CameraView]:
    vision = state.parts.config.vision
    if vision is None:
        return []
    return camera_views(vision.cameras, state.parts.cameras)


def _view(state: ConsoleState, camera_id: str) -> CameraView:
    for view in _views(state):
        if view.config.id == camera_id:
            return view
    raise web.HTTPNotFound(text=f"no camera {camera_id!r} is configured")


async def cameras_page(request: web.Request) -> web.StreamResponse:
    """Every camera: online, counters, a link to its frame."""
    state = state_of(request)
    technician(request)
    return render(
        request,
        "cameras.html",
        views=_views(state),
        configured=state.parts.config.vision is not None,
        source=shown_source,
    )


def _page_context(state: ConsoleState, view: CameraView) -> dict[str, Any]:
    return {
        "v": view,
        "source": shown_source(view.config.source),
        "zones": [{"name": z.name, "polygon": z.polygon} for z in view.config.zones],
        "masks": view.config.motion.masks,
        "can_save": can_save(state),
        "no_file": NO_FILE,
        "form": {"name": "", "polygon": "[]", "base": "", "reviewed": ""},
        "proposal": None,
        "refused": [],
        "removing": False,
    }


async def camera_page(request: web.Request) -> web.StreamResponse:
    """One camera: its last frame with zones, masks and detections; the zone editor."""
    state = state_of(request)
    technician(request)
    view = _view(state, request.match_info["camera_id"])
    return render(request, "camera.html", **_page_context(state, view))


async def camera_frame(request: web.Request) -> web.StreamResponse:
    """The camera's last sample as a JPEG, detections boxed (404 before the first one)."""
    state = state_of(request)
    technician(request)
    view = _view(state, request.match_info["camera_id"])
    if view.sample is None:
        raise web.HTTPNotFound(text="no frame from this camera yet")
    body = await asyncio.to_thread(frame_jpeg, view.sample)
    return web.Response(body=body, content_type="image/jpeg")


async def camera_state(request: web.Request) -> web.StreamResponse:
    """The camera's counters and last detections as JSON (the page refreshes from it)."""
    state = state_of(request)
    technician(request)
    view = _view(state, request.match_info["camera_id"])
    return web.json_response(
        {
            "running": view.running,
            "counters": view.counters,
            "detections": view.detections(),
            "frame_at": None if view.sample is None else view.sample.frame.wall,
        }
    )


async def edit_zone(request: web.Request) -> web.StreamResponse:
    """Review or save a zone drawn on the frame (``action``: review, save, remove, …)."""
    state = state_of(request)
    session, user = technician(request)
    view = _view(state, request.match_info["camera_id"])
    camera_id = view.config.id
    posted = await request.post()
    action = str(posted.get("action", "review"))
    removing = action in {"remove", "remove-save"}
    form = {
        "name": str(posted.get("name", "")).strip()[:64],
        "polygon": str(posted.get("polygon", "[]"))[:4096],
        "base": str(posted.get("base", ""))[:64],
        "reviewed": str(posted.get("reviewed", ""))[:64],
    }
    context = _page_context(state, view)
    context.update(form=form, removing=removing)
    try:
        name = zones.check_name(form["name"])
        polygon = None if removing else zones.parse_polygon(form["polygon"], view.size)
    except ValueError as exc:
        return render(request, "camera.html", status=400, error=str(exc), **context)
    try:
        proposal = await review(state, lambda data: zones.set_zone(data, camera_id, name, polygon))
        if action in {"save", "remove-save"}:
            await commit(
                request,
                proposal,
                form["base"],
                form["reviewed"],
                kind="console_zone_changed",
                user=user,
                camera=camera_id,
                zone=name,
                polygon=polygon,
                removed=removing,
            )
            done = "removed" if removing else "saved"
            session.notice = (
                f"Zone {name} of {camera_id} {done} by {user}; the gateway is reloading its config."
            )
            raise web.HTTPSeeOther(f"/reloading?next=/cameras/{camera_id}")
    except EditRefusedError as exc:
        log.warning("console edit refused who=%s reason=%s", user, exc.problems[0])
        context["refused"] = exc.problems
        return render(request, "camera.html", status=409, **context)
    context["proposal"] = proposal
    form["base"] = proposal.base_sha256
    form["reviewed"] = sha256_text(proposal.text)
    form["polygon"] = json.dumps(polygon or [])
    return render(request, "camera.html", **context)

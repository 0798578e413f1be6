"""Taking a handling step: one multipart form, read as a stream with bounded sizes.

The form's first field must be the session's CSRF token, checked before anything else
is read; the attachment (rectification evidence) is read in chunks and refused (413) as
soon as it passes ``max_attachment_bytes``, so a large upload costs no memory. Only
accounts with the ``handling`` role may take steps (read-only: 403).
"""

from __future__ import annotations

from typing import Any

from aiohttp import BodyPartReader, web

from cloud_sync.regulator_console.state import ROLE, log, session_of, state_of
from cloud_sync.regulator_console.trail import Step, StepRefusedError, store_attachment, take_step

MAX_FIELD = 4096
MAX_PARTS = 8
DONE = {
    "acknowledge": "Acknowledged.",
    "assign": "Assigned.",
    "comment": "Comment added.",
    "rectified": "Marked rectified.",
    "close": "Closed.",
}


def add_routes(app: web.Application) -> None:
    """The handling route (relative to the console's mount point)."""
    app.router.add_post("/alerts/{alert:\\d+}/steps", take)


async def _field(part: BodyPartReader) -> str:
    data = await part.read_chunk(MAX_FIELD + 1)
    if len(data) > MAX_FIELD:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_FIELD, actual_size=len(data))
    return data.decode("utf-8", "replace")


async def _file(part: BodyPartReader, limit: int) -> bytes:
    chunks, size = [], 0
    while chunk := await part.read_chunk(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=size)
        chunks.append(chunk)
    return b"".join(chunks)


async def take(request: web.Request) -> web.StreamResponse:
    """Append one step to an alert's trail, then show the alert again."""
    state, session = state_of(request), session_of(request)
    assert session is not None  # the middleware saw to it
    assert session.user is not None
    if request.content_type != "multipart/form-data":
        raise web.HTTPBadRequest(text="send the handling form as multipart/form-data")
    reader = await request.multipart()
    first = await reader.next()
    if (
        not isinstance(first, BodyPartReader)
        or first.name != "csrf"
        or not session.csrf_ok(await _field(first))
    ):
        log.warning("regulator step refused reason=CSRF check failed user=%s", session.user)
        raise web.HTTPForbidden(text="refused: the form's CSRF token is missing or wrong")
    if request.get(ROLE) != "handling":
        log.warning("regulator step refused reason=read-only account user=%s", session.user)
        raise web.HTTPForbidden(text="your account is read-only: it cannot take handling steps")
    fields: dict[str, Any] = {}
    upload: tuple[bytes, str, str] | None = None
    for _ in range(MAX_PARTS):
        part = await reader.next()
        if part is None:
            break
        if not isinstance(part, BodyPartReader):
            raise web.HTTPBadRequest(text="nested multipart is not accepted")
        if part.name == "attachment":
            data = await _file(part, state.config.max_attachment_bytes)
            if data:
                upload = (data, part.filename or "attachment",
                          part.headers.get("Content-Type", "application/octet-stream"))  # fmt: skip
        elif part.name in {"action", "assignee", "comment"}:
            fields[part.name] = await _field(part)
        else:
            await part.release()
    alert = int(request.match_info["alert"])
    digest = None
    if upload is not None:
        digest = store_attachment(state.conn, state.data_dir / "attachments", *upload)
    step = Step(
        action=str(fields.get("action", "")),
        who=session.user,
        assignee=fields.get("assignee"),
        comment=fields.get("comment"),
        attachment=digest,
    )
    try:
        after = take_step(state.conn, alert, step)
    except StepRefusedError as exc:
        state.sessions.note(session, f"Refused: {exc}.")
        raise web.HTTPSeeOther(f"/regulator/alerts/{alert}") from None
    log.info(
        "alert step alert=%d action=%s who=%s state=%s attachment=%s",
        alert, step.action, step.who, after, digest,
    )  # fmt: skip
    state.sessions.note(session, DONE[step.action])
    raise web.HTTPSeeOther(f"/regulator/alerts/{alert}")

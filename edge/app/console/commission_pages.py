"""Commissioning pages: unknown topics, the mapping form, its live preview, review, save."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from edge.app.console import commission
from edge.app.console.commission import (
    DECODERS,
    KINDS,
    ROWS,
    TIMESTAMP_FORMATS,
    FormError,
    UnknownTopic,
)
from edge.app.console.config_save import EditRefusedError, Proposal, sha256_text
from edge.app.console.edits import NO_FILE, can_save, commit, review
from edge.app.console.pages import technician
from edge.app.console.state import ConsoleState, log, render, state_of

FORM_FIELDS = (
    "id",
    "kind",
    "topic",
    "location",
    "decoder",
    "timestamp",
    "timestamp_format",
    "value_field",
    "base",
    "reviewed",
)
ROW_FIELDS = ("name", "unit", "low", "high", "source", "gain", "offset")


def _configured(state: ConsoleState) -> frozenset[str]:
    return frozenset(s.topic for s in state.parts.config.sensors)


async def _topics(state: ConsoleState, topic: str | None = None) -> list[UnknownTopic]:
    return await asyncio.to_thread(
        commission.unknown_topics, state.parts.config.store.path, _configured(state), topic
    )


async def commission_page(request: web.Request) -> web.StreamResponse:
    """Topics no sensor is configured for, each with its last payloads."""
    state = state_of(request)
    technician(request)
    return render(
        request,
        "commission.html",
        topics=await _topics(state),
        catch_all=state.parts.config.ingest.catch_all,
    )


def _suggested_id(topic: str) -> str:
    """A sensor id from the topic's last two levels (``site/water/02`` → ``water-02``)."""
    parts = [p for p in topic.split("/") if p][-2:]
    text = re.sub(r"[^A-Za-z0-9_.-]+", "-", "-".join(parts)).strip("-._")
    return text[:64] or "sensor-01"


def _suggested_kind(topic: str) -> str:
    return next((kind for kind in KINDS if kind in topic.lower()), "gas")


def _defaults(topic: str, found: UnknownTopic | None) -> dict[str, str]:
    payload = found.messages[0].payload if found and found.messages else b""
    form = {name: "" for name in FORM_FIELDS}
    form.update(
        topic=topic,
        id=_suggested_id(topic),
        kind=_suggested_kind(topic),
        decoder=commission.guess_decoder(payload),
    )
    for row in range(ROWS):
        form.update({f"q{row}_{name}": "" for name in ROW_FIELDS})
        form.update({f"q{row}_gain": "1", f"q{row}_offset": "0"})
    return form


def _form_of(posted: Mapping[str, Any]) -> dict[str, str]:
    names = [*FORM_FIELDS, *(f"q{r}_{n}" for r in range(ROWS) for n in ROW_FIELDS)]
    return {name: str(posted.get(name, ""))[:256] for name in names}


async def _context(
    state: ConsoleState, form: dict[str, str], *, with_preview: bool = True
) -> dict[str, Any]:
    """The form page's context: the topic's messages, what they offer, the preview."""
    topic = form["topic"]
    found = await _topics(state, topic) if topic else []
    messages = found[0].messages if found else []
    context: dict[str, Any] = {
        "form": form,
        "found": found[0] if found else None,
        "fields": commission.fields_of(messages[0].payload) if messages else [],
        "rows": range(ROWS),
        "kinds": KINDS,
        "decoders": DECODERS,
        "timestamp_formats": TIMESTAMP_FORMATS,
        "can_save": can_save(state),
        "no_file": NO_FILE,
        "preview": None,
        "problems": [],
        "proposal": None,
        "entry": None,
        "refused": [],
    }
    if not with_preview:
        return context
    try:
        entry = commission.sensor_entry(form)
        sensor = commission.sensor_of(entry)
    except FormError as exc:
        context["problems"] = exc.problems
        return context
    context["entry"] = entry
    context["preview"] = commission.preview(sensor, messages)
    return context


async def new_sensor_page(request: web.Request) -> web.StreamResponse:
    """The mapping form for one unknown topic, prefilled from its last payload."""
    state = state_of(request)
    technician(request)
    topic = request.query.get("topic", "")[:256]
    found = await _topics(state, topic) if topic else []
    form = _defaults(topic, found[0] if found else None)
    return render(request, "commission_new.html", **await _context(state, form, with_preview=False))


async def preview_fragment(request: web.Request) -> web.StreamResponse:
    """The live preview alone (the form page's script asks for it as the form changes)."""
    state = state_of(request)
    technician(request)
    context = await _context(state, _form_of(await request.post()))
    html = state.templates.get_template("commission_preview.html").render(**context)
    return web.Response(text=html, content_type="text/html")


async def new_sensor(request: web.Request) -> web.StreamResponse:
    """Preview, review (the diff) or save the new sensor (``action``)."""
    state = state_of(request)
    session, user = technician(request)
    posted = await request.post()
    form = _form_of(posted)
    action = str(posted.get("action", "preview"))
    context = await _context(state, form)
    entry = context["entry"]
    if action == "preview" or entry is None:
        status = 400 if context["problems"] and action != "preview" else 200
        return render(request, "commission_new.html", status=status, **context)
    try:
        proposal: Proposal = await review(state, lambda data: commission.add_sensor(data, entry))
        if action == "save":
            await commit(
                request,
                proposal,
                form["base"],
                form["reviewed"],
                kind="console_sensor_commissioned",
                user=user,
                sensor=entry["id"],
                topic=entry["topic"],
                decoder=entry["decoder"],
                quantities=[q["name"] for q in entry["quantities"]],
            )
            session.notice = (
                f"Sensor {entry['id']} saved by {user}; the gateway is reloading its config. "
                "If the broker gives each sensor an account, run `offsite-edge broker-config` "
                "for it."
            )
            raise web.HTTPSeeOther(f"/reloading?next=/sensors/{entry['id']}")
    except EditRefusedError as exc:
        log.warning("console edit refused who=%s reason=%s", user, exc.problems[0])
        context["refused"] = exc.problems
        return render(request, "commission_new.html", status=409, **context)
    context["proposal"] = proposal
    form["base"] = proposal.base_sha256
    form["reviewed"] = sha256_text(proposal.text)
    return render(request, "commission_new.html", **context)


async def reloading_page(request: web.Request) -> web.StreamResponse:
    """Shown while the gateway reloads after a save; goes on once the page answers."""
    technician(request)
    target = request.query.get("next", "/sensors")
    if not re.fullmatch(r"/[A-Za-z0-9_./-]{0,200}", target) or target.startswith("//"):
        target = "/sensors"
    return render(request, "reloading.html", target=target)

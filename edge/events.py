"""The event model shared by sensors, vision and cloud sync.

An *event* is something a regulator may need to see: an exceedance, a sensor or camera
going offline, a confirmed kitchen violation, a technician's change. Producers build
:class:`Event` values (pure data) and hand them to an :class:`EventSink`; the store is
the sink in production, and it assigns the gateway-wide sequence number when it commits.

An event with a lifecycle (an exceedance that lasts) keeps one ``event_id`` from open to
close: producers emit ``OPEN``, zero or more ``UPDATE`` and one ``CLOSED`` with the same
id. One-shot facts use ``INSTANT``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from edge.ids import new_id


class Severity(enum.StrEnum):
    """How urgently a regulator should look at an event."""

    INFO = "info"
    WARNING = "warning"
    ALARM = "alarm"


class EventStatus(enum.StrEnum):
    """Where an event is in its lifecycle."""

    OPEN = "open"
    UPDATE = "update"
    CLOSED = "closed"
    INSTANT = "instant"


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """One state of an event, as a producer reports it.

    ``kind`` names what happened (``exceedance``, ``sensor_offline``, ``sensor_stuck``,
    ``violation``, ``camera_offline``, ``maintenance`` …); ``source`` is the sensor or camera
    id; ``detail`` is JSON-serialisable context (limit, measured value, clause, snapshot
    hash …). Times are Unix seconds.
    """

    kind: str
    source: str
    severity: Severity
    status: EventStatus
    started_at: float
    event_id: str = field(default_factory=new_id)
    ended_at: float | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)


class EventSink(Protocol):
    """Where producers send events. ``emit`` returns once the event is committed."""

    async def emit(self, event: Event) -> int:
        """Commit ``event`` durably and return its gateway sequence number."""
        ...

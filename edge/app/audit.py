"""What the gateway runs on, on record: config and model digests, their changes, backups.

A site could otherwise edit its config (a calibration gain, a zone, a window, a TTL, a
camera pointed at a looping video file) or swap the detector model, send SIGHUP, and
leave no trace. So every start and every reload compares the running config file's and
model file's SHA-256 with the ones the database remembers (``meta``), and a difference is
an audit event with the old and new digest; the changed sections are named. Each config
the gateway runs on is also kept as an owner-only backup (the last
:data:`KEEP_CONFIG_BACKUPS`). Status records carry the running digests.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiosqlite

from edge.app.config import GatewayConfig
from edge.counters import read_meta, write_meta
from edge.events import Event, EventStatus, Severity
from edge.store import Store

log = logging.getLogger(__name__)

CONFIG_META = "running_config"
MODEL_META = "running_model"
KEEP_CONFIG_BACKUPS = 10
_CHUNK = 1 << 20


def file_sha256(path: Path) -> str | None:
    """SHA-256 of a file's bytes (hex), or None when it cannot be read."""
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
    except OSError:
        return None
    return digest.hexdigest()


def _canonical_sha256(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def section_digests(config: GatewayConfig) -> dict[str, str]:
    """A digest per top-level section, and per sensor and camera, of the validated config."""
    data = config.model_dump(mode="json")
    out: dict[str, str] = {}
    for name, value in data.items():
        if name == "sensors":
            for sensor in value:
                out[f"sensors.{sensor['id']}"] = _canonical_sha256(sensor)
        elif name == "vision" and isinstance(value, dict):
            for camera in value.get("cameras", []):
                out[f"vision.cameras.{camera.get('id')}"] = _canonical_sha256(camera)
            rest = {k: v for k, v in value.items() if k != "cameras"}
            out["vision"] = _canonical_sha256(rest)
        else:
            out[name] = _canonical_sha256(value)
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class RunningDigests:
    """The digests of what this run of the gateway uses."""

    config_sha256: str
    """SHA-256 of the config file's bytes (of the validated config when run without a file)."""
    config_file: str | None
    config_bytes: bytes | None = field(default=None, repr=False)
    """The config file's bytes that were validated (what a backup keeps)."""
    sections: dict[str, str] = field(default_factory=dict)
    model_sha256: str | None = None
    model_file: str | None = None
    retention: dict[str, Any] | None = None
    """The outbox's quota, TTLs and retention: a change is audited with old and new values."""

    def status_fields(self) -> dict[str, Any]:
        """What every gateway status record carries."""
        return {"config_sha256": self.config_sha256, "model_sha256": self.model_sha256}


def running_digests(
    config: GatewayConfig, config_path: Path | None, text: str | None = None
) -> RunningDigests:
    """Hash the config file (or the config itself) and the detector model (blocking I/O).

    ``text`` is the config text that was validated, when the caller has it: hashing it,
    rather than re-reading the file, names exactly what runs (also when a refused file
    was replaced by the last good config).
    """
    sections = section_digests(config)
    raw: bytes | None = None
    if text is not None:
        raw = text.encode("utf-8")
    elif config_path is not None:
        with contextlib.suppress(OSError):
            raw = config_path.read_bytes()
    model_file = None if config.vision is None else config.vision.detector.model_path
    return RunningDigests(
        config_sha256=_canonical_sha256(sections)
        if raw is None
        else hashlib.sha256(raw).hexdigest(),
        config_file=None if config_path is None else str(config_path),
        config_bytes=raw,
        sections=sections,
        model_sha256=None if model_file is None else file_sha256(Path(model_file)),
        model_file=model_file,
        retention=None
        if config.cloud is None
        else config.cloud.outbox.model_dump(
            mode="json", include={"quota_bytes", "ttl_s", "retention_s"}
        ),
    )


def _changed(old: dict[str, str], new: dict[str, str]) -> list[str]:
    return sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))


def _load(raw: str | None) -> dict[str, Any]:
    if raw is None:
        return {}
    with contextlib.suppress(ValueError):
        data = json.loads(raw)
        if isinstance(data, dict):
            return data
    return {}


def backup_config(
    config_path: Path, text: bytes, backups: Path, sha256: str, keep: int
) -> Path | None:
    """Keep ``text`` in ``backups`` (owner-only); keep the newest ``keep`` copies."""
    try:
        backups.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(backups, 0o700)
        # Microseconds: names sort by time, also for two reloads within a second.
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
        target = backups / f"{stamp}-{sha256[:12]}{config_path.suffix or '.yaml'}"
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, text)
            os.fsync(fd)
        finally:
            os.close(fd)
        for old in sorted(p for p in backups.iterdir() if p.is_file())[:-keep]:
            old.unlink()
    except OSError as exc:
        log.error("config backup failed file=%s reason=%s", config_path, exc)
        return None
    return target


async def record_changes(
    store: Store,
    digests: RunningDigests,
    *,
    trigger: str,
    backups: Path | None = None,
) -> list[Event]:
    """Compare with the digests the database remembers; emit an audit event per change.

    ``trigger`` says why the config was (re)read: ``start`` or ``reload``. The first run
    on a database only remembers the digests (and backs the config up): nothing changed
    yet, and its status records already carry the digests. The remembered digests
    are updated only after the events are committed, so a crash in between repeats the
    record rather than losing it.
    """

    async def read(db: aiosqlite.Connection) -> tuple[str | None, str | None]:
        return await read_meta(db, CONFIG_META), await read_meta(db, MODEL_META)

    old_config_raw, old_model_raw = await store.run(read)
    old_config, old_model = _load(old_config_raw), _load(old_model_raw)
    first = old_config_raw is None
    now = time.time()
    events: list[Event] = []
    if old_config.get("sha256") != digests.config_sha256:
        backup = None
        if backups is not None and digests.config_file is not None and digests.config_bytes:
            backup = await asyncio.to_thread(
                backup_config,
                Path(digests.config_file),
                digests.config_bytes,
                backups,
                digests.config_sha256,
                KEEP_CONFIG_BACKUPS,
            )
        if not first:
            events.append(
                _audit(
                    "config_changed",
                    now,
                    trigger=trigger,
                    file=digests.config_file,
                    old=old_config.get("sha256"),
                    new=digests.config_sha256,
                    extra={
                        "changed_sections": _changed(
                            old_config.get("sections") or {}, digests.sections
                        ),
                        "backup": None if backup is None else backup.name,
                    },
                )
            )
    if not first and old_model.get("sha256") != digests.model_sha256:
        events.append(
            _audit(
                "model_changed",
                now,
                trigger=trigger,
                file=digests.model_file,
                old=old_model.get("sha256"),
                new=digests.model_sha256,
                extra={"old_file": old_model.get("file")},
            )
        )
    if not first and "retention" in old_config and old_config["retention"] != digests.retention:
        # What a site would shorten to make evidence expire before the link comes back.
        events.append(
            Event(
                kind="retention_changed",
                source="gateway",
                severity=Severity.WARNING,
                status=EventStatus.INSTANT,
                started_at=now,
                detail={
                    "trigger": trigger,
                    "old": old_config["retention"],
                    "new": digests.retention,
                },
            )
        )
    for event in events:
        await store.emit(event)
        if event.kind == "retention_changed":
            log.warning(
                "outbox retention changed trigger=%s old=%s new=%s",
                trigger,
                event.detail["old"],
                event.detail["new"],
            )
            continue
        log.warning(
            "%s trigger=%s file=%s old_sha256=%s new_sha256=%s",
            event.kind,
            trigger,
            event.detail["file"],
            event.detail["old_sha256"],
            event.detail["new_sha256"],
        )
    config_meta = json.dumps(
        {
            "sha256": digests.config_sha256,
            "sections": digests.sections,
            "retention": digests.retention,
        }
    )
    model_meta = json.dumps({"sha256": digests.model_sha256, "file": digests.model_file})

    async def remember(db: aiosqlite.Connection) -> None:
        await write_meta(db, CONFIG_META, config_meta)
        await write_meta(db, MODEL_META, model_meta)

    await store.run(remember)
    return events


def _audit(
    kind: str,
    now: float,
    *,
    trigger: str,
    file: str | None,
    old: str | None,
    new: str | None,
    extra: dict[str, Any],
) -> Event:
    return Event(
        kind=kind,
        source="gateway",
        severity=Severity.WARNING,
        status=EventStatus.INSTANT,
        started_at=now,
        detail={"trigger": trigger, "file": file, "old_sha256": old, "new_sha256": new, **extra},
    )


CLOCK_SEVERITY = {
    "clock_step": Severity.WARNING,
    "clock_synchronised": Severity.INFO,
    "clock_unsynchronised": Severity.WARNING,
}


def clock_audit_event(kind: str, at: float, detail: dict[str, Any]) -> Event:
    """An audit record of the clock (``edge.app.trusted_time``): a step, a sync, a loss."""
    return Event(
        kind=kind,
        source="gateway",
        severity=CLOCK_SEVERITY.get(kind, Severity.WARNING),
        status=EventStatus.INSTANT,
        started_at=at,
        detail=detail,
    )

"""Shared config foundations: the strict base model every section is built on, and the store.

Every model forbids unknown keys, so a technician's typo is an error rather than a silently
ignored setting, and is frozen, so a running component cannot change what it was given.
Validators only check values; they never open files, sockets or hardware. Each package owns
the models of its own section (``sensors.config``, ``vision.config``, ``cloud_sync.config``);
``edge.app.config`` composes them into the gateway's one YAML file.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
"""Gateway, sensor and camera ids: safe in topics, file names and log lines."""


class StrictModel(BaseModel):
    """Base of every config model: unknown keys rejected, values frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class StoreConfig(StrictModel):
    """The gateway's one SQLite database."""

    path: Path = Field(
        default=Path("/var/lib/offsite-edge/gateway.db"),
        description="SQLite database file; relative paths are resolved against the config file.",
    )
    commit_interval_ms: int = Field(
        default=1000,
        ge=5,
        le=5000,
        description="Group commit: the longest a received reading waits before its batch is "
        "committed (and only then acknowledged to the broker). Each commit writes a few "
        "database pages whatever its size, so longer intervals spare the SD card.",
    )
    commit_max_readings: int = Field(
        default=5000,
        ge=1,
        le=100_000,
        description="Group commit: a batch is committed early once it holds this many messages.",
    )
    dead_letter_keep: int = Field(
        default=10_000,
        ge=100,
        le=10_000_000,
        description="Newest dead letters kept; older ones are pruned so a misbehaving device "
        "cannot fill the disk (the total count is kept).",
    )
    raw_history: int = Field(
        default=60,
        ge=0,
        le=10_000,
        description="Last raw readings kept in memory per sensor for context (never written to "
        "disk one row per reading, to spare the SD card).",
    )

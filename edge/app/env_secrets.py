"""Secrets fail closed: every environment variable a config names must be set.

Config fields ending in ``_env`` (broker and uplink credentials, the HJ 212 password)
name an environment variable instead of holding the secret. A variable that is unset or
empty would otherwise become an empty password only when the connection is made, so
``run``, a reload and ``config check`` all refuse such a config up front, naming the field.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel

from edge.app.config import GatewayConfig
from edge.app.config_file import ConfigError, ConfigProblem


def secret_fields(model: BaseModel, path: str = "") -> Iterator[tuple[str, str]]:
    """Every ``(field path, variable name)`` of a set ``*_env`` field in ``model``."""
    for name, value in model:
        field = f"{path}.{name}" if path else name
        if name.endswith("_env") and isinstance(value, str):
            yield field, value
        elif isinstance(value, BaseModel):
            yield from secret_fields(value, field)
        elif isinstance(value, list | tuple):
            for index, item in enumerate(value):
                if isinstance(item, BaseModel):
                    yield from secret_fields(item, f"{field}[{index}]")


def missing_secrets(config: GatewayConfig) -> list[ConfigProblem]:
    """One problem per named environment variable that is unset or empty."""
    return [
        ConfigProblem(field=field, reason=f"environment variable {env} is not set (or empty)")
        for field, env in secret_fields(config)
        if not os.environ.get(env)
    ]


def check_secrets(config: GatewayConfig, file: Path | str) -> None:
    """Raise :class:`ConfigError` (a SetupError) naming each field whose variable is unset."""
    problems = missing_secrets(config)
    if problems:
        raise ConfigError(file, problems)

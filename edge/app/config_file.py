"""Reading a gateway config file: YAML → validated :class:`GatewayConfig`.

Problems are reported all at once, each with its field path, the reason and, where the
YAML gives one, the line number, so a technician can fix a file in one pass.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from edge.app.config import GatewayConfig
from edge.errors import SetupError

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigProblem:
    """One thing wrong with a config file."""

    field: str
    reason: str
    line: int | None = None

    def render(self, file: str) -> str:
        """Format as ``file:line: field: reason``."""
        where = f"{file}:{self.line}" if self.line is not None else file
        return f"{where}: {self.field or '<root>'}: {self.reason}"


class ConfigError(SetupError):
    """A config file that cannot be used; ``problems`` lists every reason."""

    def __init__(self, file: Path | str, problems: list[ConfigProblem]) -> None:
        self.file = str(file)
        self.problems = problems
        super().__init__("\n".join(p.render(self.file) for p in problems))


def _walk(node: yaml.Node, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], yaml.Node]]:
    yield path, node
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            yield from _walk(value, (*path, str(key.value)))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            yield from _walk(item, (*path, str(index)))


def _duplicate_keys(root: yaml.Node) -> list[ConfigProblem]:
    problems = []
    for path, node in _walk(root, ()):
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key, _ in node.value:
                if key.value in seen:
                    field = ".".join((*path, str(key.value)))
                    line = key.start_mark.line + 1
                    problems.append(ConfigProblem(field=field, reason="key repeated", line=line))
                seen.add(key.value)
    return problems


def _format_loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def parse_config(text: str, *, file: Path | str = "<config>") -> GatewayConfig:
    """Validate config ``text``; raise :class:`ConfigError` with every problem found."""
    return parse_model(text, GatewayConfig, file=file)


def parse_model(text: str, model: type[M], *, file: Path | str = "<config>") -> M:
    """Validate YAML ``text`` as ``model``: every problem with its field and line, or the model."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        reason = f"not valid YAML: {getattr(exc, 'problem', None) or exc}"
        raise ConfigError(file, [ConfigProblem(field="", reason=reason, line=line)]) from None
    if root is None or not isinstance(data, dict):
        problem = ConfigProblem(field="", reason="the file must hold a YAML mapping", line=1)
        raise ConfigError(file, [problem])
    lines = _field_lines(root)
    problems = _duplicate_keys(root)
    try:
        config = model.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            loc = tuple(p for p in error["loc"] if not _is_union_tag(p))
            line = _line_of(lines, loc)
            reason = error["msg"].removeprefix("Value error, ")
            problems.append(ConfigProblem(field=_format_loc(loc), reason=reason, line=line))
        raise ConfigError(file, problems) from None
    if problems:
        raise ConfigError(file, problems)
    return config


def _field_lines(root: yaml.Node) -> dict[tuple[str, ...], int]:
    return {path: node.start_mark.line + 1 for path, node in _walk(root, ())}


def _line_of(lines: dict[tuple[str, ...], int], loc: tuple[int | str, ...]) -> int | None:
    """The line of the deepest part of ``loc`` that exists in the file."""
    key = tuple(str(p) for p in loc)
    return next((lines[key[:n]] for n in range(len(key), -1, -1) if key[:n] in lines), None)


def _is_union_tag(part: int | str) -> bool:
    # Pydantic inserts the discriminator value ('json', 'hj212', …) into error paths.
    return part in {"json", "number", "hj212"}


def read_text(path: Path) -> str:
    """The text of a config file; ConfigError when it cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(path, [ConfigProblem(field="", reason=f"cannot read: {exc}")]) from None


def resolve_paths(config: GatewayConfig, path: Path) -> GatewayConfig:
    """Resolve a relative store path against the folder of the config file at ``path``."""
    if not config.store.path.is_absolute():
        store = config.store.model_copy(update={"path": path.parent / config.store.path})
        config = config.model_copy(update={"store": store})
    return config


def load_config(path: Path | str) -> GatewayConfig:
    """Read and validate a config file; relative store paths resolve against its folder."""
    path = Path(path)
    return resolve_paths(parse_config(read_text(path), file=path), path)


def with_lines(error: ConfigError, text: str) -> ConfigError:
    """``error`` with each problem's line looked up in the config ``text`` where missing."""
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    lines = {} if root is None else _field_lines(root)
    problems = [
        p if p.line is not None else replace(p, line=_line_of(lines, _loc_of(p.field)))
        for p in error.problems
    ]
    return ConfigError(error.file, problems)


def _loc_of(field: str) -> tuple[int | str, ...]:
    """``sensors[0].standard`` → ("sensors", 0, "standard")."""
    out: list[int | str] = []
    for part in field.replace("[", ".").replace("]", "").split("."):
        if part:
            out.append(int(part) if part.isdigit() else part)
    return tuple(out)

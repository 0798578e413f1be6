"""The layout the code must keep: the edge floor, three packages on it, one roof.

* ``edge`` (outside ``edge.app``) is the floor: it imports none of sensors, vision,
  cloud_sync or edge.app;
* ``sensors``, ``vision`` and ``cloud_sync`` stand on the floor only: never each other,
  never the roof;
* ``edge.app`` is the roof, the only place that imports all of them;
* no module imports itself back through a chain of others (no cycle), counting imports
  inside functions and ``TYPE_CHECKING`` blocks too.

Checked on the source with ``ast``, so a violation fails here before anyone runs it.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("edge", "sensors", "vision", "cloud_sync")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Our modules that ``name`` imports, anywhere in its body."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from edge import hj212`` imports the submodule edge.hj212.
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
                for alias in node.names
            ]
        else:
            continue
        for target in targets:
            # ``import edge.app.config`` names the module; keep the longest known prefix.
            parts = target.split(".")
            for n in range(len(parts), 0, -1):
                candidate = ".".join(parts[:n])
                if candidate in MODULES:
                    if candidate != name:
                        out.add(candidate)
                    break
    return out


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _layer(module: str) -> str:
    if module == "edge.app" or module.startswith("edge.app."):
        return "roof"
    return module.split(".", maxsplit=1)[0]


ALLOWED = {
    "edge": {"edge"},
    "sensors": {"edge", "sensors"},
    "vision": {"edge", "vision"},
    "cloud_sync": {"edge", "cloud_sync"},
    "roof": {"edge", "sensors", "vision", "cloud_sync", "roof"},
}


def test_the_scan_sees_the_whole_tree():
    assert {"edge.store", "edge.app.gateway", "sensors.ingest", "cloud_sync.outbox"} <= set(MODULES)
    assert "edge.store" in GRAPH["edge.app.gateway"]


def test_every_package_imports_only_what_its_layer_allows():
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in GRAPH.items()
        for target in targets
        if _layer(target) not in ALLOWED[_layer(module)]
    )
    assert wrong == []


def _cycle() -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for target in sorted(GRAPH[module]):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (found := visit(target)) is not None:
                return found
        path.pop()
        state[module] = 2
        return None

    for module in sorted(GRAPH):
        if module not in state and (found := visit(module)) is not None:
            return found
    return None


def test_no_import_cycle():
    cycle = _cycle()
    assert cycle is None, " → ".join(cycle or [])


def test_the_checks_would_catch_a_violation(monkeypatch):
    """The rules are not vacuous: a floor importing the roof and a cycle are both caught."""
    monkeypatch.setitem(GRAPH, "edge.store", {*GRAPH["edge.store"], "edge.app.gateway"})
    assert _layer("edge.app.gateway") not in ALLOWED[_layer("edge.store")]
    assert _cycle() is not None

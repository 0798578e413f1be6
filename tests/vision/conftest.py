"""Fixtures for the vision tests: synthetic models, clips and an in-memory event sink."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

# tests/conftest.py puts tests/ on sys.path, where this folder would shadow the real
# ``vision`` package as a namespace package. Put the repository first so ``import vision``
# always means the package under test.
_REPO = Path(__file__).resolve().parents[2]
if sys.path[:1] != [str(_REPO)]:
    sys.path.insert(0, str(_REPO))
if "vision" in sys.modules and getattr(sys.modules["vision"], "__file__", None) is None:
    del sys.modules["vision"]

from edge.events import Event  # noqa: E402
from vision.layouts import Layout  # noqa: E402
from vision.synthetic import build_model  # noqa: E402

SHARED_MODELS = Path(__file__).resolve().parents[2] / ".." / "shared" / "models"


class ListSink:
    """An EventSink that keeps events in memory (stands in for the store)."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._changed: asyncio.Event | None = None

    async def emit(self, event: Event) -> int:
        self.events.append(event)
        if self._changed is not None:
            self._changed.set()
        return len(self.events)

    async def wait_for(self, predicate: Callable[[], object]) -> None:
        """Wait until ``predicate()`` is true, re-checking after each emitted event."""
        self._changed = asyncio.Event()
        while not predicate():
            await self._changed.wait()
            self._changed.clear()

    def of_kind(self, kind: str) -> list[Event]:
        return [e for e in self.events if e.kind == kind]


@pytest.fixture(scope="session")
def synthetic_models(tmp_path_factory: pytest.TempPathFactory) -> dict[Layout, Path]:
    d = tmp_path_factory.mktemp("models")
    return {lay: build_model(d / f"{lay.value}.onnx", lay) for lay in Layout}


@pytest.fixture
def sink() -> ListSink:
    return ListSink()


@pytest.fixture
def shared_model() -> Callable[[str], Path]:
    """Path of a model in ../shared/models, skipping the test if the file is absent."""

    def get(name: str) -> Path:
        path = SHARED_MODELS / name
        if not path.exists():
            pytest.skip(f"shared model {path} is absent (CI keeps shared/ beside the clone)")
        return path

    return get

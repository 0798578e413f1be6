"""write_once: a content-addressed file is written whole, once, and leaves no temp behind."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest

from edge.files import write_once


def test_write_once_creates_the_folder_and_writes_the_bytes(tmp_path: Path) -> None:
    path = tmp_path / "ab" / "abcd.jpg"
    assert write_once(path, b"evidence") is True
    assert path.read_bytes() == b"evidence"
    assert sorted(p.name for p in path.parent.iterdir()) == ["abcd.jpg"]


def test_write_once_leaves_an_existing_file_alone(tmp_path: Path) -> None:
    path = tmp_path / "abcd.jpg"
    path.write_bytes(b"first")
    assert write_once(path, b"second") is False
    assert path.read_bytes() == b"first"


def test_a_failed_write_leaves_no_temp_file_and_no_target(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "abcd.jpg"
    with pytest.raises(TypeError):
        write_once(path, cast(Any, "not bytes"))
    assert not path.exists()
    assert list(path.parent.iterdir()) == []

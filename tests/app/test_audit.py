"""Config and model digests: changes are audit events, backups are owner-only and bounded."""

from __future__ import annotations

import asyncio
import hashlib
import json
import stat
from pathlib import Path

import aiosqlite
from helpers import gateway_config
from hypothesis import given
from hypothesis import strategies as st

from edge.app.audit import KEEP_CONFIG_BACKUPS, backup_config, record_changes, running_digests
from edge.app.status import printable
from edge.store import Store
from vision.synthetic import demo_config


def test_a_model_swap_between_runs_is_an_audit_event_with_both_digests(tmp_path: Path) -> None:
    asyncio.run(_model_swap(tmp_path))


async def _model_swap(tmp_path: Path) -> None:
    model = tmp_path / "detector.onnx"
    model.write_bytes(b"model one")
    config = gateway_config(tmp_path / "g.db").model_copy(
        update={"vision": demo_config(model, tmp_path / "clip.mp4")}
    )
    async with await Store.open(tmp_path / "g.db") as store:
        first = running_digests(config, None)
        assert first.model_sha256 == hashlib.sha256(b"model one").hexdigest()
        assert await record_changes(store, first, trigger="start") == []  # nothing to compare
        assert await record_changes(store, first, trigger="reload") == []  # unchanged
        model.write_bytes(b"model two, looping a video")
        second = running_digests(config, None)
        (event,) = await record_changes(store, second, trigger="start")
        assert event.kind == "model_changed"
        assert event.detail["old_sha256"] == first.model_sha256
        assert (
            event.detail["new_sha256"] == hashlib.sha256(b"model two, looping a video").hexdigest()
        )
        assert event.detail["file"] == str(model)
        # The camera now replays another file: a config change naming the camera.
        vision = config.vision
        assert vision is not None
        camera = vision.cameras[0].model_copy(update={"source": str(tmp_path / "loop.mp4")})
        moved = config.model_copy(
            update={"vision": vision.model_copy(update={"cameras": [camera]})}
        )
        (change,) = await record_changes(store, running_digests(moved, None), trigger="reload")
        assert change.kind == "config_changed"
        assert change.detail["changed_sections"] == ["vision.cameras.kitchen-1"]
        stored = await store.run(_kinds)
    assert stored == ["model_changed", "config_changed"]


async def _kinds(db: aiosqlite.Connection) -> list[str]:
    async with db.execute("SELECT kind FROM events ORDER BY seq") as cursor:
        return [str(row[0]) for row in await cursor.fetchall()]


def test_config_backups_are_owner_only_and_the_newest_are_kept(tmp_path: Path) -> None:
    backups = tmp_path / "config-backups"
    written = []
    for n in range(KEEP_CONFIG_BACKUPS + 3):
        text = f"gateway: {{id: gw-{n}}}\n".encode()
        sha = hashlib.sha256(text).hexdigest()
        path = backup_config(tmp_path / "gateway.yaml", text, backups, sha, KEEP_CONFIG_BACKUPS)
        assert path is not None
        written.append(path)
    kept = sorted(backups.iterdir())
    assert kept == sorted(written)[-KEEP_CONFIG_BACKUPS:]
    assert stat.S_IMODE(backups.stat().st_mode) == 0o700
    assert {stat.S_IMODE(p.stat().st_mode) for p in kept} == {0o600}


@given(st.text(max_size=300))
def test_remote_text_is_printable_after_sanitising(text: str) -> None:
    out = printable(text)
    assert out.isprintable()
    assert len(out) <= 200
    if text.isprintable() and len(text) <= 200:
        assert out == text


def test_terminal_escapes_in_a_dead_letter_topic_are_shown_not_obeyed() -> None:
    assert printable("site/\x1b[2J\x1b]0;owned\x07x\u202e") == (
        "site/\\x1b[2J\\x1b]0;owned\\x07x\\u202e"
    )
    assert json.dumps(printable("\x9b31m")) == '"\\\\x9b31m"'


def test_a_shorter_ttl_or_smaller_quota_is_audited_with_old_and_new_values(tmp_path: Path) -> None:
    asyncio.run(_retention(tmp_path))


async def _retention(tmp_path: Path) -> None:
    uplink = {"type": "mqtt", "name": "cloud", "host": "127.0.0.1", "tls": {"enabled": False}}
    cloud = {"uplinks": [uplink], "outbox": {"quota_bytes": 64 * 2**20}}
    config = gateway_config(tmp_path / "g.db", cloud=cloud)
    async with await Store.open(tmp_path / "g.db") as store:
        assert await record_changes(store, running_digests(config, None), trigger="start") == []
        cloud["outbox"] = {"quota_bytes": 4096, "ttl_s": {"minute": 7 * 86400.0}}
        changed = gateway_config(tmp_path / "g.db", cloud=cloud)
        events = await record_changes(store, running_digests(changed, None), trigger="reload")
        stored = await store.run(_kinds)
    by_kind = {event.kind: event for event in events}
    assert set(by_kind) == {"config_changed", "retention_changed"}
    assert by_kind["config_changed"].detail["changed_sections"] == ["cloud"]
    retention = by_kind["retention_changed"].detail
    assert retention["old"]["quota_bytes"] == 64 * 2**20
    assert retention["new"]["quota_bytes"] == 4096
    assert retention["old"]["ttl_s"]["minute"] == 30 * 86400.0
    assert retention["new"]["ttl_s"] == {"minute": 7 * 86400.0}
    assert stored == ["config_changed", "retention_changed"]

"""The handling trail: steps by role, append-only storage, the state rule (hypothesis)."""

from __future__ import annotations

import hashlib
import re
import sqlite3
from contextlib import closing

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloud_sync.regulator_console.trail import (
    ACTIONS,
    Step,
    StepRefusedError,
    next_state,
)

STATES = ("new", "acknowledged", "assigned", "rectified", "closed")


def _alert(console, web) -> int:
    gw = console.gateway("gw-trail")
    console.ingest("gw-trail", [gw.exceedance(value=4.0)])
    _, _, text = web.get("/regulator/alerts?gateway=gw-trail")
    return int(re.findall(r'data-alert="(\d+)"', text)[0])


def test_a_handler_walks_the_trail_and_every_step_is_kept(make_console):
    console, web = make_console(max_attachment_bytes=4096)
    name = web.ready(console)
    alert = _alert(console, web)
    _, _, page = web.get(f"/regulator/alerts/{alert}")
    assert "Acknowledge" in page

    # Rectified before anyone acknowledged it: refused, nothing recorded.
    _, _, page = web.step(alert, "rectified", file=("fixed.png", b"\x89PNG fixed"))
    assert "Refused: cannot mark rectified an alert that is new" in page
    assert web.step(alert, "acknowledge")[0] == 200
    assert web.step(alert, "assign", assignee="district-3 team")[0] == 200
    assert web.step(alert, "comment", comment="Called the owner; filter change due.")[0] == 200
    # An attachment over the bound is refused while it streams in.
    status, _, _ = web.step(alert, "rectified", file=("huge.bin", b"x" * 5000))
    assert status == 413
    photo = b"\x89PNG new filter installed"
    assert web.step(alert, "rectified", file=("new filter.png", photo), comment="done")[0] == 200
    assert web.step(alert, "close", comment="verified on site")[0] == 200

    _, _, page = web.get(f"/regulator/alerts/{alert}")
    timeline = re.search(r'<ol class="timeline".*?</ol>', page, re.S)[0]
    actions = re.findall(r'<li class="step (\w+)">', timeline)
    assert actions == ["acknowledge", "assign", "comment", "rectified", "close"]
    assert timeline.count(f"<b>{name}</b>") == 5
    assert "district-3 team" in timeline
    assert "Called the owner" in timeline
    digest = hashlib.sha256(photo).hexdigest()
    assert f'href="/regulator/attachments/{digest}"' in timeline
    status, _, body = web.get(f"/regulator/attachments/{digest}")
    assert status == 200
    assert body.encode("utf-8", "surrogateescape") == photo
    assert 'id="alert-state">closed' in page
    assert "/steps" not in page  # closed: no more forms

    # Append-only in the database itself, whoever writes to it.
    with closing(sqlite3.connect(console.db_path)) as conn:
        for sql in ("UPDATE reg_steps SET who = 'someone else'", "DELETE FROM reg_steps"):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                conn.execute(sql)
        assert conn.execute("SELECT count(*) FROM reg_steps").fetchone()[0] == 5


def test_read_only_accounts_cannot_take_steps(console, client):
    reader = client()
    reader.ready(console, role="read-only")
    alert = _alert(console, reader)
    status, _, text = reader.step(alert, "acknowledge")
    assert status == 403
    assert "read-only" in text
    assert console.sql("SELECT count(*) FROM reg_steps") == [(0,)]


def test_a_step_without_the_sessions_csrf_token_is_refused(console, client):
    web = client()
    web.ready(console)
    alert = _alert(console, web)
    assert web.step(alert, "acknowledge", csrf="forged")[0] == 403
    assert console.sql("SELECT state FROM reg_alerts") == [("new",)]


@given(
    st.lists(
        st.tuples(
            st.sampled_from(ACTIONS),
            st.sampled_from([None, "", "team-1"]),
            st.sampled_from([None, "", "note"]),
            st.booleans(),
        ),
        max_size=12,
    )
)
def test_state_rule_never_reopens_and_steps_need_their_fields(steps):
    state = "new"
    for action, assignee, comment, attached in steps:
        step = Step(action=action, who="x", assignee=assignee, comment=comment,
                    attachment="a" * 64 if attached else None)  # fmt: skip
        try:
            after = next_state(state, step)
        except StepRefusedError:
            continue
        assert after in STATES
        if state == "closed":
            assert action == "comment"
            assert after == "closed"
        if action == "rectified":
            assert attached
        if action == "assign":
            assert assignee
        if action == "comment":
            assert comment
            assert after == state
        state = after

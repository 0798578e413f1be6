"""Self-declared flags are watched; technician modes end by themselves and are counted."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from edge.events import EventStatus, Severity
from sensors.config import HealthConfig
from sensors.modes import GATEWAY_WHO, Mode, ModeGuard, ModeLimits, ModeRequest, apply_request
from sensors.monitor import SensorMonitor

T0 = 1_700_000_000.0
LIMIT = 60.0


def monitor(**health: object) -> SensorMonitor:
    config = HealthConfig(expected_interval_s=1, stuck_after_s=None, **health)  # type: ignore[arg-type]
    return SensorMonitor(sensor_id="fume-01", health=config, quantities=["fume"])


def flagged_events(mon: SensorMonitor, flags: list[str], step: float = 5.0) -> list:
    events = []
    for i, flag in enumerate(flags):
        mon.observe("fume", 1.0, flag, T0 + i * step)
        events += [e for e in mon.tick(T0 + i * step) if e.kind == "sensor_self_flagged"]
    return events


def test_a_device_flagging_itself_too_long_raises_an_alarm_until_a_valid_reading() -> None:
    mon = monitor(self_flag_limit_s=LIMIT)
    events = flagged_events(mon, ["M"] * 13 + ["D"] * 5 + ["N"])
    assert [e.status for e in events] == [EventStatus.OPEN, EventStatus.CLOSED]
    opened, closed = events
    assert opened.severity is Severity.ALARM
    assert opened.started_at == T0
    assert opened.detail["quantity"] == "fume"
    assert opened.detail["flags"] == {"M": 13}
    assert closed.event_id == opened.event_id
    assert closed.detail["flags"] == {"M": 13, "D": 5}


def test_short_self_flagged_runs_and_ignored_flags_raise_nothing() -> None:
    mon = monitor(self_flag_limit_s=LIMIT)
    # Runs of 11 flagged readings (50 s) separated by a valid one never reach the limit.
    assert flagged_events(mon, (["C"] * 11 + ["N"]) * 5) == []
    watched_m_only = monitor(self_flag_limit_s=LIMIT, self_flags=("M",))
    assert flagged_events(watched_m_only, ["D"] * 40) == []
    disabled = monitor(self_flag_limit_s=None)
    assert flagged_events(disabled, ["M"] * 40) == []


def test_a_technician_mode_is_not_a_self_declared_flag() -> None:
    mon = monitor(self_flag_limit_s=LIMIT)
    mon.set_mode("maintenance", "tech.li", "filter change", T0)
    # The device says N but the mode forces M: that is the technician's, not the device's.
    assert flagged_events(mon, ["N"] * 40 + ["M"] * 40) == []


def test_an_open_self_flag_alarm_is_resumed_after_a_restart() -> None:
    mon = monitor(self_flag_limit_s=LIMIT)
    opened = flagged_events(mon, ["M"] * 14)[0]
    fresh = monitor(self_flag_limit_s=LIMIT)
    assert fresh.adopt(opened)
    assert "sensor_self_flagged:fume" in fresh.open_events()
    # Still flagged after the restart: no second event; the first valid reading closes it.
    fresh.observe("fume", 1.0, "M", T0 + 100)
    assert [e for e in fresh.tick(T0 + 100) if e.kind == "sensor_self_flagged"] == []
    fresh.observe("fume", 1.0, "N", T0 + 105)
    closing = [e for e in fresh.tick(T0 + 105) if e.kind == "sensor_self_flagged"]
    assert [(e.status, e.event_id) for e in closing] == [(EventStatus.CLOSED, opened.event_id)]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from("NMCDFSB"), max_size=80))
def test_alarm_opens_exactly_when_a_consecutive_self_flagged_run_spans_the_limit(
    flags: list[str],
) -> None:
    mon = monitor(self_flag_limit_s=LIMIT)
    events = flagged_events(mon, flags)
    # The reference: the longest run of non-N readings, in device seconds.
    longest, start = 0.0, None
    for i, flag in enumerate(flags):
        if flag == "N":
            start = None
            continue
        start = i if start is None else start
        longest = max(longest, (i - start) * 5.0)
    opened = [e for e in events if e.status is EventStatus.OPEN]
    assert bool(opened) == (longest >= LIMIT)
    # Every alarm closes before another opens: one per run.
    statuses = [e.status for e in events]
    assert all(a != b for a, b in itertools.pairwise(statuses))


def _limits(max_s: float = 100.0, repeat_limit: int = 2) -> dict[str, ModeLimits]:
    return {"fume-01": ModeLimits(max_s=max_s, repeat_limit=repeat_limit, repeat_window_s=1000.0)}


def test_a_mode_ends_by_itself_at_its_maximum_duration() -> None:
    mon = monitor()
    guard = ModeGuard(_limits())
    subjects = {"fume-01": mon}
    request = ModeRequest(
        sensor_id="fume-01", mode=Mode.CALIBRATION, who="tech", why="span", requested_at=T0
    )
    event = apply_request(subjects, request)
    assert event is not None
    assert guard.after(event, before=mon.mode, request=request) == []
    assert guard.expired(subjects, T0 + 99) == []
    (end,) = guard.expired(subjects, T0 + 100)
    assert (end.mode, end.who) == (Mode.NORMAL, GATEWAY_WHO)
    before = mon.mode
    closed = apply_request(subjects, end)
    assert closed is not None
    assert closed.status is EventStatus.CLOSED
    assert mon.mode.mode is Mode.NORMAL
    (warning,) = guard.after(closed, before=before, request=end)
    assert warning.kind == "maintenance_expired"
    assert warning.detail["who"] == "tech"
    assert warning.detail["mode"] == "calibration"
    assert guard.expired(subjects, T0 + 1000) == []


def test_repeated_maintenance_raises_a_warning() -> None:
    mon = monitor()
    guard = ModeGuard(_limits(repeat_limit=2))
    subjects = {"fume-01": mon}
    warnings = []
    for n in range(4):
        for mode in (Mode.MAINTENANCE, Mode.NORMAL):
            at = T0 + n * 10 + (0 if mode is Mode.MAINTENANCE else 5)
            request = ModeRequest(
                sensor_id="fume-01", mode=mode, who="tech", why="again", requested_at=at
            )
            before = mon.mode
            event = apply_request(subjects, request)
            assert event is not None
            warnings += guard.after(event, before=before, request=request)
    assert [w.kind for w in warnings] == ["maintenance_repeated"] * 2
    assert warnings[0].detail["entries"] == 3


def test_entries_from_before_a_restart_still_count() -> None:
    mon = monitor()
    guard = ModeGuard(_limits(repeat_limit=2))
    assert guard.seed_window_s() == 1000.0
    guard.seed("fume-01", T0 - 500)
    guard.seed("fume-01", T0 - 2000)  # outside the window: forgotten at the next entry
    guard.seed("fume-01", T0 - 100)
    request = ModeRequest(
        sensor_id="fume-01", mode=Mode.MAINTENANCE, who="tech", why="again", requested_at=T0
    )
    before = mon.mode
    event = apply_request({"fume-01": mon}, request)
    assert event is not None
    (warning,) = guard.after(event, before=before, request=request)
    assert warning.detail["entries"] == 3

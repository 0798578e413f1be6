"""Pure lifecycle and window-value tests, including Hypothesis properties."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.aggregate import energy, leq
from sensors.rules import (
    Action,
    Aggregate,
    Level,
    Limit,
    Phase,
    RuleState,
    Timing,
    WindowStats,
    WindowValue,
    classify,
    exceedance_detail,
    period_at,
    step,
    window_value,
)

from .conftest import NO_DELAY, upper_limit

W = 60.0


def run(limit, timing, values, flags=None):
    """Feed one value per 60 s window; return the actions and final state."""
    state = RuleState()
    actions = []
    for i, v in enumerate(values):
        wv = WindowValue(start=i * W, end=(i + 1) * W, value=v, flags=flags or ())
        state, action = step(limit, timing, state, wv)
        actions.append(action)
    return actions, state


# --- Leq ------------------------------------------------------------------------------


def test_leq_is_energy_average_not_arithmetic_mean():
    assert leq([60.0, 60.0]) == pytest.approx(60.0)
    assert leq([50.0, 70.0]) == pytest.approx(67.03, abs=0.01)  # arithmetic mean says 60
    assert leq([80.0] + [40.0] * 99) == pytest.approx(60.04, abs=0.01)  # one loud second
    with pytest.raises(ValueError, match="undefined"):
        leq([])


levels = st.lists(st.floats(min_value=0, max_value=140, allow_nan=False), min_size=1, max_size=50)


@given(levels)
def test_leq_between_min_and_max(values):
    stats = WindowStats(
        n=len(values),
        total=sum(values),
        energy=sum(energy(v) for v in values),
        vmax=max(values),
        vmin=min(values),
        last=values[-1],
    )
    value = window_value(Aggregate.LEQ, stats)
    assert min(values) <= value <= max(values)
    assert value >= window_value(Aggregate.MEAN, stats) - 1e-9  # Leq ≥ arithmetic mean
    assert min(values) - 1e-9 <= leq(values) <= max(values) + 1e-9


def test_window_value_aggregates_and_efficiency():
    stats = WindowStats(n=2, total=3.0, vmax=2.0, vmin=1.0, last=2.0)
    assert window_value(Aggregate.MEAN, stats) == 1.5
    assert window_value(Aggregate.MAX, stats) == 2.0
    assert window_value(Aggregate.MIN, stats) == 1.0
    assert window_value(Aggregate.LAST, stats) == 2.0
    assert window_value(Aggregate.MEAN, WindowStats()) is None
    inlet = WindowStats(n=1, total=10.0, vmax=10.0, vmin=10.0, last=10.0)
    assert window_value(Aggregate.EFFICIENCY, stats, inlet) == pytest.approx(85.0)
    assert window_value(Aggregate.EFFICIENCY, stats, WindowStats()) is None
    zero = WindowStats(n=1, total=0.0, vmax=0.0, vmin=0.0, last=0.0)
    assert window_value(Aggregate.EFFICIENCY, stats, zero) is None


@pytest.mark.parametrize(
    ("hhmm", "period"),
    [
        ("05:59", "night"),
        ("06:00", "day"),
        ("21:59", "day"),
        ("22:00", "night"),
        ("00:00", "night"),
    ],
)
def test_day_night_boundaries(hhmm, period):
    h, m = map(int, hhmm.split(":"))
    assert period_at(h * 3600 + m * 60, 6 * 3600, 22 * 3600) == period


def test_redefined_hours():
    # e.g. a local government whose night starts at 23:00 and day at 07:00
    assert period_at(22.5 * 3600, 7 * 3600, 23 * 3600) == "day"
    assert period_at(6.5 * 3600, 7 * 3600, 23 * 3600) == "night"


# --- lifecycle ------------------------------------------------------------------------


def test_open_update_close_with_peak_and_duration():
    limit = upper_limit(60, 3)
    actions, state = run(limit, NO_DELAY, [55, 62, 65, 63, 58, 56])
    assert actions == [
        Action.NONE,
        Action.OPEN,
        Action.UPDATE,
        Action.NONE,
        Action.NONE,
        Action.CLOSE,
    ]
    assert state.phase is Phase.IDLE
    assert state.peak == 65
    assert state.breach_since == W
    assert state.clear_since == 5 * W
    detail = exceedance_detail(limit, state, WindowValue(start=5 * W, end=6 * W, value=56), {})
    assert detail["duration_s"] == 4 * W
    assert detail["peak_excess"] == 5
    assert detail["peak_excess_ratio"] == pytest.approx(5 / 60)
    assert detail["clause"] == "test clause"


def test_min_duration_delays_and_filters_short_breaches():
    limit = upper_limit(60, 3)
    timing = Timing(min_duration_s=180, update_every_s=1e9)
    actions, _ = run(limit, timing, [61, 61, 50, 61, 61, 61, 50])
    assert actions.count(Action.OPEN) == 1
    assert actions.index(Action.OPEN) == 5  # third consecutive breaching window
    # a deadband value resets a pending breach: it was not a continuous exceedance
    actions, _ = run(limit, timing, [61, 61, 59, 61, 61])
    assert Action.OPEN not in actions


def test_clear_duration_requires_sustained_clear():
    limit = upper_limit(60, 3)
    timing = Timing(clear_duration_s=120, update_every_s=1e9)
    actions, _ = run(limit, timing, [61, 50, 61, 50, 50])
    assert actions == [Action.OPEN, Action.NONE, Action.NONE, Action.NONE, Action.CLOSE]


def test_periodic_update_while_breach_lasts():
    limit = upper_limit(60, 3)
    timing = Timing(update_every_s=120)
    actions, _ = run(limit, timing, [61, 61, 61, 61, 61])
    assert actions == [Action.OPEN, Action.NONE, Action.UPDATE, Action.NONE, Action.UPDATE]


def test_lower_bound_and_range_peaks():
    do = Limit(
        quantity="DO",
        unit="mg/L",
        lower=5.0,
        upper=None,
        clear_lower=5.25,
        clear_upper=None,
        severity=upper_limit().severity,
        profile="p",
        standard="s",
        clause="c",
    )
    actions, state = run(do, NO_DELAY, [6, 4.9, 3.0, 4.0, 6])
    assert actions.count(Action.OPEN) == 1
    assert state.peak == 3.0
    ph = Limit(
        quantity="pH",
        unit="pH",
        lower=6.0,
        upper=9.0,
        clear_lower=6.3,
        clear_upper=8.55,
        severity=do.severity,
        profile="p",
        standard="s",
        clause="c",
    )
    actions, state = run(ph, NO_DELAY, [7, 9.5, 5.0, 9.2, 7])
    assert actions.count(Action.OPEN) == 1  # one excursion, both sides: one event
    assert state.peak == 5.0  # 1.0 below beats 0.5 above
    assert classify(ph, 7.0) is Level.CLEAR


def test_flagged_windows_never_open_or_close():
    limit = upper_limit(60, 3)
    # no valid data: value None (all readings flagged), flags counted
    state = RuleState()
    for i in range(10):
        wv = WindowValue(start=i * W, end=(i + 1) * W, value=None, flags=(("M", 5),))
        state, action = step(limit, NO_DELAY, state, wv)
        assert action is Action.NONE
    assert state.phase is Phase.IDLE
    # an open event survives a maintenance gap and counts its flags
    state, action = step(limit, NO_DELAY, RuleState(), WindowValue(start=0, end=W, value=70))
    assert action is Action.OPEN
    state, action = step(
        limit, NO_DELAY, state, WindowValue(start=W, end=2 * W, value=None, flags=(("C", 3),))
    )
    assert action is Action.NONE
    assert state.phase is Phase.ACTIVE
    assert dict(state.flags) == {"C": 3}


# --- properties ---------------------------------------------------------------------------

LIMIT = upper_limit(60, 3)
values = st.lists(
    st.one_of(st.floats(min_value=40, max_value=80), st.none()), min_size=1, max_size=80
)


@settings(max_examples=300, deadline=None)
@given(values, st.sampled_from([0.0, 60.0, 180.0]), st.sampled_from([0.0, 60.0, 120.0]))
def test_no_flapping(seq, min_duration, clear_duration):
    """At most one OPEN per excursion: between two OPENs the value was clear long enough."""
    timing = Timing(
        min_duration_s=min_duration, clear_duration_s=clear_duration, update_every_s=1e9
    )
    actions, _ = run(LIMIT, timing, seq)
    opens = [i for i, a in enumerate(actions) if a is Action.OPEN]
    closes = [i for i, a in enumerate(actions) if a is Action.CLOSE]
    # OPEN and CLOSE alternate, starting with OPEN
    events = sorted([(i, "o") for i in opens] + [(i, "c") for i in closes])
    assert all(kind == ("o" if k % 2 == 0 else "c") for k, (_, kind) in enumerate(events))
    for i in opens:
        assert seq[i] is not None  # an OPEN needs a valid breach
        assert seq[i] > 60
    for i in closes:
        assert seq[i] is not None  # a CLOSE needs a valid clear value
        assert seq[i] <= 57
    for a, b in itertools.pairwise(opens):
        between = [v for v in seq[a:b] if v is not None]
        assert any(v <= 57 for v in between)  # went back below the clear threshold


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=57.01, max_value=80), min_size=1, max_size=80))
def test_oscillation_above_clear_threshold_opens_at_most_once(seq):
    actions, _ = run(LIMIT, NO_DELAY, seq)
    assert actions.count(Action.OPEN) <= 1
    assert Action.CLOSE not in actions

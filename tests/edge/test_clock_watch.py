"""The clock watch: sync state, steps either way, trust and the receipt-time correction.

The sync flag and the wall clock are fakes (changing the real ones needs root); the
monotonic clock is a fake too, so every step is exactly what the test says.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from edge.clock_watch import ClockConfig, ClockWatch


@dataclass
class FakeClocks:
    """A wall clock that can be stepped, a monotonic clock and a sync flag."""

    wall_s: float = 1_700_000_000.0
    mono_s: float = 100.0
    synced: bool | None = False

    def advance(self, seconds: float) -> None:
        self.wall_s += seconds
        self.mono_s += seconds

    def watch(self, *, hold: bool = True, tolerance: float = 1.0) -> ClockWatch:
        watch = ClockWatch(
            source=lambda: self.synced,
            wall=lambda: self.wall_s,
            mono=lambda: self.mono_s,
            hold_until_synced=hold,
            step_tolerance_s=tolerance,
        )
        watch.start()
        return watch


def test_unsynced_at_start_is_untrusted_until_the_owner_trusts_it_after_sync():
    clocks = FakeClocks(synced=False)
    watch = clocks.watch()
    assert (watch.state, watch.trusted, watch.synced()) == ("unsynced", False, False)
    clocks.advance(1)
    assert watch.check() == []
    clocks.synced = True
    clocks.advance(1)
    (change,) = watch.check()
    assert change.kind == "clock_synchronised"
    assert change.detail == {"before": "unsynced", "first": True, "trusted_before": False}
    # Trust comes from the owner, after it replayed what was held (see trusted_time).
    assert watch.trusted is False
    watch.trust()
    assert (watch.state, watch.trusted, watch.synced()) == ("synced", True, True)


def test_without_hold_an_unsynced_clock_is_trusted_but_records_say_unsynced():
    watch = FakeClocks(synced=False).watch(hold=False)
    assert watch.trusted is True
    assert watch.synced() is False


def test_an_unknown_sync_state_is_trusted_there_is_nothing_to_wait_for():
    watch = FakeClocks(synced=None).watch(hold=True)
    assert (watch.state, watch.trusted, watch.synced()) == ("unknown", True, None)


def test_a_forward_step_with_the_sync_is_reported_first_then_the_sync():
    clocks = FakeClocks(synced=False)
    watch = clocks.watch()
    clocks.advance(2)
    clocks.wall_s += 3 * 86400  # NTP steps the clock three days forward, then says synced
    clocks.synced = True
    step, sync = watch.check()
    assert step.kind == "clock_step"
    assert step.detail["direction"] == "forward"
    assert step.detail["step_s"] == 3 * 86400
    assert step.detail["synced"] is True
    assert sync.kind == "clock_synchronised"
    assert watch.last_step is not None
    assert watch.last_step["at"] == clocks.wall_s
    assert watch.steps == 1


def test_a_backward_step_while_synced_is_reported():
    clocks = FakeClocks(synced=True)
    watch = clocks.watch()
    clocks.advance(1)
    clocks.wall_s -= 30
    (step,) = watch.check()
    assert (step.kind, step.detail["direction"], step.detail["step_s"]) == (
        "clock_step",
        "back",
        -30,
    )


def test_losing_sync_is_reported_and_keeps_trust():
    clocks = FakeClocks(synced=True)
    watch = clocks.watch()
    clocks.synced = False
    clocks.advance(1)
    (change,) = watch.check()
    assert change.kind == "clock_unsynchronised"
    assert watch.trusted is True
    assert watch.synced() is False


def test_corrected_receipt_time_is_wall_at_sync_minus_the_monotonic_distance():
    clocks = FakeClocks(synced=False, wall_s=1_000_000.0, mono_s=50.0)
    watch = clocks.watch()
    received_wall, received_mono = clocks.wall_s, clocks.mono_s
    clocks.advance(120)
    clocks.wall_s += 86400.0  # the true time was a day later than the clock said
    clocks.synced = True
    watch.check()
    assert watch.corrected(received_wall, received_mono) == received_wall + 86400.0


def test_before_any_sync_the_receipt_time_is_left_as_it_was():
    watch = FakeClocks(synced=False).watch()
    assert watch.corrected(123.0, 4.0) == 123.0


def test_from_config_takes_the_policy():
    clocks = FakeClocks(synced=False)
    watch = ClockWatch.from_config(
        ClockConfig(hold_until_synced=True, step_tolerance_s=5), source=lambda: clocks.synced
    )
    assert (watch.hold_until_synced, watch.step_tolerance_s, watch.trusted) == (True, 5, False)


@given(
    moves=st.lists(
        st.tuples(
            st.floats(min_value=0.0, max_value=600.0),
            st.floats(min_value=-1e6, max_value=1e6),
        ),
        min_size=1,
        max_size=30,
    ),
    tolerance=st.floats(min_value=0.01, max_value=100.0),
)
def test_a_step_is_reported_exactly_when_the_jump_exceeds_the_tolerance(moves, tolerance):
    clocks = FakeClocks(synced=True)
    watch = clocks.watch(tolerance=tolerance)
    expected = 0
    for elapsed, jump in moves:
        clocks.advance(elapsed)
        clocks.wall_s += jump
        changes = watch.check()
        # Float arithmetic on the wall clock: stay clear of the boundary itself.
        if abs(abs(jump) - tolerance) < 1e-3:
            expected = watch.steps
            continue
        stepped = abs(jump) > tolerance
        expected += stepped
        assert [c.kind for c in changes] == (["clock_step"] if stepped else [])
    assert watch.steps == expected

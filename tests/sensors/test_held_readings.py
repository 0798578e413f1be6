"""Readings received while the clock is not trusted: stored, held from judgement, replayed.

The batch builder is real; the monitor is a recorder of what it was told (the one thing
checked is what reaches judgement, and when); the clock watch runs on fake clocks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from helpers import gateway_config, sensor

from edge.batch import REFUSED, UNTRUSTED
from edge.clock_watch import ClockWatch
from sensors.batch_builder import BatchBuilder

T0 = 1_699_999_980.0  # the wrong wall clock at receipt (a minute start)
DAY = 86400.0


@dataclass
class Recorder:
    """A ReadingMonitor that records every call."""

    calls: list[tuple[str, str, float, str | None, float]] = field(default_factory=list)
    forced_flag: str | None = None

    def observe(self, quantity: str, value: float, flag: str, ts: float) -> None:
        self.calls.append(("observe", quantity, value, flag, ts))

    def out_of_range(self, quantity: str, value: float, ts: float) -> None:
        self.calls.append(("out_of_range", quantity, value, None, ts))


@dataclass
class Clocks:
    wall_s: float = T0
    mono_s: float = 10.0
    synced: bool = False

    def watch(self) -> ClockWatch:
        watch = ClockWatch(
            source=lambda: self.synced,
            wall=lambda: self.wall_s,
            mono=lambda: self.mono_s,
            hold_until_synced=True,
        )
        watch.start()
        return watch


def _builder(tmp_path, watch, recorder, hold_limit=1000, **ingest):
    noise = sensor("noise-01", "t/noise")
    plain = sensor("plain-01", "t/plain", decoder={"type": "json", "fields": {"LA": "la"}})
    config = gateway_config(tmp_path / "g.db", sensors=[noise, plain], ingest=ingest or {})
    monitors = {"noise-01": recorder, "plain-01": recorder}
    return BatchBuilder(config, monitors=monitors, clock=watch, hold_limit=hold_limit)


def _sync(clocks: Clocks, watch: ClockWatch, after_s: float, true_offset_s: float) -> None:
    """NTP syncs ``after_s`` later and finds the clock ``true_offset_s`` behind."""
    clocks.wall_s += after_s + true_offset_s
    clocks.mono_s += after_s
    clocks.synced = True
    kinds = [c.kind for c in watch.check()]
    assert "clock_synchronised" in kinds


def test_untrusted_readings_are_stored_counted_and_held_then_judged_with_true_times(tmp_path):
    clocks, recorder = Clocks(), Recorder()
    watch = clocks.watch()
    builder = _builder(tmp_path, watch, recorder)
    builder.accept("t/plain", b'{"la": 55}', T0 + 1, 11.0)
    builder.accept("t/plain", b'{"la": 150}', T0 + 2, 12.0)  # out of range: held as such
    builder.accept("t/plain", b'{"la": 56}', T0 + 3, 13.0)
    batch = builder.cut()
    # Stored exactly as with a trusted clock (acknowledged after this commits) ...
    assert batch.aggregates[("plain-01", "LA", "N", T0)][:4] == [2, 55.0, 56.0, 111.0]
    assert batch.quality[("plain-01", "LA", T0)] == [1, 2]  # 1 refused, 2 untrusted
    # ... but nothing was judged.
    assert recorder.calls == []
    assert len(builder.held) == 3

    _sync(clocks, watch, after_s=100.0, true_offset_s=DAY)
    released = builder.release(watch.corrected)
    watch.trust()
    assert (released.replayed, released.skew_refused, released.not_judged) == (3, 0, 0)
    assert released.offset_s == DAY
    # In arrival order, at wall_at_sync − (mono_at_sync − mono_at_receipt).
    assert recorder.calls == [
        ("observe", "LA", 55.0, "N", T0 + 1 + DAY),
        ("out_of_range", "LA", 150.0, None, T0 + 2 + DAY),
        ("observe", "LA", 56.0, "N", T0 + 3 + DAY),
    ]
    assert len(builder.held) == 0
    # Trusted now: judged straight away, untrusted counts stop.
    builder.accept("t/plain", b'{"la": 57}', clocks.wall_s, clocks.mono_s)
    assert recorder.calls[-1] == ("observe", "LA", 57.0, "N", clocks.wall_s)
    assert builder.cut().quality == {}


def test_a_device_time_far_from_the_untrusted_clock_is_kept_and_judged_by_the_true_one(tmp_path):
    clocks, recorder = Clocks(), Recorder()
    watch = clocks.watch()
    builder = _builder(tmp_path, watch, recorder)
    # The sensor's own clock is right: a day after ours. With a trusted clock that would
    # break ingest.max_skew_s; untrusted, it is only checked to be a plausible date.
    right = T0 + DAY + 5
    late = T0 - 30 * DAY  # a device clock a month behind: refused once the truth is known
    builder.accept("t/noise", json.dumps({"la": 60, "ts": right * 1000}).encode(), T0 + 5, 15.0)
    builder.accept("t/noise", json.dumps({"la": 61, "ts": late * 1000}).encode(), T0 + 6, 16.0)
    builder.accept("t/noise", json.dumps({"la": 62, "ts": 1000}).encode(), T0 + 7, 17.0)
    batch = builder.cut()
    minute = int(right // 60) * 60
    assert batch.aggregates[("noise-01", "LA", "N", minute)][0] == 1
    assert len(batch.dead_letters) == 1  # 1970 is no plausible date under any clock
    assert "device time 1970-01-01" in batch.dead_letters[0].reason
    assert batch.quality[("noise-01", "LA", int((T0 + 7) // 60) * 60)][REFUSED] == 1

    _sync(clocks, watch, after_s=10.0, true_offset_s=DAY)
    released = builder.release(watch.corrected)
    assert (released.replayed, released.skew_refused) == (1, 1)
    assert recorder.calls == [("observe", "LA", 60.0, "N", right)]


def test_the_held_buffer_is_bounded_and_what_it_drops_is_counted(tmp_path):
    clocks, recorder = Clocks(), Recorder()
    watch = clocks.watch()
    builder = _builder(tmp_path, watch, recorder, hold_limit=3)
    for i in range(5):
        builder.accept("t/plain", json.dumps({"la": 50 + i}).encode(), T0 + i, 10.0 + i)
    batch = builder.cut()
    assert batch.aggregates[("plain-01", "LA", "N", T0)][0] == 5  # all stored
    assert (len(builder.held), builder.held.not_judged) == (3, 2)
    _sync(clocks, watch, after_s=1.0, true_offset_s=0.0)
    released = builder.release(watch.corrected)
    assert (released.replayed, released.not_judged) == (3, 2)
    assert [c[2] for c in recorder.calls] == [52.0, 53.0, 54.0]  # the newest were kept


def test_refused_values_are_counted_per_quantity_and_minute_with_a_trusted_clock(tmp_path):
    recorder = Recorder()
    builder = BatchBuilder(
        gateway_config(tmp_path / "g.db", sensors=[sensor("noise-01", "t/noise")]),
        monitors={"noise-01": recorder},
    )
    ts = (T0 + 1) * 1000
    builder.accept("t/noise", json.dumps({"la": 200, "ts": ts}).encode(), T0 + 1)  # range
    builder.accept("t/noise", b"not json", T0 + 2)  # decoding: the whole message
    builder.accept("t/noise", json.dumps({"la": 60, "ts": ts + 10 * DAY * 1000}).encode(), T0 + 3)
    builder.accept("t/noise", json.dumps({"la": 60, "ts": ts}).encode(), T0 + 4)
    batch = builder.cut()
    assert batch.quality == {("noise-01", "LA", T0): [3, 0]}
    assert batch.aggregates[("noise-01", "LA", "N", T0)][0] == 1
    # A trusted clock judges at once; nothing is held.
    assert [c[0] for c in recorder.calls] == ["out_of_range", "observe"]
    assert len(builder.held) == 0


def test_quality_counts_survive_a_failed_commit_merge(tmp_path):
    clocks, recorder = Clocks(), Recorder()
    builder = _builder(tmp_path, clocks.watch(), recorder)
    builder.accept("t/plain", b'{"la": 55}', T0 + 1, 11.0)
    first = builder.cut()
    builder.accept("t/plain", b'{"la": 500}', T0 + 2, 12.0)
    first.absorb(builder.cut())
    assert first.quality[("plain-01", "LA", T0)] == [1, 1]
    assert first.quality[("plain-01", "LA", T0)][UNTRUSTED] == 1

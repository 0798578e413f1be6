"""From received MQTT messages to a batch ready to commit (no I/O).

:class:`BatchBuilder` routes a message by topic to its sensor, decodes, calibrates and
range-checks it, folds the readings into minute aggregates and parks anything wrong as a
dead letter. :meth:`BatchBuilder.cut` hands over everything gathered since the last cut as one
:class:`Batch`, which the store commits in one transaction.

Device time is bounded: a reading stamped more than ``ingest.max_skew_s`` after or
``ingest.max_lateness_s`` before its receive time is a dead letter, so no device clock can
move the judging windows, or put a minute no date type can hold into the store.

Trusted time (``edge.clock_watch``): while the wall clock is not trusted, a reading is
stored as always (counted per minute as received under an untrusted clock) but its
monitor calls are held (``sensors.held``) with the monotonic receipt time, and a device
time is only checked to be a plausible date: the skew rules are applied when the held
readings are released against the corrected receipt time. Values refused (decoding,
range, device time) are counted per sensor, quantity and minute for the data rates.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Protocol

from edge.aggregate import add_reading, new_accumulator
from edge.batch import REFUSED, UNTRUSTED, Batch, DeadLetter, SensorActivity
from edge.events import Event
from sensors.config import SensorConfig, SensorsSetup
from sensors.decoders import Decoder, decoder_for
from sensors.errors import DecodeError
from sensors.held import HeldReading, HeldReadings, Release

PLAUSIBLE_TIME = (946_684_800.0, 4_102_444_800.0)
"""[2000-01-01, 2100-01-01) UTC: what a device time must be while our clock is untrusted."""


class _Quantity:
    __slots__ = ("energy", "gain", "high", "low", "offset")

    def __init__(self, gain: float, offset: float, low: float, high: float, energy: bool) -> None:
        self.gain = gain
        self.offset = offset
        self.low = low
        self.high = high
        self.energy = energy


class ReadingMonitor(Protocol):
    """What the batch builder tells a sensor's standards monitor (see ``sensors.monitor``).

    ``observe`` runs on the hot path for every stored reading, so it must be O(1).
    """

    @property
    def forced_flag(self) -> str | None:
        """A data flag to force onto readings (``M`` in maintenance, ``C`` calibrating)."""
        ...

    def observe(self, quantity: str, value: float, flag: str, ts: float) -> None:
        """One stored reading: calibrated value, data flag, device time."""
        ...

    def out_of_range(self, quantity: str, value: float, ts: float) -> None:
        """One calibrated value outside the instrument's physical range."""
        ...


class ClockGate(Protocol):
    """Whether readings may be judged now (``edge.clock_watch.ClockWatch``)."""

    trusted: bool


class _Channel:
    """One sensor's compiled decoding and calibration."""

    __slots__ = ("decode", "history", "monitor", "names", "quantities", "sensor_id")

    def __init__(self, sensor: SensorConfig, history: int, monitor: ReadingMonitor | None) -> None:
        self.sensor_id = sensor.id
        self.monitor = monitor
        self.decode: Decoder = decoder_for(sensor)
        self.quantities = {
            q.name: _Quantity(
                q.calibration.gain, q.calibration.offset, q.range[0], q.range[1], q.energy_average
            )
            for q in sensor.quantities
        }
        self.history: deque[tuple[float, str, float, str]] = deque(maxlen=history)
        self.names = tuple(self.quantities)


class BatchBuilder:
    """Stateful, single-threaded message screening and aggregation."""

    def __init__(
        self,
        config: SensorsSetup,
        *,
        monitors: Mapping[str, ReadingMonitor] | None = None,
        clock: ClockGate | None = None,
        hold_limit: int = 50_000,
    ) -> None:
        monitors = monitors or {}
        self._channels = {
            s.topic: _Channel(s, config.store.raw_history, monitors.get(s.id))
            for s in config.sensors
        }
        self._max_payload = config.ingest.max_payload_bytes
        self._keep_bytes = config.ingest.dead_letter_payload_bytes
        self._max_skew = config.ingest.max_skew_s
        self._max_lateness = config.ingest.max_lateness_s
        self._batch = Batch()
        self._clock = clock
        self.held = HeldReadings(
            hold_limit, max_skew_s=self._max_skew, max_lateness_s=self._max_lateness
        )
        self.dead_letter_total = 0
        self.reading_total = 0

    def history(self, sensor_id: str) -> list[tuple[float, str, float, str]]:
        """Last raw readings of a sensor: (timestamp, quantity, value, flag), oldest first."""
        for channel in self._channels.values():
            if channel.sensor_id == sensor_id:
                return list(channel.history)
        raise KeyError(sensor_id)

    def add_events(self, events: Iterable[Event]) -> None:
        """Queue events to be committed with the current batch."""
        self._batch.events.extend(events)

    def cut(self) -> Batch:
        """Hand over the batch gathered so far and start a new one."""
        batch, self._batch = self._batch, Batch()
        return batch

    def release(self, corrected: Callable[[float, float], float]) -> Release:
        """Judge the readings held while the clock was untrusted (see ``sensors.held``)."""
        return self.held.release(corrected)

    def _refuse(
        self, channel: _Channel, topic: str, reason: str, payload: bytes, now: float
    ) -> None:
        """Dead-letter a whole message, counted as one refused value of each quantity."""
        minute = int(now // 60) * 60
        for name in channel.names:
            self._batch.count_quality((channel.sensor_id, name, minute), REFUSED)
        self._dead(topic, channel.sensor_id, reason, payload, now)

    def _time_ok(self, timestamp: float, now: float, untrusted: bool) -> bool:
        """Whether a device time may be used: within the skew rules of a trusted clock;
        while ours is untrusted (it may be days off), any plausible date (the skew rules
        are applied when the held readings are released)."""
        if untrusted:
            return PLAUSIBLE_TIME[0] <= timestamp < PLAUSIBLE_TIME[1]
        return now - self._max_lateness <= timestamp <= now + self._max_skew

    def _dead(
        self, topic: str, sensor_id: str | None, reason: str, payload: bytes, now: float
    ) -> None:
        self.dead_letter_total += 1
        self._batch.dead_letters.append(
            DeadLetter(
                received_at=now,
                topic=topic,
                sensor_id=sensor_id,
                reason=reason,
                payload=payload[: self._keep_bytes],
            )
        )
        if sensor_id is not None:
            activity = self._activity(sensor_id)
            activity.dead_letters += 1
            activity.last_seen = now

    def _activity(self, sensor_id: str) -> SensorActivity:
        activity = self._batch.activity.get(sensor_id)
        if activity is None:
            activity = self._batch.activity[sensor_id] = SensorActivity()
        return activity

    def sensor_of(self, topic: str) -> str | None:
        """The id of the sensor configured for ``topic`` (None: no sensor)."""
        channel = self._channels.get(topic)
        return None if channel is None else channel.sensor_id

    def internal_error(self, topic: str, payload: bytes, exc: BaseException, now: float) -> str:
        """Park a message whose screening raised unexpectedly; return the dead letter's reason.

        Readings of the message folded before the failure stay folded: the dead letter
        says the message was not handled completely.
        """
        reason = f"internal error: {type(exc).__name__}: {str(exc)[:200]}"
        # The message may quote the payload; a lone surrogate would fail the commit itself.
        reason = reason.encode("utf-8", "backslashreplace").decode("utf-8")
        self._dead(topic, self.sensor_of(topic), reason, payload, now)
        return reason

    def _time_refused(self, timestamp: float, now: float) -> str:
        """Why a device time outside [now - max_lateness, now + max_skew] is refused."""
        try:
            shown = datetime.fromtimestamp(timestamp, UTC).isoformat()
        except (ValueError, OverflowError, OSError):  # years no datetime can hold, NaN
            shown = f"{timestamp:g} s"
        if timestamp > now:
            return (
                f"device time {shown} is {timestamp - now:.6g} s after the receive time; "
                f"ingest.max_skew_s is {self._max_skew:g}"
            )
        return (
            f"device time {shown} is {now - timestamp:.6g} s before the receive time; "
            f"ingest.max_lateness_s is {self._max_lateness:g}"
        )

    def accept(
        self,
        topic: str,
        payload: bytes,
        received_at: float | None = None,
        mono: float | None = None,
    ) -> None:
        """Screen one message and fold it into the current batch. Never raises on bad input.

        ``received_at`` is the wall time of receipt and ``mono`` the monotonic one (what
        corrects the receipt time of a reading held while the clock was untrusted).
        """
        now = time.time() if received_at is None else received_at
        untrusted = self._clock is not None and not self._clock.trusted
        batch = self._batch
        batch.messages += 1
        channel = self._channels.get(topic)
        if channel is None:
            self._dead(topic, None, "no sensor is configured for this topic", payload, now)
            return
        sensor_id = channel.sensor_id
        if len(payload) > self._max_payload:
            reason = f"payload of {len(payload)} bytes exceeds the {self._max_payload}-byte limit"
            self._refuse(channel, topic, reason, payload, now)
            return
        try:
            device_ts, values, problems = channel.decode(payload)
        except DecodeError as exc:
            self._refuse(channel, topic, str(exc), payload, now)
            return
        if device_ts is not None and not self._time_ok(device_ts, now, untrusted):
            self._refuse(channel, topic, self._time_refused(device_ts, now), payload, now)
            return
        timestamp = now if device_ts is None else device_ts
        aggregates = batch.aggregates
        activity = self._activity(sensor_id)
        minute = int(timestamp // 60) * 60
        forced = None if channel.monitor is None else channel.monitor.forced_flag
        # Untrusted clock: stored and acknowledged as always, judged once it is trusted.
        monitor = (
            self._hold(channel, values, device_ts, now, mono) if untrusted else channel.monitor
        )
        for name, raw, payload_flag in values:
            q = channel.quantities[name]
            value = raw * q.gain + q.offset
            if not (q.low <= value <= q.high) or not math.isfinite(value):
                problems.append(
                    f"{name}: calibrated value {value:g} outside the physical range "
                    f"[{q.low:g}, {q.high:g}]"
                )
                batch.count_quality((sensor_id, name, minute), REFUSED)
                if monitor is not None:
                    monitor.out_of_range(name, value, timestamp)
                continue
            # A technician's maintenance/calibration mode overrides the device's flag.
            flag = payload_flag if forced is None else forced
            key = (sensor_id, name, flag, minute)
            acc = aggregates.get(key)
            if acc is None:
                aggregates[key] = new_accumulator(value, q.energy)
            else:
                add_reading(acc, value, q.energy)
            activity.readings += 1
            activity.last_values[name] = (value, flag, timestamp)
            channel.history.append((timestamp, name, value, flag))
            if monitor is not None:
                monitor.observe(name, value, flag, timestamp)
            elif untrusted:
                batch.count_quality((sensor_id, name, minute), UNTRUSTED)
        self.reading_total += len(values)
        activity.last_seen = now
        if problems:
            self._dead(topic, sensor_id, "; ".join(problems), payload, now)

    def _hold(
        self,
        channel: _Channel,
        values: list[tuple[str, float, str]],
        device_ts: float | None,
        now: float,
        mono: float | None,
    ) -> ReadingMonitor | None:
        """Hold a message's monitor calls until the clock is trusted (same screening).

        Returns the monitor the caller is to feed directly: none, meanwhile.
        """
        monitor = channel.monitor
        if monitor is None:
            return None
        received_mono = time.monotonic() if mono is None else mono
        forced = monitor.forced_flag
        for name, raw, payload_flag in values:
            q = channel.quantities[name]
            value = raw * q.gain + q.offset
            in_range = q.low <= value <= q.high and math.isfinite(value)
            flag = (payload_flag if forced is None else forced) if in_range else None
            self.held.hold(HeldReading(received_mono, now, monitor, name, value, flag, device_ts))
        return None

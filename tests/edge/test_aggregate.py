import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.aggregate import add_reading, leq, level_from_energy, merge, new_accumulator

levels = st.lists(st.floats(min_value=0, max_value=140, allow_nan=False), min_size=1, max_size=200)


def test_leq_is_energy_average_not_arithmetic_mean():
    # 50 dB and 70 dB for equal time: Leq ≈ 67.0 dB, far above the arithmetic mean of 60.
    assert leq([50.0, 70.0]) == pytest.approx(10 * math.log10((10**5 + 10**7) / 2))
    assert leq([50.0, 70.0]) == pytest.approx(67.03, abs=0.01)


def test_leq_of_constant_level_is_that_level():
    assert leq([63.2] * 10) == pytest.approx(63.2)


@given(levels)
def test_leq_between_min_and_max_and_not_below_mean(values):
    result = leq(values)
    assert min(values) - 1e-9 <= result <= max(values) + 1e-9
    assert result >= sum(values) / len(values) - 1e-9  # energy mean ≥ arithmetic mean


@given(levels)
def test_accumulator_matches_direct_computation(values):
    acc = new_accumulator(values[0], energy_on=True)
    for v in values[1:]:
        add_reading(acc, v, energy_on=True)
    assert acc[0] == len(values)
    assert acc[1] == min(values)
    assert acc[2] == max(values)
    assert acc[3] / acc[0] == pytest.approx(sum(values) / len(values))
    assert level_from_energy(acc[4], acc[0]) == pytest.approx(leq(values), abs=1e-6)


@given(levels, levels)
def test_merge_equals_accumulating_everything(a, b):
    def fold(values):
        acc = new_accumulator(values[0], energy_on=True)
        for v in values[1:]:
            add_reading(acc, v, energy_on=True)
        return acc

    merged = merge(fold(a), fold(b))
    whole = fold(a + b)
    assert merged[:3] == whole[:3]
    assert merged[3] == pytest.approx(whole[3])
    assert merged[4] == pytest.approx(whole[4])


def test_arithmetic_accumulator_skips_energy():
    acc = new_accumulator(7.0, energy_on=False)
    add_reading(acc, 8.0, energy_on=False)
    assert acc == [2, 7.0, 8.0, 15.0, 0.0]

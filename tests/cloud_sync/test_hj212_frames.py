"""HJ 212 frame building and platform answers, checked against HJ 212-2017's tables."""

from __future__ import annotations

import datetime as dt
import math
import re

import pytest
from hj212_fakes import minute_item as item
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud_sync.hj212_frames import (
    FLAG_RANK,
    CodeBook,
    QnClock,
    build_packets,
    combine,
    data_items,
    default_st,
    format_value,
    realtime_items,
)
from cloud_sync.minutes import minute_bodies
from edge.aggregate import energy, leq
from edge.hj212 import parse_frame

BEIJING = dt.timezone(dt.timedelta(hours=8))
MN = "010000A8900016F000169DC0"
QN_RE = re.compile(r"^\d{17}$")


# --- ST, codes, formats ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "profile", "st_code"),
    [
        ("water", "gb3838-2002", "21"),  # surface-water quality
        ("gas", "gb18483-2001", "31"),  # catering fume: air pollution source
        ("gas", "db11-1488-2018", "31"),
        ("noise", "gb3096-2008", "23"),  # acoustic-environment quality
        ("noise", None, "23"),
        ("soil", "gb15618-2018", "25"),
        ("gas", "particulate-voc", "22"),
        ("gas", None, "22"),
        ("", None, "22"),
    ],
)
def test_st_by_profile_then_kind(kind, profile, st_code):
    assert default_st(kind, profile) == st_code


def test_values_use_each_codes_decimals():
    book = CodeBook(codes={"pH": "w01001", "LA": "LA"}, decimals={"a99999": 0})
    assert book.fmt("w01001", 7.123456) == "7.12"  # pH N2.2
    assert book.fmt("Leq", 55.04) == "55.0"  # noise N3.1
    assert book.fmt("w21003", 0.5) == "0.50"  # NH3-N N4.2
    assert book.fmt("a99999", 3.6) == "4"  # configured
    assert book.fmt("fume", 1.23456) == "1.235"  # no national code: default 3
    assert format_value(-0.0001, 2) == "0.00"
    with pytest.raises(ValueError, match="cannot be sent"):
        format_value(math.nan, 1)


def test_ph_goes_out_under_its_national_code():
    body = {"items": [item("pH", "N", [7.0, 7.2])]}
    cp = dict(data_items(body, CodeBook(codes={"pH": "w01001"})))
    assert cp == {
        "w01001-Min": "7.00",
        "w01001-Avg": "7.10",
        "w01001-Max": "7.20",
        "w01001-Flag": "N",
    }
    assert "pH-Avg" not in cp


def test_noise_goes_out_as_the_standards_noise_items():
    levels = [50.0, 60.0, 55.0]
    body = {"items": [item("LA", "N", levels, sound=True)]}
    cp = dict(data_items(body, CodeBook()))
    assert cp["Leq-Data"] == f"{leq(levels):.1f}"
    assert cp["LMx-Data"] == "60.0"
    assert cp["LMn-Data"] == "50.0"
    assert cp["Leq-Flag"] == cp["LMx-Flag"] == cp["LMn-Flag"] == "N"
    assert not any(k.startswith("LA-") for k in cp)
    # A minute's Leq is not an instantaneous level: no LA-Rtd in the 2011 frame.
    assert realtime_items(body, CodeBook()) == []


# --- flags -----------------------------------------------------------------------------


def test_fifty_n_and_ten_m_keeps_the_maintenance_flag():
    body = {"items": [item("LA", "N", [55.0] * 50), item("LA", "M", [80.0] * 10)]}
    cp = dict(data_items(body, CodeBook()))
    assert cp["LA-Avg"] == "55.0"  # values of the N readings only, LA is N3.1
    assert cp["LA-Max"] == "55.0"
    assert cp["LA-Flag"] == "N"
    assert cp["LA-EFlag"] == "M"  # the maintenance data did not vanish


def test_only_flagged_readings_report_the_worst_flag():
    body = {"items": [item("pH", "M", [7.0]), item("pH", "D", [1.0]), item("pH", "C", [9.0])]}
    cp = dict(data_items(body, CodeBook(codes={"pH": "w01001"})))
    assert cp["w01001-Flag"] == "D"
    assert cp["w01001-Avg"] == "1.00"
    assert cp["w01001-EFlag"] == "CM"


def test_over_range_dominates_normal_and_keeps_its_values():
    c = combine([item("x", "N", [5.0, 6.0]), item("x", "T", [20.0])])
    assert (c.flag, c.eflag, c.count, c.hi) == ("T", "N", 3, 20.0)
    assert c.avg == pytest.approx(31.0 / 3)


flag_counts = st.dictionaries(st.sampled_from(FLAG_RANK), st.integers(1, 100), min_size=1)


@settings(max_examples=300, deadline=None)
@given(flag_counts, st.floats(0, 140), st.booleans())
def test_no_flag_is_ever_lost(counts, base, sound):
    # Through the real minute pipeline: aggregate rows per flag -> minute body -> frame.
    rows = []
    for flag, count in counts.items():
        values = [base + n % 7 for n in range(count)]
        power = sum(energy(v) for v in values) if sound else 0.0
        rows.append(("s", "LA", flag, 60, count, min(values), max(values), sum(values), power))
    (body,) = minute_bodies(rows)
    items = body["items"]
    wide = combine(items, eflag_chars=7)
    reported = wide.flag + wide.eflag
    # Every flag present is reported exactly once, worst first after the carried flag.
    assert sorted(reported) == sorted(counts)
    assert list(wide.eflag) == sorted(wide.eflag, key=FLAG_RANK.index)
    # The carried flag: T if any, else N if any, else the worst present.
    if "T" in counts:
        assert wide.flag == "T"
    elif "N" in counts:
        assert wide.flag == "N"
    else:
        assert wide.flag == min(counts, key=FLAG_RANK.index)
    evidence = {f: n for f, n in counts.items() if f in "NT"}
    assert wide.count == (sum(evidence.values()) if evidence else counts[wide.flag])
    # Within the standard's C4 -EFlag up to five flags fit; beyond, the worst are kept.
    std = combine(items)
    assert std.flag == wide.flag
    assert std.eflag == wide.eflag[:4]
    # And the frame carries them, in a frame that parses back.
    cp = dict(data_items(body, CodeBook(eflag_chars=7)))
    prefix = "Leq" if sound and wide.leq is not None else "LA"
    assert cp[f"{prefix}-Flag"] + cp.get(f"{prefix}-EFlag", "") == reported
    frame = parse_frame(
        build_packets(
            cn="2051", qn="20240101000000000", st="23", pw="123456", mn=MN,
            when="20240101000000", items=list(cp.items()), ack=True,
        )[0]
    )  # fmt: skip
    assert frame.cp[f"{prefix}-Flag"] == wide.flag


# --- QN, packets ----------------------------------------------------------------------


def test_qn_is_local_time_with_millis_and_unique():
    clock = QnClock(8.0)
    now = dt.datetime(2024, 5, 1, 23, 59, 59, 998000, tzinfo=BEIJING).timestamp()
    qns = [clock.next(now) for _ in range(4)]
    assert qns == [
        "20240501235959998",
        "20240501235959999",
        "20240502000000000",
        "20240502000000001",
    ]
    assert all(QN_RE.match(q) for q in qns)
    assert clock.next(now - 10) > qns[-1]  # a clock step back never repeats a QN


def test_split_packets_keep_each_value_with_its_flag():
    items = []
    for n in range(60):
        items += [(f"a{n:05d}-Avg", "123.456"), (f"a{n:05d}-Flag", "N"), (f"a{n:05d}-EFlag", "M")]
    packets = build_packets(
        cn="2051", qn="20240101000000000", st="22", pw="123456", mn=MN,
        when="20240101000000", items=items, ack=True,
    )  # fmt: skip
    assert len(packets) > 1
    for packet in packets:
        frame = parse_frame(packet)
        assert frame.header["Flag"] == "7"
        codes = {k.rsplit("-", 1)[0] for k in frame.cp if k != "DataTime"}
        for code in codes:
            assert {f"{code}-Avg", f"{code}-Flag", f"{code}-EFlag"} <= set(frame.cp)


# --- platform requests ------------------------------------------------------------------

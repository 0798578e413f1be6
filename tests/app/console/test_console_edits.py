"""The pure parts of the console's config edits: the commissioning form and preview, zone
polygons, the YAML the console writes, and the checked save (on real files)."""

from __future__ import annotations

import json
import math

import pytest
import yaml
from helpers import gateway_dict, sensor
from hypothesis import given
from hypothesis import strategies as st

from edge.app.console import commission, zones
from edge.app.console.camera_view import shown_source
from edge.app.console.commission import FormError, Message
from edge.app.console.config_save import EditRefusedError, dump, propose, save, sha256_text

ROW = {"name": "DO", "unit": "mg/L", "low": "0", "high": "20", "source": "v.do"}


def _form(decoder: str = "json", **rows: dict[str, str]) -> dict[str, str]:
    form = {"id": "water-07", "kind": "water", "topic": "site/water/07", "decoder": decoder}
    for row, values in rows.items():
        form.update({f"{row}_{k}": v for k, v in {"gain": "1", "offset": "0", **values}.items()})
    return form


def test_the_form_becomes_a_sensor_entry_that_validates():
    form = _form(q0=ROW, q1={**ROW, "name": "pH", "unit": "pH", "high": "14", "source": "v.ph"})
    form.update(timestamp="t", timestamp_format="epoch_ms")
    entry = commission.sensor_entry(form)
    assert entry["decoder"] == {
        "type": "json",
        "fields": {"DO": "v.do", "pH": "v.ph"},
        "timestamp": "t",
        "timestamp_format": "epoch_ms",
    }
    sensor_config = commission.sensor_of(entry)
    assert [q.name for q in sensor_config.quantities] == ["DO", "pH"]


def test_an_incomplete_form_names_each_problem():
    with pytest.raises(FormError) as caught:
        commission.sensor_entry(_form(q0={**ROW, "low": "x", "source": ""}))
    assert caught.value.problems == [
        "quantity DO: range min: 'x' is not a number",
        "quantity DO: the JSON path is required",
    ]
    with pytest.raises(FormError, match="at least one quantity"):
        commission.sensor_entry(_form())
    with pytest.raises(FormError, match="min < max"):
        commission.sensor_of(commission.sensor_entry(_form(q0={**ROW, "low": "30"})))


def test_the_preview_decodes_calibrates_and_range_checks_as_the_gateway_does():
    entry = commission.sensor_entry(_form(q0={**ROW, "gain": "1.1", "offset": "0.1"}))
    sensor_config = commission.sensor_of(entry)
    messages = [
        Message(received_at=1.0, payload=b'{"v": {"do": 6.8}}'),
        Message(received_at=2.0, payload=b'{"v": {"do": 30}}'),
        Message(received_at=3.0, payload=b'{"v": {"ph": 7}}'),
        Message(received_at=4.0, payload=b"not json"),
    ]
    good, high, missing, broken = commission.preview(sensor_config, messages)
    assert math.isclose(good.values[0].value, 7.58)
    assert good.problems == []
    assert not high.values[0].in_range
    assert high.problems == ["DO: calibrated value 33.1 outside the physical range [0, 20]"]
    assert missing.problems == ["DO: field missing"]
    assert broken.values == []
    assert broken.problems[0].startswith("invalid JSON")


def test_fields_offered_to_map_from_json_and_hj212():
    assert commission.fields_of(b'{"v": {"do": 6.8}, "list": [1, 2]}') == [
        ("v.do", "6.8"),
        ("list.0", "1"),
        ("list.1", "2"),
    ]
    assert commission.fields_of(b"[" * 100) == []
    frame = b"##0124QN=20261128140300000;ST=31;CN=2011;PW=123456;MN=FUME0001;Flag=4;CP=&&DataTime=20261128140300;a34098-Rtd=0.82,a34098-Flag=N&&4C80\r\n"
    assert ("a34098-Rtd", "0.82") in commission.fields_of(frame)
    assert commission.guess_decoder(frame) == "hj212"
    assert commission.guess_decoder(b" 57.5") == "number"


@given(st.binary(max_size=300))
def test_any_payload_is_previewed_without_raising(payload):
    sensor_config = commission.sensor_of(commission.sensor_entry(_form(q0=ROW)))
    (row,) = commission.preview(sensor_config, [Message(received_at=0.0, payload=payload)])
    assert row.values or row.problems
    commission.fields_of(payload)


def test_polygons_must_be_three_to_64_points_inside_the_frame():
    assert zones.parse_polygon("[[0, 0], [10.4, 0], [10, 9.6]]", (320, 240)) == [
        [0, 0],
        [10, 0],
        [10, 10],
    ]
    for text, reason in (
        ("[[0, 0], [1, 1]]", "3 to 64 points"),
        ("[[0, 0], [400, 0], [1, 1]]", "outside the frame"),
        ("[[0, 0], [true, 0], [1, 1]]", "two numbers"),
        ("{}", "list of"),
        ("nope", "not a list"),
    ):
        with pytest.raises(ValueError, match=reason):
            zones.parse_polygon(text, (320, 240))
    with pytest.raises(ValueError, match="zone name"):
        zones.check_name("a zone")


def test_a_zone_is_added_replaced_or_removed_in_the_config_data():
    data = {"vision": {"cameras": [{"id": "k1", "zones": [{"name": "a", "polygon": []}]}]}}
    zones.set_zone(data, "k1", "b", [[0, 0], [1, 0], [1, 1]])
    zones.set_zone(data, "k1", "a", [[2, 2], [3, 2], [3, 3]])
    assert data["vision"]["cameras"][0]["zones"] == [
        {"name": "a", "polygon": [[2, 2], [3, 2], [3, 3]]},
        {"name": "b", "polygon": [[0, 0], [1, 0], [1, 1]]},
    ]
    zones.set_zone(data, "k1", "a", None)
    assert [z["name"] for z in data["vision"]["cameras"][0]["zones"]] == ["b"]
    with pytest.raises(EditRefusedError, match="no zone 'a'"):
        zones.set_zone(data, "k1", "a", None)
    with pytest.raises(EditRefusedError, match="no camera 'k2'"):
        zones.set_zone(data, "k2", "a", [[0, 0], [1, 0], [1, 1]])


# Config text is printable: PyYAML itself mangles control characters such as NEL (\x85).
text = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), max_size=10)
yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=20,
)


@given(st.dictionaries(text, yaml_values, max_size=5))
def test_the_yaml_the_console_writes_reads_back_the_same(data):
    assert yaml.safe_load(dump(data)) == data


def test_points_and_ranges_are_written_one_per_line(tmp_path):
    text = dump({"range": [0, 14], "polygon": [[0, 0], [40, 30]]})
    assert text == "range: [0, 14]\npolygon:\n- [0, 0]\n- [40, 30]\n"


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "gateway.yaml"
    data = gateway_dict(tmp_path / "g.db", sensors=[sensor("noise-01", "t/noise")])
    path.write_text("# a comment\n" + yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def test_an_edit_is_checked_as_config_check_checks_a_file(config_file):
    before = config_file.read_text()
    with pytest.raises(EditRefusedError) as caught:
        propose(config_file, lambda data: data["sensors"].append(dict(data["sensors"][0])))
    (problem,) = caught.value.problems
    assert problem.startswith(f"{config_file}:")
    assert "sensor ids repeat: ['noise-01']" in problem
    with pytest.raises(EditRefusedError, match=r"broker\.port"):
        propose(config_file, lambda data: data["broker"].update(port=70000))
    assert config_file.read_text() == before


def test_a_saved_edit_shows_its_diff_and_keeps_the_old_file(config_file):
    before = config_file.read_text()
    new = sensor("noise-02", "t/noise2")
    proposal = propose(config_file, lambda data: data["sensors"].append(new))
    assert proposal.changed
    assert "+- id: noise-02" in proposal.diff
    assert not any(line.startswith("-") and "comment" in line for line in proposal.diff)
    with pytest.raises(EditRefusedError, match="changed since"):
        save(proposal, sha256_text("something else"))
    with pytest.raises(EditRefusedError, match="not the one reviewed"):
        save(proposal, sha256_text(before), sha256_text("another change"))
    save(proposal, sha256_text(before), sha256_text(proposal.text))
    assert config_file.with_name("gateway.yaml.bak").read_text() == before
    saved = yaml.safe_load(config_file.read_text())
    assert [s["id"] for s in saved["sensors"]] == ["noise-01", "noise-02"]


def test_a_pending_remote_config_blocks_a_console_save(config_file):
    proposal = propose(config_file, lambda data: data["sensors"].append(sensor("n2", "t/n2")))
    config_file.with_name("gateway.yaml.pending").write_text(json.dumps({"command_id": "c"}))
    with pytest.raises(EditRefusedError, match="remote config change"):
        save(proposal, proposal.base_sha256)


def test_camera_passwords_are_not_shown():
    assert shown_source("rtsp://admin:secret@10.0.0.5:554/s2") == "rtsp://admin:***@10.0.0.5:554/s2"
    assert shown_source("/var/clip.mp4") == "/var/clip.mp4"
    assert shown_source(0) == "USB camera 0"

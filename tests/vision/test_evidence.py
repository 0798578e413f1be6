from __future__ import annotations

import hashlib
import logging
import os

import cv2
import numpy as np

from vision.config import EvidenceConfig
from vision.detector import Detection
from vision.evidence import EvidenceStore, blur_heads


def _img(seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)


def _det(name="rodent"):
    return Detection(x1=40, y1=40, x2=120, y2=200, score=0.9, class_id=0, class_name=name)


def test_snapshot_named_by_sha256_and_annotated(tmp_path):
    store = EvidenceStore(EvidenceConfig(), tmp_path)
    img = _img()
    snap = store.save(img, [_det()], highlight=_det(), caption="cam rodent")
    data = snap.path.read_bytes()
    assert snap.sha256 == hashlib.sha256(data).hexdigest()
    assert snap.path == tmp_path / snap.sha256[:2] / f"{snap.sha256}.jpg"
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == img.shape
    # the red box is drawn on the left edge of the detection; the input is untouched
    b, g, r = decoded[120, 40].astype(int)
    assert r > 180
    assert max(g, b) < 80
    assert not np.array_equal(img[120, 40], decoded[120, 40])
    assert list(tmp_path.rglob("*.tmp")) == []


def test_face_blur_blurs_only_the_head(tmp_path):
    img = _img(1)
    out = img.copy()
    blur_heads(out, [_det("person")], ["person"], 0.25)
    head = (slice(40, 80), slice(40, 120))
    body = (slice(90, 200), slice(40, 120))
    assert out[head].std() < img[head].std() * 0.6
    assert np.array_equal(out[body], img[body])
    out2 = img.copy()
    blur_heads(out2, [_det("rodent")], ["person"], 0.25)
    assert np.array_equal(out2, img)


def _fill(store, n):
    snaps = []
    for i in range(n):
        s = store.save(_img(i), [], highlight=None, caption=str(i))
        os.utime(s.path, (1000 + i, 1000 + i))  # deterministic age order
        snaps.append(s)
    return snaps


def test_quota_deletes_delivered_first_then_oldest_undelivered_loudly(tmp_path, caplog):
    one = (
        EvidenceStore(EvidenceConfig(), tmp_path / "probe")
        .save(_img(0), [], highlight=None, caption="0")
        .size
    )
    quota_mb = one * 3.5 / 1024 / 1024  # room for three snapshots
    delivered: set[str] = set()
    store = EvidenceStore(
        EvidenceConfig(quota_mb=quota_mb), tmp_path / "ev", is_delivered=delivered.__contains__
    )
    snaps = _fill(store, 3)
    delivered.add(snaps[1].sha256)
    with caplog.at_level(logging.ERROR, logger="vision.evidence"):
        fourth = store.save(_img(3), [], highlight=None, caption="3")
    # over quota by one: the delivered one goes, not the older undelivered one
    assert not snaps[1].path.exists()
    assert snaps[0].path.exists()
    assert fourth.path.exists()
    assert not caplog.records
    with caplog.at_level(logging.ERROR, logger="vision.evidence"):
        store.save(_img(4), [], highlight=None, caption="4")
    # nothing delivered left: the oldest undelivered goes, with an error in the log
    assert not snaps[0].path.exists()
    assert any("undelivered" in r.getMessage() for r in caplog.records)
    assert sum(p.stat().st_size for p in (tmp_path / "ev").rglob("*.jpg")) <= quota_mb * 2**20


def test_under_quota_nothing_is_deleted(tmp_path):
    store = EvidenceStore(EvidenceConfig(quota_mb=100), tmp_path, is_delivered=lambda _s: True)
    snaps = _fill(store, 3)
    assert all(s.path.exists() for s in snaps)

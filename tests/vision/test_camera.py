from __future__ import annotations

import threading
import time

import numpy as np

from vision.camera import CameraReader, Frame, FrameQueue
from vision.config import CameraConfig, MotionConfig
from vision.motion import GateDecision, GateReason
from vision.synthetic import kitchen_frames, write_clip


def _frame(i):
    gate = GateDecision(infer=True, reason=GateReason.MOTION, motion_fraction=1.0)
    img = np.zeros((2, 2, 3), np.uint8)
    return Frame(camera_id="c", seq=i, ts=float(i), wall=0.0, image=img, gate=gate)


def test_queue_drops_oldest_and_counts():
    woke = []
    q = FrameQueue(2, notify=lambda: woke.append(1))
    for i in range(5):
        q.put(_frame(i))
    assert len(q) == 2
    assert q.dropped == 3
    assert [q.pop_nowait().seq, q.pop_nowait().seq] == [3, 4]
    assert q.pop_nowait() is None
    assert len(woke) == 5


def test_queue_blocking_put_waits_for_space_and_can_be_cancelled():
    q = FrameQueue(1)
    q.put(_frame(0))
    done = threading.Event()

    def producer():
        q.put(_frame(1), drop_oldest=False)
        done.set()

    t = threading.Thread(target=producer)
    t.start()
    assert not done.wait(0.2)
    assert q.pop_nowait().seq == 0
    assert done.wait(2)
    t.join()
    cancel = threading.Event()
    cancel.set()
    assert q.put(_frame(2), drop_oldest=False, cancelled=cancel) is False
    assert q.dropped == 0


def _cam(tmp_path, **kw):
    clip = write_clip(tmp_path / "c.avi", kitchen_frames(40, noise=0), fps=kw.pop("fps", 10))
    return CameraConfig(id="c", source=str(clip), motion=MotionConfig(enabled=False), **kw)


def _drain(reader, q):
    got = []
    while reader.alive or len(q):
        f = q.pop_nowait()
        if f is None:
            time.sleep(0.005)
        else:
            got.append(f)
    return got


def test_reader_samples_a_file_at_the_configured_rate(tmp_path):
    cfg = _cam(tmp_path, sample_fps=5, realtime=False, queue_size=2)
    q = FrameQueue(cfg.queue_size)
    reader = CameraReader(cfg, q)
    reader.start()
    frames = _drain(reader, q)
    reader.join(5)
    assert reader.failure == "end of stream"
    assert reader.decoded == 40
    # every other frame of a 10 fps file, none dropped in replay mode
    assert [f.seq for f in frames] == list(range(1, 41, 2))
    assert [f.ts for f in frames] == [i / 10 for i in range(0, 40, 2)]
    assert q.dropped == 0


def test_realtime_reader_never_builds_a_backlog(tmp_path):
    cfg = _cam(tmp_path, sample_fps=60, realtime=True, queue_size=3, fps=40)
    q = FrameQueue(cfg.queue_size)
    reader = CameraReader(cfg, q)
    reader.start()
    reader.join(5)  # nobody consumes
    assert len(q) == 3
    assert q.dropped == reader.sampled - 3
    assert q.dropped > 20
    # the newest frames are the ones kept
    assert [q.pop_nowait().seq for _ in range(3)] == [38, 39, 40]


def test_reader_reports_open_failure(tmp_path):
    cfg = CameraConfig(id="c", source=str(tmp_path / "missing.avi"))
    reader = CameraReader(cfg, FrameQueue(1))
    reader.start()
    reader.join(5)
    assert reader.failure == "open failed"
    assert reader.last_frame_at is None

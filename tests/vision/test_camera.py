from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from vision.camera import CameraReader, Frame, FrameQueue, pulls_on_demand
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


def _reader_threads():
    return [t.name for t in threading.enumerate() if ".reader#" in t.name]


def test_pulled_reader_reads_a_file_on_demand_without_a_thread(tmp_path):
    cfg = _cam(tmp_path, sample_fps=5, realtime=False)
    q = FrameQueue(1)
    reader = CameraReader(cfg, q, pull=True)
    reader.start()  # nothing to start: the caller's thread reads
    assert _reader_threads() == []
    assert reader.decoded == 0  # nothing is read before it is asked for
    frames = []
    while reader.alive:
        frame = reader.pull()
        if frame is not None:
            frames.append(frame)
    # the same sampling as the threaded reader, and the queue is never used
    assert [f.seq for f in frames] == list(range(1, 41, 2))
    assert [f.ts for f in frames] == [i / 10 for i in range(0, 40, 2)]
    assert reader.decoded == 40
    assert reader.failure == "end of stream"
    assert q.put_count == 0
    assert reader.pull() is None


def test_pulled_reader_reads_ahead_one_frame_at_most(tmp_path):
    cfg = _cam(tmp_path, sample_fps=10, realtime=False)
    reader = CameraReader(cfg, FrameQueue(1), pull=True)
    assert reader.pull().seq == 1
    reader.prefetch()
    reader.prefetch()  # already holds one: reads nothing
    assert reader.decoded == 2
    assert reader.pull().seq == 2
    assert reader.pull().seq == 3
    reader.prefetch()
    reader.stop()
    assert not reader.alive
    assert reader.pull() is None  # a stopped reader drops what it held and closes
    reader.close()


def test_pulled_reader_with_a_static_scene_returns_none_but_stays_alive(tmp_path):
    clip = write_clip(tmp_path / "s.avi", kitchen_frames(120, worker=False, noise=0), fps=10)
    cfg = CameraConfig(
        id="c", source=str(clip), realtime=False, sample_fps=10, motion=MotionConfig(hold_s=0)
    )
    reader = CameraReader(cfg, FrameQueue(1), pull=True)
    assert reader.pull().gate.reason is GateReason.FIRST
    # a static scene: the gate skips everything, each pull reads a bounded number of frames
    assert reader.pull(max_reads=10) is None
    assert reader.decoded == 11
    assert reader.alive
    assert reader.pull(max_reads=200) is not None  # the forced inference after 10 s
    reader.close()


def test_pulled_reader_reports_open_failure(tmp_path):
    cfg = CameraConfig(id="c", source=str(tmp_path / "missing.avi"), realtime=False)
    reader = CameraReader(cfg, FrameQueue(1), pull=True)
    assert reader.pull() is None
    assert reader.failure == "open failed"
    assert not reader.alive


@pytest.mark.parametrize(
    "cfg",
    [
        CameraConfig(id="c", source="rtsp://10.0.0.9/stream"),
        CameraConfig(id="c", source=0),
        CameraConfig(id="c", source="clip.avi", realtime=True),
    ],
)
def test_live_sources_cannot_be_pulled(cfg):
    assert not pulls_on_demand(cfg)
    with pytest.raises(ValueError, match="on demand"):
        CameraReader(cfg, FrameQueue(1), pull=True)

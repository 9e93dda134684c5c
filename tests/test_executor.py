"""Executor behaviour: errors, flow-control policies, batching, replicas, end of stream."""

from __future__ import annotations

import threading
import uuid

import pytest

from pipeline.core.errors import NodeError
from pipeline.core.executor import RunStatus
from pipeline.kit.testing import run_graph

from .helpers import Record


def key() -> str:
    return uuid.uuid4().hex


def source(frames: int, **extra) -> dict:
    return {"plugin": "testsrc", "width": 32, "height": 32, "fps": 100,
            "duration": frames / 100, **extra}


def test_skip_drops_exactly_the_failing_frame() -> None:
    k = key()
    result = run_graph({"nodes": {
        "src": source(20),
        "boom": {"python": "tests.helpers:FailOn", "input": "src", "index": 7,
                 "on_error": "skip"},
        "out": {"python": "tests.helpers:Record", "input": "boom", "key": k}}})
    assert result.status is RunStatus.OK
    assert [f.index for f in Record.seen[k]] == [i for i in range(20) if i != 7]
    assert result.metrics.nodes["boom"].skipped == 1


def test_skip_inside_a_batch_keeps_the_other_frames() -> None:
    k = key()
    run_graph({"nodes": {
        "src": source(20),
        "boom": {"python": "tests.helpers:FailOn", "input": "src", "index": 5,
                 "on_error": "skip", "batch_size": 4},
        "out": {"python": "tests.helpers:Record", "input": "boom", "key": k}}})
    assert [f.index for f in Record.seen[k]] == [i for i in range(20) if i != 5]


def test_fail_stops_the_graph_and_names_node_and_frame() -> None:
    k = key()
    result = run_graph({"nodes": {
        "src": source(200),
        "boom": {"python": "tests.helpers:FailOn", "input": "src", "index": 3},
        "out": {"python": "tests.helpers:Record", "input": "boom", "key": k}}})
    assert result.status is RunStatus.FAILED
    assert isinstance(result.error, NodeError)
    assert str(result.error) == ("node 'boom' on frame 3 of stream 'src' (pts 3): "
                                 "ValueError: boom at 3")
    # Frames before the failure were delivered; the sink got end-of-stream and closed.
    assert [f.index for f in Record.seen[k]] == [0, 1, 2]


def test_block_keeps_queues_bounded_and_loses_nothing() -> None:
    k = key()
    result = run_graph({"nodes": {
        "src": source(150, width=320, height=240),
        "slow": {"plugin": "identity", "input": "src", "delay_ms": 2, "queue_size": 4},
        "out": {"python": "tests.helpers:Record", "input": "slow", "key": k,
                "queue_size": 4}}})
    slow = result.metrics.nodes["slow"].snapshot()
    assert slow["queue_depth_max"] <= 4
    assert slow["drops"] == 0
    assert len(Record.seen[k]) == 150


def test_drop_oldest_counts_every_drop() -> None:
    k = key()
    result = run_graph({"nodes": {
        "src": source(200),
        "slow": {"plugin": "identity", "input": "src", "delay_ms": 5, "queue_size": 2,
                 "policy": "drop_oldest"},
        "out": {"python": "tests.helpers:Record", "input": "slow", "key": k}}})
    slow = result.metrics.nodes["slow"].snapshot()
    assert slow["drops"] > 50
    assert slow["queue_depth_max"] <= 2
    # Nothing vanishes silently: every frame was either processed or counted as dropped.
    assert slow["frames_in"] + slow["drops"] == 200
    assert len(Record.seen[k]) == slow["frames_in"]
    indices = [f.index for f in Record.seen[k]]
    assert indices == sorted(indices) and indices[-1] == 199  # the newest frame got through


def test_batches_are_at_most_batch_size() -> None:
    k, sizes = key(), key()
    run_graph({"nodes": {
        "src": source(100),
        "batch": {"python": "tests.helpers:BatchRecorder", "input": "src", "key": sizes,
                  "batch_size": 8, "batch_timeout_ms": 50, "delay_ms": 5, "queue_size": 32},
        "out": {"python": "tests.helpers:Record", "input": "batch", "key": k}}})
    assert max(Record.seen[sizes]) == 8
    assert all(1 <= n <= 8 for n in Record.seen[sizes])
    assert sum(Record.seen[sizes]) == 100
    assert [f.index for f in Record.seen[k]] == list(range(100))


def test_replicas_keep_order() -> None:
    k = key()
    result = run_graph({"nodes": {
        "src": source(120),
        "work": {"python": "tests.helpers:Jitter", "input": "src", "key": k, "jitter_ms": 4,
                 "replicas": 4},
        "out": {"python": "tests.helpers:Record", "input": "work", "key": k}}})
    assert result.status is RunStatus.OK
    assert [f.index for f in Record.seen[k]] == list(range(120))
    assert result.metrics.nodes["work"].frames_in == 120


def test_flush_runs_before_close_on_every_replica() -> None:
    k = key()
    result = run_graph({"nodes": {
        "src": source(40),
        "hold": {"python": "tests.helpers:HoldLast", "input": "src", "key": k, "replicas": 3},
        "out": {"python": "tests.helpers:Record", "input": "hold", "key": k}}})
    assert result.status is RunStatus.OK, result.error
    # Every frame comes out exactly once: the held ones from flush(), before end of stream.
    assert sorted(f.index for f in Record.seen[k]) == list(range(40))


def test_fan_out_delivers_every_frame_to_each_consumer() -> None:
    a, b = key(), key()
    run_graph({"nodes": {
        "src": source(30),
        "one": {"python": "tests.helpers:Record", "input": "src", "key": a},
        "two": {"python": "tests.helpers:Record", "input": "src", "key": b}}})
    assert len(Record.seen[a]) == len(Record.seen[b]) == 30


def test_stop_drains_and_finishes_cleanly() -> None:
    from pipeline.core import config
    from pipeline.core.executor import Executor
    from pipeline.core.graph import build_graph
    from pipeline.core.registry import Registry

    k = key()
    doc = config.loads(f"""
nodes:
  src: {{plugin: testsrc, width: 32, height: 32, fps: 100, duration: 0, realtime: true}}
  out: {{python: "tests.helpers:Record", input: src, key: {k}}}
""")
    executor = Executor(build_graph(doc, Registry.from_entry_points(), allow_python=True))
    threading.Timer(0.3, executor.stop).start()
    result = executor.run()
    assert result.status is RunStatus.INTERRUPTED
    frames = Record.seen[k]
    assert 10 < len(frames) < 100
    assert [f.index for f in frames] == list(range(len(frames)))


def test_open_failure_closes_nodes_already_opened(tmp_path) -> None:
    with pytest.raises(NodeError, match="node 'src': No such file or directory"):
        run_graph({"nodes": {
            "out": {"plugin": "jsonl_sink", "input": "src", "path": str(tmp_path / "x.jsonl")},
            "src": {"plugin": "video_source", "url": str(tmp_path / "missing.mp4")}}})


def test_a_failing_replica_does_not_hang_the_others() -> None:
    k = key()
    result = run_graph({"nodes": {
        "src": source(200),
        "boom": {"python": "tests.helpers:FailOn", "input": "src", "index": 50, "replicas": 4,
                 "delay_ms": 5},
        "out": {"python": "tests.helpers:Record", "input": "boom", "key": k}}})
    assert result.status is RunStatus.FAILED
    assert "on frame 50" in str(result.error)
    # Everything before the failing frame, in order; nothing after it.
    assert [f.index for f in Record.seen[k]] == list(range(50))

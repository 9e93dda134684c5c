"""Streams through the runtime: start and end markers in order with the frames, state that
belongs to a stream (freed when it ends, one replica per stream), on_error: skip without
feeding a frame twice, and stages called by the method they override."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections import defaultdict

import pytest

from pipeline.core import config
from pipeline.core.errors import GraphError
from pipeline.core.executor import Executor, RunStatus, stream_owner
from pipeline.core.graph import build_graph
from pipeline.core.registry import Registry
from pipeline.kit.testing import run_graph

from .conftest import ROOT
from .helpers import Record


def key() -> str:
    return uuid.uuid4().hex


def events(k: str) -> list[tuple[int, str, str, int | None]]:
    return Record.seen.get(k, [])


def test_each_stream_starts_before_its_first_frame_and_ends_after_its_last() -> None:
    k, out = key(), key()
    result = run_graph({"nodes": {
        "src": {"python": "tests.helpers:ManyStreams", "streams": 3, "frames": 8,
                "end_early": True},
        "work": {"python": "tests.helpers:PerStream", "input": "src", "key": k},
        "out": {"python": "tests.helpers:Record", "input": "work", "key": out}}})
    assert result.status is RunStatus.OK, result.error
    seen = events(k)
    for stream in ("s0", "s1", "s2"):
        mine = [(e, i) for _, e, s, i in seen if s == stream]
        assert mine[0] == ("started", None) and mine[-1] == ("ended", None)
        frames = [i for e, i in mine if e == "frame"]
        assert frames == list(range(4 if stream == "s0" else 8))
        assert [e for e, _ in mine].count("ended") == 1
    # s0 was ended by its source halfway, while the others went on
    ended_s0 = seen.index(next(x for x in seen if x[1:3] == ("ended", "s0")))
    later = [x for x in seen[ended_s0:] if x[1] == "frame"]
    assert later and all(x[2] != "s0" for x in later)
    assert result.metrics.nodes["work"].snapshot()["streams_held"] == 0


def test_stateful_replicas_keep_every_stream_on_one_instance_in_order() -> None:
    k, out = key(), key()
    result = run_graph({"nodes": {
        "src": {"python": "tests.helpers:ManyStreams", "streams": 6, "frames": 20},
        "work": {"python": "tests.helpers:PerStream", "input": "src", "key": k,
                 "replicas": 3, "jitter_ms": 2, "batch_size": 3},
        "out": {"python": "tests.helpers:Record", "input": "work", "key": out}}})
    assert result.status is RunStatus.OK, result.error
    owners: dict[str, set[int]] = defaultdict(set)
    order: dict[str, list[int]] = defaultdict(list)
    for instance, event, stream, index in events(k):
        owners[stream].add(instance)
        if event == "frame":
            order[stream].append(index)
    assert all(len(instances) == 1 for instances in owners.values()), owners
    assert len({next(iter(i)) for i in owners.values()}) > 1  # the work was shared out
    assert all(indices == list(range(20)) for indices in order.values())
    # and each stream leaves in its own order
    delivered: dict[str, list[int]] = defaultdict(list)
    for frame in Record.seen[out]:
        delivered[frame.stream].append(frame.index)
    assert dict(delivered) == {f"s{s}": list(range(20)) for s in range(6)}


def test_stream_owner_is_stable_and_spreads_streams() -> None:
    assert stream_owner("cam-7", 4) == stream_owner("cam-7", 4)
    assert len({stream_owner(f"cam{i}", 4) for i in range(40)}) == 4
    run = subprocess.run([sys.executable, "-c", "from pipeline.core.executor import "
                          "stream_owner; print(stream_owner('cam-7', 4))"],
                         capture_output=True, text=True, cwd=ROOT, check=True)
    assert int(run.stdout) == stream_owner("cam-7", 4)  # the same in another process


def test_a_node_with_state_across_streams_cannot_have_replicas() -> None:
    doc = config.loads("""nodes:
  src: {python: "tests.helpers:ManyStreams"}
  work:
    python: "tests.helpers:SharedState"
    input: src
    replicas: 2
  out: {plugin: null_sink, input: work}
""", "g.yaml")
    with pytest.raises(GraphError) as err:
        build_graph(doc, Registry.from_entry_points(), allow_python=True)
    assert str(err.value).startswith("g.yaml:6:15: node 'work': shared_state keeps state "
                                     "shared by all streams")


def test_skip_never_feeds_a_frame_twice_to_a_stateful_node() -> None:
    k, out = key(), key()
    result = run_graph({"nodes": {
        "src": {"python": "tests.helpers:ManyStreams", "streams": 1, "frames": 20},
        "work": {"python": "tests.helpers:PerStream", "input": "src", "key": k, "fail_on": 5,
                 "on_error": "skip", "batch_size": 4, "queue_size": 16,
                 "batch_timeout_ms": 200},
        "out": {"python": "tests.helpers:Record", "input": "work", "key": out}}})
    assert result.status is RunStatus.OK
    seen = [i for _, e, _, i in events(k) if e == "frame"]
    assert sorted(seen) == list(range(20)) and len(set(seen)) == 20  # each exactly once
    delivered = [f.index for f in Record.seen[out]]
    skipped = result.metrics.nodes["work"].skipped
    assert 5 not in delivered and skipped >= 1 and len(delivered) + skipped == 20


def test_skip_retries_a_stateless_batch_frame_by_frame() -> None:
    out = key()
    result = run_graph({"nodes": {
        "src": {"python": "tests.helpers:ManyStreams", "streams": 1, "frames": 20},
        "boom": {"python": "tests.helpers:FailOn", "input": "src", "index": 5,
                 "on_error": "skip", "batch_size": 4},
        "out": {"python": "tests.helpers:Record", "input": "boom", "key": out}}})
    assert [f.index for f in Record.seen[out]] == [i for i in range(20) if i != 5]
    assert result.metrics.nodes["boom"].skipped == 1


def test_batch_only_and_frame_only_stages_are_called_directly() -> None:
    sizes, out = key(), key()
    # BatchRecorder overrides only process_batch, FailOn only process
    result = run_graph({"nodes": {
        "src": {"python": "tests.helpers:ManyStreams", "streams": 1, "frames": 12},
        "batch": {"python": "tests.helpers:BatchRecorder", "input": "src", "key": sizes},
        "frame": {"python": "tests.helpers:FailOn", "input": "batch", "index": -1,
                  "batch_size": 4, "queue_size": 16},
        "out": {"python": "tests.helpers:Record", "input": "frame", "key": out}}})
    assert result.status is RunStatus.OK, result.error
    assert Record.seen[sizes] == [1] * 12  # process_batch, with one frame at a time
    assert [f.index for f in Record.seen[out]] == list(range(12))


def test_the_runtime_imports_no_plugin_and_no_codec() -> None:
    code = ("import sys, pipeline.app.cli, pipeline.app.describe, pipeline.kit.testing, "
            "pipeline.kit.images, pipeline.kit.weights, pipeline.core.executor; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('av', 'cv2', 'plugins', 'numba')); print(bad); sys.exit(bool(bad))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT)
    assert run.returncode == 0, run.stdout + run.stderr


def test_states_are_counted_while_streams_run_and_freed_when_they_end() -> None:
    k = key()
    doc = config.loads(f"""nodes:
  src: {{python: "tests.helpers:ManyStreams", streams: 4, frames: 6}}
  work: {{python: "tests.helpers:PerStream", input: src, key: {k}}}
  out: {{plugin: null_sink, input: work}}
""")
    executor = Executor(build_graph(doc, Registry.from_entry_points(), allow_python=True))
    peak = []
    original = executor._emit

    def watch(node, result):  # type: ignore[no-untyped-def]
        peak.append(executor.streams_held()["work"])
        original(node, result)

    executor._emit = watch  # type: ignore[method-assign]
    assert executor.run().status is RunStatus.OK
    assert max(peak) == 4 and executor.streams_held()["work"] == 0

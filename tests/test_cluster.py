"""Scale-out on Ray: the assignment of streams, the graph split between driver and
workers, and real Ray clusters on this machine (``ray`` marker) running cameras and files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.cluster.assignment import Assignment
from pipeline.cluster.command import input_files, tasks
from pipeline.cluster.split import RELAY, split
from pipeline.cluster.worker import temporary_name
from pipeline.core import config
from pipeline.core.errors import ParameterError
from pipeline.core.graph import build_graph
from pipeline.core.registry import Registry
from plugins.media.clips import make_clip

from .conftest import ROOT, RUN, ffprobe, spawn_run, stream, vidgraph
from .live_servers import Camera, wait_for

# -- the assignment ------------------------------------------------------------------------


def entries(*names: str) -> list[dict[str, Any]]:
    return [{"stream": n, "url": f"rtsp://cam/{n}"} for n in names]


def test_streams_are_spread_evenly_and_a_lost_worker_s_streams_move_in_a_new_epoch() -> None:
    plan = Assignment(alive={0, 1, 2})
    events = plan.set_streams(entries(*"abcdef"))
    assert [e["event"] for e in events] == ["assigned"] * 6
    assert [plan.load(w) for w in range(3)] == [2, 2, 2]
    moved = [n for n, p in plan.streams.items() if p.worker == 1]
    events = plan.lose(1, "worker 1 died")
    assert sorted(e["stream"] for e in events) == sorted(moved)
    assert {e["event"] for e in events} == {"reassigned"}
    assert all(plan.streams[n].epoch == 2 and plan.streams[n].worker in (0, 2) for n in moved)
    assert [plan.load(w) for w in range(3)] == [3, 0, 3]
    # the share a worker is told carries the epoch, as the segment of its files
    assert {e["segment"] for e in plan.share(0)} <= {1, 2}
    assert plan.share(1) == []


def test_streams_that_fit_nowhere_are_unassigned_and_placed_when_room_appears() -> None:
    plan = Assignment(limit=1, alive={0, 1})
    plan.set_streams(entries("a", "b"))
    events = plan.set_streams(entries("a", "b", "c"))
    assert events == [{"event": "unassigned", "stream": "c", "reason": "added"}]
    assert plan.unassigned() == ["c"]
    events = plan.set_streams(entries("b", "c"))  # 'a' removed: its worker has room
    assert [e["event"] for e in events] == ["removed", "assigned"]
    assert plan.streams["c"].worker is not None and plan.unassigned() == []
    plan.lose(0, "gone")
    plan.lose(1, "gone")
    assert plan.unassigned() == ["b", "c"]
    events = plan.join(1)
    assert len(events) == 1 and plan.load(1) == 1 and len(plan.unassigned()) == 1


def test_a_worker_restarted_in_place_runs_its_streams_in_a_new_epoch() -> None:
    plan = Assignment(alive={0, 1})
    plan.set_streams(entries("a", "b"))
    events = plan.restart(0)
    assert [(e["stream"], e["epoch"]) for e in events] == [("a", 2)]
    assert plan.share(0) == [{"stream": "a", "url": "rtsp://cam/a", "segment": 2}]
    plan.set_streams([{"stream": "a", "url": "rtsp://cam/a2"}, *entries("b")])
    assert plan.share(0)[0]["segment"] == 3  # a new URL: a new file too


# -- the split -----------------------------------------------------------------------------


def build(text: str) -> Any:
    return build_graph(config.loads(text, "g.yaml"), Registry.from_entry_points())


CAMERAS = """
name: fleet
nodes:
  cams: {plugin: video_source, url: "rtsp://h/{stream}", streams: [a, b, c]}
  small: {plugin: resize, input: cams, width: 64}
  view: {plugin: preview, input: small, port: 0}
  faces: {plugin: mtcnn, input: small, every: 5}
  clips: {plugin: clip_sink, trigger: faces, packets: cams.packets, path: "c/{stream}-{start}.mp4"}
  rec: {plugin: video_sink, packets: cams.packets, path: "r/{stream}.mp4"}
  log: {plugin: jsonl_sink, events: cams.events, path: events.jsonl}
  clip_log: {plugin: jsonl_sink, events: clips.events, path: clips.jsonl}
"""


def test_events_sinks_run_on_the_driver_and_the_rest_on_every_worker() -> None:
    parts = split(build(CAMERAS), "cams")
    assert parts.streams == [{"stream": s, "url": f"rtsp://h/{s}", "segment": 1}
                             for s in "abc"]
    assert parts.driver is not None
    assert set(parts.driver.nodes) == {RELAY, "log", "clip_log"}
    assert {c.src_port for c in parts.driver.connections} == {"cams.events", "clips.events"}
    worker = parts.worker
    assert "log" not in worker.nodes and "clip_log" not in worker.nodes
    assert "view" not in worker.nodes  # listens on a port: workers share machines
    gathered = {c.src + "." + c.src_port for c in worker.connections
                if c.dst.startswith("cluster_gather_")}
    assert gathered == {"cams.events", "clips.events"}
    assert parts.cluster_port == "cams.events"  # the cluster's events go with the cameras'


def test_a_file_every_worker_would_write_is_refused() -> None:
    text = CAMERAS.replace('path: "r/{stream}.mp4"', "path: r/all.mp4")
    with pytest.raises(ParameterError, match=r"node 'rec': path 'r/all.mp4' would be written "
                       r"by every worker"):
        split(build(text), "cams")


def test_each_input_file_is_a_task_and_two_writing_one_output_are_refused(
        tmp_path: Path) -> None:
    for name in ("a.mp4", "b.mp4"):
        (tmp_path / name).write_bytes(b"")
    text = (f"nodes:\n  src: {{plugin: video_source, url: x.mp4}}\n"
            f"  out: {{plugin: video_sink, input: src, path: '{tmp_path}/out/{{stem}}.mkv'}}\n")
    doc = config.loads(text, "g.yaml")
    made = tasks(doc, build(text), str(tmp_path / "*.mp4"))
    assert [t.doc["nodes"]["src"]["url"] for t in made] == [str(tmp_path / n)
                                                              for n in ("a.mp4", "b.mp4")]
    assert made[1].doc["nodes"]["out"]["path"] == f"{tmp_path}/out/b.mkv"
    same = text.replace("{stem}.mkv", "all.mkv")
    with pytest.raises(ParameterError, match="would both write"):
        tasks(config.loads(same, "g.yaml"), build(same), str(tmp_path / "*.mp4"))
    listed = tmp_path / "inputs.txt"
    listed.write_text(f"# films\n{tmp_path / 'b.mp4'}\n\n")
    assert input_files(str(listed)) == [str(tmp_path / "b.mp4")]
    with pytest.raises(ParameterError, match="names no file"):
        input_files(str(tmp_path / "*.mov"))
    assert temporary_name("out/x.mp4", "ab12") == "out/.x.part-ab12.mp4"


def test_inputs_without_a_cluster_and_an_absent_cluster_are_one_line(tmp_path: Path) -> None:
    made = vidgraph("run", "graphs/stylize_file.yaml", "--inputs", "*.mp4")
    assert made.returncode == 1 and "--inputs runs a graph on many files on a cluster" \
        in made.stderr and len(made.stderr.strip().splitlines()) == 1
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    made = subprocess.run([*RUN, "run", str(ROOT / "graphs/cameras.yaml"), "--cluster", "ray"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert made.returncode == 1, made.stderr
    assert made.stderr.strip().splitlines()[-1].startswith(
        "error: --cluster ray: cannot reach a Ray cluster")


def test_without_cluster_ray_is_never_imported(tmp_path: Path) -> None:
    graph = tmp_path / "g.yaml"
    graph.write_text("nodes:\n  src: {plugin: testsrc, duration: 0.2}\n"
                     f"  out: {{plugin: video_sink, input: src, path: '{tmp_path}/o.mp4'}}\n")
    code = ("import sys; from pipeline.app.cli import main; "
            f"status = main(['run', '-q', '{graph}']); print(status, 'ray' in sys.modules)")
    made = subprocess.run([RUN[0], "-c", code], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)
    assert made.stdout.split() == ["0", "False"], made.stderr


# -- real clusters -------------------------------------------------------------------------

def live_graph(path: Path, out: Path, sources: str) -> Path:
    path.write_text(f"""name: fleet
nodes:
  cams:
    plugin: video_source
    read_timeout: 3
{sources}
  rec:
    plugin: video_sink
    packets: cams.packets
    fragmented: true
    path: {out}/{{stream}}.mp4
  log:
    plugin: jsonl_sink
    events: cams.events
    path: {out}/events.jsonl
""")
    return path


def fleet(tmp_path: Path, cameras: Callable[..., Camera],
          names: list[str]) -> tuple[Path, Path]:
    """A graph recording the streams ``names`` of one small camera, and its output folder."""
    camera = cameras(fps=15, audio=False, size=(160, 120), separate=True)
    listed = "".join(f"      - {{stream: {n}, url: '{camera.url}'}}\n" for n in names)
    out = tmp_path / "out"
    return live_graph(tmp_path / "g.yaml", out, f"    sources:\n{listed}"), out


def driver(*args: str) -> subprocess.Popen[str]:
    return spawn_run(*args, env={"RAY_DEDUP_LOGS": "0"}, stderr=subprocess.STDOUT)


def interrupt(proc: subprocess.Popen[str]) -> tuple[int, str]:
    """Ctrl+C the driver; its exit status and what it printed (also printed here, for
    pytest to show when the test fails)."""
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=90)
    print(out)
    return proc.returncode, out


def events(out: Path) -> list[dict[str, Any]]:
    path = out / "events.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def reassigned(out: Path) -> list[dict[str, Any]]:
    return [e for e in events(out) if e["event"] == "reassigned"]


def growing(paths: list[Path], window_s: float = 1.5) -> set[Path]:
    """The files among ``paths`` that exist and grow within ``window_s`` (a file just
    created holds only its header: it does not count)."""
    before = {p: p.stat().st_size for p in paths if p.exists()}
    time.sleep(window_s)
    return {p for p in before if p.stat().st_size > before[p]}


def frames(path: Path) -> int:
    video = stream(ffprobe(path), "video")
    assert video is not None and "nb_read_frames" in video, f"{path}: {video}"
    return int(video["nb_read_frames"])


@pytest.fixture
def ray_nodes() -> Iterator[tuple[Any, list[Any]]]:
    """A real Ray cluster of four nodes on this machine: a head with no CPU (the driver's)
    and three nodes of one CPU each (one worker each)."""
    cluster_utils = pytest.importorskip("ray.cluster_utils")
    cluster = cluster_utils.Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "include_dashboard": False})
    nodes = [cluster.add_node(num_cpus=1) for _ in range(3)]
    cluster.wait_for_nodes()
    try:
        yield cluster, nodes
    finally:
        cluster.shutdown()


@pytest.mark.ray
@pytest.mark.slow
def test_streams_of_a_removed_node_move_to_the_others_within_10_s(
        ray_nodes: tuple[Any, list[Any]], cameras: Callable[..., Camera],
        tmp_path: Path) -> None:
    cluster, nodes = ray_nodes
    names = [f"cam{i}" for i in range(6)]
    graph, out = fleet(tmp_path, cameras, names)
    proc = driver(str(graph), "--cluster", "ray", "--address", cluster.address,
                  "--workers", "3", "--stats", str(tmp_path / "stats.json"))
    try:
        first = [out / f"{n}.mp4" for n in names]
        wait_for(lambda: len(growing(first)) == 6, 60, "all 6 streams recording")
        placed = {e["stream"]: e["worker"] for e in events(out) if e["event"] == "assigned"}
        assert sorted(placed.values()) == [0, 0, 1, 1, 2, 2]
        removed = time.time()
        cluster.remove_node(nodes[1])  # one of the three workers goes with it
        wait_for(lambda: len(reassigned(out)) == 2, 10, "the lost worker's streams moved")
        moved = reassigned(out)
        lost = {e["stream"] for e in moved}
        assert len(lost) == 2 and all(e["epoch"] == 2 for e in moved)
        assert len({placed[s] for s in lost}) == 1  # the streams of one worker

        def back() -> list[float]:  # their first frames on their new workers
            return [e["time"] for e in events(out) if e["event"] == "connected"
                    and e["stream"] in lost and e["time"] > removed]

        first_frames = wait_for(lambda: len(back()) == 2 and back(), 15, "moved streams' frames")
        assert max(first_frames) - removed < 10
        now = [out / (f"{n}-s2.mp4" if n in lost else f"{n}.mp4") for n in names]
        wait_for(lambda: len(growing(now)) == 6, 10, "all 6 streams recording again")
        old = [out / f"{n}.mp4" for n in sorted(lost)]
        assert not growing(old, 1.5), "a moved stream still written by its old worker"
    finally:
        status, printed = interrupt(proc)
    assert status == 130, printed
    for path in [*first, *now]:  # the dead worker's files too: fragmented, playable
        assert frames(path) > 10, path
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert {n: s["epoch"] for n, s in stats["streams"].items()} == {
        n: 2 if n in lost else 1 for n in names}
    gone = {placed[s] for s in lost}
    assert sorted(stats["workers"]) == [f"worker{w}" for w in (0, 1, 2) if w not in gone]


@pytest.mark.ray
@pytest.mark.slow
def test_sources_file_edits_add_and_remove_streams_on_the_cluster(
        cameras: Callable[..., Camera], tmp_path: Path) -> None:
    camera = cameras(fps=15, audio=False, size=(160, 120), separate=True)
    out = tmp_path / "out"
    sources = tmp_path / "cams.yaml"

    def write(*names: str) -> None:
        part = tmp_path / "cams.part"
        part.write_text("".join(f"- {{stream: {n}, url: '{camera.url}'}}\n" for n in names))
        part.replace(sources)

    write("a", "b")
    graph = live_graph(tmp_path / "g.yaml", out, "    url: unused")
    proc = driver(str(graph), "--sources", str(sources), "--cluster", "ray:local",
                  "--workers", "2", "--max-streams-per-worker", "1")
    try:
        wait_for(lambda: growing([out / "a.mp4", out / "b.mp4"]) == {out / "a.mp4",
                                                                      out / "b.mp4"},
                 60, "a and b recording")
        write("a", "b", "c")  # no room: each worker runs one stream
        wait_for(lambda: any(e["event"] == "unassigned" and e["stream"] == "c"
                             for e in events(out)), 10, "c reported unassigned")
        assert not (out / "c.mp4").exists()
        write("b", "c")  # a's worker has room again: c goes there
        wait_for(lambda: out / "c.mp4" in growing([out / "c.mp4"]), 20, "c recording")
        assert any(e["event"] == "removed" and e["stream"] == "a" for e in events(out))
        assert not growing([out / "a.mp4"]), "a removed but still written"
    finally:
        status, printed = interrupt(proc)
    assert status == 130, printed
    for name in "abc":  # each finalised: a when removed, b and c by Ctrl+C
        assert frames(out / f"{name}.mp4") > 10
    assert "stream 'c' unassigned (added)" in printed


def worker_pids(title: str) -> list[int]:
    """Processes whose command line (Ray's process title) starts with ``title``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if cmdline.startswith(title):
                pids.append(int(entry.name))
    return pids


@pytest.mark.ray
@pytest.mark.slow
def test_a_batch_of_files_survives_a_killed_worker_and_names_the_corrupt_one(
        tmp_path: Path) -> None:
    films = tmp_path / "films"
    films.mkdir()
    for n in range(4):
        make_clip(films / f"film{n}.mp4", seconds=3.0, width=1280, height=720, fps=25)
    (films / "broken.mp4").write_bytes(os.urandom(50_000))
    out = tmp_path / "out"
    graph = tmp_path / "g.yaml"
    graph.write_text("nodes:\n  src: {plugin: video_source, url: x.mp4}\n"
                     "  out: {plugin: video_sink, input: src, audio: src.audio, "
                     "preset: veryfast, path: unset.mp4}\n")
    proc = driver(str(graph), "--cluster", "ray:local", "--workers", "2",
                  "--inputs", str(films / "*.mp4"), "--set", f"out.path={out}/{{stem}}.mp4",
                  "--stats", str(tmp_path / "stats.json"))
    wait_for(lambda: list(out.glob(".*.part-*.mp4")), 60, "a file being written")
    busy = wait_for(lambda: worker_pids("ray::FileWorker.run_task"), 10, "a busy worker")
    os.kill(busy[0], signal.SIGKILL)
    printed, _ = proc.communicate(timeout=180)
    assert proc.returncode == 1, printed
    assert f"error: {films / 'broken.mp4'}: " in printed
    assert "died running" in printed
    assert sorted(p.name for p in out.iterdir()) == [f"film{n}.mp4" for n in range(4)]
    for n in range(4):
        assert frames(out / f"film{n}.mp4") == 75
    stats = json.loads((tmp_path / "stats.json").read_text())
    attempts = {Path(f["input"]).name: f["attempts"] for f in stats["files"]}
    assert max(attempts.values()) == 2 and sum(attempts.values()) == 6


@pytest.mark.ray
@pytest.mark.slow
def test_a_killed_worker_is_restarted_by_ray_and_its_streams_go_on_elsewhere(
        cameras: Callable[..., Camera], tmp_path: Path) -> None:
    graph, out = fleet(tmp_path, cameras, ["a", "b"])
    proc = driver(str(graph), "--cluster", "ray:local", "--workers", "2")
    try:
        wait_for(lambda: len(growing([out / "a.mp4", out / "b.mp4"])) == 2, 60, "recording")
        placed = {e["stream"]: e["worker"] for e in events(out) if e["event"] == "assigned"}
        victim = wait_for(lambda: worker_pids("ray::StreamWorker"), 10, "worker processes")
        os.kill(victim[0], signal.SIGKILL)
        wait_for(lambda: reassigned(out), 10, "the killed worker's stream moved")
        (moved,) = reassigned(out)
        assert moved["worker"] != placed[moved["stream"]] and moved["epoch"] == 2
        wait_for(lambda: growing([out / f"{moved['stream']}-s2.mp4"]), 10, "its new segment")
        time.sleep(2)
    finally:
        status, printed = interrupt(proc)
    assert status == 130, printed
    assert f"worker {placed[moved['stream']]} is back" in printed  # Ray restarted it
    assert frames(out / f"{moved['stream']}-s2.mp4") > 10


@pytest.mark.ray
def test_a_graph_failing_on_a_worker_stops_the_job_with_its_one_line_error(
        clip: Path, tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("a file where a folder should be")
    graph = tmp_path / "g.yaml"
    graph.write_text(f"""nodes:
  src: {{plugin: video_source, sources: [{{stream: a, url: '{clip}'}}], loop: true}}
  rec: {{plugin: video_sink, input: src, path: '{tmp_path}/taken/{{stream}}.mp4'}}
""")
    made = vidgraph("run", str(graph), "--cluster", "ray:local", "--workers", "1",
                    timeout=120)
    assert made.returncode == 1, made.stderr
    last = made.stderr.strip().splitlines()[-1]
    assert last.startswith("error: worker 0 on ") and "taken' is a file, not a folder" in last

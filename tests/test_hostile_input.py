"""Hostile graph files cost nothing: alias bombs, deep nesting, huge or non-UTF-8 files and
bad --set values end in one FILE:LINE:COL line and exit 2, fast and in little memory;
image bombs are refused before decoding; names that would escape a folder are refused."""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from pipeline.core import config
from pipeline.core.errors import GraphError, NodeError
from pipeline.kit.testing import run_graph

from .conftest import vidgraph
from .helpers import Record

#: nine levels of nine aliases: 9**8 (43 million) strings once expanded, in about 500 bytes
LAUGHS = "\n".join(
    ["a0: &a0 [lol]"]
    + [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    + ["nodes: {src: {plugin: testsrc}, out: {plugin: null_sink, input: src, x: *a8}}"]) + "\n"


def load_within_limits(text: str) -> GraphError:
    """Load ``text`` as a graph, expecting a GraphError in under a second and 100 MB."""
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(GraphError) as caught:
            config.loads(text, "g.yaml")
        elapsed = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert elapsed < 1.0 and peak < 100 * 2**20, (elapsed, peak)
    return caught.value


def test_a_billion_laughs_is_one_line_not_gigabytes(tmp_path: Path) -> None:
    assert len(LAUGHS) < 600
    error = load_within_limits(LAUGHS)
    assert str(error).startswith("g.yaml:")
    assert "aliases expand to more than 100,000 values" in str(error)
    graph = tmp_path / "laughs.yaml"
    graph.write_text(LAUGHS)
    started = time.monotonic()
    result = vidgraph("validate", str(graph))
    assert result.returncode == 2 and time.monotonic() - started < 30
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"{graph}:") and "aliases expand" in line


def test_anchors_used_a_few_times_still_work() -> None:
    doc = config.loads("""common: &fast {preset: ultrafast, crf: 30}
nodes:
  src: {plugin: testsrc}
  out: {plugin: video_sink, input: src, path: out.mp4, <<: *fast}
""")
    assert doc.data["nodes"]["out"]["preset"] == "ultrafast"


def test_deep_nesting_is_one_line(tmp_path: Path) -> None:
    deep = "nodes: " + "[" * 20_000 + "]" * 20_000 + "\n"
    error = load_within_limits(deep)
    assert str(error) == "g.yaml:1:72: nested deeper than 64 levels"
    graph = tmp_path / "deep.yaml"
    graph.write_text(deep)
    result = vidgraph("validate", str(graph))
    assert result.returncode == 2
    assert result.stderr == f"{graph}:1:72: nested deeper than 64 levels\n"


def test_bytes_that_are_not_utf8_are_located(tmp_path: Path) -> None:
    graph = tmp_path / "latin1.yaml"
    graph.write_bytes("nodes:\n  src: {plugin: testsrc}  # caf\xe9\n".encode("latin-1"))
    result = vidgraph("validate", str(graph))
    assert result.returncode == 2
    assert result.stderr == (f"{graph}:2:32: not UTF-8 text (byte 0xe9); save the file as "
                             "UTF-8\n")


def test_a_huge_file_is_refused_before_it_is_read_whole(tmp_path: Path) -> None:
    graph = tmp_path / "huge.yaml"
    graph.write_text("nodes: {}\n" + "# padding\n" * 200_000)
    result = vidgraph("validate", str(graph))
    assert result.returncode == 2
    assert result.stderr.startswith(f"{graph}:1:1: the file is over 1,000,000 bytes")


def test_set_values_and_environment_values_have_the_same_limits() -> None:
    bomb = "[" * 100 + "]" * 100
    with pytest.raises(GraphError, match=r"^--set:1:65: nested deeper than 64 levels$"):
        config.loads("nodes: {src: {plugin: testsrc}}", overrides=[f"src.width={bomb}"])
    with pytest.raises(GraphError, match=r"^g.yaml:1:\d+: nested deeper than 64 levels$"):
        config.loads("nodes: {src: {plugin: testsrc, width: '${W}'}}", "g.yaml",
                     env={"W": bomb})


def test_node_names_and_stream_names_that_break_things_are_refused(tmp_path: Path) -> None:
    graph = tmp_path / "g.yaml"
    graph.write_text("""nodes:
  cam.1: {plugin: testsrc}
  src:
    plugin: video_source
    url: "rtsp://h/{stream}"
    streams: [door, "..", "a/b"]
  out: {plugin: null_sink, input: src}
""")
    result = vidgraph("validate", str(graph))
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert lines[0] == (f"{graph}:2:3: node 'cam.1': a node name cannot contain '.' (inputs "
                        "are written NODE.PORT)")
    assert lines[1] == (f"{graph}:6:14: node 'src': parameter 'streams.1' = '..': stream name "
                        "'..' must be letters, digits, '_', '-' or '.' (not '.' or '..': it "
                        "becomes part of file names)")
    assert lines[2].startswith(f"{graph}:6:14: node 'src': parameter 'streams.2' = 'a/b': ")


def test_two_sinks_writing_one_file_are_refused(tmp_path: Path) -> None:
    graph = tmp_path / "g.yaml"
    graph.write_text(f"""nodes:
  src: {{plugin: testsrc}}
  a: {{plugin: video_sink, input: src, path: {tmp_path}/out.mp4}}
  b: {{plugin: video_sink, input: src, path: {tmp_path}/../{tmp_path.name}/out.mp4}}
  c: {{plugin: jsonl_sink, input: src, path: "-"}}
  d: {{plugin: jsonl_sink, input: src, path: "-"}}
""")
    result = vidgraph("validate", str(graph))
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()  # two writers to standard output are fine
    assert line.startswith(f"{graph}:4:45: node 'b': path '") and "where node 'a' writes" in line


def test_stats_that_cannot_be_written_fail_before_the_run(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = vidgraph("run", "graphs/transcode.yaml", "--stats", str(blocker / "s.json"))
    assert result.returncode == 1
    assert result.stderr.strip() == (f"error: --stats: cannot write '{blocker / 's.json'}': "
                                     f"'{blocker}' is a file, not a folder")


def test_an_image_bomb_is_refused_before_decoding(tmp_path: Path) -> None:
    import cv2

    folder = tmp_path / "pics"
    folder.mkdir()
    # 12000 x 12000 of zeros: 144 M pixels, a few hundred kilobytes compressed
    cv2.imwrite(str(folder / "bomb.png"), np.zeros((12000, 12000), np.uint8))
    assert (folder / "bomb.png").stat().st_size < 1_000_000
    started = time.monotonic()
    result = run_graph({"nodes": {"src": {"plugin": "image_source", "path": str(folder)},
                                  "out": {"plugin": "null_sink", "input": "src"}}})
    assert time.monotonic() - started < 1.0  # decoding it alone would take seconds
    assert isinstance(result.error, NodeError)
    assert str(result.error) == (f"node 'src': '{folder / 'bomb.png'}' is 12000x12000 "
                                 "(144,000,000 pixels), over max_pixels (67,108,864)")


def test_video_pictures_over_the_limit_are_refused_at_open(clip: Path) -> None:
    with pytest.raises(NodeError) as caught:
        run_graph({"nodes": {"src": {"plugin": "video_source", "url": str(clip),
                                     "max_pixels": 50_000},
                             "out": {"plugin": "null_sink", "input": "src"}}})
    assert str(caught.value) == (f"node 'src': '{clip}' announces 320x240 pictures (76,800 "
                                 "pixels), over max_pixels (50,000)")


def test_skip_on_a_source_goes_past_a_corrupt_picture(tmp_path: Path) -> None:
    import cv2

    for name in ("a", "c"):
        cv2.imwrite(str(tmp_path / f"{name}.png"), np.full((8, 8, 3), 200, np.uint8))
    (tmp_path / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n not a picture")
    graph = {"nodes": {"src": {"plugin": "image_source", "path": str(tmp_path)},
                       "out": {"python": "tests.helpers:Record", "input": "src", "key": "pics"}}}
    assert isinstance(run_graph(graph).error, NodeError)  # fail, by default
    graph["nodes"]["src"]["on_error"] = "skip"
    Record.seen.pop("pics", None)
    result = run_graph(graph)
    assert result.error is None
    assert [f.meta["source"] for f in Record.seen["pics"]] == ["a.png", "c.png"]
    assert result.metrics.nodes["src"].skipped == 1


@pytest.mark.parametrize(("plugin", "name"), [("video_sink", "out.mp4"),
                                              ("jsonl_sink", "out.jsonl"),
                                              ("image_sink", "{index}.png")])
def test_a_sink_that_cannot_write_names_the_path(tmp_path: Path, plugin: str, name: str) -> None:
    blocker = tmp_path / "afile"
    blocker.write_text("")
    path = blocker / name
    result = run_graph({"nodes": {
        "src": {"plugin": "testsrc", "width": 32, "height": 32, "duration": 0.1},
        "out": {"plugin": plugin, "input": "src", "path": str(path)}}}) \
        if plugin == "image_sink" else None
    if result is not None:
        error = str(result.error)
        shown = str(blocker / "0.png")
    else:
        with pytest.raises(NodeError) as caught:
            run_graph({"nodes": {
                "src": {"plugin": "testsrc", "width": 32, "height": 32, "duration": 0.1},
                "out": {"plugin": plugin, "input": "src", "path": str(path)}}})
        error, shown = str(caught.value), str(path)
    assert error.endswith(f"cannot write '{shown}': '{blocker}' is a file, not a folder")

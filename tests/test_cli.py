"""The command line and the documentation it is the source of."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.core.registry import Registry

from .conftest import ROOT, ffprobe, stream, vidgraph


def test_plugins_lists_every_builtin() -> None:
    result = vidgraph("plugins")
    assert result.returncode == 0
    names = [line.split()[0] for line in result.stdout.splitlines()]
    assert names == Registry.from_entry_points().names()
    assert {"video_source", "testsrc", "image_source", "video_sink", "image_sink", "jsonl_sink",
            "null_sink", "resize", "rate_limit"} <= set(names)


def test_describe_shows_ports_parameters_and_limits() -> None:
    result = vidgraph("describe", "video_sink")
    assert result.returncode == 0
    text = result.stdout
    assert text.startswith("video_sink (sink): encode to a file, HLS or RTSP")
    assert re.search(r"audio\s+audio \[optional\]", text)
    assert re.search(r"crf\s+int \| None\s+null\s+constant quality.*\(>= 0, <= 63\)", text)
    schema = json.loads(vidgraph("describe", "video_sink", "--json").stdout)
    assert schema["required"] == ["path"]
    assert schema["properties"]["crf"]["anyOf"][0]["maximum"] == 63


def test_describe_unknown_plugin_suggests() -> None:
    result = vidgraph("describe", "vidoe_sink")
    assert result.returncode == 1
    assert result.stderr.strip() == "error: unknown plugin 'vidoe_sink' (did you mean " \
                                    "'video_sink'?)"


def test_draw_dot_and_mermaid() -> None:
    dot = vidgraph("draw", "graphs/transcode.yaml").stdout
    assert '"src" -> "out" [label="video → in"]' in dot
    assert '"src" -> "out" [label="audio → audio"]' in dot
    mermaid = vidgraph("draw", "--mermaid", "graphs/transcode.yaml").stdout
    assert mermaid.startswith("flowchart LR")
    assert 'src -- "audio → audio" --> out' in mermaid


def test_draw_is_valid_graphviz(tmp_path: Path) -> None:
    dot_bin = subprocess.run(["which", "dot"], capture_output=True, text=True).stdout.strip()
    if not dot_bin:
        pytest.skip("graphviz is not installed")
    dot = vidgraph("draw", "graphs/demo.yaml").stdout
    svg = subprocess.run([dot_bin, "-Tsvg"], input=dot, capture_output=True, text=True, check=True)
    assert "<svg" in svg.stdout


def test_demo_graph_runs_and_writes_its_outputs(tmp_path: Path) -> None:
    out = tmp_path / "demo.mp4"
    painted = tmp_path / "demo_style.mp4"
    log = tmp_path / "demo.jsonl"
    stats = tmp_path / "stats.json"
    result = vidgraph("run", "graphs/demo.yaml", "--set", "src.duration=1", "--set",
                      f"out.path={out}", "--set", f"painted.path={painted}", "--set",
                      f"log.path={log}", "--stats", str(stats))
    assert result.returncode == 0, result.stderr
    for video in (out, painted):
        v = stream(ffprobe(video), "video")
        assert (v["width"], v["height"], int(v["nb_read_frames"])) == (640, 360, 30)
    # the painted clip is the cleaned one in another palette and texture, not a copy
    first = [cv2.VideoCapture(str(p)).read()[1].astype(float) for p in (out, painted)]
    assert np.abs(first[0] - first[1]).mean() > 20
    records = [json.loads(line) for line in log.read_text().splitlines()]
    # the face is found in every frame, with its five landmarks
    assert len(records) == 30 and all(len(r["detections"]) == 1 for r in records)
    assert all(len(r["detections"][0]["landmarks"]) == 5 for r in records)
    figures = json.loads(stats.read_text())
    assert figures["status"] == "ok"
    assert figures["nodes"]["small"]["frames_in"] == figures["nodes"]["small"]["frames_out"] == 30
    assert figures["nodes"]["out"]["latency_ms_p50"] > 0


def test_python_run_py_is_the_same_command() -> None:
    result = subprocess.run(["vidgraph", "plugins"], capture_output=True, text=True,
                            cwd=ROOT, env={"PATH": str(Path(__import__("sys").executable).parent)})
    assert result.stdout == vidgraph("plugins").stdout


def test_readme_plugin_table_matches_the_registry() -> None:
    readme = (ROOT / "README.md").read_text()
    table = vidgraph("plugins", "--markdown").stdout.strip()
    assert table in readme, "regenerate it with: vidgraph plugins --markdown"


def _docstring_examples() -> list[tuple[str, str]]:
    registry = Registry.from_entry_points()
    found = []
    for name in registry.names():
        doc = registry.get(name).__doc__ or ""
        match = re.search(r"```yaml\n(.*?)```", doc, re.S)
        found.append((name, match.group(1) if match else ""))
    return found


@pytest.mark.parametrize(("plugin", "example"), _docstring_examples())
def test_each_plugin_docstring_ends_with_an_example_that_runs(
        plugin: str, example: str, tmp_path: Path, clip: Path) -> None:
    assert example, f"{plugin}: its docstring needs a ```yaml example"
    import textwrap

    text = textwrap.dedent(example).replace("input.mp4", str(clip))
    text = text.replace("out/", f"{tmp_path}/")
    if plugin == "style_transfer":  # no style ships yet: an untrained light network
        from plugins.style import checkpoint
        from plugins.style.model import JohnsonNet

        checkpoint.save(tmp_path / "my_style.pt", JohnsonNet(width=0.25), "johnson",
                        {"width": 0.25}, {})
    if plugin == "image_source":
        import cv2
        import numpy as np

        (tmp_path / "img").mkdir()
        cv2.imwrite(str(tmp_path / "img" / "a.png"), np.zeros((8, 8, 3), np.uint8))
        text = text.replace("tests/data/", f"{tmp_path}/img/")
    graph = tmp_path / "example.yaml"
    graph.write_text(text)
    result = vidgraph("run", "--quiet", str(graph))
    assert result.returncode == 0, f"{plugin}: {result.stderr}"

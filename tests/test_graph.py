"""Validation: every kind of invalid graph gives its exact FILE:LINE:COL line and exit 2."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from pipeline.core import config
from pipeline.core.errors import GraphError
from pipeline.core.graph import build_graph
from pipeline.core.registry import Registry

from .conftest import vidgraph


def problems(text: str, *, allow_python: bool = False, overrides: list[str] | None = None
             ) -> list[str]:
    with pytest.raises(GraphError) as info:
        doc = config.loads(textwrap.dedent(text), "g.yaml", overrides)
        build_graph(doc, Registry.from_entry_points(), allow_python=allow_python)
    return [str(p) for p in info.value.problems]


def test_valid_graph_builds_in_topological_order() -> None:
    doc = config.loads(textwrap.dedent("""\
        nodes:
          out: {plugin: null_sink, input: small}
          small: {plugin: resize, input: src, width: 32}
          src: {plugin: testsrc, duration: 0.1}
        """))
    graph = build_graph(doc, Registry.from_entry_points())
    assert list(graph.nodes) == ["src", "small", "out"]
    assert [(c.src, c.src_port, c.dst, c.dst_port) for c in graph.connections] == [
        ("small", "out", "out", "in"), ("src", "out", "small", "in")]


@pytest.mark.parametrize(("body", "expected"), [
    ("""\
     nodes:
       src: {plugin: testsrc}
       out: {plugin: nul_sink, input: src}
     """, "g.yaml:3:17: node 'out': unknown plugin 'nul_sink' (did you mean 'null_sink'?)"),
    ("""\
     nodes:
       src:
         plugin: testsrc
         widht: 64
       out: {plugin: null_sink, input: src}
     """, "g.yaml:4:5: node 'src': unknown parameter 'widht' (did you mean 'width'?)"),
    ("""\
     nodes:
       src:
         plugin: testsrc
         width: wide
       out: {plugin: null_sink, input: src}
     """, "g.yaml:4:12: node 'src': parameter 'width' = 'wide': input should be a valid "
          "integer, unable to parse string as an integer"),
    ("""\
     nodes:
       src: {plugin: testsrc, fps: -5}
       out: {plugin: null_sink, input: src}
     """, "g.yaml:2:31: node 'src': parameter 'fps' = -5: input should be greater than 0"),
    ("""\
     nodes:
       src: {plugin: testsrc}
       out: {plugin: null_sink}
     """, "g.yaml:3:3: node 'out': input 'in' is not connected (add 'input: NODE')"),
    ("""\
     nodes:
       src: {plugin: testsrc}
       out: {plugin: null_sink, input: scr}
     """, "g.yaml:3:35: node 'out': input 'in' names unknown node 'scr' (did you mean 'src'?)"),
    ("""\
     nodes:
       src: {plugin: video_source, url: x.mp4}
       out: {plugin: null_sink, input: src.sound}
     """, "g.yaml:3:35: node 'out': 'src' has no output 'sound' (outputs: video, audio, "
          "packets, events)"),
    ("""\
     nodes:
       src: {plugin: video_source, url: x.mp4}
       out: {plugin: null_sink, input: src.audio}
     """, "g.yaml:3:35: node 'out': input 'out.in' expects video but 'src.audio' produces "
          "audio"),
    ("""\
     nodes:
       a: {plugin: identity, input: b}
       b: {plugin: identity, input: a}
       src: {plugin: testsrc}
       out: {plugin: null_sink, input: src}
     """, "g.yaml:2:3: node 'a': cycle a -> b -> a"),
    ("""\
     nodes:
       src: {plugin: testsrc}
       mid: {plugin: identity, input: src}
     """, "g.yaml:3:3: node 'mid': output 'out' is not used (connect it to a sink, e.g. "
          "null_sink)"),
    ("""\
     nodes:
       src: {plugin: testsrc}
       out: {python: "tests.helpers:Record", input: src, key: k}
     """, "g.yaml:3:9: node 'out': 'python:' runs code from a module; pass --allow-python "
          "to allow it"),
    ("""\
     nodes:
       src: {plugin: testsrc, replicas: 2}
       out: {plugin: null_sink, input: src}
     """, "g.yaml:2:36: node 'src': 'replicas' applies to stages only, not to a source"),
    ("""\
     nodes:
       src: {plugin: testsrc}
       out: {plugin: null_sink, input: src, policy: newest}
     """, "g.yaml:3:48: node 'out': setting 'policy' = 'newest': input should be 'block', "
          "'drop_oldest' or 'backlog'"),
    ("""\
     nodez:
       src: {plugin: testsrc}
     """, "g.yaml:1:1: unknown top-level key 'nodez' (did you mean 'nodes'?)"),
])
def test_each_kind_of_invalid_graph_has_its_exact_line(body: str, expected: str) -> None:
    assert expected in problems(body)


def test_every_problem_is_reported_at_once() -> None:
    found = problems("""\
        nodes:
          src: {plugin: testsrc, widht: 3}
          mid: {plugin: resise, input: src}
          out: {plugin: null_sink, input: nowhere}
        """)
    assert len(found) == 3
    assert [line.split(":")[1] for line in found] == ["2", "3", "4"]


def test_set_override_is_validated_with_its_own_position() -> None:
    found = problems("""\
        nodes:
          src: {plugin: testsrc}
          out: {plugin: null_sink, input: src}
        """, overrides=["src.width=abc", "srx.fps=3"])
    assert "--set:2:1: 'srx.fps=3': no node 'srx' in the graph (did you mean 'src'?)" in found


def test_cli_validate_exit_codes(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("nodes:\n  src: {plugin: testsrc}\n  out: {plugin: null_sink, input: src}\n")
    result = vidgraph("validate", str(good))
    assert result.returncode == 0, result.stderr
    assert "ok (2 nodes, 1 edges)" in result.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("nodes:\n  src: {plugin: testsrc, modle: x}\n"
                   "  out: {plugin: null_sink, input: src}\n")
    for command in ("validate", "run"):
        result = vidgraph(command, str(bad))
        assert result.returncode == 2
        assert result.stderr.strip() == f"{bad}:2:26: node 'src': unknown parameter 'modle'"
        assert "Traceback" not in result.stderr


def test_yaml_syntax_error_has_position(tmp_path: Path) -> None:
    bad = tmp_path / "broken.yaml"
    bad.write_text("nodes:\n  src: {plugin: testsrc\n  out: [\n")
    result = vidgraph("validate", str(bad))
    assert result.returncode == 2
    assert result.stderr.startswith(f"{bad}:3:")
    assert "invalid YAML" in result.stderr


def test_missing_graph_file_is_exit_2() -> None:
    result = vidgraph("validate", "no/such/graph.yaml")
    assert result.returncode == 2
    assert result.stderr.strip() == "no/such/graph.yaml:1:1: cannot read graph: No such file or "\
                                    "directory"


def test_every_shipped_graph_validates() -> None:
    graphs = sorted((Path(__file__).parent.parent / "graphs").glob("*.yaml"))
    assert graphs
    registry = Registry.from_entry_points()
    for path in graphs:  # in this process: what `vidgraph validate` does, without its start-up
        build_graph(config.load(str(path), []), registry)
    result = vidgraph("validate", str(graphs[0]))
    assert result.returncode == 0, f"{graphs[0]}: {result.stderr}"

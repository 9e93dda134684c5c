"""YAML loading: positions, --set overrides, ${ENV} substitution, safe loading."""

from __future__ import annotations

import pytest

from pipeline.core import config
from pipeline.core.errors import GraphError

TEXT = """\
name: t
nodes:
  src:
    plugin: testsrc
    width: 64
  out: {plugin: null_sink, input: src}
"""


def test_positions_of_keys_and_values() -> None:
    doc = config.loads(TEXT, "t.yaml")
    assert doc.where(("nodes", "src", "width")) == config.Position("t.yaml", 5, 12)
    assert doc.where(("nodes", "src", "width"), key=True) == config.Position("t.yaml", 5, 5)
    assert doc.where(("nodes", "out", "input")) == config.Position("t.yaml", 6, 35)
    # A path that was never written falls back to its nearest parent.
    assert doc.where(("nodes", "src", "height")).line == 4


def test_set_overrides_values_with_yaml_types() -> None:
    doc = config.loads(TEXT, "t.yaml", ["src.width=128", "src.realtime=true", "device=cpu",
                                        "out.path=a b.mp4"])
    src = doc.data["nodes"]["src"]
    assert src["width"] == 128 and src["realtime"] is True
    assert doc.data["device"] == "cpu"
    assert doc.data["nodes"]["out"]["path"] == "a b.mp4"
    assert doc.where(("nodes", "src", "width")) == config.Position("--set", 1, 1)


def test_malformed_override() -> None:
    with pytest.raises(GraphError, match=r"--set:1:1: 'src.width': expected NODE.KEY=VALUE"):
        config.loads(TEXT, "t.yaml", ["src.width"])


def test_environment_substitution() -> None:
    text = "nodes:\n  src: {plugin: testsrc, width: '${W}', height: '${H:-90}'}\n" \
           "  out: {plugin: null_sink, input: src, note: 'a-${W}-b'}\n"
    doc = config.loads(text, env={"W": "64"})
    assert doc.data["nodes"]["src"] == {"plugin": "testsrc", "width": 64, "height": 90}
    assert doc.data["nodes"]["out"]["note"] == "a-64-b"
    with pytest.raises(GraphError, match=r"2:33: environment variable 'W' is not set"):
        config.loads(text, env={})


def test_duplicate_keys_and_unsafe_tags_are_rejected() -> None:
    with pytest.raises(GraphError, match="3:3: duplicate key 'a'"):
        config.loads("nodes:\n  a: 1\n  a: 2\n")
    with pytest.raises(GraphError, match=r"1:8: unsupported YAML tag 'tag:yaml\.org,2002:python"):
        config.loads("nodes: !!python/object/apply:os.system ['true']\n")


def test_empty_and_non_mapping_files() -> None:
    with pytest.raises(GraphError, match="empty"):
        config.loads("")
    with pytest.raises(GraphError, match="must be a mapping"):
        config.loads("- a\n- b\n")


def test_keys_are_names_even_where_yaml_1_1_sees_booleans() -> None:
    doc = config.loads("nodes:\n  a: {on: detections, yes: 1, off: true}\n", "g.yaml", [])
    assert doc.data["nodes"]["a"] == {"on": "detections", "yes": 1, "off": True}

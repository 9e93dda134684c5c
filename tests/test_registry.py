"""Plugin discovery through entry points, duplicates, and fresh registries for tests."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest

from pipeline.core.errors import PluginConflict, PluginNotFound
from pipeline.core.node import Stage
from pipeline.core.registry import Registry, load_python_class


def test_entry_points_load_every_builtin_with_matching_names() -> None:
    registry = Registry.from_entry_points()
    for name in registry.names():
        cls = registry.get(name)
        assert cls.name == name and cls.summary and cls.__doc__


def test_unknown_plugin_is_a_lookup_error_with_a_suggestion() -> None:
    with pytest.raises(LookupError) as info:
        Registry.from_entry_points().get("rezise")
    assert isinstance(info.value, PluginNotFound)
    assert str(info.value) == "unknown plugin 'rezise' (did you mean 'resize'?)"


def test_two_distributions_with_one_name_conflict(monkeypatch: pytest.MonkeyPatch) -> None:
    eps = [EntryPoint("resize", "plugins.transform.resize:Resize", "vidgraph.plugins"),
           EntryPoint("resize", "otherpkg.resize:Resize", "vidgraph.plugins")]
    monkeypatch.setattr("pipeline.core.registry.entry_points", lambda group: eps)
    with pytest.raises(PluginConflict, match="'resize' is registered twice"):
        Registry.from_entry_points()


def test_a_fresh_registry_takes_classes_directly() -> None:
    class Twice(Stage):
        """Test stage."""

        name = "twice"
        summary = "test"

    registry = Registry()
    registry.add(Twice)
    assert registry.get("twice") is Twice and registry.names() == ["twice"]
    with pytest.raises(PluginConflict):
        registry.add(Twice)


def test_python_class_specs() -> None:
    assert load_python_class("tests.helpers:FailOn").name == "fail_on"
    with pytest.raises(Exception, match="is not a vidgraph"):
        load_python_class("pathlib:Path")
    with pytest.raises(Exception, match="cannot import"):
        load_python_class("no_such_module_xyz:Thing")

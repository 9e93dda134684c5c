"""``compile: true`` on the model nodes: the same pictures and labels, compiled by
torch.compile where it can be, and uncompiled, with one warning, where compiling fails."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pytest
import torch
from skimage import data

from pipeline.core.frame import Frame
from pipeline.kit import compiling
from pipeline.kit.testing import run_node

#: each model node with a shipped model, and what of its output to compare
NODES = [("style_transfer", {"model": "wave-light"}),
         ("denoise", {"model": "color-light", "sigma": 15}),
         ("classify", {"model": "expression", "on": "frame"})]


def _frames(count: int = 3) -> list[Frame]:
    picture = np.ascontiguousarray(data.astronaut()[100:196, 150:278])
    return [Frame.from_image(torch.from_numpy(np.roll(picture, 3 * k, axis=1).copy()),
                             index=k) for k in range(count)]


def _output(frame: Frame) -> Any:
    label = frame.meta.get("label")
    return label if label is not None else frame.image


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno == logging.WARNING and "compile" in r.getMessage()]


@pytest.mark.slow
def test_compiled_style_transfer_paints_the_same_pictures(
        caplog: pytest.LogCaptureFixture) -> None:
    """A real compilation (Inductor's C++ backend on the CPU; about 30 s here)."""
    caplog.set_level(logging.WARNING, logger="vidgraph")
    plain = run_node("style_transfer", _frames(2), model="wave-light")
    fast = run_node("style_transfer", _frames(2), model="wave-light", compile=True)
    assert not _warnings(caplog)
    for a, b in zip(plain, fast, strict=True):
        assert (a.image.int() - b.image.int()).abs().max() <= 1


@pytest.mark.parametrize(("plugin", "params"), NODES, ids=[n for n, _ in NODES])
def test_a_failed_compilation_runs_uncompiled_and_says_so_once(
        plugin: str, params: dict[str, Any], caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(net: torch.nn.Module) -> Any:
        def run(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("no C++ compiler found\nmore detail")
        return run

    plain = [_output(f) for f in run_node(plugin, _frames(), **params)]
    monkeypatch.setattr(compiling.torch, "compile", broken)
    caplog.set_level(logging.WARNING, logger="vidgraph")
    fallen = [_output(f) for f in run_node(plugin, _frames(), compile=True, **params)]
    assert _warnings(caplog) == [
        f"node '{plugin}': compile: true failed (RuntimeError: no C++ compiler found); "
        "running the network uncompiled"]
    for a, b in zip(plain, fallen, strict=True):
        assert a == b if isinstance(a, str) else torch.equal(a, b)

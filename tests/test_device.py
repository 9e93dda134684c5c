"""Device choice and placement: auto, explicit CUDA, one move at a node's input."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest
import torch

from pipeline.core.device import resolve_device
from pipeline.core.errors import VidgraphError
from pipeline.core.frame import Frame
from pipeline.kit.testing import run_graph

from .conftest import vidgraph
from .helpers import Record


def test_auto_follows_what_pytorch_sees() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device(None, default="cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message without CUDA")
def test_cuda_without_a_gpu_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(VidgraphError, match="device 'cuda' requested but CUDA is not available"):
        resolve_device("cuda")
    result = vidgraph("run", "graphs/demo.yaml", "--set", "small.device=cuda",
                      "--set", f"out.path={tmp_path}/d.mp4", "--set", f"log.path={tmp_path}/d.j")
    assert result.returncode == 1
    assert result.stderr.strip() == ("error: node 'small': device 'cuda' requested but CUDA is "
                                     "not available (use 'device: auto' to fall back to the CPU)")


def test_frames_arrive_on_the_node_device() -> None:
    run_graph({"device": "cpu", "nodes": {
        "src": {"plugin": "testsrc", "width": 32, "height": 32, "duration": 0.1},
        "out": {"python": "tests.helpers:Record", "input": "src", "key": "dev"}}})
    assert {f.device.type for f in Record.seen["dev"]} == {"cpu"}


@pytest.mark.gpu
def test_gpu_stage_gets_cuda_frames_and_matches_cpu() -> None:
    image = torch.randint(0, 256, (72, 96, 3), dtype=torch.uint8)
    frame = Frame.from_image(image, pts=0, time_base=Fraction(1, 30))
    on_gpu = frame.to(torch.device("cuda"))
    assert on_gpu.device.type == "cuda" and on_gpu.to(torch.device("cuda")) is on_gpu
    from pipeline.core.node import NodeContext
    from plugins.transform.resize import Resize

    gpu = Resize(Resize.Params(width=48), NodeContext("r", torch.device("cuda")))
    cpu = Resize(Resize.Params(width=48), NodeContext("r", torch.device("cpu")))
    a, b = gpu.process_batch([on_gpu])[0], cpu.process_batch([frame])[0]
    assert a.device.type == "cuda"
    assert (a.image.cpu().int() - b.image.int()).abs().max() <= 1

"""Device choice and placement: auto, explicit CUDA, one move at a node's input."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest
import torch

from pipeline.core.device import inference_dtype, lane_for, resolve_device, uses_channels_last
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
                      "--set", f"out.path={tmp_path}/d.mp4", "--set", f"log.path={tmp_path}/d.j",
                      "--set", f"painted.path={tmp_path}/p.mp4")
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


def test_dtype_policy_lives_in_one_place() -> None:
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert inference_dtype(cpu, half=True) == torch.float32  # fp16 convolutions crawl on CPUs
    assert inference_dtype(gpu, half=True) == torch.float16
    assert inference_dtype(gpu) == torch.float32
    assert uses_channels_last(gpu, half=True) and not uses_channels_last(cpu, half=True)


def test_a_cpu_lane_runs_nodes_as_they_are() -> None:
    lane = lane_for(torch.device("cpu"))
    frame = Frame.from_image(torch.zeros(2, 2, 3, dtype=torch.uint8), pts=0,
                             time_base=Fraction(1, 30))
    lane.admit([frame])  # nothing to wait for
    with lane.scope():
        assert lane.seal([frame]) == [frame] and lane.seal([frame])[0].ready is None


def frames_of(graph_device: str, key: str) -> list[Frame]:
    run_graph({"nodes": {
        "src": {"plugin": "testsrc", "width": 320, "height": 180, "duration": 1},
        "small": {"plugin": "resize", "input": "src", "width": 160, "interpolation": "bilinear",
                  "device": graph_device},
        "out": {"python": "tests.helpers:Record", "input": "small", "key": key,
                "device": "cpu"}}})
    return Record.seen[key]


@pytest.mark.gpu
def test_a_cpu_stage_after_a_gpu_stage_reads_the_finished_pixels() -> None:
    on_gpu, on_cpu = frames_of("cuda", "after-gpu"), frames_of("cpu", "after-cpu")
    assert len(on_gpu) == len(on_cpu) == 30
    for a, b in zip(on_gpu, on_cpu, strict=True):
        assert a.device.type == "cpu"
        assert (a.image.int() - b.image.int()).abs().max() <= 1, a.index


@pytest.mark.gpu
@pytest.mark.parametrize(("plugin", "params", "budget"), [
    ("mtcnn", {}, 120),
    ("style_transfer", {"model": "starry_night-light"}, 4),
    ("denoise", {"model": "color-light"}, 4),
    ("classify", {"model": "expression", "views": False}, 4),
])
def test_host_syncs_of_one_frame_of_each_model_node(plugin: str, params: dict,
                                                    budget: int) -> None:
    """Counts the synchronisations one 640x360 frame costs on CUDA (after a warm-up frame);
    the budgets are today's, to be tightened by the GPU issue."""
    import warnings

    from pipeline.core.node import NodeContext
    from pipeline.core.registry import Registry

    cls = Registry.from_entry_points().get(plugin)
    node = cls(cls.Params(**params), NodeContext(plugin, torch.device("cuda")))
    node.open()
    image = torch.randint(0, 256, (360, 640, 3), dtype=torch.uint8, device="cuda")
    frames = [Frame.from_image(image, pts=i, time_base=Fraction(1, 30), index=i)
              for i in range(2)]
    with torch.inference_mode():
        node.run(frames[:1])
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                node.run(frames[1:])
        finally:
            torch.cuda.set_sync_debug_mode(0)
    syncs = sum("synchroniz" in str(w.message) for w in caught)
    print(f"{plugin}: {syncs} host syncs per frame")
    assert syncs <= budget

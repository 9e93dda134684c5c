"""resize, rate_limit and identity on real frames."""

from __future__ import annotations

import itertools
from fractions import Fraction
from pathlib import Path

import av
import torch

from pipeline.core.frame import Frame
from pipeline.kit.testing import run_node
from plugins.media.picture import DecodedPicture


def decoded_frames(clip: Path, n: int) -> list[Frame]:
    frames = []
    with av.open(str(clip)) as container:
        for i, vf in enumerate(container.decode(video=0)):
            frames.append(Frame(pts=vf.pts, time_base=vf.time_base, native=DecodedPicture(vf),
                                index=i))
            if len(frames) == n:
                break
    return frames


def test_resize_keeps_aspect_and_even_sizes(clip: Path) -> None:
    frame = decoded_frames(clip, 1)[0]
    (out,) = run_node("resize", [frame], height=101)
    assert (out.width, out.height) == (134, 101)  # the side given is kept as given
    assert not out.has_pixels  # scaled by swscale, still no RGB conversion
    assert out.pts == frame.pts and out.time_base == frame.time_base


def test_native_and_tensor_resizing_agree(clip: Path) -> None:
    frame = decoded_frames(clip, 1)[0]
    tensor_frame = Frame.from_image(frame.image.clone(), pts=0, time_base=Fraction(1, 30))
    (a,) = run_node("resize", [frame], width=160, height=120)
    (b,) = run_node("resize", [tensor_frame], width=160, height=120)
    assert b.has_pixels and b.image.shape == (120, 160, 3)
    diff = (a.image.float() - b.image.float()).abs().mean().item()
    assert diff < 4.0  # different filters and YUV rounding, same picture


def test_resize_batch_matches_single_frames() -> None:
    images = [torch.randint(0, 256, (48, 64, 3), dtype=torch.uint8) for _ in range(3)]
    frames = [Frame.from_image(im, pts=i, time_base=Fraction(1, 30)) for i, im in
              enumerate(images)]
    from pipeline.core.node import NodeContext
    from plugins.transform.resize import Resize

    node = Resize(Resize.Params(width=32), NodeContext("r", torch.device("cpu")))
    batch = node.process_batch(frames)
    single = [node.process_batch([f])[0] for f in frames]
    for x, y in zip(batch, single, strict=True):
        assert torch.equal(x.image, y.image) and x.image.shape == (24, 32, 3)


def test_rate_limit_keeps_evenly_spaced_frames() -> None:
    frames = [Frame.from_image(torch.zeros(2, 2, 3, dtype=torch.uint8), pts=i,
                               time_base=Fraction(1, 30), index=i) for i in range(30)]
    kept = run_node("rate_limit", frames, fps=20)
    assert len(kept) == 20
    gaps = {b.pts - a.pts for a, b in itertools.pairwise(kept)}
    assert gaps == {1, 2}


def test_identity_passes_the_same_object() -> None:
    frame = Frame.from_image(torch.zeros(2, 2, 3, dtype=torch.uint8))
    assert run_node("identity", [frame]) == [frame]

"""Multi-frame denoising on synthetic noisy clips with a known clean version: camera
motion is aligned, a static scene gains PSNR, a moving square does not ghost."""

import math

import numpy as np
import pytest
import torch

from pipeline.core.frame import Frame
from pipeline.kit.testing import run_node
from plugins.denoise.noise import gaussian
from plugins.denoise.temporal import _shifted, align


@pytest.fixture(scope="module")
def scene() -> torch.Tensor:
    from skimage import data

    picture = torch.from_numpy(data.astronaut()).permute(2, 0, 1)[None].float() / 255
    return torch.nn.functional.interpolate(picture, size=(160, 200), mode="area")


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return 10 * math.log10(1 / float(((a - b) ** 2).mean()))


def frames_of(pictures: list[torch.Tensor]) -> list[Frame]:
    return [Frame.from_image((p[0] * 255).round().clamp(0, 255).byte().permute(1, 2, 0)
                             .contiguous(), index=i, stream="cam")
            for i, p in enumerate(pictures)]


def unit(frame: Frame) -> torch.Tensor:
    return frame.image.permute(2, 0, 1)[None].float() / 255


def test_alignment_finds_a_camera_shift(scene):
    moved = scene.roll((-3, 5), (2, 3))
    offsets = align(moved, scene)
    inner = offsets[0, :, 2:-2, 2:-2].flatten(1)
    assert (inner[0] == -5).float().mean() > 0.9 and (inner[1] == 3).float().mean() > 0.9
    back = _shifted(scene, offsets, 16)
    assert (back - moved)[..., 16:-16, 16:-16].abs().mean() < 0.01


def test_merging_a_panning_clip_gains_psnr_over_every_frame(scene):
    g = torch.Generator().manual_seed(0)
    clean = [scene.roll((k, -2 * k), (2, 3)) for k in range(6)]
    noisy = frames_of([gaussian(c, 20.0, g) for c in clean])
    out = run_node("temporal_denoise", noisy, frames=4, sigma=20)
    inner = (..., slice(24, -24), slice(24, -24))
    before = [psnr(unit(f)[inner], c[inner]) for f, c in zip(noisy, clean, strict=True)]
    after = [psnr(unit(f)[inner], c[inner]) for f, c in zip(out, clean, strict=True)]
    assert after[0] == pytest.approx(before[0], abs=0.01)  # nothing to merge with yet
    assert min(a - b for a, b in zip(after[3:], before[3:], strict=True)) > 4.0  # dB


def test_estimated_sigma_works_as_well_as_the_true_one(scene):
    g = torch.Generator().manual_seed(1)
    noisy = frames_of([gaussian(scene, 25.0, g) for _ in range(4)])
    known = run_node("temporal_denoise", noisy, sigma=25)[-1]
    auto = run_node("temporal_denoise", noisy)[-1]
    assert psnr(unit(auto), scene) > psnr(unit(known), scene) - 0.5


def test_a_moving_square_does_not_ghost():
    g = torch.Generator().manual_seed(2)
    pictures = []
    for k in range(5):
        picture = torch.full((1, 3, 96, 160), 0.4)
        picture[..., 30:60, 10 + 28 * k:40 + 28 * k] = 0.95
        pictures.append(gaussian(picture, 10.0, g))
    last = unit(run_node("temporal_denoise", frames_of(pictures), frames=4, sigma=10)[-1])
    for k in range(4):  # where the square was: background again, no trace of it
        assert abs(float(last[..., 35:55, 15 + 28 * k:35 + 28 * k].mean()) - 0.4) < 0.02
    assert abs(float(last[..., 35:55, 127:147].mean()) - 0.95) < 0.02  # and where it is


def test_a_square_of_another_colour_but_equal_brightness_does_not_ghost():
    g = torch.Generator().manual_seed(3)
    background = torch.tensor([0.6, 0.2, 0.4]).view(1, 3, 1, 1)
    pictures = []
    for k in range(5):
        picture = background.expand(1, 3, 96, 160).clone()
        picture[..., 30:60, 10 + 28 * k:40 + 28 * k] = torch.tensor([0.2, 0.6, 0.4]).view(
            1, 3, 1, 1)
        pictures.append(gaussian(picture, 10.0, g))
    last = unit(run_node("temporal_denoise", frames_of(pictures), frames=4, sigma=10)[-1])
    for k in range(4):  # where the square was: the background's colour, not a blend
        red = float(last[0, 0, 35:55, 15 + 28 * k:35 + 28 * k].mean())
        assert abs(red - 0.6) < 0.02


def test_add_noise_is_seeded_and_has_its_level():
    flat = [Frame.from_image(np.full((100, 120, 3), 128, np.uint8), index=i) for i in range(2)]
    a = run_node("add_noise", flat, sigma=12, seed=4)
    b = run_node("add_noise", flat, sigma=12, seed=4)
    assert all(torch.equal(x.image, y.image) for x, y in zip(a, b, strict=True))
    assert float((a[0].image.float() - 128).std()) == pytest.approx(12, rel=0.05)
    assert not torch.equal(a[0].image, a[1].image)
    shot = run_node("add_noise", flat, model="camera", shot=0.02, read=0.005)
    assert float((shot[0].image.float() - 128).std()) > 2

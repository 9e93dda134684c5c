"""The four shipped denoisers on real pictures they never saw (scikit-image's bundled ones):
far better than the noisy input, and better than OpenCV's non-local means at sigma 25."""

import math

import pytest
import torch

from plugins.denoise.apply import WEIGHTS, load
from plugins.denoise.evaluate import non_local_means
from plugins.denoise.noise import gaussian

SHIPPED = sorted(p.stem for p in WEIGHTS.glob("*.pt"))


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return 10 * math.log10(1 / float(((a.clamp(0, 1) - b) ** 2).mean()))


def test_the_four_denoisers_are_shipped():
    assert SHIPPED == ["color", "color-light", "gray", "gray-light"]


CASES = [(name, picture) for name in SHIPPED
         for picture in (["camera", "moon", "coins", "brick"] if name.startswith("gray")
                         else ["astronaut", "chelsea", "coffee"])]


@pytest.mark.parametrize(("name", "picture"), CASES)
def test_denoiser_beats_the_noise_and_non_local_means_at_sigma_25(name, picture):
    from skimage import data

    net, _ = load(name)
    image = torch.from_numpy(getattr(data, picture)()).float() / 255
    clean = image[None] if image.ndim == 2 else image.permute(2, 0, 1)  # gray or colour
    noisy = gaussian(clean[None], 25.0, torch.Generator().manual_seed(7))[0]
    with torch.no_grad():
        ours = net(noisy[None], 25.0)[0]
    nlm = non_local_means(noisy, 25.0)
    assert psnr(ours, clean) > psnr(noisy, clean) + 6.0
    assert psnr(ours, clean) > psnr(nlm, clean)



def _node_psnr(device: str, half: bool) -> float:
    from skimage import data

    from pipeline.core.frame import Frame
    from pipeline.core.node import NodeContext
    from pipeline.core.registry import Registry

    clean = torch.from_numpy(data.astronaut()).float() / 255
    noisy = gaussian(clean, 25.0, torch.Generator().manual_seed(5)).clamp(0, 1)
    cls = Registry.from_entry_points().get("denoise")
    node = cls(cls.Params(model="color", sigma=25, half=half),
               NodeContext("clean", torch.device(device)))
    node.open()
    (out,) = node.process_batch([Frame.from_image((noisy * 255).round().byte().to(device))])
    return psnr(out.image.cpu().permute(2, 0, 1).float() / 255, clean.permute(2, 0, 1))


@pytest.mark.gpu
def test_the_node_in_half_precision_on_cuda_scores_as_on_the_cpu():
    assert abs(_node_psnr("cuda", half=True) - _node_psnr("cpu", half=False)) < 0.1

"""The six shipped denoisers on real pictures they never saw (scikit-image's bundled ones):
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


def test_the_six_denoisers_are_shipped():
    assert SHIPPED == ["color", "color-light", "color-opponent", "color-opponent-light",
                       "gray", "gray-light"]


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


def _through_node(frame_image: torch.Tensor, **params: object) -> torch.Tensor:
    """A uint8 RGB picture through the denoise node; returns RGB floats (3, H, W) in 0..1."""
    from pipeline.core.frame import Frame
    from pipeline.kit.testing import run_node

    (out,) = run_node("denoise", [Frame.from_image(frame_image)], **params)
    return out.image.permute(2, 0, 1).float() / 255


@pytest.mark.parametrize("model", ["gray", "gray-light"])
def test_a_gray_frame_is_denoised_with_the_noise_it_has(model):
    """A gray picture (R = G = B, as from a night-mode camera) with noise of sigma 25, 8-bit:
    its luma carries all of that noise, so sigma 25 is what the node must ask for, and the
    blind estimate must find it too."""
    from skimage import data

    from plugins.denoise.noise import estimate_sigma

    clean = torch.from_numpy(data.camera()).float() / 255
    noisy = gaussian(clean[None, None], 25.0, torch.Generator().manual_seed(3)).clamp(0, 1)
    noisy8 = (noisy[0, 0] * 255).round().byte()
    frame = noisy8[..., None].expand(-1, -1, 3).contiguous()  # the same noise in R, G, B
    given = psnr(_through_node(frame, model=model, sigma=25)[0], clean)
    blind = psnr(_through_node(frame, model=model, sigma="auto")[0], clean)
    undershot = psnr(_through_node(frame, model=model, sigma=25 * 0.668)[0], clean)
    assert given > undershot + 0.5  # what a 0.668 scale did to gray footage
    assert given > psnr(noisy8.float() / 255, clean) + 5
    assert abs(blind - given) < 0.5
    rgb = frame.permute(2, 0, 1)[None].float() / 255
    assert estimate_sigma(rgb).item() == pytest.approx(25, rel=0.15)  # not 25 * sqrt(3)


def test_a_colour_frame_keeps_the_luma_scale():
    """Independent noise of sigma 25 in R, G and B leaves 0.668 x 25 in the luma: a gray
    model on a colour frame asks for that, as before."""
    from skimage import data

    clean = torch.from_numpy(data.astronaut()).float().permute(2, 0, 1) / 255
    noisy = gaussian(clean[None], 25.0, torch.Generator().manual_seed(4)).clamp(0, 1)[0]
    frame = (noisy * 255).round().byte().permute(1, 2, 0).contiguous()
    given = psnr(_through_node(frame, model="gray-light", sigma=25), clean)
    as_if_gray = psnr(_through_node(frame, model="gray-light", sigma=25 / 0.668), clean)
    assert given > as_if_gray


def test_eight_views_beat_one_and_answer_a_mirrored_frame_with_the_mirrored_answer():
    """Self-ensemble through the node: the average over all eight turned and mirrored
    copies is closer to the clean picture than the network's one answer, and it is the
    same whichever way the frame comes in (one view is not)."""
    from skimage import data

    clean = torch.from_numpy(data.astronaut()[100:260, 150:370]).float().permute(2, 0, 1) / 255
    noisy = gaussian(clean[None], 25.0, torch.Generator().manual_seed(6)).clamp(0, 1)[0]
    frame = (noisy * 255).round().byte().permute(1, 2, 0).contiguous()
    mirrored = frame.flip(1).contiguous()
    one = _through_node(frame, model="color-light", sigma=25)
    eight = _through_node(frame, model="color-light", sigma=25, views=8)
    assert psnr(eight, clean) > psnr(one, clean) + 0.05
    one_back = _through_node(mirrored, model="color-light", sigma=25).flip(2)
    eight_back = _through_node(mirrored, model="color-light", sigma=25, views=8).flip(2)
    assert (eight_back - eight).abs().max() <= 1 / 255  # at most one 8-bit step apart
    assert (one_back - one).abs().max() > 4 / 255


def test_a_gray_model_cleans_the_colour_noise_too_with_chroma_denoise():
    """``chroma: denoise``: the gray model cleans the three opponent planes of a colour
    frame, so the chroma noise that ``keep`` leaves goes too, and it does better than the
    light colour model; the blind estimate finds the level of R, G and B. On a gray frame
    the colour stays gray, and the answer is the luma path's."""
    from skimage import data

    clean = torch.from_numpy(data.astronaut()[80:272, 140:396]).float().permute(2, 0, 1) / 255
    noisy = gaussian(clean[None], 25.0, torch.Generator().manual_seed(8)).clamp(0, 1)[0]
    frame = (noisy * 255).round().byte().permute(1, 2, 0).contiguous()
    kept = psnr(_through_node(frame, model="gray", sigma=25), clean)
    cleaned = psnr(_through_node(frame, model="gray", sigma=25, chroma="denoise"), clean)
    blind = psnr(_through_node(frame, model="gray", sigma="auto", chroma="denoise"), clean)
    colour_model = psnr(_through_node(frame, model="color-light", sigma=25), clean)
    assert cleaned > kept + 5
    assert cleaned > colour_model + 0.3
    assert abs(blind - cleaned) < 0.5

    gray_frame = frame[..., :1].expand(-1, -1, 3).contiguous()
    by_planes = _through_node(gray_frame, model="gray", sigma=25, chroma="denoise")
    by_luma = _through_node(gray_frame, model="gray", sigma=25)
    assert (by_planes == by_planes[:1]).all()
    assert (by_planes - by_luma).abs().max() <= 1 / 255


@pytest.mark.parametrize(("model", "start"), [("color-opponent", "gray"),
                                              ("color-opponent-light", "gray-light")])
def test_the_gray_network_trained_on_colour_planes_beats_it_untrained_there(model, start):
    """``color-opponent`` (``color-opponent-light``), the gray network ``gray``
    (``gray-light``) trained as a colour model on the opponent planes of 8-bit noisy
    colour patches, cleans an 8-bit noisy colour frame better than where it started, the
    gray model with ``chroma: denoise``, and than ``color-light``; a gray frame stays
    gray."""
    from skimage import data

    clean = torch.from_numpy(data.astronaut()[80:272, 140:396]).float().permute(2, 0, 1) / 255
    noisy = gaussian(clean[None], 25.0, torch.Generator().manual_seed(8)).clamp(0, 1)[0]
    frame = (noisy * 255).round().byte().permute(1, 2, 0).contiguous()
    trained = psnr(_through_node(frame, model=model, sigma=25), clean)
    untrained = psnr(_through_node(frame, model=start, sigma=25, chroma="denoise"), clean)
    colour_model = psnr(_through_node(frame, model="color-light", sigma=25), clean)
    assert trained > untrained + 0.6
    assert trained > colour_model + 1.0
    gray_frame = frame[..., :1].expand(-1, -1, 3).contiguous()
    cleaned_gray = _through_node(gray_frame, model=model, sigma=25)
    assert (cleaned_gray == cleaned_gray[:1]).all()

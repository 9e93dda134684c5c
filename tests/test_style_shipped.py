"""The shipped styles on a photo none of them saw (scikit-image's astronaut): each paints it
visibly and differently from the others, keeps its size and its subject, and, where the
paintings are at hand, comes far closer to its own painting's style than the photo was."""

import itertools
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from plugins.style import checkpoint
from plugins.style.evaluate import main as evaluate
from plugins.style.losses import PerceptualLoss
from plugins.style.train import style_target
from plugins.style.vgg import VGG19

ROOT = Path(__file__).resolve().parent.parent
PAINTINGS = ROOT.parent / "shared/datasets/styles"
SHIPPED = sorted(p.stem for p in checkpoint.WEIGHTS.glob("*.pt"))


@pytest.fixture(scope="module")
def photo() -> torch.Tensor:
    from skimage import data

    picture = cv2.resize(data.astronaut(), (200, 200), interpolation=cv2.INTER_AREA)
    return torch.from_numpy(picture).permute(2, 0, 1)[None].float() / 255


@pytest.fixture(scope="module")
def painted(photo) -> dict[str, torch.Tensor]:
    out = {}
    with torch.no_grad():
        for name in SHIPPED:
            out[name] = checkpoint.load(name)[0](photo).clamp(0, 1)
    return out


def test_at_least_four_light_styles_ship_with_starry_night_and_wave():
    assert len(SHIPPED) >= 4
    assert {"starry_night-light", "wave-light"} <= set(SHIPPED)
    for name in SHIPPED:
        _, info = checkpoint.load(name)
        assert info["style"] == name.removesuffix("-light") + ".jpg"
        assert info["command"].startswith("vidgraph train style")
        assert info["iterations"] >= 1000 and isinstance(info["seed"], int)
        for command in info.get("init", {}).get("commands", []):  # a longer training's start
            assert command.startswith("vidgraph train style")


def test_each_style_paints_the_photo_its_own_way(photo, painted):
    for name, out in painted.items():
        assert out.shape == photo.shape
        assert (out - photo).abs().mean() > 0.08, name
    for (a, x), (b, y) in itertools.combinations(painted.items(), 2):
        if a.removesuffix("-light") != b.removesuffix("-light"):  # not one painting's two sizes
            assert (x - y).abs().mean() > 0.04, (a, b)


def test_each_style_keeps_the_subject(photo, painted):
    """Edges of the painted photo still follow the photo's edges (the face, the helmet,
    the flag): their correlation is several times that of an unrelated picture's."""
    from skimage import data

    def edges(x: torch.Tensor) -> np.ndarray:
        gray = (x[0].mean(0).numpy() * 255).astype(np.uint8)
        blurred = cv2.GaussianBlur(gray, (0, 0), 2.0)
        return np.hypot(cv2.Sobel(blurred, cv2.CV_32F, 1, 0), cv2.Sobel(blurred, cv2.CV_32F, 0, 1))

    reference = edges(photo).ravel()
    cat = cv2.resize(data.chelsea(), (200, 200), interpolation=cv2.INTER_AREA)
    unrelated = np.corrcoef(reference, edges(torch.from_numpy(cat).permute(2, 0, 1)[None]
                                             .float() / 255).ravel())[0, 1]
    for name, out in painted.items():
        correlation = np.corrcoef(reference, edges(out).ravel())[0, 1]
        assert correlation > max(0.1, 3 * unrelated), (name, correlation, unrelated)


@pytest.mark.skipif(not PAINTINGS.is_dir(), reason="the paintings are not in ../shared/datasets")
def test_each_style_comes_close_to_its_painting(photo, painted):
    vgg = VGG19.pretrained().eval()
    for name, out in painted.items():
        _, info = checkpoint.load(name)
        painting = style_target(PAINTINGS / info["style"], info["style_size"])
        style = torch.from_numpy(painting).permute(2, 0, 1)[None].float() / 255
        loss = PerceptualLoss(vgg, style, content_layers=info["content_layers"],
                              style_layers=info["style_layers"])
        with torch.no_grad():
            before, after = loss(photo, photo)["style"], loss(out, photo)["style"]
        assert after < 0.5 * before, (name, float(before), float(after))


def test_contact_sheet_shows_every_style(tmp_path):
    from argparse import Namespace

    from skimage import data

    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("astronaut", "chelsea"):
        cv2.imwrite(str(folder / f"{name}.png"), getattr(data, name)()[:, :, ::-1])
    sheet = tmp_path / "sheet.png"
    assert evaluate(Namespace(pictures=str(folder), model=SHIPPED[:2], sheet=str(sheet),
                              count=2, side=64, styles=None, threads=None)) == 0
    picture = cv2.imread(str(sheet))
    # two rows of squares under the titles: the photo's column, then one per style
    assert picture.shape[:2] == (28 + 2 * 64, 3 * 64)
    photo_column, first_style = picture[28:, :64].astype(int), picture[28:, 64:128].astype(int)
    assert np.abs(photo_column - first_style).mean() > 10

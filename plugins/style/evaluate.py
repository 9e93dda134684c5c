"""Compare styles on photos they never saw (`vidgraph eval style`).

Writes a contact sheet: a row per photo (its centre square), the photo first, then the
photo in every given style, each column titled with the model's name. With ``--styles``
(the folder holding the paintings the models were trained on), it also prints each
model's content and style losses on those photos, weighted as in its own training: the
figures its training minimised, measured on pictures outside its training set.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from pipeline.core.errors import VidgraphError

from . import checkpoint
from .losses import PerceptualLoss
from .train import PICTURES, read_picture, style_target
from .vgg import VGG19

TITLE_HEIGHT = 28


def configure(parser: argparse.ArgumentParser) -> None:
    """Declare the command's options."""
    parser.add_argument("--pictures", required=True, help="a folder of photos (Kodak24)")
    parser.add_argument("--model", action="append", required=True,
                        help="a built-in style or a checkpoint (repeat for several)")
    parser.add_argument("--sheet", required=True, help="the contact sheet to write (.png)")
    parser.add_argument("--count", type=int, default=4, help="photos (the first, sorted)")
    parser.add_argument("--side", type=int, default=256, help="their shorter side")
    parser.add_argument("--styles", help="folder of the paintings, to print the losses")
    parser.add_argument("--threads", type=int, help="CPU threads (default: torch's)")


def photos(folder: Path, count: int, side: int) -> list[np.ndarray]:
    """The centre squares (``side`` x ``side``, RGB uint8) of the first ``count`` photos of
    ``folder``, so that they line up on a sheet whatever their orientation."""
    if not folder.is_dir():
        raise VidgraphError(f"--pictures '{folder}' is not a folder")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in PICTURES)[:count]
    if not files:
        raise VidgraphError(f"--pictures '{folder}' holds no pictures")
    out = []
    for file in files:
        picture = read_picture(file)
        scale = side / min(picture.shape[:2])
        picture = cv2.resize(picture, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        top, left = (picture.shape[0] - side) // 2, (picture.shape[1] - side) // 2
        out.append(picture[top:top + side, left:left + side])
    return out


def titled(column: list[np.ndarray], title: str) -> np.ndarray:
    """Pictures stacked top to bottom under a white band with ``title``."""
    body = np.concatenate(column, 0)
    band = np.full((TITLE_HEIGHT, body.shape[1], 3), 255, np.uint8)
    cv2.putText(band, title, (6, TITLE_HEIGHT - 9), cv2.FONT_HERSHEY_SIMPLEX, 0.55,
                (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([band, body], 0)


def _tensor(picture: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(picture)).permute(2, 0, 1)[None].float() / 255


def _losses(info: dict, styles: Path, vgg: VGG19, inputs: list[torch.Tensor],
            outputs: list[torch.Tensor]) -> dict[str, float]:
    """Mean weighted content and style losses of a model's outputs, as it was trained."""
    painting = styles / info["style"]
    if not painting.is_file():
        raise VidgraphError(f"--styles '{styles}' has no '{info['style']}'")
    style = _tensor(style_target(painting, info.get("style_size", 512)))
    loss_fn = PerceptualLoss(vgg, style, content_layers=info["content_layers"],
                             style_layers=info["style_layers"])
    totals = {"content": 0.0, "style": 0.0}
    for x, y in zip(inputs, outputs, strict=True):
        found = loss_fn(y, x)
        for key in totals:
            totals[key] += float(found[key]) * info["weights"][key] / len(inputs)
    return totals


@torch.no_grad()
def main(args: argparse.Namespace) -> int:
    """Write the sheet (and print the losses); returns the exit status."""
    if args.threads:
        torch.set_num_threads(args.threads)
    pictures = photos(Path(args.pictures), args.count, args.side)
    inputs = [_tensor(p) for p in pictures]
    columns = [titled(pictures, "photo")]
    vgg = VGG19.pretrained().eval() if args.styles else None
    print(f"{'model':28}{'ms/photo':>10}{'content':>12}{'style':>12}")
    for name in args.model:
        net, info = checkpoint.load(name)
        started = time.monotonic()
        outputs = [net(x).clamp(0, 1) for x in inputs]
        ms = (time.monotonic() - started) * 1000 / len(inputs)
        columns.append(titled([(y[0].permute(1, 2, 0) * 255).round().byte().numpy()
                               for y in outputs], Path(name).stem))
        line = f"{Path(name).stem:28}{ms:10.0f}"
        if vgg is not None:
            losses = _losses(info, Path(args.styles), vgg, inputs, outputs)
            line += f"{losses['content']:12.4g}{losses['style']:12.4g}"
        print(line)
    sheet = np.concatenate(columns, 1)
    sheet_path = Path(args.sheet)
    sheet_path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(sheet_path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR)):
        raise VidgraphError(f"--sheet: cannot write '{sheet_path}'")
    print(f"wrote {sheet_path} ({sheet.shape[1]}x{sheet.shape[0]})")
    return 0

"""Train a feed-forward style network on a painting (`vidgraph train style`).

Perceptual losses (Johnson et al. 2016) with VGG-19 as the loss network: content at one
layer, Gram-matrix style over several, total variation; content pictures from a folder of
photos or frames sampled from a video (the user's own footage). With
``--temporal-weight``, the network also learns to answer a slightly shifted, slightly
noisy copy of a picture with the same shift of its answer, which is what keeps video from
flickering frame to frame.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import torch
import torch.nn.functional as F

from pipeline.core.device import resolve_device
from pipeline.core.errors import VidgraphError
from pipeline.kit.training import (
    ProgressBar,
    Resumable,
    add_resume_options,
    autocast,
    run_facts,
    schedule,
    seed_everything,
)
from pipeline.kit.weights import built_in_files, start_from

from . import checkpoint
from .losses import CONTENT_LAYERS, STYLE_LAYERS, PerceptualLoss
from .model import ARCHITECTURES
from .vgg import VGG19

PICTURES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def configure(parser: argparse.ArgumentParser) -> None:
    """Declare the command's options."""
    parser.add_argument("--style", required=True, help="the painting (a picture file)")
    parser.add_argument("--content", required=True, help="a folder of photos, or a video")
    parser.add_argument("--out", required=True, help="checkpoint to write (.pt)")
    parser.add_argument("--arch", choices=("johnson", "ulyanov"), default="johnson")
    parser.add_argument("--width", type=float, default=1.0, help="channel multiplier "
                        "(0.5 with --blocks 3: the light variant, for CPUs)")
    parser.add_argument("--blocks", type=int, help="residual blocks (johnson; default 5)")
    parser.add_argument("--scales", type=int, help="scales (ulyanov; default 5)")
    parser.add_argument("--size", type=int, default=256, help="training crop side")
    parser.add_argument("--style-size", type=int, default=512,
                        help="the painting's longer side when its Gram matrices are taken")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--content-weight", type=float, default=1.0,
                        help="weight of the content loss (each loss is relative, about 1)")
    parser.add_argument("--style-weight", type=float, default=1.5,
                        help="weight of the style loss: higher paints more, keeps less")
    parser.add_argument("--tv-weight", type=float, default=0.5,
                        help="weight of total variation (smoothness)")
    parser.add_argument("--temporal-weight", type=float, default=0.0,
                        help="weight of the stability loss (0: off)")
    parser.add_argument("--content-layers", nargs="+", default=list(CONTENT_LAYERS))
    parser.add_argument("--style-layers", nargs="+", default=list(STYLE_LAYERS))
    parser.add_argument("--frames", type=int, default=2000,
                        help="most frames sampled from a content video")
    parser.add_argument("--preview-every", type=int, default=200,
                        help="write OUT.preview.png every N iterations (0: never)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--threads", type=int, help="CPU threads (default: torch's)")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 mixed precision on "
                        "the CPU too, where it is native (AVX-512 BF16, AMX): about twice "
                        "as fast for full-width networks, slower for light ones")
    parser.add_argument("--init", metavar="MODEL",
                        help="start from this style network's weights (a built-in style "
                        "or a checkpoint; its architecture and size), with a new optimiser "
                        "and schedule: a longer training, or another painting from a "
                        "trained one")
    add_resume_options(parser)


#: options added after runs began, with the value those runs had (their states resume)
ADDED_OPTIONS: dict[str, Any] = {"init": None}


def network(args: argparse.Namespace
            ) -> tuple[torch.nn.Module, dict[str, Any], dict[str, Any]]:
    """The network to train and its size; with ``--init``, the trained one it starts from
    and what that one's checkpoint records of its own training (``init``)."""
    if args.init:
        asked = {"width": args.width, "blocks": args.blocks, "scales": args.scales}
        net, size, started = start_from(args.init, built_in_files(checkpoint.WEIGHTS),
                                        ARCHITECTURES, "style", args.arch, asked)
        return net, size, {"init": started}
    extra = "blocks" if args.arch == "johnson" else "scales"
    arch_args: dict[str, Any] = {"width": args.width}
    if getattr(args, extra):
        arch_args[extra] = getattr(args, extra)
    return checkpoint.build(args.arch, arch_args), arch_args, {}


def read_picture(path: Path) -> np.ndarray:
    """An RGB uint8 picture from a file; a clear error when it cannot be read."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise VidgraphError(f"cannot read picture '{path}'")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def style_target(path: Path, side: int) -> np.ndarray:
    """The painting as the loss network sees it: RGB, its longer side scaled to ``side``."""
    picture = read_picture(path)
    scale = side / max(picture.shape[:2])
    return cv2.resize(picture, None, fx=scale, fy=scale,
                      interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)


def _shorter_side(image: np.ndarray, side: int) -> np.ndarray:
    height, width = image.shape[:2]
    scale = side / min(height, width)
    size = (max(side, round(width * scale)), max(side, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1
                      else cv2.INTER_LINEAR)


def content_pictures(source: str | Path, side: int, frames: int) -> list[np.ndarray]:
    """Content pictures with their shorter side at ``side``: every picture in a folder
    (recursively), or up to ``frames`` frames spread over a video."""
    source = Path(source)
    if source.is_dir():
        files = sorted(p for p in source.rglob("*") if p.suffix.lower() in PICTURES)
        if not files:
            raise VidgraphError(f"--content '{source}' holds no pictures")
        return [_shorter_side(read_picture(p), side) for p in files]
    if not source.is_file():
        raise VidgraphError(f"--content '{source}' is neither a folder nor a video file")
    try:
        with av.open(str(source)) as container:
            stream = container.streams.video[0]
            total = stream.frames or frames
            step = max(1, total // frames)
            out = [_shorter_side(f.to_ndarray(format="rgb24"), side)
                   for i, f in enumerate(container.decode(stream)) if i % step == 0]
    except (av.FFmpegError, IndexError) as exc:
        raise VidgraphError(f"--content '{source}': cannot read video frames ({exc})") from exc
    if not out:
        raise VidgraphError(f"--content '{source}' has no video frames")
    return out[:frames]


def sample(pictures: list[np.ndarray], count: int, size: int,
           rng: np.random.Generator) -> torch.Tensor:
    """``count`` random ``size`` x ``size`` crops (randomly flipped) as (N, 3, S, S) 0..1."""
    crops = []
    for k in rng.integers(0, len(pictures), count):
        picture = pictures[k]
        y = rng.integers(0, picture.shape[0] - size + 1)
        x = rng.integers(0, picture.shape[1] - size + 1)
        crop = picture[y:y + size, x:x + size]
        crops.append(crop[:, ::-1] if rng.random() < 0.5 else crop)
    batch = torch.from_numpy(np.ascontiguousarray(np.stack(crops)))
    return batch.permute(0, 3, 1, 2).float() / 255


def stability_loss(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                   rng: np.random.Generator) -> torch.Tensor:
    """How differently the network answers a copy of ``x`` shifted by a pixel or two and
    lightly noised, compared with the same shift of its answer ``y`` (borders excluded)."""
    dy, dx = (int(v) for v in rng.integers(-2, 3, 2))
    noise = torch.randn_like(x) * 0.02
    moved = net((x.roll((dy, dx), (2, 3)) + noise).clamp(0, 1))
    return F.mse_loss(moved[..., 8:-8, 8:-8], y.roll((dy, dx), (2, 3))[..., 8:-8, 8:-8])


def main(args: argparse.Namespace) -> int:
    """Train and save; returns the exit status."""
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    seed_everything(args.seed)
    rng = np.random.default_rng(args.seed)
    style_file = Path(args.style)
    style_picture = style_target(style_file, args.style_size)
    pictures = content_pictures(args.content, round(args.size * 1.15), args.frames)
    net, arch_args, started_from = network(args)
    net = net.to(device)
    vgg = VGG19.pretrained().to(device)
    style = torch.from_numpy(style_picture).permute(2, 0, 1)[None].float().to(device) / 255
    try:
        loss_fn = PerceptualLoss(vgg, style, content_layers=args.content_layers,
                                 style_layers=args.style_layers)
    except ValueError as exc:
        raise VidgraphError(f"--content-layers/--style-layers: {exc}") from exc
    optimizer = torch.optim.Adam(net.parameters(), lr=args.lr)
    scheduler = schedule(optimizer, args.iterations, max(1, args.iterations // 50))
    weights = {"content": args.content_weight, "style": args.style_weight,
               "tv": args.tv_weight, "temporal": args.temporal_weight}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    preview = sample(pictures, 2, args.size, np.random.default_rng(args.seed + 1)).to(device)
    print(f"{len(pictures)} content pictures; style {style_file.name} "
          f"{style_picture.shape[1]}x{style_picture.shape[0]}; {args.arch} width "
          f"{args.width}: {sum(p.numel() for p in net.parameters()):,} parameters; {device}",
          file=sys.stderr)
    run = Resumable(args, out, ADDED_OPTIONS)
    parts = {"net": net, "optimizer": optimizer, "scheduler": scheduler}
    kept = run.load(parts, rng, None) or {"step": 0, "history": []}
    history: list[dict[str, float]] = kept["history"]
    step = kept["step"]
    bar = ProgressBar(args.iterations - step, "train", every=max(1, args.iterations // 20))
    with run.stopping_on_signals():
        while step < args.iterations:
            step += 1
            net.train()
            x = sample(pictures, args.batch_size, args.size, rng).to(device)
            with autocast(device, cpu=args.bf16):
                y = net(x)
                losses = dict(loss_fn(y.float(), x))
                if args.temporal_weight:
                    losses["temporal"] = stability_loss(net, x, y, rng)
            total = sum(weights[k] * v.float() for k, v in losses.items())
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()
            scheduler.step()
            figures = {k: v.item() for k, v in losses.items()}
            history.append({"step": step, **figures})
            bar.update(**figures)
            if args.preview_every and (step % args.preview_every == 0
                                       or step == args.iterations):
                _write_preview(net, preview, out.with_suffix(".preview.png"))
            run.stepped()
            if step < args.iterations and run.due():
                break
    bar.close()
    state = run.save(parts, rng, None, {"step": step, "history": history})
    last = history[-max(1, len(history) // 20):]
    info = {
        "command": run.commands[0], "commands": run.commands, "steps_done": step,
        "style": style_file.name,
        "style_sha256": hashlib.sha256(style_file.read_bytes()).hexdigest(),
        "seed": args.seed, "iterations": args.iterations, "batch_size": args.batch_size,
        "size": args.size, "style_size": args.style_size, "weights": weights,
        "content_layers": args.content_layers, "style_layers": args.style_layers,
        "content": str(args.content),
        "content_pictures": len(pictures),
        "final_losses": {k: float(np.mean([h[k] for h in last])) for k in history[-1]
                         if k != "step"},
        "first_losses": history[0], "minutes": round(run.seconds() / 60, 1),
        **started_from,
        **run_facts(device, cpu_mixed=args.bf16),
        "history": history[:: max(1, len(history) // 200)],
    }
    checkpoint.save(out, net, args.arch, arch_args, info)
    if step < args.iterations:
        print(f"stopped at step {step} of {args.iterations} (the network so far is in {out}): "
              f"go on with --resume {state}", file=sys.stderr)
        return run.exit_status()
    print(f"saved {out}: final losses " + ", ".join(
        f"{k} {v:.4g}" for k, v in info["final_losses"].items())
        + f"; {info['minutes']} min", file=sys.stderr)
    return 0


@torch.no_grad()
def _write_preview(net: torch.nn.Module, pictures: torch.Tensor, path: Path) -> None:
    net.eval()
    styled = net(pictures).clamp(0, 1)
    rows = torch.cat([pictures, styled], 3)  # each content beside its stylised self
    sheet = torch.cat(list(rows), 1).permute(1, 2, 0).mul(255).round().byte().cpu().numpy()
    cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))

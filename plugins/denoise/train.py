"""Train a denoiser on clean pictures with synthetic noise (`vidgraph train denoise`).

Random patches, flipped and rotated, get Gaussian noise at a random level per patch (or,
with ``--noise camera``, a sensor's shot and read noise in linear light); FFDNet is told
each patch's level as its noise map, DnCNN is not (blind). ``--quantize`` rounds and
clips the noisy patches to 8 bits, as a camera or a PNG holds them; ``--init`` starts from
a trained denoiser (fine-tuning). The checkpoint that denoises a held-out set best (PSNR at
sigma 25, seeded noise) is kept, and written at every improvement.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from pipeline.core.device import resolve_device
from pipeline.core.errors import VidgraphError
from pipeline.kit.training import (
    SCHEDULES,
    ProgressBar,
    Resumable,
    add_resume_options,
    autocast,
    command_line,
    run_facts,
    schedule,
    seed_everything,
)
from pipeline.kit.weights import built_in_files, save_network, start_from

from .apply import WEIGHTS
from .model import ARCHITECTURES, HOLDERS, FFDNet, Opponent
from .noise import camera, gaussian, quantize, to_linear, to_srgb

PICTURES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


def charbonnier(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Charbonnier's smooth L1: sqrt(d^2 + eps^2), eps a thousandth of the 0..1 range."""
    return torch.sqrt((output - target) ** 2 + 1e-6).mean()


def minus_psnr(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Minus the mean of the patches' PSNRs (dB), each patch's error floored at one level
    in 255. A mean square or absolute error lets the patches with the most noise steer the
    network; here each patch counts by its error relative to its own, as the mean PSNR of
    pictures at several noise levels does."""
    error = ((output - target) ** 2).flatten(1).mean(1)
    return 10 * torch.log10(error + 1 / 255 ** 2).mean()


#: training losses by ``--loss`` name
LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "mse": F.mse_loss, "l1": F.l1_loss, "charbonnier": charbonnier, "psnr": minus_psnr}
#: options this trainer gained after the first long runs, as those runs trained (and
#: their defaults)
ADDED_OPTIONS: dict[str, Any] = {"loss": "mse", "schedule": "cosine", "quantize": False,
                                 "init": None, "residual": False, "coarse_depth": 0,
                                 "coarse_features": 96}


def configure(parser: argparse.ArgumentParser) -> None:
    """Declare the command's options."""
    parser.add_argument("data", nargs="+", help="folders of clean pictures")
    parser.add_argument("--out", required=True, help="checkpoint to write (.pt)")
    parser.add_argument("--arch", choices=sorted(ARCHITECTURES), default="ffdnet",
                        help="ffdnet, dncnn, or opponent: a gray FFDNet that cleans colour "
                        "pictures plane by plane in opponent colour (--init takes a gray "
                        "ffdnet or an opponent)")
    parser.add_argument("--channels", type=int, choices=(1, 3), default=3,
                        help="1: gray model, 3: colour model")
    parser.add_argument("--features", type=int, help="channels per layer (light: 32; "
                        "ffdnet with --init: more than the network has grows it by "
                        "channels that copy its own)")
    parser.add_argument("--depth", type=int, help="layers (ffdnet with --init: more than "
                        "the network has grows it by layers that start as the identity)")
    parser.add_argument("--coarse-depth", type=int, default=ADDED_OPTIONS["coarse_depth"],
                        help="ffdnet, opponent: a branch of this many layers at a quarter of "
                        "the picture's resolution in the middle of the network, for a wider "
                        "view (with --init: grown, starting by adding nothing)")
    parser.add_argument("--coarse-features", type=int,
                        default=ADDED_OPTIONS["coarse_features"],
                        help="channels per layer of the coarse branch")
    parser.add_argument("--residual", action="store_true",
                        help="ffdnet: the layers learn the correction to the noisy picture "
                        "(as DnCNN's do) rather than the clean picture")
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=20000)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--schedule", choices=SCHEDULES, default=ADDED_OPTIONS["schedule"],
                        help="learning rate after the warm-up: cosine decay to zero, "
                        "step (a tenth from half of the iterations, a hundredth from three "
                        "quarters), or constant")
    parser.add_argument("--loss", choices=sorted(LOSSES), default=ADDED_OPTIONS["loss"],
                        help="mse (the papers'), l1, charbonnier (a smooth L1), or psnr (minus "
                        "the mean of the patches' PSNRs: low-noise patches count as much as "
                        "noisy ones)")
    parser.add_argument("--noise", choices=("gaussian", "camera"), default="gaussian")
    parser.add_argument("--sigma-max", type=float, default=75.0,
                        help="gaussian: levels drawn from 0..this (0..255 scale)")
    parser.add_argument("--quantize", action="store_true",
                        help="round and clip the noisy patches to 8 bits (0-255), as a "
                        "camera, a video or a PNG holds them, and so the held-out pictures")
    parser.add_argument("--init", metavar="MODEL",
                        help="start from this denoiser's weights (a built-in name or a "
                        "checkpoint; its architecture and size), with a new optimiser and "
                        "schedule: fine-tuning")
    parser.add_argument("--shot-max", type=float, default=0.02, help="camera: shot gain")
    parser.add_argument("--read-max", type=float, default=0.02, help="camera: read noise")
    parser.add_argument("--holdout", type=int, default=8,
                        help="pictures kept apart to choose the checkpoint")
    parser.add_argument("--val-every", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--threads", type=int, help="CPU threads (default: torch's)")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 mixed precision on "
                        "the CPU too, where it is native (AVX-512 BF16, AMX): 1.8 to 2.2 "
                        "times as fast for every size measured, light ones included")
    add_resume_options(parser)


def read_pictures(folders: list[str], channels: int) -> list[torch.Tensor]:
    """Every picture under ``folders`` as a (C, H, W) float tensor in 0..1."""
    files = sorted(p for folder in folders for p in Path(folder).rglob("*")
                   if p.suffix.lower() in PICTURES)
    if not files:
        raise VidgraphError(f"no pictures in {', '.join(folders)}")
    out = []
    for file in files:
        flag = cv2.IMREAD_GRAYSCALE if channels == 1 else cv2.IMREAD_COLOR
        image = cv2.imread(str(file), flag)
        if image is None:
            raise VidgraphError(f"cannot read picture '{file}'")
        if channels == 3:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        tensor = torch.from_numpy(np.ascontiguousarray(image)).float() / 255
        out.append(tensor[None] if channels == 1 else tensor.permute(2, 0, 1))
    return out


def patches(pictures: list[torch.Tensor], count: int, size: int,
            rng: np.random.Generator) -> torch.Tensor:
    """``count`` random patches (N, C, size, size), each flipped and rotated at random."""
    out = []
    for k in rng.integers(0, len(pictures), count):
        picture = pictures[k]
        y = rng.integers(0, max(1, picture.shape[1] - size + 1))
        x = rng.integers(0, max(1, picture.shape[2] - size + 1))
        patch = picture[:, y:y + size, x:x + size]
        if patch.shape[1:] != (size, size):
            patch = F.interpolate(patch[None], size=(size, size), mode="bilinear")[0]
        patch = torch.rot90(patch, int(rng.integers(0, 4)), (1, 2))
        out.append(patch.flip(2) if rng.random() < 0.5 else patch)
    return torch.stack(out)


def noisy_batch(clean: torch.Tensor, args: argparse.Namespace, generator: torch.Generator
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy patches and their noise maps (N, 1, H, W, 0..255 scale)."""
    n = clean.shape[0]
    if args.noise == "gaussian":
        sigma = torch.rand(n, generator=generator).to(clean.device) * args.sigma_max
        noisy = gaussian(clean, sigma, generator if clean.device.type == "cpu" else None)
        level = sigma.view(n, 1, 1, 1).expand(n, 1, *clean.shape[-2:])
    else:
        shot = torch.rand(n, generator=generator).to(clean.device) * args.shot_max
        read = torch.rand(n, generator=generator).to(clean.device) * args.read_max
        noisy = camera(clean, shot, read, generator if clean.device.type == "cpu" else None)
        # the sRGB standard deviation: linear noise times the slope of the gamma curve
        linear = to_linear(clean)
        std = (shot.view(n, 1, 1, 1) * linear + read.view(n, 1, 1, 1) ** 2).sqrt()
        slope = (to_srgb(linear + 1e-3) - to_srgb((linear - 1e-3).clamp(min=0))) / 2e-3
        level = (std * slope).mean(1, keepdim=True) * 255
    return quantize(noisy) if args.quantize else noisy, level


def network(args: argparse.Namespace, train: list[torch.Tensor]
            ) -> tuple[torch.nn.Module, str, dict[str, Any], dict[str, Any]]:
    """The network to train, its architecture and size, and (with ``--init``) what the
    checkpoint it starts from records of its own training (``init``: its commands and
    minutes, which a model card adds to this run's). An FFDNet given ``--init`` and more
    ``--features`` or a greater ``--depth`` grows to them (:meth:`FFDNet.widen`, then
    :meth:`FFDNet.deepen`, measured on a batch of the ``train`` pictures; both draw apart
    from the run's own random streams). The ``opponent`` architecture is a gray FFDNet
    built (or started from a gray or opponent ``--init``) the same way, run on the opponent
    colour planes."""
    if args.arch == "opponent":
        gray = argparse.Namespace(**{**vars(args), "arch": "ffdnet", "channels": 1})
        plane, _, size, started = network(gray, train)
        return Opponent(plane), args.arch, {**size, "channels": 3}, started
    if not args.init:
        arch_args: dict[str, Any] = {"channels": args.channels}
        if args.features:
            arch_args["features"] = args.features
        if args.depth:
            arch_args["depth"] = args.depth
        if args.residual:
            arch_args["residual"] = True
        if args.coarse_depth:
            arch_args |= {"coarse_features": args.coarse_features,
                          "coarse_depth": args.coarse_depth}
        return ARCHITECTURES[args.arch](**arch_args), args.arch, arch_args, {}
    grow = args.depth if args.arch == "ffdnet" else None
    widen = args.features if args.arch == "ffdnet" else None
    asked = {"channels": args.channels, "features": None if widen else args.features,
             "depth": None if grow else args.depth, "residual": args.residual or None}
    net, size, started = start_from(args.init, built_in_files(WEIGHTS), ARCHITECTURES,
                                    "denoiser", args.arch, asked, HOLDERS)
    # only a file with a branch names one in its size (none of zero size in arch_args)
    branched = getattr(net, "coarse_depth", 0)
    if branched:
        size |= {"coarse_features": net.coarse_features, "coarse_depth": branched}
    if branched and (
            (widen and widen != size["features"]) or (grow and grow != size["depth"])):
        raise VidgraphError(f"--init {args.init} has a coarse branch: a network grows "
                            "wider or deeper before it gets one")
    if widen and widen != size["features"]:
        if widen < size["features"]:
            raise VidgraphError(f"--features {widen}: --init {args.init} has "
                                f"{size['features']} channels, and a network can grow but "
                                "not shrink")
        cast(FFDNet, net).widen(widen, torch.Generator().manual_seed(args.seed + 1))
        started["grown_from_features"], size["features"] = size["features"], widen
    if grow and grow != size["depth"]:
        if grow < size["depth"]:
            raise VidgraphError(f"--depth {grow}: --init {args.init} has {size['depth']} "
                                "layers, and a network can grow but not shrink")
        clean = patches(train, args.batch_size, args.patch,
                        np.random.default_rng(args.seed + 1))
        if clean.shape[1] != args.channels:  # colour patches for the opponent's gray network
            clean = clean.mean(1, keepdim=True)
        noisy, level = noisy_batch(clean, args, torch.Generator().manual_seed(args.seed + 1))
        cast(FFDNet, net).deepen(grow, noisy, level)
        started["grown_from_depth"], size["depth"] = size["depth"], grow
    if args.coarse_depth and args.arch == "ffdnet":
        if branched:
            raise VidgraphError(f"--coarse-depth {args.coarse_depth}: --init {args.init} "
                                "has a coarse branch already")
        cast(FFDNet, net).add_coarse(args.coarse_features, args.coarse_depth)
        started["grown_coarse"] = True
        size |= {"coarse_features": args.coarse_features, "coarse_depth": args.coarse_depth}
    return net, args.arch, size, {"init": started}


def train_step(net: torch.nn.Module, optimizer: torch.optim.Optimizer,
               loss_of: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
               noisy: torch.Tensor, level: torch.Tensor, clean: torch.Tensor,
               bf16: bool) -> torch.Tensor:
    """One optimiser step on a batch (bfloat16 mixed where :func:`autocast` says so, for
    ``bf16`` on the CPU); returns the loss."""
    with autocast(noisy.device, cpu=bf16):
        loss = loss_of(net(noisy, level).float(), clean)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB for pictures in 0..1."""
    return 10 * math.log10(1 / max(1e-12, float(((a.clamp(0, 1) - b) ** 2).mean())))


def main(args: argparse.Namespace) -> int:
    """Train, choose on the held-out pictures, save; returns the exit status."""
    if args.residual and args.arch == "dncnn":
        raise VidgraphError("--residual is an ffdnet option (dncnn is residual already)")
    if args.coarse_depth < 0 or args.coarse_features < 1:
        raise VidgraphError(f"--coarse-depth {args.coarse_depth} --coarse-features "
                            f"{args.coarse_features}: a branch has layers of channels (depth "
                            "0: none)")
    if args.coarse_depth and args.arch == "dncnn":
        raise VidgraphError("--coarse-depth is an ffdnet and opponent option, not dncnn's")
    if args.arch == "opponent" and args.channels != 3:
        raise VidgraphError("--arch opponent is a colour model: --channels 3 (its gray "
                            "network sees the colour pictures' opponent planes)")
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    generator = seed_everything(args.seed)
    rng = np.random.default_rng(args.seed)
    pictures = read_pictures(args.data, args.channels)
    order = rng.permutation(len(pictures))
    held = [pictures[i] for i in order[:args.holdout]]
    train = [pictures[i] for i in order[args.holdout:]] or held
    net, arch, arch_args, started_from = network(args, train)
    net = net.to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=args.lr)
    scheduler = schedule(optimizer, args.iterations, max(1, args.iterations // 100),
                         args.schedule)
    loss_of = LOSSES[args.loss]
    check = torch.Generator().manual_seed(1234)
    val_clean = [p[:, :256, :256].to(device) for p in held]
    val_noisy = [gaussian(p[None].cpu(), 25.0, check).to(device) for p in val_clean]
    val_noisy = [quantize(p) for p in val_noisy] if args.quantize else val_noisy
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    info: dict[str, Any] = {
        "command": command_line(args),
        "data": args.data, "pictures": len(train), "held_out": len(held), "seed": args.seed,
        "iterations": args.iterations, "patch": args.patch, "batch_size": args.batch_size,
        "noise": args.noise, "sigma_max": args.sigma_max, "loss": args.loss,
        "schedule": args.schedule, "quantize": args.quantize, **started_from,
        **run_facts(device, cpu_mixed=args.bf16),
    }
    print(f"{len(train)} training and {len(held)} held-out pictures; {args.arch} "
          f"{sum(p.numel() for p in net.parameters()):,} parameters; {device}",
          file=sys.stderr)
    run = Resumable(args, out, ADDED_OPTIONS)
    parts = {"net": net, "optimizer": optimizer, "scheduler": scheduler}
    kept = run.load(parts, rng, generator) or {"step": 0, "best": -1.0, "history": [],
                                               "info": info}
    info = {**kept["info"], "commands": run.commands}  # the card lists every run's command
    if kept["step"]:
        print(f"resuming at step {kept['step'] + 1} of {args.iterations}", file=sys.stderr)
    best, history = kept["best"], kept["history"]
    bar = ProgressBar(args.iterations - kept["step"], "train",
                      every=max(1, args.iterations // 50))
    step = kept["step"]
    with run.stopping_on_signals():
        while step < args.iterations:
            step += 1
            net.train()
            clean = patches(train, args.batch_size, args.patch, rng).to(device)
            noisy, level = noisy_batch(clean, args, generator)
            loss = train_step(net, optimizer, loss_of, noisy, level, clean, args.bf16)
            scheduler.step()
            bar.update(loss=loss.item())
            if step % args.val_every == 0 or step == args.iterations:
                score = validate(net, val_noisy, val_clean)
                history.append({"step": step, "loss": loss.item(), "val_psnr_25": score})
                if score > best:
                    best = score
                    info.update(best_step=step, val_psnr_25=score, history=history,
                                minutes=round(run.seconds() / 60, 1))
                    save_network(out, net, arch, arch_args, info)
            run.stepped()
            if step < args.iterations and run.due():
                break
    bar.close()
    state = run.save(parts, rng, generator,
                     {"step": step, "best": best, "history": history, "info": info})
    run.note(out)
    if step < args.iterations:
        print(f"stopped at step {step} of {args.iterations}: go on with --resume {state}",
              file=sys.stderr)
        return run.exit_status()
    print(f"saved {out}: held-out PSNR {best:.2f} dB at sigma 25 (step {info['best_step']}); "
          f"{run.seconds() / 60:.1f} min of training", file=sys.stderr)
    return 0


@torch.no_grad()
def validate(net: torch.nn.Module, noisy: list[torch.Tensor],
             clean: list[torch.Tensor]) -> float:
    """Mean PSNR (dB) of the network's output on held-out noisy pictures (sigma 25)."""
    net.eval()
    return float(np.mean([psnr(net(x, 25.0)[0], c) for x, c in zip(noisy, clean, strict=True)]))

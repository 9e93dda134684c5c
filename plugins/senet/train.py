"""Train an SE-ResNet classifier on labelled pictures (`vidgraph train classify`).

Augmentation (random crop, flip, small rotation and scale, brightness and contrast) runs
on whole batches on the training device. The checkpoint with the best accuracy on the
held-out split (one view per picture) is kept; the test split, when there is one, is
scored once at the end through the checkpoint's test-time views, with a confusion matrix
printed and saved as a PNG beside the checkpoint.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

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
    command_line,
    run_facts,
    schedule,
    seed_everything,
)

from .checkpoint import Classifier
from .data import LabelledImages, read
from .model import as_arguments, build
from .report import confusion_matrix, confusion_png, format_confusion


def configure(parser: argparse.ArgumentParser) -> None:
    """Declare the command's options."""
    parser.add_argument("data", help="folder of class folders, or an .npz (see data.py)")
    parser.add_argument("--out", required=True, help="checkpoint to write (.pt)")
    parser.add_argument("--arch", default="se_resnet_compact",
                        help="se_resnet_compact (default), se_resnet18/34/50/101")
    parser.add_argument("--widths", type=int, nargs="+", help="stage widths")
    parser.add_argument("--layers", type=int, nargs="+", help="blocks per stage")
    parser.add_argument("--size", type=int, help="input side (default: the data's own)")
    parser.add_argument("--crop", type=int, help="random crop side while training "
                        "(default: the input side)")
    parser.add_argument("--views", choices=("one", "flip", "crops"),
                        help="test-time views kept in the checkpoint, used for the test split "
                        "and in graphs: the picture, also its mirror image, or also its "
                        "corner and centre --crop crops (default: crops with --crop, "
                        "else flip)")
    parser.add_argument("--gray", action=argparse.BooleanOptionalAction, default=None,
                        help="one gray channel (default: gray if the data is)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--optimizer", choices=("adamw", "sgd"), default="adamw")
    parser.add_argument("--lr", type=float, help="peak rate (default 2e-3 adamw, 0.1 sgd)")
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--warmup", type=float, default=1.0, help="warm-up epochs")
    parser.add_argument("--label-smoothing", type=float, default=0.1)
    parser.add_argument("--dropout", type=float, default=0.2)
    parser.add_argument("--rotate", type=float, default=10.0, help="max rotation, degrees")
    parser.add_argument("--train-on", help="split to train on (default: the first)")
    parser.add_argument("--choose-on", help="split that picks the checkpoint (default: the "
                        "second; without splits, a seeded --holdout fraction)")
    parser.add_argument("--test-on", help="split scored at the end (default: the third)")
    parser.add_argument("--holdout", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--threads", type=int, help="CPU threads (default: torch's)")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 mixed precision on "
                        "the CPU too (where it has native bfloat16; always on CUDA)")
    add_resume_options(parser)


def main(args: argparse.Namespace) -> int:
    """Train, choose, test and save; returns the exit status."""
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    generator = seed_everything(args.seed)
    data = read(args.data, args.size, args.gray)
    train, choose, test = _splits(data, args, generator)
    size = int(data.images.shape[1])
    crop = args.crop or size
    if not 8 <= crop <= size:
        raise VidgraphError(f"--crop {crop} must be between 8 and the input side {size}")
    gray = data.images.shape[3] == 1
    pixels = train.images.float() / 255
    mean = pixels.mean((0, 1, 2)).tolist()
    std = pixels.std((0, 1, 2)).clamp(min=1e-3).tolist()
    arch_args: dict[str, Any] = {"dropout": args.dropout} if args.dropout is not None else {}
    if args.widths:
        arch_args["widths"] = list(args.widths)
    if args.layers:
        arch_args["layers"] = list(args.layers)
    if args.arch != "se_resnet_compact":
        arch_args.pop("layers", None)
    try:
        net = build(args.arch, len(data.classes), 1 if gray else 3,
                    **as_arguments(arch_args))
    except (ValueError, TypeError) as exc:
        raise VidgraphError(f"--arch {args.arch}: {exc}") from exc
    net = net.to(device).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    views = args.views or ("crops" if crop < size else "flip")
    model = Classifier(net, args.arch, arch_args, data.classes,
                       {"size": size, "gray": gray, "mean": mean, "std": std,
                        "views": {"flip": views != "one",
                                  "crop": crop if views == "crops" else None}})
    print(f"train {len(train)}, choose {len(choose)}, test {len(test) if test else 0} "
          f"pictures; {len(data.classes)} classes; {size}x{size} "
          f"{'gray' if gray else 'RGB'}; {sum(p.numel() for p in net.parameters()):,} "
          f"parameters; {device}", file=sys.stderr)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    info: dict[str, Any] = {
        "command": command_line(args),
        "seed": args.seed, "epochs": args.epochs, "views": views,
        **run_facts(device, cpu_mixed=args.bf16), "fp16": True,
    }

    def keep(best: dict[str, Any], history: list[dict[str, float]]) -> None:
        # Written at every improvement, so an interrupted run still leaves its best model.
        model.info = {**info, "best_epoch": best["epoch"], "choose_accuracy": best["accuracy"],
                      "history": history, "finished": False}
        model.save(out)

    run = Resumable(args, out)
    with run.stopping_on_signals():
        fitted = _fit(model, train, choose, crop, args, device, generator, keep, run)
    if fitted is None:
        return run.exit_status()
    best, history = fitted
    net.load_state_dict(best["state"])
    info.update(best_epoch=best["epoch"], choose_accuracy=best["accuracy"], history=history,
                minutes=round(run.seconds() / 60, 1), finished=True, commands=run.commands)
    if test is not None:
        predicted = predict(model, test.images, device)
        matrix = confusion_matrix(test.labels, predicted, len(data.classes))
        info["test_accuracy"] = float(np.trace(matrix) / matrix.sum())
        info["confusion"] = matrix.tolist()
        print(format_confusion(matrix, data.classes))
        confusion_png(matrix, data.classes, out.with_suffix(".confusion.png"))
    model.info = info
    model.save(out)
    scores = f"choose accuracy {best['accuracy']:.4f} (epoch {best['epoch']})"
    if "test_accuracy" in info:
        scores += f", test accuracy {info['test_accuracy']:.4f}"
    print(f"saved {out}: {scores}, {info['minutes']:.1f} min", file=sys.stderr)
    return 0


def _splits(data: LabelledImages, args: argparse.Namespace, generator: torch.Generator
            ) -> tuple[LabelledImages, LabelledImages, LabelledImages | None]:
    if data.split is None:
        if not 0 < args.holdout < 1:
            raise VidgraphError(f"--holdout {args.holdout} must be between 0 and 1")
        order = torch.randperm(len(data), generator=generator).numpy()
        held = np.zeros(len(data), bool)
        held[order[:max(1, round(len(data) * args.holdout))]] = True
        return data.subset(~held), data.subset(held), None
    names = list(dict.fromkeys(data.split.tolist()))
    train_on = args.train_on or names[0]
    choose_on = args.choose_on or (names[1] if len(names) > 1 else None)
    test_on = args.test_on or (names[2] if len(names) > 2 else None)
    for flag, name in (("--train-on", train_on), ("--choose-on", choose_on),
                       ("--test-on", test_on)):
        if name is not None and name not in names:
            raise VidgraphError(f"{flag} {name}: the data's splits are {', '.join(names)}")
    if choose_on is None:
        raise VidgraphError("the data has one split: pass --choose-on or drop the split array")
    test = data.subset(data.split == test_on) if test_on else None
    return data.subset(data.split == train_on), data.subset(data.split == choose_on), test


def augment(images: torch.Tensor, crop: int, rotate: float,
            generator: torch.Generator) -> torch.Tensor:
    """Random ``crop`` x ``crop`` views of uint8 pictures (N, S, S, C) as floats in 0..1
    (N, C, crop, crop): shifted, flipped, rotated, scaled and lit differently, one
    resampling call for the batch."""
    n, size = images.shape[0], images.shape[1]
    device = images.device

    def uniform(low: float, high: float) -> torch.Tensor:
        return (torch.rand(n, generator=generator) * (high - low) + low).to(device)

    angle = uniform(-rotate, rotate) * math.pi / 180
    scale = uniform(0.9, 1.1) * crop / size
    flip = torch.where(uniform(0, 1) < 0.5, -1.0, 1.0)
    room = 1 - crop / size
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.stack([torch.stack([cos * flip, -sin, uniform(-room, room)], 1),
                         torch.stack([sin * flip, cos, uniform(-room, room)], 1)], 1)
    x = images.permute(0, 3, 1, 2).float() / 255
    grid = F.affine_grid(theta, [n, x.shape[1], crop, crop], align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    gain = uniform(0.75, 1.25)[:, None, None, None]
    offset = uniform(-0.1, 0.1)[:, None, None, None]
    mean = x.mean((1, 2, 3), keepdim=True)
    return ((x - mean) * gain + mean + offset).clamp(0, 1)


def _fit(model: Classifier, train: LabelledImages, choose: LabelledImages, crop: int,
         args: argparse.Namespace, device: torch.device, generator: torch.Generator,
         keep: Callable[[dict[str, Any], list[dict[str, float]]], None], run: Resumable
         ) -> tuple[dict[str, Any], list[dict[str, float]]] | None:
    """Train for ``args.epochs``; returns the best state and the history, or None when
    the run stopped early (its state written for ``--resume``)."""
    net = model.net
    lr = args.lr or (2e-3 if args.optimizer == "adamw" else 0.1)
    decay = [p for n, p in net.named_parameters() if p.ndim > 1]
    other = [p for n, p in net.named_parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": args.weight_decay},
              {"params": other, "weight_decay": 0.0}]
    optimizer: torch.optim.Optimizer = (
        torch.optim.AdamW(groups, lr=lr) if args.optimizer == "adamw"
        else torch.optim.SGD(groups, lr=lr, momentum=0.9, nesterov=True))
    steps = max(1, len(train) // args.batch_size)  # whole batches only (BatchNorm)
    scheduler = schedule(optimizer, steps * args.epochs, round(steps * args.warmup))
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)
    mean = torch.tensor(model.preprocess["mean"], device=device)[None, :, None, None]
    std = torch.tensor(model.preprocess["std"], device=device)[None, :, None, None]
    images, labels = train.images.to(device), train.labels.to(device)
    parts = {"net": net, "optimizer": optimizer, "scheduler": scheduler}
    kept = run.load(parts, None, generator) or {
        "epoch": 1, "batch": 0, "order": None, "total": 0.0, "history": [],
        "best": {"accuracy": -1.0, "epoch": 0, "state": None}}
    best: dict[str, Any] = kept["best"]
    history: list[dict[str, float]] = kept["history"]
    done = (kept["epoch"] - 1) * steps + kept["batch"]
    bar = ProgressBar(steps * args.epochs - done, "train", every=max(1, steps // 4))
    for epoch in range(kept["epoch"], args.epochs + 1):
        net.train()
        resumed = epoch == kept["epoch"] and kept["order"] is not None
        # one order per epoch, whole batches only (BatchNorm)
        order = kept["order"] if resumed else torch.randperm(len(train), generator=generator)
        total = kept["total"] if resumed else 0.0
        for batch in range(kept["batch"] if resumed else 0, steps):
            if run.due():
                run.save(parts, None, generator, {
                    "epoch": epoch, "batch": batch, "order": order, "total": total,
                    "history": history, "best": best})
                bar.close()
                print(f"stopped in epoch {epoch} at batch {batch} of {steps}: go on with "
                      f"--resume {run.path}", file=sys.stderr)
                return None
            done += 1
            index = order[batch * args.batch_size:(batch + 1) * args.batch_size].to(device)
            x = (augment(images[index], crop, args.rotate, generator) - mean) / std
            x = x.contiguous(memory_format=torch.channels_last)
            with autocast(device, cpu=args.bf16):
                loss = loss_fn(net(x), labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            value = loss.item()
            total += value
            run.stepped()
            bar.update(epoch=epoch, loss=value)
        # One view per picture: the views would cost more than the epoch's training.
        predicted = predict(model, choose.images, device, views=False)
        accuracy = float((predicted == choose.labels).float().mean())
        history.append({"epoch": epoch, "loss": total / steps, "choose_accuracy": accuracy})
        if accuracy > best["accuracy"]:
            state = {k: v.detach().clone() for k, v in net.state_dict().items()}
            best = {"accuracy": accuracy, "epoch": epoch, "state": state}
            keep(best, history)
        lead = "\n" if bar.tty else ""
        print(f"{lead}epoch {epoch}: loss {total / steps:.4f}, choose accuracy "
              f"{accuracy:.4f} (best {best['accuracy']:.4f})", file=sys.stderr)
    bar.close()
    run.save(parts, None, generator, {"epoch": args.epochs + 1, "batch": 0, "order": None,
                                      "total": 0.0, "history": history, "best": best})
    return best, history


@torch.inference_mode()
def predict(model: Classifier, images: torch.Tensor, device: torch.device,
            batch_size: int = 512, views: bool = True) -> torch.Tensor:
    """Class indices for uint8 pictures (N, S, S, C), on the CPU, read through the
    checkpoint's test-time views (or once each, ``views=False``)."""
    model.net.eval()
    out = []
    for first in range(0, len(images), batch_size):
        x = model.prepare(images[first:first + batch_size].to(device))
        with autocast(device):
            out.append(model.probabilities(x, batch_size, views).argmax(1).cpu())
    return torch.cat(out)

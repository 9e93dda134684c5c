"""Score a classifier on labelled pictures (`vidgraph eval classify`).

Prints the confusion matrix, per-class recall and accuracy of a built-in model or a
checkpoint on one split of a data set (or on all of it), read through the checkpoint's
test-time views or, with ``--no-views``, once per picture; optionally saves the matrix as
a PNG and the figures as JSON. Several ``--model`` are scored as one ensemble (their class
probabilities averaged), which ``--save`` writes as a single checkpoint.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from pipeline.core.device import resolve_device
from pipeline.core.errors import VidgraphError

from . import checkpoint
from .data import read
from .report import confusion_matrix, confusion_png, format_confusion
from .train import predict


def configure(parser: argparse.ArgumentParser) -> None:
    """Declare the command's options."""
    parser.add_argument("data", help="folder of class folders, or an .npz (see data.py)")
    parser.add_argument("--model", action="append",
                        help="built-in model or checkpoint (default: expression); repeat it "
                        "to score the ensemble of several")
    parser.add_argument("--save", help="write the scored model (an ensemble of several "
                        "--model) as one checkpoint, its scores in its info")
    parser.add_argument("--split", help="score only this split (default: all pictures)")
    parser.add_argument("--views", action=argparse.BooleanOptionalAction, default=True,
                        help="read the checkpoint's test-time views (default) or each "
                        "picture once")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, auto")
    parser.add_argument("--png", help="also draw the confusion matrix here")
    parser.add_argument("--json", help="also write accuracy and matrix here")


def main(args: argparse.Namespace) -> int:
    """Score the model; print the confusion matrix and accuracy."""
    names = args.model or ["expression"]
    loaded = [checkpoint.load(name) for name in names]
    model = loaded[0] if len(loaded) == 1 else checkpoint.combine(loaded)
    shown = " + ".join(names)
    if not args.views:
        model.preprocess.pop("views", None)
    data = read(args.data, model.size, model.gray)
    if len(data.classes) != len(model.classes):
        raise VidgraphError(f"data '{args.data}' has {len(data.classes)} classes, model "
                            f"'{shown}' {len(model.classes)}")
    if args.split is not None:
        splits = sorted(set(data.split.tolist())) if data.split is not None else []
        if args.split not in splits:
            raise VidgraphError(f"--split {args.split}: the data's splits are "
                                f"{', '.join(splits) or 'none'}")
        data = data.subset(data.split == args.split)
    device = resolve_device(args.device)
    model.net.to(device)
    started = time.perf_counter()
    predicted = predict(model, data.images, device)
    seconds = time.perf_counter() - started
    matrix = confusion_matrix(data.labels, predicted, len(model.classes))
    print(format_confusion(matrix, model.classes))
    print(f"{shown} on {args.split or 'all pictures'} of {args.data}, "
          f"{'test-time views' if args.views else 'one view'}: "
          f"{len(data) / seconds:.0f} pictures/s on {device}")
    accuracy = float(np.trace(matrix) / max(1, matrix.sum()))
    if args.save:
        model.info = {**model.info, "split": args.split, "views": args.views,
                      "accuracy": accuracy, "confusion": matrix.tolist()}
        model.save(args.save)
    if args.png:
        confusion_png(matrix, model.classes, Path(args.png))
    if args.json:
        Path(args.json).write_text(json.dumps({
            "model": shown, "split": args.split, "views": args.views, "accuracy": accuracy,
            "confusion": matrix.tolist(), "classes": model.classes}, indent=1) + "\n")
    return 0


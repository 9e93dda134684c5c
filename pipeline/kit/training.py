"""What every ``vidgraph train`` (and ``eval``) command shares: the plugin hook, seeding,
mixed precision, the learning-rate schedule and a progress bar.

A plugin adds a training command by registering a module under the entry point group
``vidgraph.train`` (``classify = "plugins.senet.train"``), an evaluation under
``vidgraph.eval``; the module has ``configure(parser)`` to declare its options and
``main(args) -> int`` to run.
"""

from __future__ import annotations

import contextlib
import math
import platform
import random
import sys
import time
from collections.abc import Iterator
from importlib.metadata import entry_points
from types import ModuleType
from typing import TextIO

import numpy as np
import torch

GROUPS = {"train": "vidgraph.train", "eval": "vidgraph.eval"}


def commands(kind: str = "train") -> dict[str, ModuleType]:
    """The installed ``train`` (or ``eval``) commands, by name."""
    return {ep.name: ep.load() for ep in entry_points(group=GROUPS[kind])}


def seed_everything(seed: int) -> torch.Generator:
    """Seeds Python, NumPy and torch, asks for deterministic kernels, and returns a torch
    generator (on the CPU) for the data order and augmentation."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    return torch.Generator().manual_seed(seed)


def mixed_precision(device: torch.device, cpu: bool = False) -> bool:
    """Whether :func:`autocast` computes in bfloat16 on ``device``: always on CUDA; on the
    CPU only when asked (``cpu``, a trainer's ``--bf16``) and when the CPU has native
    bfloat16 arithmetic (AVX-512 BF16 or AMX). There oneDNN runs wide 3x3 convolutions
    (full denoisers, VGG) about twice as fast and a training step of the compact
    SE-ResNet 1.5 times as fast, while the narrowest networks (the light denoisers) get
    slower; emulated bfloat16 is always slower."""
    return device.type == "cuda" or (cpu and device.type == "cpu" and native_bf16())


def autocast(device: torch.device, enabled: bool = True, cpu: bool = False
             ) -> contextlib.AbstractContextManager[None]:
    """bfloat16 mixed precision where :func:`mixed_precision` says so, else nothing."""
    if enabled and mixed_precision(device, cpu):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def run_facts(device: torch.device, cpu_mixed: bool = False) -> dict[str, str]:
    """What a checkpoint records of the machine that trained it: hardware, torch version,
    and arithmetic (``cpu_mixed`` as passed to :func:`autocast`)."""
    hardware = (torch.cuda.get_device_name(device) if device.type == "cuda" else
                f"CPU ({platform.processor() or platform.machine()}, "
                f"{torch.get_num_threads()} threads)")
    return {"hardware": hardware, "torch": str(torch.__version__),
            "precision": "bfloat16 mixed" if mixed_precision(device, cpu_mixed) else "float32"}


def native_bf16() -> bool:
    """Whether this CPU computes in bfloat16 natively (oneDNN's own check)."""
    return bool(torch.backends.mkldnn.is_available()
                and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def schedule(optimizer: torch.optim.Optimizer, total_steps: int,
             warmup_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up to the optimizer's rate over ``warmup_steps``, then a cosine decay to
    zero at ``total_steps`` (stepped once per batch)."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class ProgressBar:
    """A one-line progress bar on stderr (rewritten in place on a terminal, a line per
    ``every`` steps otherwise), with rate, time left and the figures passed to
    :meth:`update`."""

    def __init__(self, total: int, title: str, *, stream: TextIO | None = None,
                 every: int = 50) -> None:
        self.total = total
        self.title = title
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.every = every
        self.done = 0
        self.start = time.monotonic()

    def update(self, steps: int = 1, **figures: float) -> None:
        """Advance by ``steps`` and show ``figures`` (e.g. loss=0.31)."""
        self.done += steps
        if not self.tty and self.done % self.every and self.done != self.total:
            return
        elapsed = time.monotonic() - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        left = (self.total - self.done) / rate if rate > 0 else 0.0
        width = 24
        filled = int(width * self.done / max(1, self.total))
        shown = " ".join(f"{k} {v:.4g}" for k, v in figures.items())
        line = (f"{self.title} [{'#' * filled}{'.' * (width - filled)}] "
                f"{self.done}/{self.total} {rate:.1f}/s {left:.0f}s left {shown}")
        self.stream.write(("\r" + line) if self.tty else line + "\n")
        self.stream.flush()

    def close(self) -> None:
        """End the bar's line."""
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def batches(count: int, size: int, generator: torch.Generator | None,
            *, drop_last: bool = False) -> Iterator[torch.Tensor]:
    """Index batches over ``count`` items, shuffled when a ``generator`` is given."""
    order = (torch.randperm(count, generator=generator) if generator is not None
             else torch.arange(count))
    stop = count - count % size if drop_last and count >= size else count
    for first in range(0, stop, size):
        yield order[first:first + size]

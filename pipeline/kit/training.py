"""What every ``vidgraph train`` (and ``eval``) command shares: the plugin hook, seeding,
mixed precision, the learning-rate schedule and a progress bar.

A plugin adds a training command by registering a module under the entry point group
``vidgraph.train`` (``classify = "plugins.senet.train"``), an evaluation under
``vidgraph.eval``; the module has ``configure(parser)`` to declare its options and
``main(args) -> int`` to run.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import random
import shlex
import signal
import sys
import threading
import time
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any, TextIO

import numpy as np
import torch

from ..core.errors import VidgraphError

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
    SE-ResNet 1.5 times as fast; with torch 2.13 a training step of every denoiser size,
    the light 8 x 32 included, runs 1.8 to 2.2 times as fast
    (``bench/denoise_train_step.py``). Emulated bfloat16 is always slower."""
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


#: the learning-rate schedules :func:`schedule` draws, after its warm-up
SCHEDULES = ("cosine", "step", "constant")


def schedule(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int,
             kind: str = "cosine") -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up to the optimizer's rate over ``warmup_steps``, then (stepped once per
    batch) ``cosine``: a cosine decay to zero at ``total_steps``; ``step``: the rate, a
    tenth of it from half of the steps, a hundredth from three quarters (tenfold drops, as
    FFDNet's training made); ``constant``: the rate to the end."""
    if kind not in SCHEDULES:
        raise VidgraphError(f"schedule '{kind}': expected one of {', '.join(SCHEDULES)}")

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        if kind == "cosine":
            return 0.5 * (1 + math.cos(math.pi * progress))
        if kind == "step":
            return 1.0 if progress < 0.5 else 0.1 if progress < 0.75 else 0.01
        return 1.0

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


def add_resume_options(parser: argparse.ArgumentParser) -> None:
    """The options of a trainer that can stop and go on later (in chunks of a couple of
    hours on a CPU)."""
    group = parser.add_argument_group("stopping and resuming")
    group.add_argument("--resume", metavar="STATE.pt",
                       help="go on exactly where the run that wrote this state stopped "
                            "(same options; the model, optimiser, schedule, random and step "
                            "count come from it)")
    group.add_argument("--time-budget", type=float, metavar="MINUTES",
                       help="stop at the first step boundary after this long, writing the "
                            "resumable state")
    group.add_argument("--chunk", type=int, metavar="STEPS",
                       help="stop after this many steps of this run, writing the "
                            "resumable state")
    group.add_argument("--state", metavar="STATE.pt",
                       help="where the resumable state goes (default: OUT with .state.pt; "
                            "apart from the best weights, which hold no optimiser)")


#: options that may differ between a run and its resumption (they say how long to run)
RUN_LENGTH_OPTIONS = ("resume", "time_budget", "chunk", "state", "threads", "command", "what",
                      "debug", "argv")


class Resumable:
    """Where a training run stands, written so that ``--resume`` goes on bit for bit as
    if the run had never stopped (on the same machine, with the same threads): the
    parts' ``state_dict`` (network, optimiser, schedule), every random generator the
    run draws from, the step, and what the trainer keeps (best score, history)."""

    def __init__(self, args: argparse.Namespace, out: Path,
                 added: dict[str, Any] | None = None) -> None:
        self.args = args
        #: options the trainer gained after some runs began, with the value those runs
        #: trained with: their states lack them, and resume only with that value
        self.added = added or {}
        self.path = Path(args.state) if args.state else out.with_suffix(".state.pt")
        self.started = time.monotonic()
        self.steps_now = 0
        self.before_s = 0.0  #: training time spent by the runs this one resumes
        #: the command of every run of this training, the first and each resumption
        self.commands = [command_line(args)]
        #: the signal that asked this run to stop (see :meth:`stopping_on_signals`)
        self.signalled: signal.Signals | None = None

    def options(self) -> dict[str, Any]:
        """The options that must match between a run and its resumption."""
        return {k: v for k, v in sorted(vars(self.args).items())
                if k not in RUN_LENGTH_OPTIONS and not callable(v)}

    def load(self, parts: dict[str, Any], rng: np.random.Generator | None,
             generator: torch.Generator | None) -> dict[str, Any] | None:
        """With ``--resume``: restore ``parts`` and the random generators, and return what
        the trainer kept (with ``step``); None for a fresh run."""
        if not self.args.resume:
            return None
        try:
            saved = torch.load(self.args.resume, map_location="cpu", weights_only=False)
        except (OSError, RuntimeError, EOFError) as exc:
            raise VidgraphError(f"--resume {self.args.resume}: cannot read the state "
                                f"({exc})") from None
        before = {**self.added, **saved["options"]}
        differ = sorted(k for k, v in self.options().items() if before.get(k) != v)
        if differ:
            flags = ", ".join("--" + k.replace("_", "-") for k in differ)
            raise VidgraphError(f"--resume {self.args.resume}: the run used other options "
                                f"({flags})")
        for name, part in parts.items():
            part.load_state_dict(saved["parts"][name])
        random.setstate(saved["random"]["python"])
        torch.set_rng_state(saved["random"]["torch"])
        if rng is not None:
            rng.bit_generator.state = saved["random"]["numpy"]
        if generator is not None:
            generator.set_state(saved["random"]["generator"])
        self.before_s = float(saved["seconds"])
        self.commands = [*saved["commands"], *self.commands]
        return dict(saved["kept"])

    def stepped(self) -> None:
        """One more training step done."""
        self.steps_now += 1

    @contextlib.contextmanager
    def stopping_on_signals(self) -> Iterator[None]:
        """Within it, Ctrl+C (SIGINT) or SIGTERM makes :meth:`due` true: the run stops at
        the next step boundary and writes its state, as at the end of a budget, rather
        than losing the steps since its start. A second signal gets the handling it had
        before (Ctrl+C: at once). Only the main thread can take signals; elsewhere this
        does nothing."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def stop(number: int, _frame: object) -> None:
            self.signalled = signal.Signals(number)
            signal.signal(number, before[self.signalled])
            print(f"\n{self.signalled.name}: stopping after this step and writing "
                  f"{self.path} (again to stop at once)", file=sys.stderr)

        before = {number: signal.signal(number, stop)
                  for number in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for number, handler in before.items():
                signal.signal(number, handler)

    def due(self) -> bool:
        """Whether this run has used its budget (of time, or of steps) or was asked to
        stop by a signal, and should stop."""
        budget = self.args.time_budget
        return self.signalled is not None or (
            self.args.chunk is not None and self.steps_now >= self.args.chunk) or (
            budget is not None and time.monotonic() - self.started >= budget * 60)

    def exit_status(self) -> int:
        """What the command returns when it stops before its end: 0 for a budget, the
        shell's 128 + N for signal N (130 for Ctrl+C), so a script of chunks stops too."""
        return 0 if self.signalled is None else 128 + int(self.signalled)

    def seconds(self) -> float:
        """Training time so far, over every run of this training."""
        return self.before_s + time.monotonic() - self.started

    def save(self, parts: dict[str, Any], rng: np.random.Generator | None,
             generator: torch.Generator | None, kept: dict[str, Any]) -> Path:
        """Write the state (to a temporary name first: a kill never leaves half of it)."""
        state = {
            "options": self.options(), "seconds": self.seconds(), "kept": kept,
            "commands": self.commands,
            "parts": {name: part.state_dict() for name, part in parts.items()},
            "random": {"python": random.getstate(), "torch": torch.get_rng_state(),
                       "numpy": None if rng is None else rng.bit_generator.state,
                       "generator": None if generator is None else generator.get_state()},
        }
        part = self.path.with_name(self.path.name + ".part")
        torch.save(state, part)
        os.replace(part, self.path)
        return self.path

    def note(self, weights: Path) -> None:
        """Record in a weights file's ``info`` every command of its training and the
        training time over all of them (the best weights were written before the last
        runs, which only now are known)."""
        if not weights.exists():
            return
        saved = torch.load(weights, map_location="cpu", weights_only=False)
        saved["info"].update(commands=self.commands, minutes=round(self.seconds() / 60, 1))
        part = weights.with_name(weights.name + ".part")
        torch.save(saved, part)
        os.replace(part, weights)


def command_line(args: argparse.Namespace) -> str:
    """The ``vidgraph`` command that ``args`` came from, as a shell would take it."""
    return shlex.join(["vidgraph", *getattr(args, "argv", [])])

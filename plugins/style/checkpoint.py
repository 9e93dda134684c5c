"""Style checkpoints: a network, its architecture settings and how it was trained.

A checkpoint (``torch.save`` of a dict) holds ``arch`` (``johnson`` or ``ulyanov``),
``arch_args`` (``width`` and the architecture's own options), ``state_dict`` and
``info`` (style picture and its hash, losses, training settings). Built-in styles are the
files in ``weights/``, named after the painting (``starry_night``, ``wave-light``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from pipeline.errors import VidgraphError
from pipeline.weights import model_file, read_checkpoint

from .model import ARCHITECTURES

WEIGHTS = Path(__file__).with_name("weights")


def built_in() -> dict[str, Path]:
    """The shipped styles: name -> file."""
    return {p.stem: p for p in sorted(WEIGHTS.glob("*.pt"))}


def build(arch: str, arch_args: dict[str, Any]) -> nn.Module:
    """A fresh network of architecture ``arch``."""
    if arch not in ARCHITECTURES:
        raise VidgraphError(f"unknown style architecture '{arch}' "
                            f"(known: {', '.join(ARCHITECTURES)})")
    return ARCHITECTURES[arch](**arch_args)


def save(path: str | Path, net: nn.Module, arch: str, arch_args: dict[str, Any],
         info: dict[str, Any]) -> None:
    """Write a checkpoint (weights in fp16: half the size, no visible difference)."""
    state = {k: v.detach().cpu().half() if v.is_floating_point() else v.detach().cpu()
             for k, v in net.state_dict().items()}
    torch.save({"arch": arch, "arch_args": arch_args, "state_dict": state, "info": info},
               Path(path))


def load(model: str) -> tuple[nn.Module, dict[str, Any]]:
    """The network named by ``model`` (a built-in style or a checkpoint file) in eval mode,
    and its ``info``."""
    styles = built_in()
    path = model_file(model, styles)
    if path is None:
        raise VidgraphError(f"style '{model}' is neither a built-in style "
                            f"({', '.join(styles) or 'none shipped'}) nor a file")
    data = read_checkpoint(path, model)
    if "arch" not in data or "state_dict" not in data:
        raise VidgraphError(f"'{model}' is not a vidgraph style checkpoint")
    net = build(data["arch"], dict(data.get("arch_args") or {}))
    net.load_state_dict({k: v.float() if v.is_floating_point() else v
                         for k, v in data["state_dict"].items()})
    return net.eval(), dict(data.get("info") or {})

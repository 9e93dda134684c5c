"""Style checkpoints: built-in styles (``weights/*.pt``, named after the painting:
``starry_night``, ``wave-light``) and checkpoints from ``vidgraph train style``, which hold
``arch`` (``johnson`` or ``ulyanov``), ``arch_args``, ``state_dict`` and ``info`` (the
painting and its hash, losses, training settings)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from pipeline.core.errors import VidgraphError
from pipeline.kit.weights import built_in_files, load_network, save_network

from .model import ARCHITECTURES

WEIGHTS = Path(__file__).with_name("weights")


def build(arch: str, arch_args: dict[str, Any]) -> nn.Module:
    """A fresh network of architecture ``arch``."""
    if arch not in ARCHITECTURES:
        raise VidgraphError(f"unknown style architecture '{arch}' "
                            f"(known: {', '.join(ARCHITECTURES)})")
    return ARCHITECTURES[arch](**arch_args)


save = save_network


def load(model: str) -> tuple[nn.Module, dict[str, Any]]:
    """The network named by ``model`` (a built-in style or a checkpoint file) in eval mode,
    and its ``info``."""
    net, _, _, info = load_network(model, built_in_files(WEIGHTS), ARCHITECTURES, "style")
    return net, info

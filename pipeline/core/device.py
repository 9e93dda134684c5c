"""Device choice: ``auto`` is CUDA when PyTorch sees a GPU, else the CPU."""

from __future__ import annotations

import torch

from .errors import VidgraphError


def resolve_device(spec: str | None, default: str = "auto") -> torch.device:
    """The ``torch.device`` for ``auto|cpu|cuda|cuda:N``; raises if CUDA is asked but absent."""
    text = (spec or default or "auto").strip()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(text)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise VidgraphError(f"device '{text}' requested but CUDA is not available "
                                "(use 'device: auto' to fall back to the CPU)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise VidgraphError(f"device '{text}' requested but only "
                                f"{torch.cuda.device_count()} CUDA device(s) exist")
    return device

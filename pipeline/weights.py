"""Model files: built-in names resolved to shipped files, checkpoints read safely with
one-line errors. Shared by every plugin that loads weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .errors import VidgraphError

CHECKPOINT_SUFFIXES = (".pt", ".pth")


def model_file(model: str, built_in: dict[str, Path]) -> Path | None:
    """The file behind ``model``: a built-in name's shipped file, or ``model`` itself when
    it names a file (a missing one is an error); None when it is neither (an
    architecture name, say)."""
    if model in built_in:
        path = built_in[model]
        if not path.is_file():
            raise VidgraphError(f"built-in model '{model}' is missing its file {path}")
        return path
    path = Path(model)
    if path.suffix in CHECKPOINT_SUFFIXES or path.exists():
        if not path.is_file():
            raise VidgraphError(f"model file '{model}' does not exist")
        return path
    return None


def read_checkpoint(path: str | Path, shown: str | None = None) -> dict[str, Any]:
    """A ``torch.save``d dict read without running pickled code (``weights_only``)."""
    path = Path(path)
    shown = shown or str(path)
    if not path.is_file():
        raise VidgraphError(f"weights file '{shown}' does not exist")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise VidgraphError(f"'{shown}' is not a readable PyTorch checkpoint: {first}") from exc
    if not isinstance(data, dict):
        raise VidgraphError(f"'{shown}' holds no state dict")
    return data

"""Model files: built-in names resolved to shipped files, checkpoints read safely with
one-line errors. Shared by every plugin that loads weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..core.errors import VidgraphError

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


def built_in_files(folder: Path) -> dict[str, Path]:
    """Shipped models in ``folder``: name (the file's stem) -> file."""
    return {p.stem: p for p in sorted(folder.glob("*.pt"))}


def save_network(path: str | Path, net: torch.nn.Module, arch: str,
                 arch_args: dict[str, Any], info: dict[str, Any]) -> None:
    """Write a network checkpoint: ``arch``, ``arch_args``, ``state_dict`` (floating
    tensors in fp16, half the size and no visible difference) and ``info``."""
    state = {k: v.detach().cpu().half() if v.is_floating_point() else v.detach().cpu()
             for k, v in net.state_dict().items()}
    torch.save({"arch": arch, "arch_args": arch_args, "state_dict": state, "info": info},
               Path(path))


def load_network(model: str, built_in: dict[str, Path],
                 architectures: dict[str, Any], what: str
                 ) -> tuple[torch.nn.Module, str, dict[str, Any], dict[str, Any]]:
    """The network named by ``model`` (a built-in name or a checkpoint written by
    :func:`save_network`) in eval mode, with its ``arch``, ``arch_args`` and ``info``;
    ``what`` names the kind of model in errors ("style", "denoiser")."""
    path = model_file(model, built_in)
    if path is None:
        raise VidgraphError(f"{what} '{model}' is neither a built-in {what} "
                            f"({', '.join(built_in) or 'none shipped'}) nor a file")
    data = read_checkpoint(path, model)
    if "arch" not in data or "state_dict" not in data:
        raise VidgraphError(f"'{model}' is not a vidgraph {what} checkpoint")
    arch, args = data["arch"], dict(data.get("arch_args") or {})
    if arch not in architectures:
        raise VidgraphError(f"'{model}': unknown {what} architecture '{arch}'")
    net = architectures[arch](**args)
    net.load_state_dict({k: v.float() if v.is_floating_point() else v
                         for k, v in data["state_dict"].items()})
    return net.eval(), arch, args, dict(data.get("info") or {})


def start_from(model: str, built_in: dict[str, Path], architectures: dict[str, Any],
               what: str, arch: str, asked: dict[str, Any],
               holders: dict[str, tuple[str, str]] | None = None
               ) -> tuple[torch.nn.Module, dict[str, Any], dict[str, Any]]:
    """The network ``--init MODEL`` starts a fine-tuning from, in train mode; its size
    (those of the attributes ``asked`` names that its architecture has, read from the
    network, since a file's ``arch_args`` hold only what its run was given); and what its
    checkpoint records of its own training (commands, minutes, best step), which a model
    card adds to the new run's. A size in ``asked`` (None: not asked) that the network
    has otherwise or not at all, or an ``arch`` other than the file's, is refused.
    ``holders`` names architectures whose networks hold another (arch -> the attribute
    that holds it and the inner one's arch): a file of one starts from the inner network.
    """
    net, file_arch, _, info = load_network(model, built_in, architectures, what)
    holders = holders or {}
    if file_arch in holders:
        attribute, file_arch = holders[file_arch]
        net = getattr(net, attribute)
    size = {k: getattr(net, k) for k in asked if hasattr(net, k)}
    differ = [k for k, v in asked.items() if v is not None and v != size.get(k)]
    if differ or file_arch != arch:
        raise VidgraphError(f"--init {model}: a {file_arch} with {size}, not the "
                            f"--{'/--'.join(differ or ['arch'])} asked for")
    return net.train(), size, {
        "model": model, "commands": info.get("commands") or [info.get("command")],
        "minutes": info.get("minutes"), "best_step": info.get("best_step")}

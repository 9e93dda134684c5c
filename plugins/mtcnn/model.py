"""P-Net, R-Net and O-Net of MTCNN as plain PyTorch modules, with the original weights.

The weights are the ones the ``mtcnn`` package on PyPI (MIT licence) ships as lists of
NumPy arrays in Keras layout (``mtcnn/assets/weights/{pnet,rnet,onet}.lz4``). Importing that
package would import TensorFlow, so the files are found with ``importlib`` and read with
``joblib``. Conversion: convolution kernels HWIO -> OIHW; dense kernels transposed; and the
first dense layer of R-Net and O-Net reads its input flattened in Keras' order after a
(W, H, C) permute, which :func:`_keras_flatten` reproduces. Max pooling follows Keras'
``same`` padding (which pads unevenly), not PyTorch's ``ceil_mode`` (see ``layers``).

Inputs are RGB images scaled as ``(x - 127.5) / 128``, NCHW.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.core.device import compiled_loops
from pipeline.core.errors import VidgraphError

from .layers import PReLU, max_pool_3x3, max_pool_same, prelu_max_pool2


def weights_dir() -> Path:
    """The folder of the ``mtcnn`` package's weight files (without importing the package)."""
    spec = importlib.util.find_spec("mtcnn")
    if spec is None or spec.origin is None:
        raise VidgraphError("the 'mtcnn' package is not installed (pip install mtcnn): it "
                            "ships the MTCNN weights")
    return Path(spec.origin).parent / "assets" / "weights"


def load_keras_arrays(net: str) -> list[Any]:
    """The Keras-layout weight arrays of ``pnet``, ``rnet`` or ``onet``."""
    import joblib  # with lz4: the format the mtcnn package stores its weights in

    return list(joblib.load(weights_dir() / f"{net}.lz4"))


def _keras_flatten(x: torch.Tensor) -> torch.Tensor:
    """NCHW -> the vector Keras builds with Permute((2, 1, 3)) then Flatten: (W, H, C)."""
    return x.permute(0, 3, 2, 1).flatten(1)


class _Net(nn.Module):
    """Shared loading: each layer takes its arrays from the Keras list in order."""

    def load_keras(self, arrays: list[Any]) -> _Net:
        """Copy Keras-layout arrays into this network's parameters; returns self."""
        it = iter(arrays)
        with torch.no_grad():
            for layer in self.layers():
                if isinstance(layer, nn.Conv2d):
                    layer.weight.copy_(torch.from_numpy(next(it)).permute(3, 2, 0, 1))
                    layer.bias.copy_(torch.from_numpy(next(it)))
                elif isinstance(layer, nn.Linear):
                    layer.weight.copy_(torch.from_numpy(next(it)).T)
                    layer.bias.copy_(torch.from_numpy(next(it)))
                elif isinstance(layer, nn.PReLU):
                    layer.weight.copy_(torch.from_numpy(next(it)).reshape(-1))
        if next(it, None) is not None:
            raise VidgraphError(f"{type(self).__name__}: more weight arrays than layers")
        return self

    def layers(self) -> list[nn.Module]:
        """Layers with weights, in the order the Keras list stores them."""
        raise NotImplementedError


class PNet(_Net):
    """Proposal net, fully convolutional: per 12x12 window (stride 2) a box regression
    (N, 4, h, w) and face probabilities (N, 2, h, w)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 10, 3), PReLU(10)
        self.conv2, self.prelu2 = nn.Conv2d(10, 16, 3), nn.PReLU(16)
        self.conv3, self.prelu3 = nn.Conv2d(16, 32, 3), nn.PReLU(32)
        self.box = nn.Conv2d(32, 4, 1)
        self.face = nn.Conv2d(32, 2, 1)

    def layers(self) -> list[nn.Module]:
        return [self.conv1, self.prelu1, self.conv2, self.prelu2, self.conv3, self.prelu3,
                self.box, self.face]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.features(x)
        return self.box(features), F.softmax(self.face(features), dim=1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The 32 channels per window that both heads read."""
        x = self.conv1(x)
        if (compiled_loops(x) and x.dtype == torch.float32 and not x.requires_grad
                and x.is_contiguous(memory_format=torch.channels_last)):
            x = prelu_max_pool2(x, self.prelu1.weight)
        else:
            x = max_pool_same(self.prelu1(x), 2, 2)
        return self.prelu3(self.conv3(self.prelu2(self.conv2(x))))

    def face_probability(self, features: torch.Tensor) -> torch.Tensor:
        """P(face) of every window (N, h, w): the softmax of two logits is the sigmoid of
        their difference, so one dot product per window instead of both heads over the
        whole map (six times less work on the CPU, where the heads were a tenth of it)."""
        n, channels, height, width = features.shape
        weight = (self.face.weight[1] - self.face.weight[0]).flatten()
        bias = self.face.bias[1] - self.face.bias[0]
        per_window = features.permute(0, 2, 3, 1).reshape(-1, channels)
        return torch.sigmoid(per_window @ weight + bias).view(n, height, width)

    def box_at(self, features: torch.Tensor, frame: torch.Tensor, ys: torch.Tensor,
               xs: torch.Tensor) -> torch.Tensor:
        """The box regression (K, 4) of the windows at (``ys``, ``xs``) of ``frame``."""
        return F.linear(features[frame, :, ys, xs], self.box.weight.flatten(1), self.box.bias)


class RNet(_Net):
    """Refinement net on 24x24 crops: box regression (N, 4) and face probabilities (N, 2)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
        self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
        self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)
        self.fc4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.box = nn.Linear(128, 4)
        self.face = nn.Linear(128, 2)

    def layers(self) -> list[nn.Module]:
        return [self.conv1, self.prelu1, self.conv2, self.prelu2, self.conv3, self.prelu3,
                self.fc4, self.prelu4, self.box, self.face]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = max_pool_same(self.prelu1(self.conv1(x)), 3, 2)
        x = max_pool_3x3(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x))
        x = self.prelu4(self.fc4(_keras_flatten(x)))
        return self.box(x), F.softmax(self.face(x), dim=1)


class ONet(_Net):
    """Output net on 48x48 crops: box regression (N, 4), five landmarks (N, 10: the x of
    all five, then their y, relative to the box) and face probabilities (N, 2)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
        self.fc5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.box = nn.Linear(256, 4)
        self.landmarks = nn.Linear(256, 10)
        self.face = nn.Linear(256, 2)

    def layers(self) -> list[nn.Module]:
        return [self.conv1, self.prelu1, self.conv2, self.prelu2, self.conv3, self.prelu3,
                self.conv4, self.prelu4, self.fc5, self.prelu5, self.box, self.landmarks,
                self.face]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = max_pool_same(self.prelu1(self.conv1(x)), 3, 2)
        x = max_pool_3x3(self.prelu2(self.conv2(x)))
        x = max_pool_same(self.prelu3(self.conv3(x)), 2, 2)
        x = self.prelu4(self.conv4(x))
        x = self.prelu5(self.fc5(_keras_flatten(x)))
        return self.box(x), self.landmarks(x), F.softmax(self.face(x), dim=1)


def load_nets() -> tuple[PNet, RNet, ONet]:
    """The three networks with the shipped weights, in eval mode."""
    return (PNet().load_keras(load_keras_arrays("pnet")).eval(),
            RNet().load_keras(load_keras_arrays("rnet")).eval(),
            ONet().load_keras(load_keras_arrays("onet")).eval())

"""P-Net, R-Net and O-Net of MTCNN as plain PyTorch modules, with the original weights.

The weights are the ones the ``mtcnn`` package on PyPI (MIT licence) ships as lists of
NumPy arrays in Keras layout (``mtcnn/assets/weights/{pnet,rnet,onet}.lz4``). Importing that
package would import TensorFlow, so the files are found with ``importlib`` and read with
``joblib``. Conversion: convolution kernels HWIO -> OIHW; dense kernels transposed; and the
first dense layer of R-Net and O-Net reads its input flattened in Keras' order after a
(W, H, C) permute, which :func:`_keras_flatten` reproduces. Max pooling follows Keras'
``same`` padding (which pads unevenly), not PyTorch's ``ceil_mode``.

Inputs are RGB images scaled as ``(x - 127.5) / 128``, NCHW.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Any

import numba
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.errors import VidgraphError


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


def max_pool_same(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """Keras/TensorFlow ``MaxPooling2D(padding="same")``: output ceil(n / stride), the padding
    split with the odd pixel at the end."""
    pads: list[int] = []
    for size in (x.shape[-1], x.shape[-2]):  # F.pad wants the last dimension first
        out = math.ceil(size / stride)
        total = max((out - 1) * stride + kernel - size, 0)
        pads += [total // 2, total - total // 2]
    if stride == 2 and not any(pads[0::2]):  # padding only at the end
        return max_pool_stride2(x, kernel, math.ceil(x.shape[-2] / 2),
                                math.ceil(x.shape[-1] / 2))
    return F.max_pool2d(F.pad(x, pads, value=float("-inf")), kernel, stride)


def _every_other(x: torch.Tensor, dim: int, start: int, count: int) -> torch.Tensor:
    """The view of entries ``start``, ``start + 2``, ... of ``dim``, at most ``count``."""
    take = [slice(None)] * x.dim()
    take[dim] = slice(0, 2 * count, 2)
    return x.narrow(dim, start, x.shape[dim] - start)[tuple(take)]


def max_pool_stride2(x: torch.Tensor, kernel: int, rows: int, cols: int) -> torch.Tensor:
    """Max pooling with stride 2 into ``rows`` x ``cols``, windows starting at 0, 2, 4, ...
    and cut short at the edge (so ``F.max_pool2d`` in floor or ceil mode, by the output
    size). Separable, as running maxima of strided views written into the output: on the
    CPU about three times as fast as ``F.max_pool2d``, which also writes the index of every
    maximum. Rows first, which halves what the slower pass over columns reads (channels-last,
    a column's neighbours are a whole pixel apart). Channels-last out."""
    for dim, out in ((-2, rows), (-1, cols)):
        shape = list(x.shape)
        shape[dim] = out
        result = torch.empty(shape, dtype=x.dtype, device=x.device,
                             memory_format=torch.channels_last)
        first, second = _every_other(x, dim, 0, out), _every_other(x, dim, 1, out)
        size = second.shape[dim]  # out - 1 where the last window holds a single pixel
        torch.maximum(first.narrow(dim, 0, size), second, out=result.narrow(dim, 0, size))
        result.narrow(dim, size, out - size).copy_(first.narrow(dim, size, out - size))
        for k in range(2, kernel):
            part = _every_other(x, dim, k, out)
            view = result.narrow(dim, 0, part.shape[dim])
            torch.maximum(view, part, out=view)
        x = result
    return x


def prelu_max_pool2(x: torch.Tensor, slope: torch.Tensor) -> torch.Tensor:
    """``max_pool_same(F.prelu(x, slope), 2, 2)`` of a channels-last float32 map on the CPU,
    in one compiled pass (numba) that reads the map once, where PReLU then pooling read it
    twice and write it once more: P-Net's first layer, its biggest map. The same values."""
    n, channels, height, width = x.shape
    out = np.empty((n, (height + 1) // 2, (width + 1) // 2, channels), np.float32)
    _prelu_max_pool2(x.permute(0, 2, 3, 1).numpy(), slope.detach().numpy(), out)
    return torch.from_numpy(out).permute(0, 3, 1, 2)


@numba.njit(cache=True, nogil=True)
def _prelu_max_pool2(x: np.ndarray, slope: np.ndarray, out: np.ndarray) -> None:
    """:func:`prelu_max_pool2` on NHWC arrays. Each pair of rows is reduced to its maximum
    as flat runs of (width x channels) values, which vectorise, then pairs of pixels."""
    n, height, width, channels = x.shape
    zero = np.float32(0)
    tiled = np.empty((width, channels), np.float32)  # the slope of every value in a row
    for column in range(width):
        tiled[column] = slope
    pair = np.empty((width, channels), np.float32)
    rows, flat_slope, flat_pair = (x.reshape(n, height, width * channels),
                                   tiled.reshape(-1), pair.reshape(-1))
    for b in range(n):
        for i in range(out.shape[1]):
            top = rows[b, 2 * i]
            # PReLU as max(v, 0) + slope * min(v, 0): the same value, without a branch
            if 2 * i + 1 < height:
                bottom = rows[b, 2 * i + 1]
                for k in range(flat_pair.shape[0]):
                    flat_pair[k] = max(
                        max(top[k], zero) + flat_slope[k] * min(top[k], zero),
                        max(bottom[k], zero) + flat_slope[k] * min(bottom[k], zero))
            else:  # an odd last row pools alone ("same" padding pads at the end)
                for k in range(flat_pair.shape[0]):
                    flat_pair[k] = max(top[k], zero) + flat_slope[k] * min(top[k], zero)
            row = out[b, i]
            for j in range(width // 2):
                for c in range(channels):
                    row[j, c] = max(pair[2 * j, c], pair[2 * j + 1, c])
            if width % 2:
                row[width // 2] = pair[width - 1]


def _max_pool_3x3(x: torch.Tensor) -> torch.Tensor:
    """``F.max_pool2d(x, 3, 2)`` (Keras' ``valid`` padding), faster: see
    :func:`max_pool_stride2`."""
    return max_pool_stride2(x, 3, (x.shape[-2] - 3) // 2 + 1, (x.shape[-1] - 3) // 2 + 1)


def _keras_flatten(x: torch.Tensor) -> torch.Tensor:
    """NCHW -> the vector Keras builds with Permute((2, 1, 3)) then Flatten: (W, H, C)."""
    return x.permute(0, 3, 2, 1).flatten(1)


class PReLU(nn.PReLU):
    """``nn.PReLU`` that stays vectorised on channels-last maps of few channels (P-Net's
    first layer has 10). There a map is a matrix of rows of (width x channels) values;
    PyTorch's PReLU steps through it a pixel at a time, which is fast when the channels fill
    whole SIMD registers (16 and up) and four times slower with 10. This computes the same
    values as one PReLU over the rows, with the weight tiled along a row."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or not x.is_contiguous(memory_format=torch.channels_last):
            return super().forward(x)
        n, channels, height, width = x.shape
        rows = x.permute(0, 2, 3, 1).reshape(n * height, width * channels)  # a view
        out = F.prelu(rows, self.weight.repeat(width))
        return out.view(n, height, width, channels).permute(0, 3, 1, 2)


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
        if (x.device.type == "cpu" and x.dtype == torch.float32 and not x.requires_grad
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
        x = _max_pool_3x3(self.prelu2(self.conv2(x)))
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
        x = _max_pool_3x3(self.prelu2(self.conv2(x)))
        x = max_pool_same(self.prelu3(self.conv3(x)), 2, 2)
        x = self.prelu4(self.conv4(x))
        x = self.prelu5(self.fc5(_keras_flatten(x)))
        return self.box(x), self.landmarks(x), F.softmax(self.face(x), dim=1)


def load_nets() -> tuple[PNet, RNet, ONet]:
    """The three networks with the shipped weights, in eval mode."""
    return (PNet().load_keras(load_keras_arrays("pnet")).eval(),
            RNet().load_keras(load_keras_arrays("rnet")).eval(),
            ONet().load_keras(load_keras_arrays("onet")).eval())

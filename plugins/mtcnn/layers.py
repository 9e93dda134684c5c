"""MTCNN's layers that PyTorch lacks or runs slowly: Keras' ``same`` max pooling, stride-2
pooling as strided running maxima, a PReLU for channels-last maps of few channels, and on
the CPU a compiled (numba) PReLU-then-pooling pass for P-Net's first layer. Each gives
the same values as the PyTorch layers it replaces (tested)."""

from __future__ import annotations

import math

import numba
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


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


def max_pool_3x3(x: torch.Tensor) -> torch.Tensor:
    """``F.max_pool2d(x, 3, 2)`` (Keras' ``valid`` padding), faster: see
    :func:`max_pool_stride2`."""
    return max_pool_stride2(x, 3, (x.shape[-2] - 3) // 2 + 1, (x.shape[-1] - 3) // 2 + 1)


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

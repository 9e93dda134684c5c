"""Area resizing read from summed-area tables: MTCNN's image pyramid and its R-Net and O-Net
crops, equal to PyTorch's ``F.interpolate(mode="area")`` (adaptive average pooling), which
the reference implementations use.

Each frame is summed once (:func:`summed_area`); every output pixel is then the four
corners of its bin. On the CPU a compiled loop (numba) reads them for a pyramid level in
one pass, four times as fast as the tensor gathers, which write and reread rows of the
table; on other devices the gathers keep the work on the device.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numba
import numpy as np
import torch

from pipeline.core.device import compiled_loops

#: the largest frame sum int32 tables hold (beyond it, 4K and up, tables take 64 bits)
INT32_SUMS = 2 ** 31 - 1


def summed_area(images: torch.Tensor) -> torch.Tensor:
    """Summed-area tables of uint8 frames (N, H, W, C): (N, H + 1, W + 1, C), entry (y, x)
    the sum of the pixels above and left of it, exact (int32 while a frame's sum fits, else
    64 bits). One pass over each frame; the pyramid and every crop then read only the
    corners of their bins. On the CPU OpenCV's vectorised integral, elsewhere two cumsums."""
    n, height, width, channels = images.shape
    wide = height * width * 255 > INT32_SUMS
    if not compiled_loops(images):
        return summed_area_torch(images, torch.int64 if wide else torch.int32)
    depth = cv2.CV_64F if wide else cv2.CV_32S
    tables = [cv2.integral(np.ascontiguousarray(frame.numpy()), sdepth=depth)
              for frame in images]
    return torch.from_numpy(np.stack(tables).reshape(n, height + 1, width + 1, channels))


def summed_area_torch(images: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """:func:`summed_area` in torch operations, on any device."""
    n, height, width, channels = images.shape
    table = images.new_zeros((n, height + 1, width + 1, channels), dtype=dtype)
    table[:, 1:, 1:] = images.to(dtype).cumsum(1, dtype=dtype).cumsum(2, dtype=dtype)
    return table


def _bins(size: int, out: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Bins of PyTorch's area resizing (adaptive average pooling) from ``size`` to ``out``
    pixels: bin i spans [floor(i * size / out), ceil((i + 1) * size / out)), overlapping by
    design; returns their starts and ends."""
    i = torch.arange(out, device=device)
    return i * size // out, ((i + 1) * size + out - 1) // out


@dataclass(frozen=True)
class AreaResize:
    """PyTorch's area resizing (``F.interpolate(mode="area")``) from one frame size to one
    output size, read from summed-area tables (:func:`summed_area`), optionally rescaled as
    ``scale * mean + offset``; work out once per frame size, apply to every frame."""

    rows: tuple[torch.Tensor, torch.Tensor]
    cols: tuple[torch.Tensor, torch.Tensor]
    weight: torch.Tensor  # (h, w, 1): scale over each bin's pixel count
    offset: float

    @classmethod
    def between(cls, size: tuple[int, int], out: tuple[int, int], device: torch.device, *,
                scale: float = 1.0, offset: float = 0.0) -> AreaResize:
        """From ``size`` (height, width) to ``out`` on ``device``."""
        rows, cols = _bins(size[0], out[0], device), _bins(size[1], out[1], device)
        count = (rows[1] - rows[0])[:, None] * (cols[1] - cols[0])[None, :]
        return cls(rows, cols, (scale / count.to(torch.float32))[:, :, None], offset)

    def __call__(self, table: torch.Tensor) -> torch.Tensor:
        """The frames of ``table``, resized: float32 (N, C, h, w), channels-last."""
        if not compiled_loops(table):
            return self.gathered(table)
        n, (height, width) = len(table), self.weight.shape[:2]
        return bin_means(table, torch.arange(n), (self.rows[0].expand(n, -1),
                                                  self.rows[1].expand(n, -1)),
                         (self.cols[0].expand(n, -1), self.cols[1].expand(n, -1)),
                         self.weight[:, :, 0].expand(n, height, width), self.offset)

    def gathered(self, table: torch.Tensor) -> torch.Tensor:
        """:meth:`__call__` in tensor operations, on any device: rows then columns, each
        gathered as whole contiguous runs (twice as fast as gathering corners)."""
        n, rows, cols, channels = table.shape
        flat = table.view(n, rows, cols * channels)
        strips = flat.index_select(1, self.rows[1]) - flat.index_select(1, self.rows[0])
        strips = strips.view(-1, cols, channels)
        sums = strips.index_select(1, self.cols[1]) - strips.index_select(1, self.cols[0])
        out = sums.to(torch.float32).view(n, *self.weight.shape[:2], channels)
        return out.mul_(self.weight).add_(self.offset).permute(0, 3, 1, 2)


Bins = tuple[torch.Tensor, torch.Tensor]


def bin_means(table: torch.Tensor, owner: torch.Tensor, rows: Bins, cols: Bins,
              weight: torch.Tensor, offset: float) -> torch.Tensor:
    """Weighted sums of bins of the frames of ``table`` (N, H + 1, W + 1, C): output k reads
    frame ``owner[k]``; its pixel (i, j) is the sum over rows [``rows[0][k, i]``,
    ``rows[1][k, i]``) and columns [``cols[0][k, j]``, ``cols[1][k, j]``), times
    ``weight[k, i, j]``, plus ``offset``. Returns float32 (K, C, h, w), channels-last.
    RGB frames on the CPU go through one compiled loop, the rest through
    :func:`gathered_bin_means`; both give the same values."""
    if not compiled_loops(table) or table.shape[-1] != 3:
        return gathered_bin_means(table, owner, rows, cols, weight, offset)
    count, height, width = weight.shape
    out = np.empty((count, height, width * 3), np.float32)
    _bin_means_rgb(table.numpy(), owner.numpy(), *(edge.numpy() for edge in (*rows, *cols)),
                   weight.numpy(), np.float32(offset), out)
    return torch.from_numpy(out).view(count, height, width, 3).permute(0, 3, 1, 2)


def gathered_bin_means(table: torch.Tensor, owner: torch.Tensor, rows: Bins, cols: Bins,
                       weight: torch.Tensor, offset: float) -> torch.Tensor:
    """:func:`bin_means` in tensor operations, on any device: the four corners of all bins
    in four gathers."""
    _, height, width, channels = table.shape
    first_row = (owner * height)[:, None, None]
    flat = table.view(-1, channels)

    def at(ys: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:  # (K, h, w, C)
        index = (first_row + ys[:, :, None]) * width + xs[:, None, :]
        return flat.index_select(0, index.flatten()).view(*index.shape, channels)

    (y0, y1), (x0, x1) = rows, cols
    # column sums first: every partial result stays within the table's range
    sums = (at(y1, x1) - at(y0, x1)) - (at(y1, x0) - at(y0, x0))
    out = sums.to(torch.float32).mul_(weight[:, :, :, None]).add_(offset)
    return out.permute(0, 3, 1, 2)


@numba.njit(cache=True, nogil=True)
def _bin_means_rgb(table: np.ndarray, owner: np.ndarray, top: np.ndarray, bottom: np.ndarray,
                   left: np.ndarray, right: np.ndarray, weight: np.ndarray, offset: np.float32,
                   out: np.ndarray) -> None:
    """:func:`bin_means` of RGB frames into ``out`` (K, h, w * 3) float32, compiled: one
    pass that reads two table rows per output row, where the gathers write and reread
    whole rows. The same float32 arithmetic as the gathers."""
    for k in range(out.shape[0]):
        frame = table[owner[k]]
        for i in range(out.shape[1]):
            upper, lower = frame[top[k, i]], frame[bottom[k, i]]
            row, scale = out[k, i], weight[k, i]
            for j in range(left.shape[1]):
                x0, x1 = left[k, j], right[k, j]
                for c in range(3):  # a constant trip count: the loop unrolls
                    total = (lower[x1, c] - upper[x1, c]) - (lower[x0, c] - upper[x0, c])
                    row[3 * j + c] = np.float32(total) * scale[j] + offset


def crop_bins(table: torch.Tensor, boxes: torch.Tensor,
              size: int) -> tuple[Bins, Bins, torch.Tensor]:
    """The bins of :func:`crops` in the frames of ``table``: rows and columns (K, size)
    each, and the weights (K, size, size), which scale each bin's sum to the nets' input
    range, (mean - 127.5) / 128 with the offset added after."""
    _, rows, cols, _ = table.shape
    corner = boxes[:, :2].trunc() - 1  # (K, 2): x0, y0
    extent = (boxes[:, 2:4].trunc() - corner).clamp(min=1)  # (K, 2): width, height
    i = torch.arange(size + 1, device=boxes.device, dtype=boxes.dtype)
    starts = corner[:, :, None] + (i[:-1] * extent[:, :, None] / size).floor()  # (K, 2, S)
    ends = corner[:, :, None] + (i[1:] * extent[:, :, None] / size).ceil()
    limit = torch.tensor([cols - 1, rows - 1], device=boxes.device,
                         dtype=boxes.dtype)[None, :, None]
    low = torch.minimum(starts.clamp(min=0), limit).long()  # pixels outside read as zero
    high = torch.minimum(ends.clamp(min=0), limit).long()
    lengths = ends - starts
    weight = 1 / (128 * lengths[:, 1, :, None] * lengths[:, 0, None, :])
    return (low[:, 1], high[:, 1]), (low[:, 0], high[:, 0]), weight


#: the nets' input offset, (x - 127.5) / 128 = x / 128 + this
NET_OFFSET = -127.5 / 128


def crops(table: torch.Tensor, boxes: torch.Tensor, owner: torch.Tensor,
          size: int) -> torch.Tensor:
    """``size`` x ``size`` crops of ``boxes`` from the frames of ``table`` (see
    :func:`summed_area`), normalised for the nets: float32 (K, C, size, size), channels-last.

    The reference implementations' crop: each box cut at whole pixels (from trunc(x1) - 1
    up to trunc(x2)) and area-resized with the bins of adaptive average pooling, black
    outside the frame. Every bin's sum is read from the four corners of its in-frame part
    (:func:`crop_bins`, :func:`bin_means`), for all boxes of all frames at once, whatever
    the boxes' sizes.
    """
    if len(boxes) == 0:
        return torch.empty((0, table.shape[-1], size, size), device=table.device)
    return bin_means(table, owner, *crop_bins(table, boxes, size), NET_OFFSET)

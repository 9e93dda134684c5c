"""Feed-forward style transfer networks: Johnson et al. 2016 and Ulyanov et al. 2016.

Both map an RGB picture in 0..1 (N, 3, H, W) to a stylised one of the same size, for any
H and W: the input is reflection-padded to the network's stride and the output cropped
back. Both use instance normalisation (Ulyanov, Vedaldi and Lempitsky 2016), which is what
makes feed-forward stylisation look right, and upsample by resizing then convolving
rather than by transposed convolution, which leaves checkerboard artefacts (Odena et al.
2016). A ``width`` multiplier makes light variants for CPUs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _channels(base: int, width: float) -> int:
    return max(4, round(base * width))


class ConvLayer(nn.Sequential):
    """Reflection padding, convolution, instance norm and ReLU (either may be left out)."""

    def __init__(self, inputs: int, outputs: int, kernel: int, stride: int = 1, *,
                 norm: bool = True, relu: bool = True) -> None:
        layers: list[nn.Module] = [nn.ReflectionPad2d(kernel // 2),
                                   nn.Conv2d(inputs, outputs, kernel, stride)]
        if norm:
            layers.append(nn.InstanceNorm2d(outputs, affine=True))
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with instance norm, added to the input."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(ConvLayer(channels, channels, 3),
                                  ConvLayer(channels, channels, 3, relu=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class UpsampleConv(nn.Sequential):
    """Nearest-neighbour upsampling by 2, then a convolution layer."""

    def __init__(self, inputs: int, outputs: int, kernel: int = 3) -> None:
        super().__init__(nn.Upsample(scale_factor=2, mode="nearest"),
                         ConvLayer(inputs, outputs, kernel))


def _padded(x: torch.Tensor, multiple: int, least: int) -> tuple[torch.Tensor, int, int]:
    """``x`` padded at the bottom and right to a multiple of ``multiple`` and to at least
    ``least`` pixels (the networks' reflection pads need room), and its own size."""
    height, width = x.shape[-2:]
    bottom = max(least - height, -height % multiple)
    right = max(least - width, -width % multiple)
    bottom, right = bottom + -(height + bottom) % multiple, right + -(width + right) % multiple
    if bottom or right:
        # reflection needs the pad smaller than the side; replicate covers tiny inputs
        mode = "reflect" if bottom < height and right < width else "replicate"
        x = F.pad(x, (0, right, 0, bottom), mode=mode)
    return x, height, width


class JohnsonNet(nn.Module):
    """The image transformation network of Johnson, Alahi and Fei-Fei 2016: a 9x9
    convolution, two stride-2 convolutions down, ``blocks`` residual blocks, two
    resize-convolutions up, a 9x9 convolution to RGB. ``width`` scales every layer's
    channels (1.0: 32-64-128 as in the paper)."""

    stride = 4

    def __init__(self, width: float = 1.0, blocks: int = 5) -> None:
        super().__init__()
        c1, c2, c3 = (_channels(c, width) for c in (32, 64, 128))
        self.width, self.blocks = width, blocks
        self.body = nn.Sequential(
            ConvLayer(3, c1, 9), ConvLayer(c1, c2, 3, 2), ConvLayer(c2, c3, 3, 2),
            *(ResidualBlock(c3) for _ in range(blocks)),
            UpsampleConv(c3, c2), UpsampleConv(c2, c1),
            ConvLayer(c1, 3, 9, norm=False, relu=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Stylised pictures (N, 3, H, W), about 0..1, for pictures in 0..1."""
        padded, height, width = _padded(x, self.stride, 16)
        return self.body(padded)[..., :height, :width]


class _ScaleBlock(nn.Sequential):
    """Ulyanov's per-scale block: 3x3, 3x3, 1x1 convolutions with norm and leaky ReLU."""

    def __init__(self, inputs: int, outputs: int) -> None:
        layers: list[nn.Module] = []
        for kernel in (3, 3, 1):
            layers += [nn.ReflectionPad2d(kernel // 2), nn.Conv2d(inputs, outputs, kernel),
                       nn.InstanceNorm2d(outputs, affine=True), nn.LeakyReLU(0.2, inplace=True)]
            inputs = outputs
        super().__init__(*layers)


class UlyanovNet(nn.Module):
    """The multi-scale generator of Ulyanov et al. 2016 ("Texture Networks"), as used for
    stylisation: the picture at ``scales`` resolutions (halving each time), each through
    its own block; from the coarsest, the result is upsampled, normalised, joined with the
    next finer branch and mixed by another block, up to full size, then a 1x1 convolution
    to RGB. ``width`` scales the channels per branch (8 in the paper)."""

    def __init__(self, width: float = 1.0, scales: int = 5, noise: bool = False) -> None:
        super().__init__()
        branch = _channels(8, width)
        self.width, self.scales, self.noise = width, scales, noise
        inputs = 3 + (3 if noise else 0)
        self.branches = nn.ModuleList(_ScaleBlock(inputs, branch) for _ in range(scales))
        self.joins = nn.ModuleList(
            _ScaleBlock(branch * (k + 2), branch * (k + 2)) for k in range(scales - 1))
        self.norms = nn.ModuleList(
            nn.InstanceNorm2d(branch * (k + 1), affine=True) for k in range(scales - 1))
        self.branch_norms = nn.ModuleList(
            nn.InstanceNorm2d(branch, affine=True) for _ in range(scales - 1))
        self.to_rgb = nn.Conv2d(branch * scales, 3, 1)
        self.stride = 2 ** (scales - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Stylised pictures (N, 3, H, W), about 0..1, for pictures in 0..1."""
        padded, height, width = _padded(x, self.stride, 2 * self.stride)
        levels = [padded]
        for _ in range(self.scales - 1):
            levels.append(F.avg_pool2d(levels[-1], 2))
        if self.noise:
            levels = [torch.cat([lv, torch.rand_like(lv)], 1) for lv in levels]
        y = self.branches[-1](levels[-1])
        for k in range(self.scales - 1):
            finer = self.scales - 2 - k
            y = F.interpolate(y, scale_factor=2.0, mode="nearest")
            side = self.branches[finer](levels[finer])
            y = torch.cat([self.norms[k](y), self.branch_norms[k](side)], 1)
            y = self.joins[k](y)
        return self.to_rgb(y)[..., :height, :width]


#: architecture name -> class (built with ``width`` and its own options)
ARCHITECTURES: dict[str, type[JohnsonNet] | type[UlyanovNet]] = {
    "johnson": JohnsonNet, "ulyanov": UlyanovNet}

"""Squeeze-and-excitation networks (Hu et al. 2018): the SE block and SE-ResNets.

The layout of :class:`SEResNet` (module names, SE placement after the last batch norm of a
block, stride on the 3x3 convolution) is the one of timm's ``seresnet18/34/50/101``, so a
state dict saved from those loads here unchanged (``load_state_dict``, strict).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn


def se_channels(channels: int, reduction: int = 16, divisor: int = 8) -> int:
    """The bottleneck width of an SE block: ``channels / reduction`` rounded to the nearest
    multiple of ``divisor`` and at least ``divisor`` (timm's rounding, for its layout)."""
    return max(divisor, int(channels / reduction + divisor / 2) // divisor * divisor)


class SqueezeExcite(nn.Module):
    """Re-weights channels: squeeze (global average), excite (two 1x1 layers with a ReLU
    between and a sigmoid after), scale."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = se_channels(channels, reduction)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = self.fc2(self.act(self.fc1(x.mean((2, 3), keepdim=True))))
        return x * torch.sigmoid(weights)


class StridedPointwise(nn.Conv2d):
    """A 1x1 convolution with a stride, computed as subsampling then a 1x1 convolution:
    the same result and parameters, but torch 2.13's CPU backward of a strided 1x1
    convolution on channels-last input crashes for odd batch sizes."""

    def __init__(self, inplanes: int, planes: int, stride: int) -> None:
        super().__init__(inplanes, planes, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        step = self.stride[0]
        return nn.functional.conv2d(x[:, :, ::step, ::step], self.weight)


def _downsample(inplanes: int, planes: int, stride: int) -> nn.Module | None:
    if stride == 1 and inplanes == planes:
        return None
    return nn.Sequential(StridedPointwise(inplanes, planes, stride), nn.BatchNorm2d(planes))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions, SE on the residual branch (SE-ResNet-18/34 and compact)."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, reduction: int = 16) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.se = SqueezeExcite(planes, reduction)
        self.act2 = nn.ReLU(inplace=True)
        self.downsample = _downsample(inplanes, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        y = self.act1(self.bn1(self.conv1(x)))
        y = self.se(self.bn2(self.conv2(y)))
        return self.act2(y + shortcut)


class Bottleneck(nn.Module):
    """1x1 down, 3x3 (strided), 1x1 up by 4, SE on the residual branch (SE-ResNet-50/101)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, reduction: int = 16) -> None:
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.act2 = nn.ReLU(inplace=True)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.se = SqueezeExcite(out, reduction)
        self.act3 = nn.ReLU(inplace=True)
        self.downsample = _downsample(inplanes, out, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        y = self.act1(self.bn1(self.conv1(x)))
        y = self.act2(self.bn2(self.conv2(y)))
        y = self.se(self.bn3(self.conv3(y)))
        return self.act3(y + shortcut)


class SEResNet(nn.Module):
    """A residual network of SE blocks.

    ``stem="imagenet"``: 7x7/2 convolution and 3x3/2 max pooling (224x224 inputs);
    ``stem="compact"``: one 3x3/1 convolution, for small inputs such as 48x48 faces.
    Global average pooling makes any input size work; ``widths`` sets the four stages.
    """

    def __init__(self, block: type[BasicBlock | Bottleneck], layers: tuple[int, ...],
                 num_classes: int = 1000, in_chans: int = 3, *,
                 widths: tuple[int, ...] = (64, 128, 256, 512), stem: str = "imagenet",
                 reduction: int = 16, dropout: float = 0.0) -> None:
        super().__init__()
        if stem not in ("imagenet", "compact"):
            raise ValueError(f"stem '{stem}' must be imagenet or compact")
        first = widths[0]
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_chans, first, 7, 2, 3, bias=False)
        else:
            self.conv1 = nn.Conv2d(in_chans, first, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(first)
        self.act1 = nn.ReLU(inplace=True)
        self.maxpool: nn.Module = (nn.MaxPool2d(3, 2, 1) if stem == "imagenet"
                                   else nn.Identity())
        inplanes = first
        for i, (count, width) in enumerate(zip(layers, widths, strict=True)):
            blocks = []
            for j in range(count):
                stride = 2 if i > 0 and j == 0 else 1
                blocks.append(block(inplanes, width, stride, reduction))
                inplanes = width * block.expansion
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
        self.stages = len(layers)
        self.num_features = inplanes
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(inplanes, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features before the classifier: (N, num_features)."""
        x = self.maxpool(self.act1(self.bn1(self.conv1(x))))
        for i in range(self.stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return x.mean((2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (N, num_classes) for images (N, in_chans, H, W)."""
        return self.fc(self.dropout(self.features(x)))


_DEPTHS: dict[int, tuple[type[BasicBlock | Bottleneck], tuple[int, ...]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
}


def se_resnet(depth: int, num_classes: int = 1000, in_chans: int = 3, **kwargs: Any) -> SEResNet:
    """SE-ResNet-18/34/50/101 (timm's ``seresnetNN`` layout)."""
    if depth not in _DEPTHS:
        raise ValueError(f"depth {depth} must be one of {sorted(_DEPTHS)}")
    block, layers = _DEPTHS[depth]
    return SEResNet(block, layers, num_classes, in_chans, **kwargs)


def se_resnet_compact(num_classes: int = 7, in_chans: int = 1, *,
                      widths: tuple[int, ...] = (32, 64, 128, 256),
                      layers: tuple[int, ...] = (1, 1, 1, 1), reduction: int = 8,
                      dropout: float = 0.2) -> SEResNet:
    """A small SE-ResNet for 48x48-ish inputs (basic blocks, 3x3 stem, no max pooling)."""
    return SEResNet(BasicBlock, layers, num_classes, in_chans, widths=widths, stem="compact",
                    reduction=reduction, dropout=dropout)


#: architecture name -> builder(num_classes, in_chans, **arch_args)
ARCHITECTURES: dict[str, Callable[..., SEResNet]] = {
    "se_resnet18": lambda *a, **k: se_resnet(18, *a, **k),
    "se_resnet34": lambda *a, **k: se_resnet(34, *a, **k),
    "se_resnet50": lambda *a, **k: se_resnet(50, *a, **k),
    "se_resnet101": lambda *a, **k: se_resnet(101, *a, **k),
    "se_resnet_compact": se_resnet_compact,
}


class Ensemble(nn.Module):
    """Networks reading the same input, their class probabilities averaged. The output is
    the log of that average, so that a softmax of it gives the average back."""

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = torch.stack([m(x).float().softmax(1) for m in self.members]).mean(0)
        return probs.log()


def build(arch: str, num_classes: int, in_chans: int, **arch_args: Any) -> nn.Module:
    """The network named ``arch`` (see :data:`ARCHITECTURES`), or an :class:`Ensemble`
    (``arch`` "ensemble", ``members``: a list of ``{"arch": ..., "arch_args": {...}}``)."""
    if arch == "ensemble":
        return Ensemble([build(m["arch"], num_classes, in_chans, **as_arguments(m["arch_args"]))
                         for m in arch_args["members"]])
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture '{arch}' (known: {', '.join(ARCHITECTURES)})")
    return ARCHITECTURES[arch](num_classes, in_chans, **arch_args)


def as_arguments(stored: dict[str, Any]) -> dict[str, Any]:
    """Architecture arguments as stored in a checkpoint (lists) as :func:`build` takes them
    (tuples)."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in stored.items()}

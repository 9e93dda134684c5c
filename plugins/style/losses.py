"""Perceptual losses for style transfer (Gatys et al. 2016; Johnson et al. 2016): content
as feature distance at one VGG layer, style as Gram-matrix distance over several, and
total variation for smoothness.

Each distance is relative: divided by the mean square of its target. VGG's layers differ
in scale by orders of magnitude (with the painting's Gram matrices, block4's squared
distances run about 2,000 times block1's), so absolute distances let the deepest layer
decide alone, and the colours and brush strokes that the early layers see never come
across. Relative, every layer counts alike, and the losses are about 1 whatever the layers,
so the weights keep their meaning when the layers change."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F

from .vgg import VGG19

# Johnson et al.'s choice: content at an early layer keeps the picture recognisable, and
# stopping at block 4 spares the loss network a third of its work (Gatys et al. also took
# block5_relu1 for style and block4_relu2 for content; both stay selectable)
CONTENT_LAYERS = ("block2_relu2",)
STYLE_LAYERS = ("block1_relu1", "block2_relu1", "block3_relu1", "block4_relu1")


def gram(features: torch.Tensor) -> torch.Tensor:
    """Channel correlations (N, C, C) of features (N, C, H, W), divided by C*H*W so that
    layers and sizes compare."""
    n, c, h, w = features.shape
    flat = features.reshape(n, c, h * w).float()
    return flat @ flat.transpose(1, 2) / (c * h * w)


def total_variation(images: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between neighbouring pixels."""
    return ((images[..., 1:, :] - images[..., :-1, :]).abs().mean()
            + (images[..., :, 1:] - images[..., :, :-1]).abs().mean())


class PerceptualLoss:
    """Content, style and total-variation losses against one style picture, with VGG-19
    as the loss network. Call it with the stylised batch and the content batch."""

    def __init__(self, vgg: VGG19, style: torch.Tensor, *,
                 content_layers: Sequence[str] = CONTENT_LAYERS,
                 style_layers: Sequence[str] = STYLE_LAYERS) -> None:
        self.vgg = vgg
        self.content_layers = tuple(content_layers)
        self.style_layers = tuple(style_layers)
        with torch.no_grad():
            found = vgg.features(style, self.style_layers)
        self.targets = {name: gram(found[name]) for name in self.style_layers}
        self.scales = {name: target.square().mean() for name, target in self.targets.items()}

    def __call__(self, output: torch.Tensor, content: torch.Tensor
                 ) -> Mapping[str, torch.Tensor]:
        """``content``, ``style`` and ``tv`` losses (unweighted) for a stylised batch."""
        layers = (*self.content_layers, *self.style_layers)
        mine = self.vgg.features(output, layers)
        with torch.no_grad():
            theirs = self.vgg.features(content, self.content_layers)
        content_loss = sum((F.mse_loss(mine[n].float(), theirs[n].float())
                            / theirs[n].float().square().mean().clamp_min(1e-8)
                            for n in self.content_layers), torch.zeros((), device=output.device))
        style_loss = sum((F.mse_loss(gram(mine[n]), self.targets[n].expand(len(output), -1, -1))
                          / self.scales[n].clamp_min(1e-8)
                          for n in self.style_layers), torch.zeros((), device=output.device))
        return {"content": content_loss, "style": style_loss, "tv": total_variation(output)}

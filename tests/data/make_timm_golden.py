"""Writes ``timm_seresnet.pt``: small SE-ResNets built by timm, their weights, an input and
timm's output on it, for ``tests/test_senet_model.py`` to load into our SE-ResNet and compare.

timm needs torchvision, which cannot load beside the project's CPU torch, so this runs by
hand in a virtual environment of its own; the test suite only reads the file it writes:

    python3 -m venv .venv-timm
    .venv-timm/bin/pip install torch==2.14.1 torchvision==0.29.1 timm==1.0.31
    .venv-timm/bin/python tests/data/make_timm_golden.py tests/data/timm_seresnet.pt

The networks have timm's seresnet18 and seresnet50 layout (basic and bottleneck blocks with
squeeze-and-excitation, the ImageNet stem) narrower and with fewer blocks, so
the file stays small (about 1.4 MB) while every kind of layer is there.
"""

import sys

import timm
import torch
from timm.models.resnet import BasicBlock, Bottleneck, ResNet

#: timm's plain stem is always 64 channels wide, so the first stage is too
WIDTHS = (64, 16, 32, 64)
LAYERS = (2, 1, 1, 1)  # a stage with two blocks: one without a downsampling shortcut

torch.manual_seed(0)
result = {"timm": timm.__version__, "torch": str(torch.__version__), "widths": WIDTHS,
          "layers": LAYERS}
for name, block in (("basic", BasicBlock), ("bottleneck", Bottleneck)):
    model = ResNet(block=block, layers=LAYERS, num_classes=10, in_chans=3, channels=WIDTHS,
                   block_args={"attn_layer": "se"})
    # Fresh batch norms are identities (and timm zeroes each block's last one), under which
    # a misplaced or swapped norm would go unseen; random statistics make every one count.
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    # Stored in half precision (half the file); the values are rounded to it first, so the
    # output below is exactly what the stored weights give.
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(tensor.half().float())
    model.eval()
    x = torch.randn(2, 3, 96, 80)
    with torch.no_grad():
        y = model(x)
    state = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    result[name] = {"state_dict": state, "input": x, "output": y}
torch.save(result, sys.argv[1])

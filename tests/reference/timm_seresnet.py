"""Run by the reference venv's Python (timm needs torchvision, which the project's CPU torch
cannot load): builds timm's SE-ResNets freshly initialised and saves each state dict with
an input and timm's output on it, for tests/test_senet_model.py to compare against."""

import sys

import timm
import torch

torch.manual_seed(0)
result = {}
for name in ("seresnet18", "seresnet50"):
    model = timm.create_model(name, pretrained=False, num_classes=10)
    # Fresh batch norms are identities (and timm zeroes each block's last one), under which
    # a misplaced or swapped norm would go unseen; random statistics make every one count.
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    model.eval()
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        y = model(x)
    result[name] = {"state_dict": model.state_dict(), "input": x, "output": y}
torch.save(result, sys.argv[1])

"""``compile: true`` on a model node: its network compiled by ``torch.compile`` (fused
kernels, fewer launches), or run as it is, with one warning, where compiling fails (no C++
compiler for the CPU backend, an operator the compiler does not take)."""

from __future__ import annotations

import logging
from typing import Any

import torch
from pydantic import Field
from torch import nn

from pipeline.core.node import Params

log = logging.getLogger("vidgraph")


class CompileParams(Params):
    """The parameter every model node shares for compilation."""

    compile: bool = Field(False, description="compile the network with torch.compile "
                          "(the first frames of each new size wait for it; uncompiled, "
                          "with a warning, where it fails)")


class Compiled(nn.Module):
    """``net`` run through ``torch.compile``; after the first failure, ``net`` itself
    (warned once). Attributes the node reads (``channels``, ...) are ``net``'s."""

    def __init__(self, net: nn.Module, node: str) -> None:
        super().__init__()
        self.eager = net
        self.fast = torch.compile(net)
        self.node = node
        self.failed = False

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if not self.failed:
            try:
                return self.fast(*args, **kwargs)
            except Exception as exc:  # the compiler's errors have no common base class
                self.failed = True
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
                log.warning("node '%s': compile: true failed (%s: %s); running the network "
                            "uncompiled", self.node, type(exc).__name__, reason[:200])
        return self.eager(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.eager, name)


def compiled(net: nn.Module, node: str, enabled: bool) -> nn.Module:
    """``net`` compiled for node ``node`` when ``enabled``, else ``net``."""
    return Compiled(net, node) if enabled else net

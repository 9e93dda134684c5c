"""What a piece of tensor code would ask of a GPU: the aten operations it dispatches that
compute something (on a GPU each is at least one kernel launch; views, which only
describe memory, are counted apart) and its host syncs (where the CPU waits for the
GPU: ``nonzero``, boolean-mask indexing, ``.item()``, ``.cpu()``, ``.tolist()``,
``.numpy()``, ``equal``). Counted on any device, the CPU included: run the code under
:func:`pipeline.core.device.tensor_code` to count the branch a GPU takes.

```python
with tensor_code(), counting() as counts:
    detector.detect(frames)
print(counts.ops, counts.syncs)
```
"""

from __future__ import annotations

import contextlib
import weakref
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from ..core.device import tensor_code
from ..core.frame import Frame
from ..core.node import Stage
from ..core.registry import Registry
from .testing import opened_node

#: operations that wait for the device whatever their arguments
SYNC_OPS = frozenset({"nonzero", "nonzero_numpy", "_local_scalar_dense", "equal",
                      "masked_select",
                      "nonzero_static", "unique_consecutive", "_unique2", "unique_dim"})
#: operations that wait for the device when an index is a boolean mask
MASK_OPS = frozenset({"index", "index_put", "index_put_", "_index_put_impl_"})
#: Tensor methods that hand data to the host (on a CPU tensor they dispatch nothing)
HOST_METHODS = ("cpu", "tolist", "numpy")


@dataclass
class Counts:
    """Operations and syncs counted, and each operation's count by name."""

    ops: int = 0  #: operations that compute (launches on a GPU)
    views: int = 0  #: operations that only make views
    syncs: int = 0
    by_op: Counter[str] = field(default_factory=Counter)
    by_sync: Counter[str] = field(default_factory=Counter)

    def sync(self, name: str) -> None:
        """Count one host sync of kind ``name``."""
        self.syncs += 1
        self.by_sync[name] += 1


class _Counter(TorchDispatchMode):
    def __init__(self, counts: Counts) -> None:
        super().__init__()
        self.counts = counts

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (),
                           kwargs: Any = None) -> Any:
        name = func.overloadpacket.__name__
        if func.is_view:
            self.counts.views += 1
        else:
            self.counts.ops += 1
            self.counts.by_op[name] += 1
        if name in SYNC_OPS:
            self.counts.sync(name)
        elif name in MASK_OPS and _has_mask(args):
            self.counts.sync(f"{name} (boolean mask)")
        return func(*args, **(kwargs or {}))


def _has_mask(args: Any) -> bool:
    indices = args[1] if len(args) > 1 else None
    return isinstance(indices, list | tuple) and any(
        isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in indices)


@contextlib.contextmanager
def counting() -> Iterator[Counts]:
    """Count the operations and host syncs of the code run in this block (this process;
    meant for tests and benchmarks)."""
    counts = Counts()
    originals: dict[str, Callable[..., Any]] = {
        name: getattr(torch.Tensor, name) for name in HOST_METHODS}

    # what .cpu() brought back, by id (tensors compare elementwise, so no WeakSet)
    fetched: dict[int, weakref.ref[torch.Tensor]] = {}

    def counted(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        def call(self: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            known = fetched.get(id(self))
            if known is None or known() is not self:  # a fetched copy is read at once
                counts.sync(name)
            out = method(self, *args, **kwargs)
            if name == "cpu":
                fetched[id(out)] = weakref.ref(out)
            return out
        return call

    for name, method in originals.items():
        setattr(torch.Tensor, name, counted(name, method))
    try:
        with _Counter(counts):
            yield counts
    finally:
        for name, method in originals.items():
            setattr(torch.Tensor, name, method)


def count_node(plugin: str, frames: list[Frame], registry: Registry,
               **params: Any) -> dict[str, Any]:
    """Operations, views and syncs per frame of the stage ``plugin`` on the batch
    ``frames``, on the tensor code a GPU runs: one warm-up call, then one counted on the
    same pictures as new frames (a node that skips frames it has seen still works)."""
    with opened_node(plugin, registry, **params) as node, torch.inference_mode(), \
            tensor_code():
        if not isinstance(node, Stage):
            raise TypeError(f"'{plugin}' is not a stage")
        node.stream_started(frames[0].stream)
        node.run(frames)
        later = [f.replace(index=f.index + len(frames)) for f in frames]
        with counting() as counts:
            node.run(later)
    n = len(frames)
    return {"node": plugin, "ops": round(counts.ops / n, 1), "views": round(counts.views / n, 1),
            "syncs": round(counts.syncs / n, 1),
            "syncs_by_kind": {k: round(v / n, 1) for k, v in counts.by_sync.most_common()}}

"""Process-wide CPU memory behaviour suited to long-running frame pipelines.

PyTorch's CPU tensors come from ``malloc``. With glibc's defaults, blocks of more than a
few MB are fresh ``mmap`` pages, handed back to the kernel when freed, so every large
intermediate tensor (a conv output on a 1080p pyramid level, say) is paid for again in
page faults. A pipeline allocates the same sizes frame after frame: keeping freed memory
for reuse made MTCNN on 1080p frames about 1.5 times as fast on the CPU (see the README).
The price is that the process keeps its peak heap instead of shrinking after a burst,
which is how a GPU caching allocator behaves too.
"""

from __future__ import annotations

import ctypes
import sys

# mallopt parameters, from glibc's <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


def keep_freed_memory() -> bool:
    """Have glibc's ``malloc`` serve every block from its heap and keep freed memory for
    reuse instead of returning it to the kernel. Returns whether it took effect (False
    where the C library is not glibc)."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None)
    if not hasattr(libc, "gnu_get_libc_version"):  # musl has mallopt, as a no-op
        return False
    return bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD,
                                                                   2**31 - 1))

"""The CPU buffer pool of the layer ops (csrc/cpu/buffer_pool.h).

The CPU ops take their large buffers (outputs, saved gates, gradient chunks) from a small cache of
blocks kept across calls (at most 64 MiB of free blocks), so that repeated calls do not page-fault
fresh memory in every time. These functions report and empty that cache, as
torch.cuda.memory_reserved / torch.cuda.empty_cache do for CUDA's.
"""

import torch

_ops = torch.ops.fusedlstm


def cpu_pool_enabled() -> bool:
    """Whether the CPU ops use the pool (they do not in an AddressSanitizer build)."""
    return bool(_ops._cpu_pool_enabled())


def cpu_cached_bytes() -> int:
    """Bytes of free blocks the CPU buffer pool holds for the next calls."""
    return int(_ops._cpu_cached_bytes())


def release_cpu_buffers() -> int:
    """Gives every free block of the CPU buffer pool back to malloc; returns how many bytes."""
    return int(_ops._release_cpu_buffers())

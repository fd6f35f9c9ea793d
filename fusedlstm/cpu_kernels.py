"""Which of the CPU's optional kernels this process uses (csrc/cpu/fused_step.h)."""

import torch


def bf16_fused_step() -> bool:
    """Whether bfloat16 layers can run the fused steps built on the CPU's bfloat16 dot product
    (vdpbf16ps): an x86-64 build, a CPU with avx512_bf16, the AVX512 kernels selected. On CPUs
    with AMX they run only the small steps (docs/performance.md)."""
    return bool(torch.ops.fusedlstm._cpu_bf16_fused_step())

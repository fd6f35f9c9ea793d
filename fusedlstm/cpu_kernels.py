"""Which of the CPU's optional kernels this process uses (csrc/cpu/fused_step.h)."""

import ctypes
import functools

from . import _loader


@functools.cache
def _library() -> ctypes.CDLL:
    library = _loader.cpu_c_functions()
    library.fusedlstm_cpu_bf16_fused_step.restype = ctypes.c_int
    library.fusedlstm_cpu_bf16_fused_step.argtypes = []
    return library


def bf16_fused_step() -> bool:
    """Whether bfloat16 inference can run the fused step built on the CPU's bfloat16 dot product
    (vdpbf16ps): an x86-64 build, a CPU with avx512_bf16, the AVX512 kernels selected."""
    return bool(_library().fusedlstm_cpu_bf16_fused_step())

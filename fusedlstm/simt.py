"""Running the CUDA back-end's kernels on the CPU, through a SIMT emulation (csrc/simt).

The CUDA kernel sources are also compiled as host C++ against an emulation of the CUDA device
API in which every CUDA thread is a CPU thread. Inside `emulated_cuda_kernels()`, the fusedlstm
ops on CPU tensors run the CUDA back-end (the same time loop, ATen's GEMMs where the GPU has
cuBLAS) with those emulated kernels: the whole CUDA op path except cuBLAS and the stream, on a
machine without a GPU. For tests; it is orders of magnitude slower than the CPU back-end.
"""

import contextlib

import torch

from . import backends


def emulated_cuda_kernels() -> contextlib.AbstractContextManager:
    """CPU tensors take the CUDA back-end with emulated kernels inside the block (process-wide:
    the switch fusedlstm.backends.cpu.emulate_cuda_kernels)."""
    return backends.flags(cpu_emulate_cuda_kernels=True)


def launches() -> int:
    """Emulated kernel launches so far in this process."""
    return torch.ops.fusedlstm._emulated_launches()


def cooperative_launches() -> int:
    """Emulated cooperative launches (the persistent kernels) so far in this process."""
    return torch.ops.fusedlstm._emulated_cooperative_launches()


def tensor_core_launches() -> int:
    """Of the emulated cooperative launches, those of the tensor-core (wmma) kernels."""
    return torch.ops.fusedlstm._emulated_tensor_core_launches()

"""Loads the compiled extensions, which register the torch.ops.fusedlstm.* ops."""

import ctypes
import functools
import warnings
from pathlib import Path

import torch

_HERE = Path(__file__).parent


def _find(stem: str) -> Path | None:
    matches = sorted(_HERE.glob(f"{stem}.*.so")) + sorted(_HERE.glob(f"{stem}.so"))
    return matches[0] if matches else None


def cpu_library():
    """Path of the CPU extension (_C), which load() loaded."""
    return _find("_C")


@functools.cache
def cpu_c_functions() -> ctypes.CDLL:
    """The CPU extension's plain C functions (extern "C": no binding layer). The extension is
    already loaded (torch.ops.load_library); this returns the same handle."""
    return ctypes.CDLL(str(cpu_library()))


def load() -> bool:
    """Loads _C (schemas + CPU kernels) and, when built, _C_cuda. Returns whether CUDA loaded."""
    cpu = _find("_C")
    if cpu is None:
        raise ImportError(
            f"fusedlstm: the compiled extension (_C*.so) is missing from {_HERE}; build it with "
            "`pip install --no-build-isolation -e .` (or `make test`)"
        )
    torch.ops.load_library(str(cpu))
    from . import _build_info

    cuda = _find("_C_cuda")
    if cuda is None or not _build_info.CUDA_COMPILED:  # a leftover of an older build
        return False
    try:
        torch.ops.load_library(str(cuda))
    except OSError as error:  # e.g. a CUDA build of fusedlstm under a CPU-only torch
        warnings.warn(f"fusedlstm: CUDA kernels not loaded ({error}); CPU only", stacklevel=2)
        return False
    return True

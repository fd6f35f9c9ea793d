"""Loads the compiled extensions, which register the torch.ops.fusedlstm.* ops."""

import warnings
from pathlib import Path

import torch

_HERE = Path(__file__).parent
REBUILD = ("pip install --no-build-isolation --no-deps --force-reinstall <path to the fusedlstm "
           "source> (or `make build` in a checkout)")
# Why the CUDA kernels are not loaded (None when they are): python -m fusedlstm prints it.
cuda_unavailable_reason: str | None = None


def _find(stem: str) -> Path | None:
    matches = sorted(_HERE.glob(f"{stem}.*.so")) + sorted(_HERE.glob(f"{stem}.so"))
    return matches[0] if matches else None


def release(version: str) -> str:
    """'2.14.1' of '2.14.1+cu130'."""
    return version.split("+")[0]


def torch_mismatch(built_with: str, running: str) -> str | None:
    """The error for extensions built against torch `built_with` imported under `running`, or
    None when they match. The compiled kernels are bound to the C++ ABI of the torch they were
    built with: under another one the dynamic loader fails with undefined symbols, or worse."""
    if release(built_with) == release(running):
        return None
    return (f"fusedlstm was built for torch {built_with}, but torch {running} is installed, and "
            f"its compiled kernels only load under the torch they were built for. Install "
            f"torch=={release(built_with)}, or rebuild fusedlstm for this torch: {REBUILD}")


def cuda_mismatch(built_with: str | None, running: str | None) -> str | None:
    """Why CUDA kernels built for CUDA `built_with` can't run under a torch for CUDA `running`."""
    if running is None:
        return f"this torch ({torch.__version__}) has no CUDA; the CPU kernels run"
    if built_with is not None and built_with.split(".")[0] != running.split(".")[0]:
        return (f"fusedlstm's CUDA kernels were built for CUDA {built_with}, this torch uses CUDA "
                f"{running}; rebuild: {REBUILD}")
    return None


def load() -> bool:
    """Loads _C (schemas + CPU kernels) and, when built, _C_cuda. Returns whether CUDA loaded."""
    global cuda_unavailable_reason
    cpu = _find("_C")
    if cpu is None:
        raise ImportError(
            f"fusedlstm: the compiled extension (_C*.so) is missing from {_HERE}; build it with "
            "`pip install --no-build-isolation -e .` (or `make test`)"
        )
    from . import _build_info

    mismatch = torch_mismatch(_build_info.BUILT_WITH_TORCH, torch.__version__)
    if mismatch:
        raise ImportError(mismatch)
    torch.ops.load_library(str(cpu))

    cuda = _find("_C_cuda")
    if cuda is None or not _build_info.CUDA_COMPILED:  # a leftover of an older build
        cuda_unavailable_reason = "this build of fusedlstm has no CUDA kernels (built CPU only)"
        return False
    cuda_unavailable_reason = cuda_mismatch(_build_info.BUILT_WITH_CUDA, torch.version.cuda)
    if cuda_unavailable_reason is None:
        try:
            torch.ops.load_library(str(cuda))
            return True
        except OSError as error:  # no driver, a CUDA runtime that does not match
            cuda_unavailable_reason = f"the CUDA kernels failed to load: {error}"
    if torch.cuda.is_available():  # a GPU that our kernels will not serve: say so once
        warnings.warn(f"fusedlstm: CPU only, {cuda_unavailable_reason}", stacklevel=3)
    return False

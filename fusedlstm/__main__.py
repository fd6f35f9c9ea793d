"""`python -m fusedlstm`: what this build of fusedlstm is and where it runs."""

import platform

import torch

import fusedlstm
from fusedlstm import _build_info, _loader, cpu_kernels


def _installed_version() -> str:
    """The distribution's version: 0.1.0+torch2.14.1.cu130 says which torch and CUDA it is for."""
    from importlib import metadata

    try:
        return metadata.version("fusedlstm")
    except metadata.PackageNotFoundError:
        return "- (not installed: run from a source tree)"


def main() -> None:
    rows = [
        ("fusedlstm", fusedlstm.__version__),
        ("installed as", _installed_version()),
        ("torch", torch.__version__),
        ("python", platform.python_version()),
        ("built with torch", _build_info.BUILT_WITH_TORCH),
        ("CUDA kernels compiled", _build_info.CUDA_COMPILED),
        ("CUDA kernels loaded", fusedlstm.CUDA_LOADED if fusedlstm.CUDA_LOADED
         else f"False: {_loader.cuda_unavailable_reason}"),
        ("CUDA archs", ";".join(_build_info.CUDA_ARCHS) or "-"),
        ("built with CUDA", _build_info.BUILT_WITH_CUDA or "-"),
        ("debug build", _build_info.DEBUG),
        ("GPU available", torch.cuda.is_available()),
        ("CPU kernel capability", torch.backends.cpu.get_cpu_capability()),
        ("CPU bfloat16 fused step (vdpbf16ps)", cpu_kernels.bf16_fused_step()),
        ("CPU threads (torch.get_num_threads)", torch.get_num_threads()),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    main()

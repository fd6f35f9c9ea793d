"""What an installed fusedlstm says about the torch it was built for (fusedlstm/_loader.py)."""

import subprocess
import sys

import pytest
import torch

from fusedlstm import _build_info, _loader


def test_import_under_another_torch_is_one_clear_error():
    """Importing with build info from another torch fails before the dynamic loader is involved,
    naming both versions and the rebuild command."""
    fake = ("import sys, types\n"
            "info = types.ModuleType('fusedlstm._build_info')\n"
            "info.BUILT_WITH_TORCH = '2.0.1+cu118'\n"
            "info.BUILT_WITH_CUDA, info.CUDA_COMPILED, info.CUDA_ARCHS, info.DEBUG = "
            "'11.8', True, ['8.0'], False\n"
            "sys.modules['fusedlstm._build_info'] = info\n"
            "try:\n    import fusedlstm\nexcept ImportError as error:\n    print(error)\n")
    done = subprocess.run([sys.executable, "-c", fake], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    message = done.stdout
    assert "built for torch 2.0.1+cu118" in message
    assert f"torch {torch.__version__} is installed" in message
    assert "pip install --no-build-isolation" in message and "torch==2.0.1" in message


def test_this_build_matches_this_torch():
    assert _loader.torch_mismatch(_build_info.BUILT_WITH_TORCH, torch.__version__) is None


def test_cuda_mismatch_says_why():
    assert "CUDA 12.4" in _loader.cuda_mismatch("12.4", "13.0")
    assert "no CUDA" in _loader.cuda_mismatch("13.0", None)
    assert _loader.cuda_mismatch("13.0", "13.0") is None


def test_python_m_fusedlstm_says_why_cuda_is_not_loaded():
    done = subprocess.run([sys.executable, "-m", "fusedlstm"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    line = next(li for li in done.stdout.splitlines() if li.startswith("CUDA kernels loaded"))
    import fusedlstm

    assert ("True" in line) if fusedlstm.CUDA_LOADED else _loader.cuda_unavailable_reason in line


def test_compiled_cuda_kernels_link_completely():
    """A CUDA build's library resolves every symbol: it loads wherever torch's CUDA runtime does
    (no GPU or driver needed to load it). A launcher declared for the CUDA back-end but not
    compiled into it fails here with `undefined symbol`, before any GPU sees it."""
    if not _build_info.CUDA_COMPILED:
        pytest.skip("a CPU-only build: no CUDA library to link")
    import fusedlstm

    assert fusedlstm.CUDA_LOADED, _loader.cuda_unavailable_reason

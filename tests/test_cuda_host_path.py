"""The CUDA build's host code, run on the CPU.

The time loop, buffer sizes, slicing and GEMM calls are one template (layer_algorithm.h /
cell_algorithm.h) shared by both devices; the CUDA back-end plugs in ATen's GEMMs (AtenGemm,
AtenStepGemm) where the CPU back-end prefers oneDNN / MKL-packed ones. The switch cpu.gemm = aten
makes the CPU use the CUDA back-end's GEMM classes too, so this runs the parity suite through the
exact host path of the CUDA build; only the kernel launchers differ.
"""

import pytest
from conftest import run_suite_with_switches


@pytest.mark.slow
def test_parity_suite_with_the_cuda_backends_gemms():
    run_suite_with_switches({"cpu.gemm": "aten"},
                            ["test_lstm_parity.py", "test_packed.py", "test_cell_parity.py",
                             "test_layer_ops.py", "-k", "not compile"])

"""Both CPU per-step strategies (and the fused step with and without input fusion) on every shape
of the parity suite.

The CPU picks, per call, between the fused recurrent step (GEMM and gate math in one pass, for
small batches) and a GEMM call per step (oneDNN / MKL-packed) followed by the pointwise pass.
The switch fusedlstm.backends.cpu.step forces
one of them, so each is checked against nn.LSTM everywhere, not only on
the shapes where it would be chosen.
"""

import os
import subprocess
import sys

import pytest
import torch
from conftest import run_suite_with_switches


@pytest.mark.slow
@pytest.mark.parametrize("switches", [{"cpu.step": "fused", "cpu.input_fusion": "on"},
                                      {"cpu.step": "fused", "cpu.input_fusion": "off"},
                                      {"cpu.step": "gemm"}],
                         ids=["fused", "fused-without-input-fusion", "gemm"])
def test_parity_suite_with_forced_step_strategy(switches):
    # The fused step can take over the input projection too (x_t W_ih^T in the same tiles; from 4
    # rows by default): forced on and off here, so both run on every shape.
    run_suite_with_switches(switches,
                            ["test_lstm_parity.py", "test_packed.py", "test_layer_ops.py",
                             "test_reliability.py", "test_cpu_bf16.py",
                             "-k", "not compile and not 2_pow_31"])


@pytest.mark.slow
@pytest.mark.parametrize("capability", ["default", "avx2"])
def test_parity_suite_on_other_cpu_capabilities(capability):
    # The kernels compiled for other vector capabilities than this CPU's best (AVX2's 8-lane
    # tiles, the scalar fallback), fused step forced so its kernels run on every shape too.
    # ATEN_CPU_CAPABILITY picks them, as it does ATen's own kernels; a CPU without AVX2 would
    # simply run the best it has, which the default run already covers. The AVX2 run caps oneDNN
    # at AVX2 too, as on an AVX2 CPU: no oneDNN bfloat16 kernels, so bfloat16 products take the
    # float32 GEMMs (cpu_gemm.h, computed_in_float).
    if capability == "avx2" and torch.backends.cpu.get_cpu_capability() not in ("AVX2", "AVX512"):
        pytest.skip("this CPU has no AVX2")
    env = {"ATEN_CPU_CAPABILITY": capability}
    if capability == "avx2":
        env["ONEDNN_MAX_CPU_ISA"] = "AVX2"
    seen = subprocess.run(
        [sys.executable, "-c", "import torch; print(torch.backends.cpu.get_cpu_capability(), "
         "torch.ops.mkldnn._is_mkldnn_bf16_supported())"],
        env=dict(os.environ, **env), capture_output=True, text=True, check=True).stdout.split()
    assert seen[0] == capability.upper(), f"ATEN_CPU_CAPABILITY={capability} gave {seen[0]}"
    if capability == "avx2":
        assert seen[1] == "False", "oneDNN kept its bfloat16 kernels under ONEDNN_MAX_CPU_ISA=AVX2"
    run_suite_with_switches({"cpu.step": "fused", "cpu.input_fusion": "on"},
                            ["test_lstm_parity.py", "test_packed.py", "test_layer_ops.py",
                             "test_cell_parity.py", "test_activations.py", "test_cpu_kernels.py",
                             "test_cpu_bf16.py", "test_gru_rnn_fused_step.py",
                             "test_gru_rnn_parity.py", "-k", "not compile and not 2_pow_31"],
                            env=env)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["fused", "gemm"])
@pytest.mark.parametrize("chunk_steps", ["1", "3"])
def test_parity_suite_with_small_backward_chunks(chunk_steps, strategy):
    # The backward takes its input and weight gradients chunk by chunk (~8 MiB of gate gradients
    # each); the suite's shapes fit in one chunk, so force chunks of 1 and 3 steps: carrying dL/dh
    # across chunk boundaries, h_{t-1} rows per chunk (packed rows joining and leaving), sums of
    # weight gradients over chunks, in both step strategies.
    run_suite_with_switches({"backward_chunk_steps": chunk_steps, "cpu.step": strategy},
                            ["test_lstm_parity.py", "test_packed.py", "test_layer_ops.py",
                             "test_cpu_kernels.py", "test_gru_rnn_parity.py",
                             "test_gru_rnn_fused_step.py", "-k", "not compile and not 2_pow_31"])


@pytest.mark.slow
@pytest.mark.parametrize("route", ["bf16", "float"])
def test_bf16_compute_routes(route):
    # bfloat16 training runs in bfloat16 (the fused steps where the CPU has avx512_bf16, else
    # GEMMs) except for small layers on CPUs without those steps, which compute in float32: each
    # route forced here (the switch cpu.bf16_compute), the bfloat16 one with backward chunks of
    # one step (the fused backward's carry of dL/dh across chunks, the chunked weight-gradient
    # sums).
    switches = {"cpu.bf16_compute": route}
    if route == "bf16":
        switches["backward_chunk_steps"] = "1"
    run_suite_with_switches(switches, ["test_cpu_bf16.py", "test_lstm_parity.py",
                                       "test_layer_ops.py", "-k", "bf16 or bfloat16 or reduced"])

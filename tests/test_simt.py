"""The SIMT emulation itself, and the emulated CUDA back-end against the CPU back-end.

The parity suites run with the emulated kernels in test_simt_parity.py; here: the emulation's
standalone self-test (each device feature against a known answer, its refusals, the pointwise
kernels against the same per-unit code run sequentially), and the lstm_layer ops of both
back-ends on the same inputs.
"""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import fusedlstm

pytestmark = pytest.mark.simt
SELFTEST = Path(__file__).parent / "simt" / "selftest_build.py"


def test_emulation_selftest_passes():
    done = subprocess.run([sys.executable, str(SELFTEST)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "15 passed, 0 failed" in done.stdout


def layer_inputs(dtype, steps, batch, input_size, hidden, packed):
    def t(*shape):
        return torch.randn(*shape, dtype=dtype)

    batch_sizes = torch.tensor([batch] + [max(1, batch - k) for k in range(1, steps)])
    batch_sizes = batch_sizes if packed else None
    x = t(int(batch_sizes.sum()), input_size) if packed else t(steps, batch, input_size)
    return (x, t(batch, hidden), t(batch, hidden), t(4 * hidden, input_size), t(4 * hidden, hidden),
            t(4 * hidden), t(4 * hidden), None, batch_sizes)


def forward_and_backward(args, reverse):
    output, h_n, c_n, gates, cells = torch.ops.fusedlstm.lstm_layer(*args, reverse, True)
    x, h0, c0, w_ih, w_hh, _, _, w_hr, batch_sizes = args
    grads = torch.ops.fusedlstm.lstm_layer_backward(
        torch.ones_like(output).cos(), h_n.sin(), c_n.cos(), x, h0, c0, w_ih, w_hh, w_hr,
        batch_sizes, reverse, output, gates, cells, True, True)
    return [output, h_n, c_n, *grads[:6]]


@pytest.mark.parametrize("step", ["per_step", "persistent"])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 2e-5)])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("shape", [dict(steps=5, batch=1, input_size=3, hidden=7),
                                   dict(steps=6, batch=4, input_size=5, hidden=33),
                                   dict(steps=4, batch=3, input_size=2, hidden=5, packed=True)],
                         ids=["B1-H7", "B4-H33", "packed-H5"])
def test_emulated_cuda_backend_matches_cpu_backend(shape, reverse, dtype, tol, step):
    """Both CUDA time loops: per step (a pointwise launch per step, forward and backward) and
    persistent (one cooperative launch forward, one backward)."""
    args = layer_inputs(dtype, **{"packed": False, **shape})
    cpu = forward_and_backward(args, reverse)
    before = fusedlstm.simt.launches(), fusedlstm.simt.cooperative_launches()
    with fusedlstm.simt.emulated_cuda_kernels(), fusedlstm.backends.flags(cuda_step=step):
        emulated = forward_and_backward(args, reverse)
    if step == "per_step":
        assert fusedlstm.simt.launches() >= before[0] + 2 * shape["steps"]
        assert fusedlstm.simt.cooperative_launches() == before[1]
    else:
        assert fusedlstm.simt.cooperative_launches() == before[1] + 2
    for ours, theirs in zip(emulated, cpu, strict=True):  # per step
        torch.testing.assert_close(ours, theirs, atol=tol, rtol=tol)


def test_emulation_is_off_outside_the_block():
    x = torch.randn(3, 2, 4)
    before = fusedlstm.simt.launches()
    fusedlstm.LSTM(4, 5)(x)
    assert fusedlstm.simt.launches() == before

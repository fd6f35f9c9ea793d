"""The CPU kernels' own activations (tanh built on exp, see pointwise_cpu_kernel.h) against float64
torch.tanh / torch.sigmoid, over millions of float32 inputs: every binade from 2^-24 to 2^5, both
signs, and the special values.

They are reached through the public lstm_cell op with weights that make the cell expose them:
the input-to-hidden weight of the cell gate is the identity and every other weight is zero, so
preact_g = x exactly; the input and output gates' biases are +100 (sigmoid = 1.0 in float32) and
c_prev = 0, so c = tanh(x) and h = tanh(tanh(x)). Moving x to the input gate's block (cell gate
bias +100, tanh = 1) gives c = sigmoid(x).
"""

import numpy as np
import pytest
import torch

import fusedlstm  # noqa: F401

# Hidden sizes that reach each vector path of the CPU kernels: 64 is one lockstep pack of four
# 16-lane vectors per row, 16 a single vector (the same arithmetic, issued one vector at a time).
WIDTHS = [64, 16]
H = 64  # the special-value tests
MAX_ULP = 3.0


def float32_sweep(H: int = H) -> torch.Tensor:
    # Bit patterns from 2^-24 to 2^5 (past which tanh is 1.0 in float32), every 97th one (odd
    # stride: every mantissa pattern class is visited), both signs, plus edge values. (inf and
    # nan cannot pass the identity GEMM, inf * 0 being nan: test_tanh_special_values has them.)
    low, high = np.float32(2.0**-24).view(np.int32), np.float32(32.0).view(np.int32)
    positive = np.arange(low, high, 97, dtype=np.int32).view(np.float32)
    special = np.array([0.0, -0.0, 1e-45, -1e-45, 0.625, -0.625, 0.62499994, 40.0, -40.0, 89.0,
                        -89.0, 3e38, -3e38], dtype=np.float32)
    values = np.concatenate([positive, -positive, special])
    pad = (-len(values)) % H
    return torch.from_numpy(np.concatenate([values, np.zeros(pad, np.float32)]))


def cell_exposing(values: torch.Tensor, gate: int, H: int = H):
    """(h, c) of lstm_cell with preact[gate block] = values, laid out as (rows, H)."""
    x = values.view(-1, H)
    w_ih = torch.zeros(4 * H, H)
    w_ih[gate * H:(gate + 1) * H] = torch.eye(H)
    bias = torch.full((4 * H,), 100.0)
    bias[gate * H:(gate + 1) * H] = 0.0
    zeros = torch.zeros(x.shape[0], H)
    h, c, _ = torch.ops.fusedlstm.lstm_cell(x, zeros, zeros, w_ih, torch.zeros(4 * H, H),
                                            bias, torch.zeros(4 * H))
    return h.flatten(), c.flatten()


def ulp_error(actual: torch.Tensor, expected64: torch.Tensor) -> torch.Tensor:
    spacing = np.spacing(expected64.abs().float().numpy())
    spacing = torch.from_numpy(np.maximum(spacing, np.float32(2.0**-149)))
    return (actual.double() - expected64).abs() / spacing.double()


@pytest.mark.parametrize("H", WIDTHS)
def test_tanh_within_a_few_ulp(H):
    values = float32_sweep(H)
    h, c = cell_exposing(values, gate=2, H=H)
    expected = torch.tanh(values.double())
    finite = torch.isfinite(expected)
    error = ulp_error(c[finite], expected[finite])
    worst = int(error.argmax())
    assert error.max() <= MAX_ULP, (
        f"tanh({values[finite][worst].item()!r}) = {c[finite][worst].item()!r}, "
        f"float64 says {expected[finite][worst].item()!r}: {error.max():.2f} ulp")
    assert torch.equal(c.sign(), expected.sign().float()), "tanh changed a sign"
    # h = tanh(tanh(x)) goes through the same function a second time
    assert ulp_error(h, torch.tanh(c.double())).max() <= MAX_ULP


def test_tanh_special_values():
    # Through the bias instead: preact = 0 + bias, exact for inf and nan too.
    special = torch.tensor([float("inf"), float("-inf"), float("nan"), 0.0])
    bias = torch.full((4 * H,), 100.0)
    bias[2 * H:2 * H + len(special)] = special
    x, zeros = torch.zeros(1, 1), torch.zeros(1, H)
    _, c, _ = torch.ops.fusedlstm.lstm_cell(x, zeros, zeros, torch.zeros(4 * H, 1),
                                            torch.zeros(4 * H, H), bias, torch.zeros(4 * H))
    c = c.flatten()
    assert c[0].item() == 1.0 and c[1].item() == -1.0 and torch.isnan(c[2])
    assert c[3].item() == 0.0 and not torch.signbit(c[3])


@pytest.mark.parametrize("H", WIDTHS)
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_sigmoid_within_a_few_ulp(sign, H):
    values = float32_sweep(H) * sign
    _, c = cell_exposing(values, gate=0, H=H)  # c = sigmoid(x) * tanh(100) = sigmoid(x)
    expected = torch.sigmoid(values.double())
    normal = expected >= torch.finfo(torch.float32).tiny  # 1 / (1 + inf) is 0 below that
    error = ulp_error(c[normal], expected[normal])
    assert error.max() <= MAX_ULP, f"sigmoid: {error.max():.2f} ulp"

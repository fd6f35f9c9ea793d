"""The lstm_cell ops checked by gradcheck and torch.library.opcheck."""

import pytest
import torch

import fusedlstm  # noqa: F401


def cell_args(batch=3, input_size=4, hidden=5, bias=True, requires_grad=True, dtype=torch.float64):
    def t(*shape):
        return torch.randn(*shape, dtype=dtype, requires_grad=requires_grad)

    return (t(batch, input_size), t(batch, hidden), t(batch, hidden), t(4 * hidden, input_size),
            t(4 * hidden, hidden), t(4 * hidden) if bias else None, t(4 * hidden) if bias else None)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("batch,hidden", [(1, 1), (3, 5), (2, 9)])
def test_gradcheck(bias, batch, hidden):
    args = cell_args(batch=batch, hidden=hidden, bias=bias)
    assert torch.autograd.gradcheck(lambda *a: fusedlstm.ops.lstm_cell(*a), args)


@pytest.mark.parametrize("requires_grad", [True, False])
@pytest.mark.parametrize("bias", [True, False])
def test_opcheck_lstm_cell(requires_grad, bias):
    args = cell_args(bias=bias, requires_grad=requires_grad, dtype=torch.float32)
    torch.library.opcheck(torch.ops.fusedlstm.lstm_cell.default, args)


@pytest.mark.parametrize("needs", [(True, True, True), (False, True, True), (False, False, True),
                                   (True, True, False)])
def test_opcheck_lstm_cell_backward(needs):
    x, hx, cx, w_ih, w_hh, b_ih, b_hh = cell_args(requires_grad=False, dtype=torch.float32)
    hy, cy, gates = torch.ops.fusedlstm.lstm_cell(x, hx, cx, w_ih, w_hh, b_ih, b_hh)
    args = (torch.randn_like(hy), torch.randn_like(cy), x, hx, cx, w_ih, w_hh, cy, gates, *needs)
    torch.library.opcheck(torch.ops.fusedlstm.lstm_cell_backward.default, args)


def test_op_does_not_mutate_inputs():
    args = cell_args(requires_grad=False)
    before = [a.clone() for a in args if a is not None]
    torch.ops.fusedlstm.lstm_cell(*args)
    for a, b in zip([a for a in args if a is not None], before, strict=True):
        assert torch.equal(a, b)

"""Higher-order gradients: gradgradcheck of the ops, and double backward through the modules (a
gradient penalty) against nn.LSTM / nn.LSTMCell. A plain backward keeps the fused backward op."""

import pytest
import torch
from conftest import tolerance
from lstm_pairs import make_pair
from state_pairs import cell_output, make_cell_pair
from torch import nn

import fusedlstm
from fusedlstm import _reference

F64 = torch.float64


def leaf(*shape):
    return torch.randn(*shape, dtype=F64, requires_grad=True)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("proj", [False, True])
@pytest.mark.parametrize("packed", [False, True])
def test_layer_gradgradcheck(reverse, proj, packed):
    hidden, out = 4, (2 if proj else 4)
    module = fusedlstm.LSTM(3, hidden, proj_size=2 if proj else 0, dtype=F64)
    weights = module._flat_weights
    batch_sizes = torch.tensor([3, 2, 2, 1]) if packed else None
    x = leaf(8, 3) if packed else leaf(4, 3, 3)
    h0, c0 = leaf(3, out), leaf(3, hidden)

    def layer(x, h0, c0, *weights):
        return fusedlstm.ops.lstm_layer(x, h0, c0, *weights, batch_sizes=batch_sizes,
                                        reverse=reverse)

    assert torch.autograd.gradgradcheck(layer, (x, h0, c0, *weights))


def test_cell_gradgradcheck():
    cell = fusedlstm.LSTMCell(3, 4, dtype=F64)
    inputs = (leaf(2, 3), leaf(2, 4), leaf(2, 4), cell.weight_ih, cell.weight_hh, cell.bias_ih,
              cell.bias_hh)
    assert torch.autograd.gradgradcheck(fusedlstm.ops.lstm_cell, inputs)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_relu"])
def test_cell_double_backward_matches_nn(cell, bias):
    """The cells' (C++) autograd under create_graph=True, with and without biases; the LSTM with
    one tensor passed as both hx and cx, where each use must get its own gradient."""
    ref, ours = make_cell_pair(cell, 3, 4, bias=bias)
    x, h = leaf(2, 3), leaf(2, 4)

    def penalty_grads(module):
        wrt = [x, h, *module.parameters()]
        grads = torch.autograd.grad(cell_output(module, cell, x, h).sin().sum(), wrt,
                                    create_graph=True)
        return torch.autograd.grad(sum(g.pow(2).sum() for g in grads), wrt)

    for got, want in zip(penalty_grads(ours), penalty_grads(ref), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)


def gradient_penalty_grads(module, x, packed_lengths=None):
    """d/d(params, x) of |d loss / d x|^2, the double backward of a gradient penalty."""
    x = x.clone().requires_grad_()
    inputs = x if packed_lengths is None else nn.utils.rnn.pack_padded_sequence(
        x, packed_lengths, enforce_sorted=False)
    output = module(inputs)[0]
    data = output.data if packed_lengths is not None else output
    (grad_x,) = torch.autograd.grad(data.sin().sum(), x, create_graph=True)
    module.zero_grad()
    grad_x.pow(2).sum().backward()
    return [x.grad] + [p.grad for p in module.parameters()]


@pytest.mark.parametrize("config", [{}, {"num_layers": 2, "bidirectional": True},
                                    {"proj_size": 3, "batch_first": True}], ids=str)
def test_gradient_penalty_matches_nn(config):
    ref, ours = make_pair(5, 7, **config)
    x = torch.randn(4, 3, 5, dtype=F64)
    for actual, expected in zip(gradient_penalty_grads(ours, x), gradient_penalty_grads(ref, x),
                                strict=True):
        torch.testing.assert_close(actual, expected, **tolerance("lstm", F64))


def test_gradient_penalty_packed_matches_nn():
    ref, ours = make_pair(5, 7, bidirectional=True)
    x = torch.randn(4, 3, 5, dtype=F64)
    expected = gradient_penalty_grads(ref, x, [4, 1, 3])
    actual = gradient_penalty_grads(ours, x, [4, 1, 3])
    for a, e in zip(actual, expected, strict=True):
        torch.testing.assert_close(a, e, **tolerance("lstm", F64))


def test_cell_gradient_penalty_matches_nn():
    ref = nn.LSTMCell(5, 7, dtype=F64)
    ours = fusedlstm.LSTMCell(5, 7, dtype=F64)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(3, 5, dtype=F64)
    for a, e in zip(gradient_penalty_grads(ours, x), gradient_penalty_grads(ref, x), strict=True):
        torch.testing.assert_close(a, e, **tolerance("cell", F64))


def test_plain_backward_keeps_the_fused_backward(monkeypatch):
    """Only a backward that builds a graph recomputes through the differentiable reference."""
    calls = []
    real_layer = _reference.layer
    monkeypatch.setattr(_reference, "layer", lambda *a: calls.append(1) or real_layer(*a))
    module = fusedlstm.LSTM(5, 7, dtype=F64)
    x = torch.randn(4, 3, 5, dtype=F64, requires_grad=True)
    module(x)[0].sum().backward()
    assert calls == []
    (grad_x,) = torch.autograd.grad(module(x)[0].sum(), x, create_graph=True)
    assert calls == [1] and grad_x.requires_grad

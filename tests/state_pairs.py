"""Helpers that build an nn.GRU / nn.RNN (or cell) and the fusedlstm module with the same weights
and run both: the oracle of the GRU and Elman RNN suites."""

import torch
from torch import nn

import fusedlstm

# kind -> (torch.nn class, fusedlstm class, extra constructor arguments)
LAYERS = {
    "gru": (nn.GRU, fusedlstm.GRU, {}),
    "rnn_tanh": (nn.RNN, fusedlstm.RNN, {"nonlinearity": "tanh"}),
    "rnn_relu": (nn.RNN, fusedlstm.RNN, {"nonlinearity": "relu"}),
}
CELLS = {
    "gru": (nn.GRUCell, fusedlstm.GRUCell, {}),
    "rnn_tanh": (nn.RNNCell, fusedlstm.RNNCell, {"nonlinearity": "tanh"}),
    "rnn_relu": (nn.RNNCell, fusedlstm.RNNCell, {"nonlinearity": "relu"}),
}


def make_pair(kind, input_size, hidden_size, dtype=torch.float64, cell=False, **kwargs):
    ref_class, our_class, extra = (CELLS if cell else LAYERS)[kind]
    ref = ref_class(input_size, hidden_size, dtype=dtype, **extra, **kwargs)
    ours = our_class(input_size, hidden_size, dtype=dtype, **extra, **kwargs)
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def make_cell_pair(kind, input_size, hidden_size, dtype=torch.float64, **kwargs):
    """As make_pair(cell=True), for "lstm" (nn.LSTMCell / fusedlstm.LSTMCell) too: the tests that
    run every cell the same way."""
    if kind != "lstm":
        return make_pair(kind, input_size, hidden_size, dtype, cell=True, **kwargs)
    ref = nn.LSTMCell(input_size, hidden_size, dtype=dtype, **kwargs)
    ours = fusedlstm.LSTMCell(input_size, hidden_size, dtype=dtype, **kwargs)
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def cell_output(cell, kind, x, h):
    """h' of one step; the LSTM cell gets h as both hx and cx (one tensor used twice)."""
    return cell(x, (h, h))[0] if kind == "lstm" else cell(x, h)


def loss_of(output, h_n):
    """Weighs every output differently, so no gradient can hide behind a symmetry."""
    data = output.data if isinstance(output, nn.utils.rnn.PackedSequence) else output
    return data.sin().sum() + 0.7 * h_n.cos().sum()


def run(module, x, hx):
    """Forward + backward; returns [output, h_n] and [grad x, grad h0, grads of parameters]."""
    x = x.clone().requires_grad_()
    hx = None if hx is None else hx.clone().requires_grad_()
    output, h_n = module(x, hx)
    loss_of(output, h_n).backward()
    grads = [x.grad] + ([] if hx is None else [hx.grad]) + [p.grad for p in module.parameters()]
    return [output, h_n], grads


def run_packed(module, x, lengths, hx):
    """As run, on x packed with `lengths` (unsorted: the module permutes hx)."""
    x = x.clone().requires_grad_()
    hx = None if hx is None else hx.clone().requires_grad_()
    packed = nn.utils.rnn.pack_padded_sequence(x, lengths, enforce_sorted=False)
    output, h_n = module(packed, hx)
    loss_of(output, h_n).backward()
    grads = [x.grad] + ([] if hx is None else [hx.grad]) + [p.grad for p in module.parameters()]
    return [output.data, h_n], grads


def assert_all_close(ours, theirs, what, **tolerance):
    for index, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        torch.testing.assert_close(a, b, **tolerance, msg=lambda m, i=index: f"{what}[{i}]: {m}")

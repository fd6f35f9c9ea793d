"""Helpers that build an nn.LSTM and a fusedlstm.LSTM with the same weights and run both."""

import torch
from torch import nn

import fusedlstm


def make_pair(input_size, hidden_size, dtype=torch.float64, **kwargs):
    ref = nn.LSTM(input_size, hidden_size, dtype=dtype, **kwargs)
    ours = fusedlstm.LSTM(input_size, hidden_size, dtype=dtype, **kwargs)
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def hidden_state(module, batch, dtype, unbatched=False):
    layers = module.num_layers * (2 if module.bidirectional else 1)
    out = module.proj_size or module.hidden_size
    h_shape = (layers, out) if unbatched else (layers, batch, out)
    c_shape = (layers, module.hidden_size) if unbatched else (layers, batch, module.hidden_size)
    return torch.randn(h_shape, dtype=dtype), torch.randn(c_shape, dtype=dtype)


def loss_of(output, h_n, c_n):
    """A loss that weighs every output differently, so no gradient can hide behind a symmetry."""
    data = output.data if isinstance(output, nn.utils.rnn.PackedSequence) else output
    return data.sin().sum() + 0.7 * h_n.cos().sum() + 0.3 * (c_n * c_n).sum()


def run(module, x, hx):
    """Forward + backward; returns [output, h_n, c_n] and [grad x, grad h0, grad c0, params...]."""
    x = x.clone().requires_grad_()
    hx = None if hx is None else tuple(t.clone().requires_grad_() for t in hx)
    output, (h_n, c_n) = module(x, hx)
    loss_of(output, h_n, c_n).backward()
    grads = [x.grad] + ([] if hx is None else [hx[0].grad, hx[1].grad])
    grads += [p.grad for p in module.parameters()]
    return [output, h_n, c_n], grads

"""The LSTM written in differentiable torch ops: what a backward builds its graph from when the
gradients must themselves be differentiated (double backward, gradient penalties, nested
torch.func.grad).

The fused kernels' backward ops are not differentiable, so a backward that must build a graph
recomputes the forward here and differentiates that instead. The loop over steps is Python, which
is acceptable off the hot path: a plain `.backward()` never comes here. Every op used has autograd
and vmap support, so the result can be differentiated again and vmapped.
"""

import torch
import torch.nn.functional as F
from torch import Tensor


def _step(pre_gates: Tensor, h: Tensor, c: Tensor, w_hh: Tensor, w_hr: Tensor | None):
    """One step from the input projection of this step; gate rows i, f, g, o as nn.LSTM."""
    gates = pre_gates + F.linear(h, w_hh)
    i, f, g, o = gates.chunk(4, dim=-1)
    c_next = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    h_next = torch.sigmoid(o) * torch.tanh(c_next)
    if w_hr is not None:
        h_next = F.linear(h_next, w_hr)
    return h_next, c_next


def _input_projection(input: Tensor, w_ih: Tensor, b_ih: Tensor | None,
                      b_hh: Tensor | None) -> Tensor:
    pre_gates = F.linear(input, w_ih, b_ih)
    return pre_gates if b_hh is None else pre_gates + b_hh


def cell(input, hx, cx, w_ih, w_hh, b_ih, b_hh) -> tuple[Tensor, Tensor]:
    """fusedlstm::lstm_cell's (h', c')."""
    return _step(_input_projection(input, w_ih, b_ih, b_hh), hx, cx, w_hh, None)


def _padded_layer(pre_gates, h0, c0, w_hh, w_hr, reverse):
    steps = range(pre_gates.shape[0] - 1, -1, -1) if reverse else range(pre_gates.shape[0])
    h, c = h0, c0
    outputs: list[Tensor] = [h0] * pre_gates.shape[0]
    for t in steps:
        h, c = _step(pre_gates[t], h, c, w_hh, w_hr)
        outputs[t] = h
    return torch.stack(outputs), h, c


def _packed_forward(pre_gates, sizes, h0, c0, w_hh, w_hr):
    """Rows leave the batch as their sequences end (batch_sizes never grows)."""
    h, c = h0, c0
    outputs, h_done, c_done = [], [], []
    offset = 0
    for size in sizes:
        if size < h.shape[0]:  # rows size.. ended at the previous step: their state is final
            h_done.append(h[size:])
            c_done.append(c[size:])
            h, c = h[:size], c[:size]
        h, c = _step(pre_gates[offset:offset + size], h, c, w_hh, w_hr)
        outputs.append(h)
        offset += size
    h_done.append(h)
    c_done.append(c)
    return torch.cat(outputs), torch.cat(h_done[::-1]), torch.cat(c_done[::-1])


def _packed_reverse(pre_gates, sizes, h0, c0, w_hh, w_hr):
    """From the last step back: rows join the batch (from h0) at their sequence's last step."""
    ends = [0]
    for size in sizes:
        ends.append(ends[-1] + size)
    h, c = h0[:0], c0[:0]
    outputs: list[Tensor] = [h0] * len(sizes)
    for t in range(len(sizes) - 1, -1, -1):
        size = sizes[t]
        if size > h.shape[0]:
            h = torch.cat([h, h0[h.shape[0]:size]])
            c = torch.cat([c, c0[c.shape[0]:size]])
        h, c = _step(pre_gates[ends[t]:ends[t + 1]], h, c, w_hh, w_hr)
        outputs[t] = h
    return torch.cat(outputs), h, c


def layer(input, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes, reverse):
    """fusedlstm::lstm_layer's (output, h_n, c_n), padded (T, B, I) or packed (N, I) input."""
    pre_gates = _input_projection(input, w_ih, b_ih, b_hh)
    if batch_sizes is None:
        return _padded_layer(pre_gates, h0, c0, w_hh, w_hr, reverse)
    sizes = [int(size) for size in batch_sizes.tolist()]
    run = _packed_reverse if reverse else _packed_forward
    return run(pre_gates, sizes, h0, c0, w_hh, w_hr)

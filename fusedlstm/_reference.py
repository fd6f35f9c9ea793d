"""The LSTM, GRU and Elman RNN written in differentiable torch ops: what a backward builds its
graph from when the gradients must themselves be differentiated (double backward, gradient
penalties, nested torch.func.grad).

The fused kernels' backward ops are not differentiable, so a backward that must build a graph
recomputes the forward here and differentiates that instead. The loop over steps is Python, which
is acceptable off the hot path: a plain `.backward()` never comes here. Every op used has autograd
and vmap support, so the result can be differentiated again and vmapped.
"""

import torch
import torch.nn.functional as F
from torch import Tensor


def _lstm_step(w_hh: Tensor, w_hr: Tensor | None):
    """One step from the input projection of this step; gate rows i, f, g, o as nn.LSTM."""

    def step(pre_gates: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        h, c = state
        gates = pre_gates + F.linear(h, w_hh)
        i, f, g, o = gates.chunk(4, dim=-1)
        c_next = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h_next = torch.sigmoid(o) * torch.tanh(c_next)
        if w_hr is not None:
            h_next = F.linear(h_next, w_hr)
        return h_next, c_next

    return step


def _gru_step(w_hh: Tensor, b_hh: Tensor | None):
    """One GRU step from x W_ih^T + b_ih; gate rows r, z, n as nn.GRU."""

    def step(x_part: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        (h,) = state
        x_r, x_z, x_n = x_part.chunk(3, dim=-1)
        h_r, h_z, h_n = F.linear(h, w_hh, b_hh).chunk(3, dim=-1)
        r = torch.sigmoid(x_r + h_r)
        z = torch.sigmoid(x_z + h_z)
        n = torch.tanh(x_n + r * h_n)
        return ((1 - z) * n + z * h,)

    return step


def _rnn_step(w_hh: Tensor, b_hh: Tensor | None, nonlinearity: str):
    activation = torch.tanh if nonlinearity == "tanh" else torch.relu

    def step(x_part: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        return (activation(x_part + F.linear(state[0], w_hh, b_hh)),)

    return step


def _input_projection(input: Tensor, w_ih: Tensor, b_ih: Tensor | None,
                      b_hh: Tensor | None) -> Tensor:
    pre_gates = F.linear(input, w_ih, b_ih)
    return pre_gates if b_hh is None else pre_gates + b_hh


def cell(input, hx, cx, w_ih, w_hh, b_ih, b_hh) -> tuple[Tensor, Tensor]:
    """fusedlstm::lstm_cell's (h', c')."""
    return _lstm_step(w_hh, None)(_input_projection(input, w_ih, b_ih, b_hh), (hx, cx))


def gru_cell(input, hx, w_ih, w_hh, b_ih, b_hh) -> Tensor:
    """fusedlstm::gru_cell's h'."""
    return _gru_step(w_hh, b_hh)(F.linear(input, w_ih, b_ih), (hx,))[0]


def rnn_cell(input, hx, w_ih, w_hh, b_ih, b_hh, nonlinearity) -> Tensor:
    """fusedlstm::rnn_cell's h'."""
    return _rnn_step(w_hh, b_hh, nonlinearity)(F.linear(input, w_ih, b_ih), (hx,))[0]


# The time loops over any cell: `step(pre, state)` returns the new state tuple, whose first
# element is the step's output. Each returns (output, *final state).
def _padded_layer(step, pre, state, reverse):
    steps = range(pre.shape[0] - 1, -1, -1) if reverse else range(pre.shape[0])
    outputs: list[Tensor] = [state[0]] * pre.shape[0]
    for t in steps:
        state = step(pre[t], state)
        outputs[t] = state[0]
    return (torch.stack(outputs), *state)


def _packed_forward(step, pre, sizes, state):
    """Rows leave the batch as their sequences end (batch_sizes never grows)."""
    outputs: list[Tensor] = []
    done: list[tuple[Tensor, ...]] = []
    offset = 0
    for size in sizes:
        if size < state[0].shape[0]:  # rows size.. ended at the previous step: their state is final
            done.append(tuple(s[size:] for s in state))
            state = tuple(s[:size] for s in state)
        state = step(pre[offset:offset + size], state)
        outputs.append(state[0])
        offset += size
    done.append(state)
    finals = [torch.cat([d[k] for d in done[::-1]]) for k in range(len(state))]
    return (torch.cat(outputs), *finals)


def _packed_reverse(step, pre, sizes, initial):
    """From the last step back: rows join the batch (from the initial state) at their sequence's
    last step."""
    ends = [0]
    for size in sizes:
        ends.append(ends[-1] + size)
    state = tuple(s[:0] for s in initial)
    outputs: list[Tensor] = [initial[0]] * len(sizes)
    for t in range(len(sizes) - 1, -1, -1):
        size = sizes[t]
        have = state[0].shape[0]
        if size > have:
            state = tuple(torch.cat([s, s0[have:size]])
                          for s, s0 in zip(state, initial, strict=True))
        state = step(pre[ends[t]:ends[t + 1]], state)
        outputs[t] = state[0]
    return (torch.cat(outputs), *state)


def _run(step, pre, state, batch_sizes, reverse):
    if batch_sizes is None:
        return _padded_layer(step, pre, state, reverse)
    sizes = [int(size) for size in batch_sizes.tolist()]
    run = _packed_reverse if reverse else _packed_forward
    return run(step, pre, sizes, state)


def layer(input, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes, reverse):
    """fusedlstm::lstm_layer's (output, h_n, c_n), padded (T, B, I) or packed (N, I) input."""
    pre_gates = _input_projection(input, w_ih, b_ih, b_hh)
    return _run(_lstm_step(w_hh, w_hr), pre_gates, (h0, c0), batch_sizes, reverse)


def gru_layer(input, h0, w_ih, w_hh, b_ih, b_hh, batch_sizes, reverse):
    """fusedlstm::gru_layer's (output, h_n)."""
    return _run(_gru_step(w_hh, b_hh), F.linear(input, w_ih, b_ih), (h0,), batch_sizes, reverse)


def rnn_layer(input, h0, w_ih, w_hh, b_ih, b_hh, batch_sizes, reverse, nonlinearity):
    """fusedlstm::rnn_layer's (output, h_n)."""
    return _run(_rnn_step(w_hh, b_hh, nonlinearity), F.linear(input, w_ih, b_ih), (h0,),
                batch_sizes, reverse)

"""vmap rules for the fusedlstm ops (torch.vmap, and torch.func transforms built on it).

A forward whose weights are shared across the vmapped dimension (per-sample gradients, a batch of
sequences) folds that dimension into the op's own batch: one kernel call for all of them. Anything
else (vmapped weights, packed input, the backward ops) runs the op once per vmapped slice and
stacks the results, which is exact for every op.
"""

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

_ops = torch.ops.fusedlstm


def _leading(t: Tensor, dim: int | None, size: int) -> Tensor:
    """t with the vmapped dimension first (expanded when t is not vmapped)."""
    if dim is None:
        return t.unsqueeze(0).expand(size, *t.shape)
    return t.movedim(dim, 0)


def _batched_into_batch(t: Tensor, dim: int | None, size: int, batch_axis: int) -> Tensor:
    """Merges the vmapped dimension into the op's batch axis (vmapped slices side by side)."""
    return _leading(t, dim, size).movedim(0, batch_axis).flatten(batch_axis, batch_axis + 1)


def loop_rule(call: Callable) -> Callable:
    """A rule that calls `call` once per vmapped slice and stacks each output along dim 0."""

    def rule(info, in_dims: Sequence[int | None], *args):
        results = []
        for index in range(info.batch_size):
            sliced = [arg.select(dim, index) if dim is not None else arg
                      for arg, dim in zip(args, in_dims, strict=True)]
            results.append(call(*sliced))
        outputs = tuple(torch.stack(column) for column in zip(*results, strict=True))
        return outputs, (0,) * len(outputs)

    return rule


def single_output_loop_rule(call: Callable) -> Callable:
    """loop_rule for an op with one output."""
    rule = loop_rule(lambda *args: (call(*args),))

    def single(info, in_dims: Sequence[int | None], *args):
        outputs, dims = rule(info, in_dims, *args)
        return outputs[0], dims[0]

    return single


def _weights_shared(in_dims: Sequence[int | None], weight_positions: range) -> bool:
    return all(in_dims[position] is None for position in weight_positions)


def layer_rule(call: Callable) -> Callable:
    """lstm_layer(input, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes, reverse, train)."""
    fallback = loop_rule(call)

    def rule(info, in_dims, input, h0, c0, *rest):
        batch_sizes = rest[5]
        if batch_sizes is not None or not _weights_shared(in_dims, range(3, 8)):
            return fallback(info, in_dims, input, h0, c0, *rest)
        size = info.batch_size
        output, h_n, c_n, gates, cells = call(
            _batched_into_batch(input, in_dims[0], size, 1),
            _batched_into_batch(h0, in_dims[1], size, 0),
            _batched_into_batch(c0, in_dims[2], size, 0),
            *rest,
        )
        steps = output.shape[0]
        output = output.unflatten(1, (size, -1))
        h_n, c_n = h_n.unflatten(0, (size, -1)), c_n.unflatten(0, (size, -1))
        # Saved activations are (T*B, .) rows per slice: regroup rows by slice.
        if gates.shape[0] > 0:
            gates = gates.unflatten(0, (steps, size, -1)).movedim(1, 0).flatten(1, 2)
            cells = cells.unflatten(0, (steps, size, -1)).movedim(1, 0).flatten(1, 2)
        else:
            gates, cells = gates.expand(size, 0), cells.expand(size, 0)
        return (output, h_n, c_n, gates, cells), (1, 0, 0, 0, 0)

    return rule


def cell_rule(call: Callable) -> Callable:
    """lstm_cell(input, hx, cx, w_ih, w_hh, b_ih, b_hh)."""
    fallback = loop_rule(call)

    def rule(info, in_dims, input, hx, cx, *weights):
        if not _weights_shared(in_dims, range(3, 7)):
            return fallback(info, in_dims, input, hx, cx, *weights)
        size = info.batch_size
        outputs = call(
            _batched_into_batch(input, in_dims[0], size, 0),
            _batched_into_batch(hx, in_dims[1], size, 0),
            _batched_into_batch(cx, in_dims[2], size, 0),
            *weights,
        )
        return tuple(t.unflatten(0, (size, -1)) for t in outputs), (0, 0, 0)

    return rule


def _register() -> None:
    torch.library.register_vmap("fusedlstm::lstm_layer", layer_rule(_ops.lstm_layer.default))
    torch.library.register_vmap("fusedlstm::lstm_cell", cell_rule(_ops.lstm_cell.default))
    for name in ("lstm_layer_backward", "lstm_cell_backward"):
        op = getattr(_ops, name).default
        torch.library.register_vmap(f"fusedlstm::{name}", loop_rule(op))
    # GRU / RNN: every op once per slice (rnn_cell has a single output).
    for name in ("gru_layer", "rnn_layer", "gru_cell", "gru_layer_backward",
                 "rnn_layer_backward", "gru_cell_backward", "rnn_cell_backward"):
        torch.library.register_vmap(f"fusedlstm::{name}", loop_rule(getattr(_ops, name).default))
    torch.library.register_vmap("fusedlstm::rnn_cell",
                                single_output_loop_rule(_ops.rnn_cell.default))


_register()

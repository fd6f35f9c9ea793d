"""Module-free LSTM API on plain tensors, for users who hold their own weights.

lstm_cell and lstm_layers are TorchScript-compatible (the modules' forward calls them, and
torch.jit.script compiles what the modules call): scripted, they call the ops directly.
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from . import _onnx, ops


def lstm_cell(
    input: Tensor,
    hx: tuple[Tensor, Tensor],
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None = None,
    b_hh: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """One LSTM step: input (B, I), hx = (h, c) each (B, H); returns (h', c').

    Same math and weight layout as torch.nn.LSTMCell (gate rows i, f, g, o).
    """
    if torch.jit.is_scripting():
        hy, cy, _ = torch.ops.fusedlstm.lstm_cell(input, hx[0], hx[1], w_ih, w_hh, b_ih, b_hh)
        return hy, cy
    return ops.lstm_cell(input, hx[0], hx[1], w_ih, w_hh, b_ih, b_hh)


def _layer(input: Tensor, h0: Tensor, c0: Tensor, w_ih: Tensor, w_hh: Tensor,
           b_ih: Tensor | None, b_hh: Tensor | None, w_hr: Tensor | None,
           batch_sizes: Tensor | None, reverse: bool) -> tuple[Tensor, Tensor, Tensor]:
    if torch.jit.is_scripting():
        train = ops.keeps_activations([input, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr])
        result = torch.ops.fusedlstm.lstm_layer(
            input, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes, reverse, train)
        return result[0], result[1], result[2]
    return ops.lstm_layer(input, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes,
                          reverse=reverse)


def _weights_per_layer(bias: bool, proj_size: int) -> int:
    return 2 + 2 * int(bias) + int(proj_size > 0)


def lstm(
    input: Tensor,
    hx: tuple[Tensor, Tensor] | None,
    weights: Sequence[Tensor],
    *,
    num_layers: int = 1,
    bias: bool = True,
    batch_first: bool = False,
    dropout: float = 0.0,
    training: bool = False,
    bidirectional: bool = False,
    proj_size: int = 0,
    batch_sizes: Tensor | None = None,
) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """A multi-layer LSTM over a sequence, like torch.nn.LSTM but with weights passed in.

    input: (T, B, I), or (B, T, I) with batch_first, or PackedSequence data (N, I) together with
    its batch_sizes. weights: in nn.LSTM's `_flat_weights` order, per layer and direction
    w_ih, w_hh[, b_ih, b_hh][, w_hr]. hx: (h_0, c_0) of shapes (L*D, B, P) and (L*D, B, H), or
    None for zeros. Returns (output, (h_n, c_n)) as nn.LSTM does. Dropout (between layers) is
    applied only when `training`.
    """
    directions = 2 if bidirectional else 1
    per_layer = _weights_per_layer(bias, proj_size)
    expected = num_layers * directions * per_layer
    if len(weights) != expected:
        raise ValueError(
            f"lstm: expected {expected} weight tensors for num_layers={num_layers}, "
            f"bidirectional={bidirectional}, bias={bias}, proj_size={proj_size}; got {len(weights)}"
        )
    return lstm_layers(input, hx, list(weights), num_layers, bias, batch_first, dropout, training,
                       bidirectional, proj_size, batch_sizes)


def lstm_layers(
    input: Tensor,
    hx: tuple[Tensor, Tensor] | None,
    weights: list[Tensor],
    num_layers: int,
    bias: bool,
    batch_first: bool,
    dropout: float,
    training: bool,
    bidirectional: bool,
    proj_size: int,
    batch_sizes: Tensor | None,
) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """lstm() with every argument positional and the weight count already checked (the form
    TorchScript compiles)."""
    directions = 2 if bidirectional else 1
    per_layer = _weights_per_layer(bias, proj_size)
    if not torch.jit.is_scripting():  # (a condition of its own: TorchScript skips the block)
        if _onnx.exporting():
            _onnx.check_exportable(weights[per_layer - 1] if proj_size > 0 else None,
                                   batch_sizes)
    x = input.transpose(0, 1) if batch_first and batch_sizes is None else input
    if hx is None:
        batch = int(batch_sizes[0]) if batch_sizes is not None else x.shape[1]
        hidden = weights[1].shape[1] if proj_size == 0 else weights[per_layer - 1].shape[1]
        out_size = proj_size if proj_size > 0 else hidden
        h0 = x.new_zeros((num_layers * directions, batch, out_size))
        c0 = x.new_zeros((num_layers * directions, batch, hidden))
    else:
        h0, c0 = hx

    h_n: list[Tensor] = []
    c_n: list[Tensor] = []
    for layer in range(num_layers):
        outputs: list[Tensor] = []
        for direction in range(directions):
            index = layer * directions + direction
            w = weights[index * per_layer : (index + 1) * per_layer]
            b_ih: Tensor | None = w[2] if bias else None
            b_hh: Tensor | None = w[3] if bias else None
            w_hr: Tensor | None = w[per_layer - 1] if proj_size > 0 else None
            out, h, c = _layer(x, h0[index], c0[index], w[0], w[1], b_ih, b_hh, w_hr,
                               batch_sizes, direction == 1)
            outputs.append(out)
            h_n.append(h)
            c_n.append(c)
        x = outputs[0] if directions == 1 else torch.cat(outputs, dim=-1)
        if dropout > 0 and training and layer < num_layers - 1:
            x = F.dropout(x, p=dropout, training=True)
    output = x.transpose(0, 1) if batch_first and batch_sizes is None else x
    return output, (torch.stack(h_n), torch.stack(c_n))

"""Module-free LSTM API on plain tensors, for users who hold their own weights."""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from . import ops


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
    return ops.lstm_cell(input, hx[0], hx[1], w_ih, w_hh, b_ih, b_hh)


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
    packed = batch_sizes is not None
    x = input.transpose(0, 1) if batch_first and not packed else input
    if hx is None:
        batch = int(batch_sizes[0]) if packed else x.shape[1]
        hidden = weights[1].shape[1] if proj_size == 0 else weights[per_layer - 1].shape[1]
        out_size = proj_size if proj_size > 0 else hidden
        h0 = x.new_zeros((num_layers * directions, batch, out_size))
        c0 = x.new_zeros((num_layers * directions, batch, hidden))
    else:
        h0, c0 = hx

    h_n, c_n = [], []
    for layer in range(num_layers):
        outputs = []
        for direction in range(directions):
            index = layer * directions + direction
            w = weights[index * per_layer : (index + 1) * per_layer]
            b_ih, b_hh = (w[2], w[3]) if bias else (None, None)
            w_hr = w[-1] if proj_size > 0 else None
            out, h, c = ops.lstm_layer(
                x, h0[index], c0[index], w[0], w[1], b_ih, b_hh, w_hr, batch_sizes,
                reverse=direction == 1,
            )
            outputs.append(out)
            h_n.append(h)
            c_n.append(c)
        x = outputs[0] if directions == 1 else torch.cat(outputs, dim=-1)
        if dropout > 0 and training and layer < num_layers - 1:
            x = F.dropout(x, p=dropout, training=True)
    output = x.transpose(0, 1) if batch_first and not packed else x
    return output, (torch.stack(h_n), torch.stack(c_n))

"""Module-free LSTM, GRU and Elman RNN API on plain tensors, for users who hold their own weights.

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


# ---- GRU and Elman RNN ----------------------------------------------------------------------

def _nonlinearity(mode: str) -> str:
    return "relu" if mode == "RNN_RELU" else "tanh"


def gru_cell(input: Tensor, hx: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None = None,
             b_hh: Tensor | None = None) -> Tensor:
    """One GRU step: input (B, I), hx (B, H); returns h'. Same math and weight layout as
    torch.nn.GRUCell (gate rows r, z, n)."""
    if torch.jit.is_scripting():
        return torch.ops.fusedlstm.gru_cell(input, hx, w_ih, w_hh, b_ih, b_hh)[0]
    return ops.gru_cell(input, hx, w_ih, w_hh, b_ih, b_hh)


def rnn_cell(input: Tensor, hx: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None = None,
             b_hh: Tensor | None = None, nonlinearity: str = "tanh") -> Tensor:
    """One Elman RNN step (nonlinearity 'tanh' or 'relu'), as torch.nn.RNNCell."""
    if torch.jit.is_scripting():
        return torch.ops.fusedlstm.rnn_cell(input, hx, w_ih, w_hh, b_ih, b_hh, nonlinearity)
    return ops.rnn_cell(input, hx, w_ih, w_hh, b_ih, b_hh, nonlinearity)


def _state_layer(mode: str, input: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor,
                 b_ih: Tensor | None, b_hh: Tensor | None, batch_sizes: Tensor | None,
                 reverse: bool) -> tuple[Tensor, Tensor]:
    if torch.jit.is_scripting():
        if mode == "GRU":
            train = ops.keeps_activations([input, h0, w_ih, w_hh, b_ih, b_hh])
            gru = torch.ops.fusedlstm.gru_layer(input, h0, w_ih, w_hh, b_ih, b_hh, batch_sizes,
                                                reverse, train)
            return gru[0], gru[1]
        rnn = torch.ops.fusedlstm.rnn_layer(input, h0, w_ih, w_hh, b_ih, b_hh, batch_sizes,
                                            reverse, _nonlinearity(mode))
        return rnn[0], rnn[1]
    if mode == "GRU":
        return ops.gru_layer(input, h0, w_ih, w_hh, b_ih, b_hh, batch_sizes, reverse)
    return ops.rnn_layer(input, h0, w_ih, w_hh, b_ih, b_hh, batch_sizes, reverse,
                         _nonlinearity(mode))


def state_layers(
    mode: str,
    input: Tensor,
    hx: Tensor | None,
    weights: list[Tensor],
    num_layers: int,
    bias: bool,
    batch_first: bool,
    dropout: float,
    training: bool,
    bidirectional: bool,
    batch_sizes: Tensor | None,
) -> tuple[Tensor, Tensor]:
    """A multi-layer GRU (mode 'GRU') or Elman RNN ('RNN_TANH', 'RNN_RELU') with every argument
    positional, weights in nn.GRU / nn.RNN's `_flat_weights` order (per layer and direction
    w_ih, w_hh[, b_ih, b_hh]); returns (output, h_n). TorchScript-compatible."""
    directions = 2 if bidirectional else 1
    per_layer = 4 if bias else 2
    if not torch.jit.is_scripting():  # (a condition of its own: TorchScript skips the block)
        if _onnx.exporting():
            _onnx.check_state_exportable(batch_sizes)
    x = input.transpose(0, 1) if batch_first and batch_sizes is None else input
    if hx is None:
        batch = int(batch_sizes[0]) if batch_sizes is not None else x.shape[1]
        h0 = x.new_zeros((num_layers * directions, batch, weights[1].shape[1]))
    else:
        h0 = hx
    h_n: list[Tensor] = []
    for layer in range(num_layers):
        outputs: list[Tensor] = []
        for direction in range(directions):
            index = layer * directions + direction
            w = weights[index * per_layer : (index + 1) * per_layer]
            b_ih: Tensor | None = w[2] if bias else None
            b_hh: Tensor | None = w[3] if bias else None
            out, h = _state_layer(mode, x, h0[index], w[0], w[1], b_ih, b_hh, batch_sizes,
                                  direction == 1)
            outputs.append(out)
            h_n.append(h)
        x = outputs[0] if directions == 1 else torch.cat(outputs, dim=-1)
        if dropout > 0 and training and layer < num_layers - 1:
            x = F.dropout(x, p=dropout, training=True)
    output = x.transpose(0, 1) if batch_first and batch_sizes is None else x
    return output, torch.stack(h_n)


def _state_network(mode: str, input: Tensor, hx: Tensor | None, weights: Sequence[Tensor],
                   num_layers: int, bias: bool, batch_first: bool, dropout: float,
                   training: bool, bidirectional: bool,
                   batch_sizes: Tensor | None) -> tuple[Tensor, Tensor]:
    expected = num_layers * (2 if bidirectional else 1) * (4 if bias else 2)
    if len(weights) != expected:
        raise ValueError(
            f"{mode.lower()}: expected {expected} weight tensors for num_layers={num_layers}, "
            f"bidirectional={bidirectional}, bias={bias}; got {len(weights)}")
    return state_layers(mode, input, hx, list(weights), num_layers, bias, batch_first, dropout,
                        training, bidirectional, batch_sizes)


def gru(input: Tensor, hx: Tensor | None, weights: Sequence[Tensor], *, num_layers: int = 1,
        bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
        training: bool = False, bidirectional: bool = False,
        batch_sizes: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """A multi-layer GRU over a sequence, like torch.nn.GRU with weights passed in (its
    `_flat_weights` order); hx (L*D, B, H) or None. Returns (output, h_n)."""
    return _state_network("GRU", input, hx, weights, num_layers, bias, batch_first, dropout,
                          training, bidirectional, batch_sizes)


def rnn(input: Tensor, hx: Tensor | None, weights: Sequence[Tensor], *,
        nonlinearity: str = "tanh", num_layers: int = 1, bias: bool = True,
        batch_first: bool = False, dropout: float = 0.0, training: bool = False,
        bidirectional: bool = False, batch_sizes: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """A multi-layer Elman RNN, like torch.nn.RNN with weights passed in. Returns (output, h_n)."""
    modes = {"tanh": "RNN_TANH", "relu": "RNN_RELU"}
    if nonlinearity not in modes:
        raise ValueError(f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or 'relu'.")
    return _state_network(modes[nonlinearity], input, hx, weights, num_layers, bias, batch_first,
                          dropout, training, bidirectional, batch_sizes)

"""ONNX export of the fusedlstm ops as standard ONNX `LSTM` nodes (the default domain), as
nn.LSTM exports: with torch.onnx.export's default (dynamo) exporter and with dynamo=False.

One node per layer and direction: our op is one direction of one layer, so a reverse direction
is an ONNX LSTM with direction="reverse" and a bidirectional layer is two nodes whose outputs are
concatenated, as the module does. ONNX orders the gate rows i, o, f, c where PyTorch has i, f, g,
o; the weights are permuted in the graph, which the exporters fold into the initializers.
ONNX's LSTM has no projection (proj_size) and takes padded input, so those raise.
"""

import sys

import torch
from torch import Tensor
from torch.onnx import symbolic_helper

_OPSET = 9  # LSTM is in every opset the TorchScript exporter supports; 9 covers all of them


def _onnx_gate_order(hidden: int) -> Tensor:
    """Row indices turning PyTorch's (i, f, g, o) gate blocks into ONNX's (i, o, f, c)."""
    blocks = (0, 3, 1, 2)
    return torch.cat([torch.arange(block * hidden, (block + 1) * hidden) for block in blocks])


def _refuse(what: str, why: str):
    raise torch.onnx.errors.OnnxExporterError(
        f"fusedlstm: ONNX export of {what} is not supported: {why}. Export without it, or use "
        "torch.export / torch.jit.trace, which keep the fusedlstm ops."
    )


def check_exportable(w_hr, batch_sizes) -> None:
    """Refuses, naming it, what the ONNX LSTM cannot express (both exporters call this before
    tracing reaches anything that would fail less clearly)."""
    if w_hr is not None:
        _refuse("an LSTM with proj_size > 0", "ONNX's LSTM operator has no projection")
    if batch_sizes is not None:
        _refuse("a PackedSequence input",
                "pass the padded batch (the ONNX LSTM takes padded input)")


# ---- the default (dynamo) exporter: torch.onnx.ops.symbolic_multi_out in the traced graph --


def _weight_inputs(x, w_ih, w_hh, b_ih, b_hh, order: Tensor) -> list:
    """X, W, R, B of an ONNX LSTM / GRU / RNN node (one direction): the gate rows in ONNX's
    `order`, the two biases concatenated (zeros for a missing one; B absent without either)."""
    order = order.to(w_ih.device)
    inputs = [x, w_ih[order].unsqueeze(0), w_hh[order].unsqueeze(0)]
    if b_ih is None and b_hh is None:
        return inputs + [None]
    b_ih = torch.zeros_like(b_hh) if b_ih is None else b_ih
    b_hh = torch.zeros_like(b_ih) if b_hh is None else b_hh
    return inputs + [torch.cat([b_ih[order], b_hh[order]]).unsqueeze(0)]


def _lstm_node(x, w_ih, w_hh, b_ih, b_hh, h0, c0, reverse):
    """The LSTM node on (T, B, I) input and (B, H) states; returns its (Y, Y_h, Y_c)."""
    hidden = w_hh.shape[1]
    inputs = _weight_inputs(x, w_ih, w_hh, b_ih, b_hh, _onnx_gate_order(hidden))
    inputs += [None, h0.unsqueeze(0), c0.unsqueeze(0)]  # None: no sequence_lens
    steps, batch = x.shape[0], x.shape[1]
    return torch.onnx.ops.symbolic_multi_out(
        "LSTM",
        inputs,
        {"hidden_size": hidden, "direction": "reverse" if reverse else "forward"},
        dtypes=[x.dtype] * 3,
        shapes=[(steps, 1, batch, hidden), (1, batch, hidden), (1, batch, hidden)],
        version=_OPSET,
    )


def layer(input, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse):
    """fusedlstm::lstm_layer's (output, h_n, c_n) as an ONNX LSTM node (after check_exportable:
    no projection, padded input)."""
    y, y_h, y_c = _lstm_node(input, w_ih, w_hh, b_ih, b_hh, h0, c0, reverse)
    return y.squeeze(1), y_h.squeeze(0), y_c.squeeze(0)


def cell(input, hx, cx, w_ih, w_hh, b_ih, b_hh):
    """fusedlstm::lstm_cell's (h', c') as an ONNX LSTM node over one step."""
    _, y_h, y_c = _lstm_node(input.unsqueeze(0), w_ih, w_hh, b_ih, b_hh, hx, cx, False)
    return y_h.squeeze(0), y_c.squeeze(0)


def exporting() -> bool:
    """torch.onnx.export is running (either exporter): the flags torch.onnx.is_in_onnx_export()
    reads, read here without its imports (a microsecond per call, on every cell step) and
    without torch.compile folding it to False (the default exporter's fallback capture,
    torch.export strict=True, traces with dynamo). An exporter not yet imported is not running."""
    flags = sys.modules.get("torch.onnx._internal.exporter._flags")
    if flags is not None and flags._is_onnx_exporting:
        return True
    if torch.compiler.is_compiling():  # the TorchScript exporter does not run under dynamo
        return False
    torchscript = sys.modules.get("torch.onnx._internal.torchscript_exporter._globals")
    return torchscript is not None and torchscript.GLOBALS.in_onnx_export


def exporting_with_dynamo() -> bool:
    """torch.onnx.export's default exporter is running (the TorchScript one traces with the JIT
    tracer and uses the symbolics below instead)."""
    return exporting() and not torch.jit.is_tracing()


# ---- the TorchScript exporter (dynamo=False): symbolic functions for the ops ----------------


def _ts_none(g):
    return g.op("prim::Constant").setType(torch._C.OptionalType.ofTensor())


def _ts_unsqueezed(g, value):
    return symbolic_helper._unsqueeze_helper(g, value, [0])


def _ts_weight_inputs(g, x, w_ih, w_hh, b_ih, b_hh, order: Tensor) -> list:
    """_weight_inputs in the TorchScript exporter's graph."""
    def permuted(weight):
        return g.op("Gather", weight, g.op("Constant", value_t=order), axis_i=0)

    has_ih, has_hh = not symbolic_helper._is_none(b_ih), not symbolic_helper._is_none(b_hh)
    inputs = [x, _ts_unsqueezed(g, permuted(w_ih)), _ts_unsqueezed(g, permuted(w_hh))]
    if not (has_ih or has_hh):
        return inputs + [_ts_none(g)]
    b_ih = b_ih if has_ih else g.op("Sub", b_hh, b_hh)  # zeros of b_hh's type and shape
    b_hh = b_hh if has_hh else g.op("Sub", b_ih, b_ih)
    return inputs + [_ts_unsqueezed(g, g.op("Concat", permuted(b_ih), permuted(b_hh), axis_i=0))]


def _ts_lstm_node(g, x, h0, c0, w_ih, w_hh, b_ih, b_hh, hidden: int, reverse: bool):
    inputs = _ts_weight_inputs(g, x, w_ih, w_hh, b_ih, b_hh, _onnx_gate_order(hidden))
    inputs += [_ts_none(g), _ts_unsqueezed(g, h0), _ts_unsqueezed(g, c0)]
    return g.op("LSTM", *inputs, hidden_size_i=hidden,
                direction_s="reverse" if reverse else "forward", outputs=3)


def _ts_hidden_size(w_hh) -> int:
    sizes = symbolic_helper._get_tensor_sizes(w_hh)
    if sizes is None or sizes[1] is None:
        _refuse("an LSTM whose weight shapes are unknown", "the LSTM node needs hidden_size")
    return sizes[1]


def _ts_empty(g):
    return g.op("Constant", value_t=torch.empty(0))


def _ts_layer(g, input, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes, reverse, train):
    check_exportable(None if symbolic_helper._is_none(w_hr) else w_hr,
                     None if symbolic_helper._is_none(batch_sizes) else batch_sizes)
    reverse = symbolic_helper._maybe_get_const(reverse, "b")
    y, y_h, y_c = _ts_lstm_node(g, input, h0, c0, w_ih, w_hh, b_ih, b_hh,
                                _ts_hidden_size(w_hh), bool(reverse))
    squeeze = symbolic_helper._squeeze_helper
    return (squeeze(g, y, [1]), squeeze(g, y_h, [0]), squeeze(g, y_c, [0]), _ts_empty(g),
            _ts_empty(g))


def _ts_cell(g, input, hx, cx, w_ih, w_hh, b_ih, b_hh):
    x = symbolic_helper._unsqueeze_helper(g, input, [0])
    _, y_h, y_c = _ts_lstm_node(g, x, hx, cx, w_ih, w_hh, b_ih, b_hh, _ts_hidden_size(w_hh),
                                False)
    squeeze = symbolic_helper._squeeze_helper
    return squeeze(g, y_h, [0]), squeeze(g, y_c, [0]), _ts_empty(g)


def _register_torchscript_symbolics() -> None:
    torch.onnx.register_custom_op_symbolic("fusedlstm::lstm_layer", _ts_layer, _OPSET)
    torch.onnx.register_custom_op_symbolic("fusedlstm::lstm_cell", _ts_cell, _OPSET)


_register_torchscript_symbolics()


# ---- GRU and Elman RNN: ONNX GRU / RNN nodes, both exporters ---------------------------------

# cell -> (ONNX operator, PyTorch's gate blocks in ONNX's order, the node's attributes). ONNX's
# GRU orders the rows z, r, h where PyTorch has r, z, n; linear_before_reset=1 is PyTorch's
# n = tanh(x W_in + b_in + r * (h W_hn + b_hn)).
_STATE_NODES = {
    "gru": ("GRU", (1, 0, 2), {"linear_before_reset": 1}),
    "tanh": ("RNN", (0,), {"activations": ["Tanh"]}),
    "relu": ("RNN", (0,), {"activations": ["Relu"]}),
}


def _state_order(cell: str, hidden: int) -> Tensor:
    return torch.cat([torch.arange(block * hidden, (block + 1) * hidden)
                      for block in _STATE_NODES[cell][1]])


def check_state_exportable(batch_sizes) -> None:
    if batch_sizes is not None:
        _refuse("a PackedSequence input",
                "pass the padded batch (ONNX's GRU and RNN take padded input)")


def state_layer(cell, input, h0, w_ih, w_hh, b_ih, b_hh, reverse):
    """A GRU / RNN layer op's (output, h_n) as an ONNX GRU or RNN node (padded input)."""
    operator, _, attributes = _STATE_NODES[cell]
    hidden = w_hh.shape[1]
    inputs = _weight_inputs(input, w_ih, w_hh, b_ih, b_hh, _state_order(cell, hidden))
    inputs += [None, h0.unsqueeze(0)]  # None: no sequence_lens
    steps, batch = input.shape[0], input.shape[1]
    y, y_h = torch.onnx.ops.symbolic_multi_out(
        operator, inputs,
        {"hidden_size": hidden, "direction": "reverse" if reverse else "forward", **attributes},
        dtypes=[input.dtype] * 2, shapes=[(steps, 1, batch, hidden), (1, batch, hidden)],
        version=_OPSET)
    return y.squeeze(1), y_h.squeeze(0)


def state_cell(cell, input, hx, w_ih, w_hh, b_ih, b_hh):
    """A GRU / RNN cell op's h' as a one-step node."""
    return state_layer(cell, input.unsqueeze(0), hx, w_ih, w_hh, b_ih, b_hh, False)[1]


def _ts_state_node(g, cell, x, h0, w_ih, w_hh, b_ih, b_hh, reverse: bool):
    operator, _, attributes = _STATE_NODES[cell]
    hidden = _ts_hidden_size(w_hh)
    inputs = _ts_weight_inputs(g, x, w_ih, w_hh, b_ih, b_hh, _state_order(cell, hidden))
    inputs += [_ts_none(g), _ts_unsqueezed(g, h0)]
    suffixed = {(f"{k}_i" if isinstance(v, int) else f"{k}_s"): v for k, v in attributes.items()}
    return g.op(operator, *inputs, hidden_size_i=hidden,
                direction_s="reverse" if reverse else "forward", outputs=2, **suffixed)


def _ts_state_layer(cell):
    def symbolic(g, input, h0, w_ih, w_hh, b_ih, b_hh, batch_sizes, reverse, last):
        check_state_exportable(None if symbolic_helper._is_none(batch_sizes) else batch_sizes)
        reverse = bool(symbolic_helper._maybe_get_const(reverse, "b"))
        kind = cell or symbolic_helper._maybe_get_const(last, "s")
        y, y_h = _ts_state_node(g, kind, input, h0, w_ih, w_hh, b_ih, b_hh, reverse)
        squeeze = symbolic_helper._squeeze_helper
        outputs = (squeeze(g, y, [1]), squeeze(g, y_h, [0]))
        return (*outputs, _ts_empty(g)) if cell == "gru" else outputs

    return symbolic


def _ts_gru_cell(g, input, hx, w_ih, w_hh, b_ih, b_hh):
    x = symbolic_helper._unsqueeze_helper(g, input, [0])
    _, y_h = _ts_state_node(g, "gru", x, hx, w_ih, w_hh, b_ih, b_hh, False)
    return symbolic_helper._squeeze_helper(g, y_h, [0]), _ts_empty(g)


def _ts_rnn_cell(g, input, hx, w_ih, w_hh, b_ih, b_hh, nonlinearity):
    x = symbolic_helper._unsqueeze_helper(g, input, [0])
    kind = symbolic_helper._maybe_get_const(nonlinearity, "s")
    _, y_h = _ts_state_node(g, kind, x, hx, w_ih, w_hh, b_ih, b_hh, False)
    return symbolic_helper._squeeze_helper(g, y_h, [0])


def _register_state_symbolics() -> None:
    torch.onnx.register_custom_op_symbolic("fusedlstm::gru_layer", _ts_state_layer("gru"), _OPSET)
    torch.onnx.register_custom_op_symbolic("fusedlstm::rnn_layer", _ts_state_layer(None), _OPSET)
    torch.onnx.register_custom_op_symbolic("fusedlstm::gru_cell", _ts_gru_cell, _OPSET)
    torch.onnx.register_custom_op_symbolic("fusedlstm::rnn_cell", _ts_rnn_cell, _OPSET)


_register_state_symbolics()

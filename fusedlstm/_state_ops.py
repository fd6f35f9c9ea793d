"""The GRU and Elman RNN ops (torch.ops.fusedlstm.gru_* / rnn_*): fake kernels, autograd, thin
wrappers, as ops.py is for the LSTM ops. Schemas in csrc/ops.cpp; kernels in
csrc/include/fusedlstm/state_layer.h (one layer algorithm for both cells)."""

import torch
from torch import Tensor

from . import _checks, _reference
from .ops import call_without_graph, differentiable_grads, graph_needed, needs_backward

_ops = torch.ops.fusedlstm
# The overloads, resolved once (an attribute walk per call costs more than a small step).
_OPS = {name: getattr(_ops, name).default for name in (
    "gru_layer", "rnn_layer", "gru_cell", "rnn_cell", "gru_layer_backward",
    "rnn_layer_backward", "gru_cell_backward", "rnn_cell_backward")}
_GRU_GATES = 3
_GRU_SAVED = 4  # r, z, n, W_hn h + b_hn per unit
_RNN_GATES = 1


def _skipped(like: Tensor) -> Tensor:
    return like.new_empty((0,))  # a fresh one per output: outputs never alias


def _rows(input: Tensor, batch_sizes: Tensor | None):
    return input.shape[0] * input.shape[1] if batch_sizes is None else input.shape[0]


def _weight_grads_fake(w_ih, w_hh, weights: bool, biases: int) -> tuple:
    if not weights:
        return tuple(_skipped(w_ih) for _ in range(2 + biases))
    gates = w_ih.shape[0]
    return (torch.empty_like(w_ih), torch.empty_like(w_hh),
            *(w_ih.new_empty((gates,)) for _ in range(biases)))


# ---- fake kernels ---------------------------------------------------------------------------


@torch.library.register_fake("fusedlstm::gru_layer")
def _gru_layer_fake(input, h0, w_ih, w_hh, b_ih, b_hh, batch_sizes, reverse, train):
    _, hidden = _checks.check_state_layer(_GRU_GATES, input, h0, w_ih, w_hh, b_ih, b_hh,
                                          batch_sizes, "fusedlstm::gru_layer")
    saved = (_rows(input, batch_sizes), _GRU_SAVED * hidden) if train else (0,)
    return (input.new_empty((*input.shape[:-1], hidden)), input.new_empty(h0.shape),
            input.new_empty(saved))


@torch.library.register_fake("fusedlstm::rnn_layer")
def _rnn_layer_fake(input, h0, w_ih, w_hh, b_ih, b_hh, batch_sizes, reverse, nonlinearity):
    op = "fusedlstm::rnn_layer"
    _checks.check_nonlinearity(nonlinearity, op)
    _, hidden = _checks.check_state_layer(_RNN_GATES, input, h0, w_ih, w_hh, b_ih, b_hh,
                                          batch_sizes, op)
    return input.new_empty((*input.shape[:-1], hidden)), input.new_empty(h0.shape)


@torch.library.register_fake("fusedlstm::gru_layer_backward")
def _gru_layer_backward_fake(grad_output, grad_h_n, input, h0, w_ih, w_hh, batch_sizes, reverse,
                             output, saved, need_input_grad, need_weight_grads):
    _checks.check_state_layer(_GRU_GATES, input, h0, w_ih, w_hh, None, None, batch_sizes,
                              "fusedlstm::gru_layer_backward")
    return (torch.empty_like(input) if need_input_grad else _skipped(input),
            torch.empty_like(h0), *_weight_grads_fake(w_ih, w_hh, need_weight_grads, 2))


@torch.library.register_fake("fusedlstm::rnn_layer_backward")
def _rnn_layer_backward_fake(grad_output, grad_h_n, input, h0, w_ih, w_hh, batch_sizes, reverse,
                             nonlinearity, output, need_input_grad, need_weight_grads):
    op = "fusedlstm::rnn_layer_backward"
    _checks.check_nonlinearity(nonlinearity, op)
    _checks.check_state_layer(_RNN_GATES, input, h0, w_ih, w_hh, None, None, batch_sizes, op)
    return (torch.empty_like(input) if need_input_grad else _skipped(input),
            torch.empty_like(h0), *_weight_grads_fake(w_ih, w_hh, need_weight_grads, 1))


@torch.library.register_fake("fusedlstm::gru_cell")
def _gru_cell_fake(input, hx, w_ih, w_hh, b_ih, b_hh):
    _, hidden = _checks.check_state_cell(_GRU_GATES, input, hx, w_ih, w_hh, b_ih, b_hh,
                                         "fusedlstm::gru_cell")
    return input.new_empty((input.shape[0], hidden)), input.new_empty(
        (input.shape[0], _GRU_SAVED * hidden))


@torch.library.register_fake("fusedlstm::rnn_cell")
def _rnn_cell_fake(input, hx, w_ih, w_hh, b_ih, b_hh, nonlinearity):
    op = "fusedlstm::rnn_cell"
    _checks.check_nonlinearity(nonlinearity, op)
    _, hidden = _checks.check_state_cell(_RNN_GATES, input, hx, w_ih, w_hh, b_ih, b_hh, op)
    return input.new_empty((input.shape[0], hidden))


def _cell_backward_fake(gates, op, input, hx, w_ih, w_hh, need_input_grad, need_hx_grad,
                        need_weight_grads, biases):
    _checks.check_state_cell(gates, input, hx, w_ih, w_hh, None, None, op)
    return (torch.empty_like(input) if need_input_grad else _skipped(input),
            torch.empty_like(hx) if need_hx_grad else _skipped(input),
            *_weight_grads_fake(w_ih, w_hh, need_weight_grads, biases))


@torch.library.register_fake("fusedlstm::gru_cell_backward")
def _gru_cell_backward_fake(grad_hy, input, hx, w_ih, w_hh, hy, saved, need_input_grad=True,
                            need_hx_grad=True, need_weight_grads=True):
    return _cell_backward_fake(_GRU_GATES, "fusedlstm::gru_cell_backward", input, hx, w_ih, w_hh,
                               need_input_grad, need_hx_grad, need_weight_grads, 2)


@torch.library.register_fake("fusedlstm::rnn_cell_backward")
def _rnn_cell_backward_fake(grad_hy, input, hx, w_ih, w_hh, hy, nonlinearity,
                            need_input_grad=True, need_hx_grad=True, need_weight_grads=True):
    op = "fusedlstm::rnn_cell_backward"
    _checks.check_nonlinearity(nonlinearity, op)
    return _cell_backward_fake(_RNN_GATES, op, input, hx, w_ih, w_hh, need_input_grad,
                               need_hx_grad, need_weight_grads, 1)


# ---- autograd -------------------------------------------------------------------------------


def _kept(grads: tuple, has_bias: tuple[bool, bool], needs) -> tuple:
    """The gradients autograd receives: None where the input is absent or needs none."""
    present = (True,) * (len(grads) - 2) + has_bias
    return tuple(g if has and need else None
                 for g, has, need in zip(grads, present, needs, strict=True))


def _layer_setup_context(ctx, inputs, output):
    input, h0, w_ih, w_hh, b_ih, b_hh, batch_sizes, reverse = inputs[:8]
    ctx.set_materialize_grads(False)
    ctx.has_bias = (b_ih is not None, b_hh is not None)
    ctx.reverse = reverse
    ctx.extra = inputs[8]  # GRU: train; RNN: nonlinearity
    saved = output[2] if len(output) > 2 else None
    if saved is not None:
        ctx.mark_non_differentiable(saved)
    ctx.save_for_backward(input, h0, w_ih, w_hh, b_ih, b_hh, batch_sizes, output[0], saved)


def _layer_backward(ctx, grad_output, grad_h_n, *_unused):
    input, h0, w_ih, w_hh, b_ih, b_hh, batch_sizes, out, saved = ctx.saved_tensors
    grad_output = torch.zeros_like(out) if grad_output is None else grad_output
    grad_h_n = torch.zeros_like(h0) if grad_h_n is None else grad_h_n
    needs = ctx.needs_input_grad
    inputs = (input, h0, w_ih, w_hh, b_ih, b_hh)
    gru = saved is not None
    if graph_needed(*inputs, grad_output, grad_h_n):
        def forward(*tensors):
            if gru:
                return _reference.gru_layer(*tensors, batch_sizes, ctx.reverse)
            return _reference.rnn_layer(*tensors, batch_sizes, ctx.reverse, ctx.extra)

        return differentiable_grads(forward, inputs, needs[:6], (grad_output, grad_h_n)) + (
            None, None, None)
    if gru and not ctx.extra:
        raise RuntimeError(
            "fusedlstm::gru_layer was called with train=False, so it kept nothing for a "
            "backward; call it with train=True (fusedlstm.ops.gru_layer does this whenever "
            "grad mode is on and an input requires grad)")
    common = (grad_output, grad_h_n, input, h0, w_ih, w_hh, batch_sizes, ctx.reverse)
    if gru:
        grads = call_without_graph(_OPS["gru_layer_backward"], *common, out, saved,
                                   needs[0], any(needs[2:6]))
    else:
        grad_input, grad_h0, grad_w_ih, grad_w_hh, grad_bias = call_without_graph(
            _OPS["rnn_layer_backward"], *common, ctx.extra, out, needs[0], any(needs[2:6]))
        grads = (grad_input, grad_h0, grad_w_ih, grad_w_hh, grad_bias, grad_bias)
    return _kept(grads, ctx.has_bias, needs[:6]) + (None, None, None)


def _cell_setup_context(ctx, inputs, output):
    input, hx, w_ih, w_hh, b_ih, b_hh = inputs[:6]
    ctx.set_materialize_grads(False)
    ctx.has_bias = (b_ih is not None, b_hh is not None)
    gru = isinstance(output, tuple)
    hy, saved = output if gru else (output, None)
    if saved is not None:
        ctx.mark_non_differentiable(saved)
    ctx.nonlinearity = None if gru else inputs[6]
    ctx.save_for_backward(input, hx, w_ih, w_hh, b_ih, b_hh, hy, saved)


def _cell_backward(ctx, grad_hy, *_unused):
    input, hx, w_ih, w_hh, b_ih, b_hh, hy, saved = ctx.saved_tensors
    if grad_hy is None:
        grad_hy = torch.zeros_like(hy)
    needs = ctx.needs_input_grad
    inputs = (input, hx, w_ih, w_hh, b_ih, b_hh)
    gru = ctx.nonlinearity is None
    if graph_needed(*inputs, grad_hy):
        def forward(*tensors):
            if gru:
                return (_reference.gru_cell(*tensors),)
            return (_reference.rnn_cell(*tensors, ctx.nonlinearity),)

        grads = differentiable_grads(forward, inputs, needs[:6], (grad_hy,))
        return grads + (None,) * (len(needs) - 6)
    flags = (needs[0], needs[1], any(needs[2:6]))
    if gru:
        grads = call_without_graph(_OPS["gru_cell_backward"], grad_hy, input, hx, w_ih,
                                   w_hh, hy, saved, *flags)
    else:
        grad_input, grad_hx, grad_w_ih, grad_w_hh, grad_bias = call_without_graph(
            _OPS["rnn_cell_backward"], grad_hy, input, hx, w_ih, w_hh, hy,
            ctx.nonlinearity, *flags)
        grads = (grad_input, grad_hx, grad_w_ih, grad_w_hh, grad_bias, grad_bias)
    return _kept(grads, ctx.has_bias, needs[:6]) + (None,) * (len(needs) - 6)


for _name in ("gru_layer", "rnn_layer"):
    torch.library.register_autograd(f"fusedlstm::{_name}", _layer_backward,
                                    setup_context=_layer_setup_context)
# The cell ops' own autograd is C++ (csrc/cell_autograd.cpp); _cell_setup_context and
# _cell_backward serve their torch.func Functions (_functorch.state_function).


# ---- wrappers -------------------------------------------------------------------------------


def _call(name: str, *args):
    """The op, or under torch.func transforms its autograd.Function (see _functorch)."""
    if _functorch.transforms_active():
        return _functorch.state_function(name).apply(*args)
    return _OPS[name](*args)


def gru_layer(input: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None = None,
              b_hh: Tensor | None = None, batch_sizes: Tensor | None = None,
              reverse: bool = False) -> tuple[Tensor, Tensor]:
    """One direction of one GRU layer over a sequence; returns (output, h_n). input (T, B, I) or
    PackedSequence data (N, I) with its batch_sizes; weights as nn.GRU's (rows r, z, n)."""
    if _onnx.exporting():
        _onnx.check_state_exportable(batch_sizes)
        if not torch.jit.is_tracing():  # the default exporter (TorchScript's uses symbolics)
            return _onnx.state_layer("gru", input, h0, w_ih, w_hh, b_ih, b_hh, reverse)
    train = needs_backward(input, h0, w_ih, w_hh, b_ih, b_hh)
    output, h_n, _ = _call("gru_layer", input, h0, w_ih, w_hh, b_ih, b_hh, batch_sizes, reverse,
                           train)
    return output, h_n


def rnn_layer(input: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None = None,
              b_hh: Tensor | None = None, batch_sizes: Tensor | None = None,
              reverse: bool = False, nonlinearity: str = "tanh") -> tuple[Tensor, Tensor]:
    """One direction of one Elman RNN layer (tanh or relu); returns (output, h_n)."""
    if _onnx.exporting():
        _onnx.check_state_exportable(batch_sizes)
        if not torch.jit.is_tracing():
            return _onnx.state_layer(nonlinearity, input, h0, w_ih, w_hh, b_ih, b_hh, reverse)
    output, h_n = _call("rnn_layer", input, h0, w_ih, w_hh, b_ih, b_hh, batch_sizes, reverse,
                        nonlinearity)
    return output, h_n


def gru_cell(input: Tensor, hx: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None = None,
             b_hh: Tensor | None = None) -> Tensor:
    """One GRU step on (B, I) input and (B, H) state; returns h'."""
    if _onnx.exporting_with_dynamo():
        return _onnx.state_cell("gru", input, hx, w_ih, w_hh, b_ih, b_hh)
    return _call("gru_cell", input, hx, w_ih, w_hh, b_ih, b_hh)[0]


def rnn_cell(input: Tensor, hx: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None = None,
             b_hh: Tensor | None = None, nonlinearity: str = "tanh") -> Tensor:
    """One Elman RNN step; returns h'."""
    if _onnx.exporting_with_dynamo():
        return _onnx.state_cell(nonlinearity, input, hx, w_ih, w_hh, b_ih, b_hh)
    return _call("rnn_cell", input, hx, w_ih, w_hh, b_ih, b_hh, nonlinearity)


from . import _functorch, _onnx  # noqa: E402

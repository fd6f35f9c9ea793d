"""Python side of the torch.ops.fusedlstm.* custom ops: fake kernels, autograd, thin wrappers.

The schemas live in csrc/ops.cpp. Each backward calls the matching *_backward op, so eager,
torch.compile and torch.library.opcheck all run the same kernels.
"""

import torch
from torch import Tensor

from . import _checks, _reference

_ops = torch.ops.fusedlstm
# The overloads themselves, resolved once: calling the packet resolves "default" on every call.
_cell_op = _ops.lstm_cell.default
_cell_backward_op = _ops.lstm_cell_backward.default
_layer_op = _ops.lstm_layer.default
_layer_backward_op = _ops.lstm_layer_backward.default


def graph_needed(*tensors: Tensor | None) -> bool:
    """Whether a backward must build a graph of its own gradients (create_graph=True with
    something to differentiate, or a torch.func transform that differentiates this backward).
    The fused backward ops cannot; a plain backward never does."""
    if not torch.is_grad_enabled():
        return False
    if _functorch.transforms_active():
        return _functorch.backward_is_differentiated()
    return any(t is not None and t.requires_grad for t in tensors)


def call_without_graph(backward_op, *args):
    """Runs a backward op with grad mode off: it is on under torch.func.grad even where
    graph_needed says no graph is needed, and the ops' kernels refuse to record one."""
    if not torch.is_grad_enabled():
        return backward_op(*args)
    with torch.no_grad():
        return backward_op(*args)


def differentiable_grads(forward, inputs, needs, grad_outputs) -> tuple:
    """Gradients of forward(*inputs) with their own graph: recomputes the forward in
    differentiable ops (fusedlstm._reference) and differentiates that."""
    wanted = [index for index, (t, need) in enumerate(zip(inputs, needs, strict=True))
              if need and t is not None]
    found = _functorch.vjp_of(forward, inputs, wanted, grad_outputs)
    grads: list[Tensor | None] = [None] * len(inputs)
    for index, grad in zip(wanted, found, strict=True):
        grads[index] = grad
    return tuple(grads)


# ---- lstm_cell ------------------------------------------------------------------------------


@torch.library.register_fake("fusedlstm::lstm_cell")
def _lstm_cell_fake(input, hx, cx, w_ih, w_hh, b_ih, b_hh):
    _checks.check_cell(input, hx, cx, w_ih, w_hh, b_ih, b_hh, "fusedlstm::lstm_cell")
    batch, hidden = input.shape[0], w_hh.shape[1]
    return (
        input.new_empty((batch, hidden)),
        input.new_empty((batch, hidden)),
        input.new_empty((batch, 4 * hidden)),
    )


@torch.library.register_fake("fusedlstm::lstm_cell_backward")
def _lstm_cell_backward_fake(grad_hy, grad_cy, input, hx, cx, w_ih, w_hh, cy, gates,
                             need_input_grad=True, need_hx_grad=True, need_weight_grads=True):
    op = "fusedlstm::lstm_cell_backward"
    _, hidden, _ = _checks.check_cell(input, hx, cx, w_ih, w_hh, None, None, op)
    for name, t in (("grad_hy", grad_hy), ("grad_cy", grad_cy), ("cy", cy)):
        _checks.check_state(t, input.shape[0], hidden, input, op, name)
    _checks.check_state(gates, input.shape[0], 4 * hidden, input, op, "gates")

    def skipped():  # a fresh one per output: outputs never alias
        return input.new_empty((0,))

    weights = need_weight_grads
    return (
        torch.empty_like(input) if need_input_grad else skipped(),
        torch.empty_like(hx) if need_hx_grad else skipped(),
        torch.empty_like(cx),
        torch.empty_like(w_ih) if weights else skipped(),
        torch.empty_like(w_hh) if weights else skipped(),
        w_ih.new_empty((w_ih.shape[0],)) if weights else skipped(),
    )


def _lstm_cell_setup_context(ctx, inputs, output):
    input, hx, cx, w_ih, w_hh, b_ih, b_hh = inputs
    _, cy, gates = output
    ctx.mark_non_differentiable(gates)
    ctx.set_materialize_grads(False)
    ctx.has_bias = (b_ih is not None, b_hh is not None)
    ctx.save_for_backward(input, hx, cx, w_ih, w_hh, b_ih, b_hh, cy, gates)


def _lstm_cell_backward(ctx, grad_hy, grad_cy, _grad_gates):
    input, hx, cx, w_ih, w_hh, b_ih, b_hh, cy, gates = ctx.saved_tensors
    grad_hy = torch.zeros_like(cy) if grad_hy is None else grad_hy
    grad_cy = torch.zeros_like(cy) if grad_cy is None else grad_cy
    needs = ctx.needs_input_grad
    inputs = (input, hx, cx, w_ih, w_hh, b_ih, b_hh)
    if graph_needed(*inputs, grad_hy, grad_cy):
        return differentiable_grads(_reference.cell, inputs, needs, (grad_hy, grad_cy))
    grads = call_without_graph(
        _cell_backward_op, grad_hy, grad_cy, input, hx, cx, w_ih, w_hh, cy, gates, needs[0],
        needs[1], any(needs[3:7]),
    )
    grad_input, grad_hx, grad_cx, grad_w_ih, grad_w_hh, grad_bias = grads
    grads = (grad_input, grad_hx, grad_cx, grad_w_ih, grad_w_hh, grad_bias, grad_bias)
    present = (True, True, True, True, True, *ctx.has_bias)
    return tuple(g if has and need else None
                 for g, has, need in zip(grads, present, needs, strict=True))


# The op's own autograd is C++ (csrc/cell_autograd.cpp: a cell loop pays the Python formula per
# step); the two functions above are the formula of the torch.func Function (_functorch).


def lstm_cell(
    input: Tensor,
    hx: Tensor,
    cx: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None = None,
    b_hh: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """One LSTM step on (B, I) input and (B, H) state; returns (h', c')."""
    if _onnx.exporting_with_dynamo():
        return _onnx.cell(input, hx, cx, w_ih, w_hh, b_ih, b_hh)
    call = _functorch.CellFunction.apply if _functorch.transforms_active() else _cell_op
    hy, cy, _ = call(input, hx, cx, w_ih, w_hh, b_ih, b_hh)
    return hy, cy


# ---- lstm_layer -----------------------------------------------------------------------------


@torch.library.register_fake("fusedlstm::lstm_layer")
def _lstm_layer_fake(input, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes, reverse, train):
    _checks.check_layer(input, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes,
                        "fusedlstm::lstm_layer")
    hidden = w_ih.shape[0] // 4
    proj = hidden if w_hr is None else w_hr.shape[0]
    rows = input.shape[0] * input.shape[1] if batch_sizes is None else input.shape[0]
    saved = (rows, 4 * hidden) if train else (0,)
    cells = (rows, hidden) if train else (0,)
    return (
        input.new_empty((*input.shape[:-1], proj)),
        input.new_empty(h0.shape),
        input.new_empty(c0.shape),
        input.new_empty(saved),
        input.new_empty(cells),
    )


@torch.library.register_fake("fusedlstm::lstm_layer_backward")
def _lstm_layer_backward_fake(
    grad_output, grad_h_n, grad_c_n, input, h0, c0, w_ih, w_hh, w_hr, batch_sizes, reverse,
    output, gates, cells, need_input_grad, need_weight_grads,
):
    _checks.check_layer(input, h0, c0, w_ih, w_hh, None, None, w_hr, batch_sizes,
                        "fusedlstm::lstm_layer_backward")

    def skipped():  # a fresh one per output: outputs never alias
        return input.new_empty((0,))

    weights = need_weight_grads
    return (
        torch.empty_like(input) if need_input_grad else skipped(),
        torch.empty_like(h0),
        torch.empty_like(c0),
        torch.empty_like(w_ih) if weights else skipped(),
        torch.empty_like(w_hh) if weights else skipped(),
        w_ih.new_empty((w_ih.shape[0],)) if weights else skipped(),
        torch.empty_like(w_hr) if weights and w_hr is not None else skipped(),
    )


def _lstm_layer_setup_context(ctx, inputs, output):
    input, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes, reverse, train = inputs
    out, _, _, gates, cells = output
    ctx.mark_non_differentiable(gates, cells)
    # No zero-filled gradients for outputs the loss did not use (gates and cells never are):
    # they would cost as much memory as the activations themselves.
    ctx.set_materialize_grads(False)
    ctx.has_bias = (b_ih is not None, b_hh is not None)
    ctx.has_proj = w_hr is not None
    ctx.packed = batch_sizes is not None
    ctx.reverse = reverse
    ctx.train = train
    ctx.save_for_backward(input, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes, out, gates,
                          cells)


def _lstm_layer_backward(ctx, grad_output, grad_h_n, grad_c_n, _grad_gates, _grad_cells):
    if not ctx.train:
        raise RuntimeError(
            "fusedlstm::lstm_layer was called with train=False, so it kept nothing for a "
            "backward; call it with train=True (fusedlstm.ops.lstm_layer does this whenever "
            "grad mode is on and an input requires grad)"
        )
    saved = ctx.saved_tensors
    input, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes, out, gates, cells = saved
    grad_output = torch.zeros_like(out) if grad_output is None else grad_output
    grad_h_n = torch.zeros_like(h0) if grad_h_n is None else grad_h_n
    grad_c_n = torch.zeros_like(c0) if grad_c_n is None else grad_c_n
    needs = ctx.needs_input_grad
    inputs = (input, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr)
    if graph_needed(*inputs, grad_output, grad_h_n, grad_c_n):
        def forward(*tensors):
            return _reference.layer(*tensors, batch_sizes, ctx.reverse)

        grads = differentiable_grads(forward, inputs, needs[:8],
                                     (grad_output, grad_h_n, grad_c_n))
        return grads + (None, None, None)
    need_weight_grads = any(needs[3:8])
    grads = call_without_graph(
        _layer_backward_op, grad_output, grad_h_n, grad_c_n, input, h0, c0, w_ih, w_hh, w_hr,
        batch_sizes, ctx.reverse, out, gates, cells, needs[0], need_weight_grads,
    )
    grad_input, grad_h0, grad_c0, grad_w_ih, grad_w_hh, grad_bias, grad_w_hr = grads
    grads = (grad_input, grad_h0, grad_c0, grad_w_ih, grad_w_hh, grad_bias, grad_bias,
             grad_w_hr)
    present = (True, True, True, True, True, *ctx.has_bias, ctx.has_proj)
    return tuple(
        g if has and need else None
        for g, has, need in zip(grads, present, needs[:8], strict=True)
    ) + (None, None, None)


torch.library.register_autograd(
    "fusedlstm::lstm_layer", _lstm_layer_backward, setup_context=_lstm_layer_setup_context
)


def keeps_activations(tensors: list[Tensor | None]) -> bool:
    """Whether a forward must keep activations: grad mode on and some input requires grad.

    While torch.jit.trace records, grad mode is left out: the trace's check re-runs the module
    under no_grad, and a traced module should keep supporting a backward when its parameters
    require grad. TorchScript-compatible (a scripted layer calls it too)."""
    if not (torch.is_grad_enabled() or torch.jit.is_tracing()):
        return False
    for t in tensors:
        if t is not None and t.requires_grad:
            return True
    return False


def needs_backward(*tensors: Tensor | None) -> bool:
    """keeps_activations of the tensors given."""
    return keeps_activations(list(tensors))


def lstm_layer(
    input: Tensor,
    h0: Tensor,
    c0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None = None,
    b_hh: Tensor | None = None,
    w_hr: Tensor | None = None,
    batch_sizes: Tensor | None = None,
    reverse: bool = False,
) -> tuple[Tensor, Tensor, Tensor]:
    """One direction of one layer over a sequence; returns (output, h_n, c_n).

    input is (T, B, I), or PackedSequence data (N, I) with its batch_sizes. Activations are
    kept for a backward only when one is possible (see needs_backward).
    """
    if _onnx.exporting():
        _onnx.check_exportable(w_hr, batch_sizes)  # refused by both exporters, before tracing
        if not torch.jit.is_tracing():  # the default exporter (TorchScript's uses symbolics)
            return _onnx.layer(input, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse)
    train = needs_backward(input, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr)
    call = _functorch.LayerFunction.apply if _functorch.transforms_active() else _layer_op
    output, h_n, c_n, _, _ = call(
        input, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes, reverse, train
    )
    return output, h_n, c_n


# Imported last: _functorch uses the setup_context and backward functions above.
from . import _functorch, _onnx  # noqa: E402

# The GRU and Elman RNN ops, on the helpers above.
from ._state_ops import gru_cell, gru_layer, rnn_cell, rnn_layer  # noqa: E402, F401

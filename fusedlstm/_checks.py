"""The ops' argument checks for the fake kernels (ops.py), with torch._check: the same conditions
and messages as csrc/include/fusedlstm/checks.h and step_schedule.h, so that a bad shape fails
at trace time (torch.compile, torch.export, FakeTensor) as it fails eagerly. Values the fake
tensors do not have (a packed batch_sizes' contents) are checked by the real kernels only."""

import torch
from torch import Tensor

FLOATING = (torch.float32, torch.float64, torch.bfloat16, torch.float16)
# c10::ScalarType's names, as the C++ messages print them.
_ATEN_DTYPE = {torch.float32: "Float", torch.float64: "Double", torch.bfloat16: "BFloat16",
               torch.float16: "Half", torch.int64: "Long", torch.int32: "Int", torch.int16: "Short",
               torch.int8: "Char", torch.uint8: "Byte", torch.bool: "Bool"}


def _shape(t: Tensor) -> str:
    return "[" + ", ".join(str(s) for s in t.shape) + "]"


def _dtype(t: Tensor) -> str:
    return _ATEN_DTYPE.get(t.dtype, str(t.dtype).replace("torch.", ""))


def check_dim(t: Tensor, dim: int, op: str, name: str) -> None:
    torch._check(t.dim() == dim,
                 lambda: f"{op}: expected {name} to be {dim}-D, got {t.dim()}-D with shape "
                         f"{_shape(t)}")


def check_size(t: Tensor, dim: int, expected, op: str, name: str, what: str) -> None:
    torch._check(t.shape[dim] == expected,
                 lambda: f"{op}: {name} {what} (dim {dim}) is {t.shape[dim]}, expected {expected} "
                         f"({name} shape {_shape(t)})")


def check_like(t: Tensor, ref: Tensor, op: str, name: str, ref_name: str) -> None:
    torch._check(t.dtype == ref.dtype,
                 lambda: f"{op}: {name} has dtype {_dtype(t)} but {ref_name} has dtype "
                         f"{_dtype(ref)}; all tensors must share one dtype")
    torch._check(t.device == ref.device,
                 lambda: f"{op}: {name} is on {t.device} but {ref_name} is on {ref.device}; all "
                         "tensors must be on one device")


def _check_weight_matrices(gates: int, w_ih, w_hh, op: str) -> None:
    """w_ih's dtype, both matrices 2-D and alike, w_ih's rows a positive multiple of gates."""
    torch._check(w_ih.dtype in FLOATING,
                 lambda: f"{op}: w_ih has dtype {_dtype(w_ih)}, expected one of float32, "
                         "float64, bfloat16, float16")
    check_dim(w_ih, 2, op, "w_ih")
    check_dim(w_hh, 2, op, "w_hh")
    check_like(w_hh, w_ih, op, "w_hh", "w_ih")
    torch._check(w_ih.shape[0] % gates == 0 and w_ih.shape[0] > 0,
                 lambda: f"{op}: w_ih must have {gates}*hidden_size rows, got {w_ih.shape[0]}")


def check_weights(w_ih, w_hh, b_ih, b_hh, w_hr, op: str) -> tuple:
    """Returns (input_size, hidden, proj), as check_weights does."""
    _check_weight_matrices(4, w_ih, w_hh, op)
    input_size, hidden = w_ih.shape[1], w_ih.shape[0] // 4
    proj = hidden
    if w_hr is not None:
        check_dim(w_hr, 2, op, "w_hr")
        check_like(w_hr, w_ih, op, "w_hr", "w_ih")
        check_size(w_hr, 1, hidden, op, "w_hr", "column count (hidden_size)")
        proj = w_hr.shape[0]
    check_size(w_hh, 0, 4 * hidden, op, "w_hh", "row count (4*hidden_size)")
    check_size(w_hh, 1, proj, op, "w_hh", "column count (proj_size or hidden_size)")
    for name, b in (("b_ih", b_ih), ("b_hh", b_hh)):
        if b is not None:
            check_dim(b, 1, op, name)
            check_like(b, w_ih, op, name, "w_ih")
            check_size(b, 0, 4 * hidden, op, name, "size (4*hidden_size)")
    return input_size, hidden, proj


def check_state(t: Tensor, batch, features, ref: Tensor, op: str, name: str) -> None:
    check_dim(t, 2, op, name)
    check_like(t, ref, op, name, "input")
    check_size(t, 0, batch, op, name, "batch size")
    check_size(t, 1, features, op, name, "feature size")


def check_cell(input, hx, cx, w_ih, w_hh, b_ih, b_hh, op: str) -> tuple:
    shape = check_weights(w_ih, w_hh, b_ih, b_hh, None, op)
    check_dim(input, 2, op, "input")
    check_like(input, w_ih, op, "input", "w_ih")
    check_size(input, 1, shape[0], op, "input", "feature size (input_size)")
    check_state(hx, input.shape[0], shape[1], input, op, "hx")
    check_state(cx, input.shape[0], shape[1], input, op, "cx")
    return shape


def _check_sequence(input, h0, batch_sizes, op: str):
    """A layer's (T, B, I) input or packed (N, I) data; returns the batch (h0's when packed)."""
    if batch_sizes is None:
        torch._check(input.dim() == 3,
                     lambda: f"{op}: expected input to be 3-D (seq_len, batch, input_size), got "
                             f"{input.dim()}-D with shape {_shape(input)}")
        torch._check(input.shape[0] > 0,
                     lambda: f"{op}: input has seq_len 0; expected at least one time step")
        return input.shape[1]
    torch._check(input.dim() == 2,
                 lambda: f"{op}: expected packed input data to be 2-D (total_rows, "
                         f"input_size), got {input.dim()}-D with shape {_shape(input)}")
    return h0.shape[0] if h0.dim() == 2 else None


def check_layer(input, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes, op: str) -> tuple:
    """(T, B, I) input, or packed (N, I) data with batch_sizes (whose batch is h0's here)."""
    batch = _check_sequence(input, h0, batch_sizes, op)
    shape = check_weights(w_ih, w_hh, b_ih, b_hh, w_hr, op)
    check_like(input, w_ih, op, "input", "w_ih")
    check_size(input, input.dim() - 1, shape[0], op, "input", "feature size (input_size)")
    check_state(h0, batch, shape[2], input, op, "h0")
    check_state(c0, batch, shape[1], input, op, "c0")
    return shape


def check_state_weights(gates: int, w_ih, w_hh, b_ih, b_hh, op: str) -> tuple:
    """A GRU (gates=3) or RNN (gates=1) cell's weights; returns (input_size, hidden), as
    state_layer.h's check_state_weights."""
    _check_weight_matrices(gates, w_ih, w_hh, op)
    hidden = w_ih.shape[0] // gates
    check_size(w_hh, 0, gates * hidden, op, "w_hh", f"row count ({gates}*hidden_size)")
    check_size(w_hh, 1, hidden, op, "w_hh", "column count (hidden_size)")
    for name, b in (("b_ih", b_ih), ("b_hh", b_hh)):
        if b is not None:
            check_dim(b, 1, op, name)
            check_like(b, w_ih, op, name, "w_ih")
            check_size(b, 0, gates * hidden, op, name, f"size ({gates}*hidden_size)")
    return w_ih.shape[1], hidden


def check_state_layer(gates: int, input, h0, w_ih, w_hh, b_ih, b_hh, batch_sizes, op: str):
    """A GRU / RNN layer's arguments (the LSTM's check_layer without c0 and w_hr)."""
    batch = _check_sequence(input, h0, batch_sizes, op)
    input_size, hidden = check_state_weights(gates, w_ih, w_hh, b_ih, b_hh, op)
    check_like(input, w_ih, op, "input", "w_ih")
    check_size(input, input.dim() - 1, input_size, op, "input", "feature size (input_size)")
    check_state(h0, batch, hidden, input, op, "h0")
    return input_size, hidden


def check_state_cell(gates: int, input, hx, w_ih, w_hh, b_ih, b_hh, op: str):
    check_dim(input, 2, op, "input")
    input_size, hidden = check_state_weights(gates, w_ih, w_hh, b_ih, b_hh, op)
    check_like(input, w_ih, op, "input", "w_ih")
    check_size(input, 1, input_size, op, "input", "feature size (input_size)")
    check_state(hx, input.shape[0], hidden, input, op, "hx")
    return input_size, hidden


def check_nonlinearity(nonlinearity: str, op: str) -> None:
    torch._check(nonlinearity in ("tanh", "relu"),
                 lambda: f"{op}: unknown nonlinearity '{nonlinearity}'; expected 'tanh' or "
                         "'relu'")

"""Runs fuzz cases in a separate process, so that a crash (segfault, abort) is reported as a
failing case instead of taking the test run down. The parent sends case specs (plain dicts) over a
pipe; the worker answers each with an outcome dict."""

import math
import traceback

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16}
TOL = {"float32": 1e-4, "float64": 1e-9, "bfloat16": 5e-2}


def layout(t: torch.Tensor, how: str) -> torch.Tensor:
    """The same values in another memory layout: transposed, sliced, expanded or overlapping."""
    if how == "transposed" and t.dim() >= 2:
        return t.transpose(0, 1).contiguous().transpose(0, 1)
    if how == "sliced":
        return torch.cat([t, t], dim=-1)[..., : t.shape[-1]]
    if how == "expanded" and t.dim() >= 2 and t.shape[0] == 1:
        return t[:1].expand_as(t)
    if how == "overlapping" and t.dim() >= 1 and t.numel() > 0:
        # a strided view whose rows share storage: all rows equal, as "expanded" but via stride
        row = t.reshape(-1)[: t.shape[-1]] if t.dim() == 1 else t[(0,) * (t.dim() - 1)]
        return row.as_strided(t.shape, (0,) * (t.dim() - 1) + (1,))
    return t


def fill(t: torch.Tensor, special: str, generator: torch.Generator) -> torch.Tensor:
    if special == "none" or t.numel() == 0:
        return t
    value = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}[special]
    index = int(torch.randint(0, t.numel(), (1,), generator=generator))
    t = t.clone()
    t.view(-1)[index] = value
    return t


def compare(ours, ref, dtype: str) -> str | None:
    if isinstance(ours, tuple):
        for a, b in zip(ours, ref, strict=True):
            problem = compare(a, b, dtype)
            if problem:
                return problem
        return None
    if hasattr(ours, "data") and not isinstance(ours, torch.Tensor):  # PackedSequence
        return compare(ours.data, ref.data, dtype)
    if ours.shape != ref.shape:
        return f"shape {tuple(ours.shape)} != nn's {tuple(ref.shape)}"
    if ours.dtype != ref.dtype:
        return f"dtype {ours.dtype} != nn's {ref.dtype}"
    tol = TOL[dtype]
    if not torch.allclose(ours.double(), ref.double(), atol=tol, rtol=tol, equal_nan=True):
        return f"values differ by {(ours.double() - ref.double()).abs().nan_to_num(0).max():.3g}"
    return None


def run_module_case(spec: dict) -> dict:
    g = torch.Generator().manual_seed(spec["seed"])
    dtype = DTYPES[spec["dtype"]]
    kwargs = dict(num_layers=spec["layers"], bias=spec["bias"], batch_first=spec["batch_first"],
                  bidirectional=spec["bidirectional"], proj_size=spec["proj"])
    import fusedlstm

    family = spec.get("family", "lstm")
    ref_class, our_class, extra = {
        "lstm": (nn.LSTM, fusedlstm.LSTM, {}),
        "gru": (nn.GRU, fusedlstm.GRU, {}),
        "rnn_tanh": (nn.RNN, fusedlstm.RNN, {"nonlinearity": "tanh"}),
        "rnn_relu": (nn.RNN, fusedlstm.RNN, {"nonlinearity": "relu"}),
    }[family]
    if family != "lstm":
        del kwargs["proj_size"]
    torch.manual_seed(spec["seed"])
    ref = ref_class(spec["I"], spec["H"], **kwargs, **extra).to(dtype)
    ours = our_class(spec["I"], spec["H"], **kwargs, **extra).to(dtype)
    ours.load_state_dict(ref.state_dict())
    x_dtype = DTYPES[spec["x_dtype"]]
    shape = [spec["T"], spec["B"], spec["x_features"]]
    if spec["batch_first"]:
        shape[0], shape[1] = shape[1], shape[0]
    if spec["unbatched"]:
        shape = [spec["T"], spec["x_features"]]
    if spec["extra_dim"]:
        shape = shape + [1]
    x = fill(torch.randn(shape, generator=g).to(x_dtype), spec["special"], g)
    x = layout(x, spec["layout"])
    hx = None
    if spec["hx"] != "none":
        directions = 2 if spec["bidirectional"] else 1
        layers = spec["layers"] * directions + (1 if spec["hx"] == "wrong_layers" else 0)
        batch = spec["B"] + (1 if spec["hx"] == "wrong_batch" else 0)
        out = (spec["proj"] or spec["H"]) + (1 if spec["hx"] == "wrong_size" else 0)
        h_shape = [layers, out] if spec["unbatched"] else [layers, batch, out]
        c_shape = [layers, spec["H"]] if spec["unbatched"] else [layers, batch, spec["H"]]
        hx = (layout(torch.randn(h_shape, generator=g).to(dtype), spec["layout"]),
              torch.randn(c_shape, generator=g).to(dtype))
        if family != "lstm":
            hx = hx[0]
    if spec["packed"] and not spec["unbatched"] and not spec["extra_dim"] and spec["T"] > 0:
        lengths = torch.randint(1, spec["T"] + 1, (spec["B"],), generator=g) if spec["B"] else []
        lengths = [int(v) for v in lengths]
        if spec["B"] > 0:
            lengths[0] = spec["T"]
            x = pack_padded_sequence(x, lengths, batch_first=spec["batch_first"],
                                     enforce_sorted=False)
    return compare_calls(lambda: ours(x, hx), lambda: ref(x, hx), spec["dtype"])


def run_op_case(spec: dict) -> dict:
    """A direct call of a fusedlstm op with independently drawn (often inconsistent) sizes."""
    g = torch.Generator().manual_seed(spec["seed"])
    dtype = DTYPES[spec["dtype"]]

    def t(*shape):
        return torch.randn(*shape, generator=g).to(dtype) if min(shape, default=1) >= 0 else None

    s = spec["sizes"]
    batch_sizes = None
    if spec["batch_sizes"] is not None:
        batch_sizes = torch.tensor(spec["batch_sizes"], dtype=torch.long)
    x = t(s["N"], s["I"]) if batch_sizes is not None else t(s["T"], s["B"], s["I"])
    args = (x, t(s["hB"], s["P"]), t(s["cB"], s["H"]), t(4 * s["H"], s["wI"]),
            t(4 * s["H"], s["wP"]), t(4 * s["H"]) if spec["bias"] else None, None,
            t(s["P"], s["H"]) if spec["proj"] else None, batch_sizes, spec["reverse"], False)
    return compare_calls(lambda: torch.ops.fusedlstm.lstm_layer(*args), None, spec["dtype"])


WRONG_VALUES = {
    "int": 3, "float": 1.5, "str": "x", "none": None, "list": [[1.0, 2.0]],
    "tuple_of_one": (torch.zeros(1, 1, 2),), "tuple_of_ints": (1, 2), "dict": {"h": 1},
}


def run_type_case(spec: dict) -> dict:
    """A module called with an argument of the wrong Python type: a clean TypeError/ValueError."""
    import fusedlstm

    module = fusedlstm.LSTM(2, 2) if spec["module"] == "LSTM" else fusedlstm.LSTMCell(2, 2)
    good_x = torch.randn(3, 1, 2) if spec["module"] == "LSTM" else torch.randn(1, 2)
    wrong = WRONG_VALUES[spec["value"]]
    if spec["argument"] == "input":
        return compare_calls(lambda: module(wrong), None, "float32")
    return compare_calls(lambda: module(good_x, wrong if spec["value"] != "none" else None), None,
                         "float32")


def compare_calls(ours_fn, ref_fn, dtype: str) -> dict:
    try:
        ours = ours_fn()
        ours_error = None
    except (RuntimeError, ValueError, TypeError, IndexError) as error:
        ours, ours_error = None, error
    if ref_fn is None:  # direct op call: no oracle, any clean outcome is fine
        if ours_error is not None:
            return {"outcome": "error", "message": str(ours_error).splitlines()[0][:300]}
        return {"outcome": "ran"}
    try:
        ref = ref_fn()
        ref_error = None
    except Exception as error:  # noqa: BLE001  (any nn.LSTM refusal counts as a refusal)
        ref, ref_error = None, error
    if ours_error is not None and ref_error is not None:
        return {"outcome": "both_refused", "message": str(ours_error).splitlines()[0][:300]}
    if ours_error is not None:
        return {"outcome": "only_ours_refused", "message": str(ours_error).splitlines()[0][:300],
                "trace": traceback.format_exception(ours_error)[-3:]}
    if ref_error is not None:
        return {"outcome": "only_nn_refused", "message": str(ref_error).splitlines()[0][:300]}
    problem = compare(ours, ref, dtype)
    return {"outcome": "mismatch", "message": problem} if problem else {"outcome": "match"}


def serve(connection) -> None:
    torch.set_num_threads(1)
    import fusedlstm  # noqa: F401

    while True:
        spec = connection.recv()
        if spec is None:
            return
        try:
            runner = {"op": run_op_case, "module": run_module_case,
                      "types": run_type_case}[spec["kind"]]
            connection.send(runner(spec))
        except Exception as error:  # noqa: BLE001  (reported to the parent, not swallowed)
            connection.send({"outcome": "harness_error", "message": repr(error)[:300]})

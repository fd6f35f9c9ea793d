"""fusedlstm.GRU / RNN / GRUCell / RNNCell against torch.nn: outputs and every gradient over the
argument grid (float64 to 1e-9, float32 to 1e-4), packed, unbatched, reduced precision, the
module contract and errors."""

import copy
import itertools

import pytest
import torch
from conftest import REDUCED_TOL, assert_close_scaled, tolerance
from state_pairs import CELLS, LAYERS, assert_all_close, make_pair, run, run_packed
from torch import nn

import fusedlstm

KINDS = list(LAYERS)
# (num_layers, bidirectional, bias, batch_first, with_hx)
GRID = list(itertools.product([1, 2], [False, True], [True, False], [False, True], [False, True]))


def grid_id(case):
    layers, bi, bias, batch_first, with_hx = case
    return f"L{layers}{'-bi' if bi else ''}{'' if bias else '-nobias'}" \
           f"{'-bf' if batch_first else ''}{'-hx' if with_hx else ''}"


def hidden(module, batch, dtype, unbatched=False):
    layers = module.num_layers * (2 if module.bidirectional else 1)
    shape = (layers, module.hidden_size) if unbatched else (layers, batch, module.hidden_size)
    return torch.randn(shape, dtype=dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("case", GRID, ids=[grid_id(c) for c in GRID])
@pytest.mark.parametrize("kind", KINDS)
def test_matches_nn(kind, case, dtype):
    layers, bidirectional, bias, batch_first, with_hx = case
    ref, ours = make_pair(kind, 5, 7, dtype, num_layers=layers, bidirectional=bidirectional,
                          bias=bias, batch_first=batch_first)
    T, B = 6, 3
    x = torch.randn((B, T, 5) if batch_first else (T, B, 5), dtype=dtype)
    hx = hidden(ref, B, dtype) if with_hx else None
    out_ref, grads_ref = run(ref, x, hx)
    out, grads = run(ours, x, hx)
    tol = tolerance("lstm", dtype)
    assert_all_close(out, out_ref, "outputs", **tol)
    assert_all_close(grads, grads_ref, "grads", **tol)


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("with_hx", [False, True])
@pytest.mark.parametrize("kind", KINDS)
def test_packed_matches_nn(kind, with_hx, bidirectional):
    ref, ours = make_pair(kind, 4, 6, num_layers=2, bidirectional=bidirectional)
    lengths = torch.tensor([3, 7, 1, 7, 5])  # unsorted, ties, a length-1 sequence
    x = torch.randn(7, 5, 4, dtype=torch.float64)
    hx = hidden(ref, 5, torch.float64) if with_hx else None
    out_ref, grads_ref = run_packed(ref, x, lengths, hx)
    out, grads = run_packed(ours, x, lengths, hx)
    assert_all_close(out, out_ref, "outputs", **tolerance("lstm", torch.float64))
    assert_all_close(grads, grads_ref, "grads", **tolerance("lstm", torch.float64))


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("with_hx", [False, True])
@pytest.mark.parametrize("kind", KINDS)
def test_unbatched_input(kind, with_hx, batch_first):
    ref, ours = make_pair(kind, 4, 5, bidirectional=True, batch_first=batch_first)
    x = torch.randn(6, 4, dtype=torch.float64)
    hx = hidden(ref, 1, torch.float64, unbatched=True) if with_hx else None
    out_ref, grads_ref = run(ref, x, hx)
    out, grads = run(ours, x, hx)
    assert out[0].shape == out_ref[0].shape and out[1].shape == out_ref[1].shape
    assert_all_close(out, out_ref, "outputs", **tolerance("lstm", torch.float64))
    assert_all_close(grads, grads_ref, "grads", **tolerance("lstm", torch.float64))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("unbatched", [False, True])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("with_hx", [False, True])
@pytest.mark.parametrize("kind", list(CELLS))
def test_cell_matches_nn(kind, with_hx, bias, unbatched, dtype):
    ref, ours = make_pair(kind, 5, 7, dtype, cell=True, bias=bias)
    x = torch.randn((5,) if unbatched else (4, 5), dtype=dtype)
    hx = torch.randn((7,) if unbatched else (4, 7), dtype=dtype) if with_hx else None
    results = []
    for module in (ours, ref):
        xg = x.clone().requires_grad_()
        hg = None if hx is None else hx.clone().requires_grad_()
        h = module(xg, hg)
        (h.sin().sum()).backward()
        results.append([h, xg.grad] + ([hg.grad] if hg is not None else [])
                       + [p.grad for p in module.parameters()])
    assert_all_close(results[0], results[1], kind, **tolerance("cell", dtype))


@pytest.mark.parametrize("kind", list(CELLS))
def test_cell_loop_matches_nn(kind):
    """A decoder-style loop of 8 steps, backward through all of them."""
    ref, ours = make_pair(kind, 6, 9, cell=True)
    xs = torch.randn(8, 3, 6, dtype=torch.float64)
    grads = []
    for module in (ours, ref):
        h = torch.zeros(3, 9, dtype=torch.float64)
        total = 0
        for t in range(8):
            h = module(xs[t], h)
            total = total + (h * (t + 1)).sin().sum()
        total.backward()
        grads.append([h.detach()] + [p.grad for p in module.parameters()])
    assert_all_close(grads[0], grads[1], kind, **tolerance("cell", torch.float64))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("kind", KINDS)
def test_reduced_precision_close_to_float64(kind, dtype):
    """Against float64 nn: within the suite's reduced-precision tolerance, or (where nn itself
    is further off in that dtype) within 1.5x nn's own error. A bfloat16 ReLU RNN is compared by
    its mean error (at most 2.5x nn's): its rounding moves units across the kink at random, each
    flip moving that unit's whole contribution, so one run's largest error is a lottery for nn
    and for us alike (over 20 seeds both: mean errors ~0.035 of the largest gradient, maxima
    ~0.24; float16, with 3 more mantissa bits, keeps the max criterion)."""
    ref, ours = make_pair(kind, 16, 32, num_layers=2, bidirectional=True)
    ref_low = copy.deepcopy(ref).to(dtype)
    ours = ours.to(dtype)
    x = torch.randn(10, 4, 16, dtype=torch.float64)
    out_ref, grads_ref = run(ref, x, None)
    out, grads = run(ours, x.to(dtype), None)
    out_low, grads_low = run(ref_low, x.to(dtype), None)
    for index, (a, low, b) in enumerate(zip(out + grads, out_low + grads_low,
                                            out_ref + grads_ref, strict=True)):
        assert a.dtype == dtype
        scale = b.abs().max()
        if kind == "rnn_relu" and dtype == torch.bfloat16:
            error, nn_error = ((t.double() - b).abs().mean() / scale for t in (a, low))
            assert error <= max(REDUCED_TOL[dtype] / 10, 2.5 * nn_error), (
                f"{kind} {dtype} [{index}]: mean error {error:.3g}, nn's {nn_error:.3g}")
            continue
        nn_error = ((low.double() - b).abs().max() / scale).item()
        assert_close_scaled(a, b, max(REDUCED_TOL[dtype], 1.5 * nn_error),
                            f"{kind} {dtype} [{index}]")


@pytest.mark.parametrize("kind", KINDS)
def test_dropout_eval_equals_nn_and_train_changes_output(kind):
    ref, ours = make_pair(kind, 4, 6, num_layers=3, dropout=0.5)
    x = torch.randn(5, 2, 4, dtype=torch.float64)
    ref.eval()
    ours.eval()
    torch.testing.assert_close(ours(x)[0], ref(x)[0], **tolerance("lstm", torch.float64))
    ours.train()
    assert not torch.allclose(ours(x)[0], ref(x)[0])


@pytest.mark.parametrize("kind", KINDS)
def test_module_contract_matches_nn(kind):
    ref, ours = make_pair(kind, 4, 6, num_layers=2, bidirectional=True)
    assert list(ours.state_dict()) == list(ref.state_dict())
    assert [p.shape for p in ours.parameters()] == [p.shape for p in ref.parameters()]
    assert repr(ours) == repr(ref)
    assert isinstance(ours, nn.RNNBase)
    # the initialisation: the same uniform(-1/sqrt(H), 1/sqrt(H)) as nn
    torch.manual_seed(3)
    a = LAYERS[kind][0](4, 6, **LAYERS[kind][2])
    torch.manual_seed(3)
    b = LAYERS[kind][1](4, 6, **LAYERS[kind][2])
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_rnn_constructor_arguments_as_nn():
    positional = fusedlstm.RNN(3, 4, 2, "relu", False, True)
    reference = nn.RNN(3, 4, 2, "relu", False, True)
    assert (positional.mode, positional.nonlinearity, positional.bias, positional.batch_first) == \
           (reference.mode, reference.nonlinearity, reference.bias, reference.batch_first)
    assert fusedlstm.RNNCell(3, 4, nonlinearity="relu").nonlinearity == "relu"


def _error_of(call):
    try:
        call()
    except Exception as error:  # noqa: BLE001  (the type and message are what is compared)
        return type(error), str(error)
    return None


@pytest.mark.parametrize("call", [
    lambda m: m["GRU"](3, 4, proj_size=2),
    lambda m: m["RNN"](3, 4, proj_size=2),
    lambda m: m["RNN"](3, 4, nonlinearity="sigmoid"),
    lambda m: m["GRU"](3, 4)(torch.randn(2, 3, 4, 3)),
    lambda m: m["RNN"](3, 4)(torch.randn(5)),
    lambda m: m["GRU"](3, 4)(torch.randn(5, 2, 3), torch.randn(2, 4)),
    lambda m: m["GRU"](3, 4)(torch.randn(5, 3), torch.randn(1, 2, 4)),
    lambda m: m["RNN"](3, 4)(torch.randn(5, 2, 3), torch.randn(1, 3, 4)),
    lambda m: m["GRU"](3, 4)(torch.randn(5, 2, 7)),
    lambda m: m["GRUCell"](3, 4)(torch.randn(2, 3, 3)),
    lambda m: m["RNNCell"](3, 4)(torch.randn(2, 3), torch.randn(2, 2, 4)),
], ids=["gru-proj", "rnn-proj", "rnn-nonlinearity", "gru-4d", "rnn-1d", "gru-hx-2d",
        "gru-unbatched-hx-3d", "rnn-hx-batch", "gru-input-size", "grucell-3d", "rnncell-hx-3d"])
def test_errors_match_nn(call):
    ours = _error_of(lambda: call(vars(fusedlstm)))
    theirs = _error_of(lambda: call(vars(nn)))
    assert theirs is not None and ours == theirs


@pytest.mark.parametrize("kind", list(CELLS))
def test_cell_shape_errors_name_the_argument(kind):
    _, ours = make_pair(kind, 3, 4, cell=True)
    with pytest.raises(RuntimeError, match=r"hx batch size \(dim 0\) is 3, expected 2"):
        ours(torch.randn(2, 3, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64))
    with pytest.raises(RuntimeError, match=r"input feature size \(input_size\) \(dim 1\) is 5"):
        ours(torch.randn(2, 5, dtype=torch.float64))
    with pytest.raises(TypeError, match="hx must be a Tensor"):
        ours(torch.randn(2, 3, dtype=torch.float64), (torch.randn(2, 4),))


def test_inference_keeps_nothing_for_a_backward():
    gru = fusedlstm.GRU(4, 6)
    with torch.no_grad():
        output, _ = gru(torch.randn(5, 2, 4))
    assert output.grad_fn is None
    x = torch.randn(5, 2, 4)
    for p in gru.parameters():
        p.requires_grad_(False)
    assert gru(x)[0].grad_fn is None


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
@pytest.mark.parametrize("hidden", [1, 19])  # a scalar tail; whole vectors and a tail
def test_relu_rnn_propagates_nan_as_nn(hidden, dtype):
    """torch.relu passes NaN through; a ReLU written as x > 0 ? x : 0 would turn it into 0."""
    ref, ours = make_pair("rnn_relu", 3, hidden, dtype)
    x = torch.randn(4, 2, 3, dtype=dtype)
    x[1, 0, 0] = float("nan")
    for a, b in zip(ours(x), ref(x), strict=True):
        torch.testing.assert_close(a, b, equal_nan=True, atol=1e-2, rtol=1e-2)


@pytest.mark.parametrize("kind", ["gru", "rnn_tanh"])
def test_input_projection_and_backward_in_several_chunks(kind):
    """B=64, H=512 float64: the input projection runs ~4 steps at a time and the backward in
    chunks of ~5 steps (layer_steps.h), so both cross chunk boundaries; packed rows leaving and
    the reverse direction included."""
    ref, ours = make_pair(kind, 16, 512, bidirectional=True)
    lengths = torch.tensor([11] * 40 + [7] * 20 + [2] * 4)
    x = torch.randn(11, 64, 16, dtype=torch.float64)
    out_ref, grads_ref = run_packed(ref, x, lengths, None)
    out, grads = run_packed(ours, x, lengths, None)
    assert_all_close(out, out_ref, "outputs", **tolerance("lstm", torch.float64))
    assert_all_close(grads, grads_ref, "grads", **tolerance("lstm", torch.float64))

"""fusedlstm.LSTM against torch.nn.LSTM over the argument grid: outputs, h_n, c_n, and the
gradients of input, h0, c0 and every parameter."""

import itertools

import pytest
import torch
from conftest import REDUCED_TOL, assert_close_scaled, tolerance
from lstm_pairs import hidden_state, make_pair, run
from torch import nn

import fusedlstm

GRID = list(
    itertools.product(
        [1, 2, 3],  # num_layers
        [False, True],  # bidirectional
        [False, True],  # batch_first
        [True, False],  # bias
        [0, 3],  # proj_size
        [True, False],  # hx given
        [1, 4],  # T
        [1, 3],  # B
    )
)


def grid_id(case):
    layers, bidir, batch_first, bias, proj, with_hx, steps, batch = case
    return (f"L{layers}-{'bi' if bidir else 'uni'}-{'bf' if batch_first else 'tf'}-"
            f"{'bias' if bias else 'nobias'}-p{proj}-{'hx' if with_hx else 'nohx'}-"
            f"T{steps}-B{batch}")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("case", GRID, ids=[grid_id(c) for c in GRID])
def test_matches_nn_lstm(case, dtype):
    layers, bidir, batch_first, bias, proj, with_hx, steps, batch = case
    ref, ours = make_pair(4, 5, dtype, num_layers=layers, bidirectional=bidir,
                          batch_first=batch_first, bias=bias, proj_size=proj)
    x = torch.randn((batch, steps, 4) if batch_first else (steps, batch, 4), dtype=dtype)
    hx = hidden_state(ref, batch, dtype) if with_hx else None
    ref_out, ref_grads = run(ref, x, hx)
    our_out, our_grads = run(ours, x, hx)
    for a, b in zip(our_out + our_grads, ref_out + ref_grads, strict=True):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, **tolerance("lstm", dtype))


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("with_hx", [False, True])
@pytest.mark.parametrize("bidirectional,proj_size", [(False, 0), (True, 0), (True, 2)])
def test_unbatched_input(batch_first, with_hx, bidirectional, proj_size):
    ref, ours = make_pair(3, 4, num_layers=2, batch_first=batch_first,
                          bidirectional=bidirectional, proj_size=proj_size)
    x = torch.randn(6, 3, dtype=torch.float64)
    hx = hidden_state(ref, None, torch.float64, unbatched=True) if with_hx else None
    ref_out, ref_grads = run(ref, x, hx)
    our_out, our_grads = run(ours, x, hx)
    for a, b in zip(our_out + our_grads, ref_out + ref_grads, strict=True):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, **tolerance("lstm", torch.float64))


def test_larger_float32_shape():
    ref, ours = make_pair(64, 96, torch.float32, num_layers=2, bidirectional=True)
    x = torch.randn(20, 16, 64)
    ref_out, ref_grads = run(ref, x, None)
    our_out, our_grads = run(ours, x, None)
    for a, b in zip(our_out + our_grads, ref_out + ref_grads, strict=True):
        torch.testing.assert_close(a, b, **tolerance("lstm", torch.float32))


def test_dropout_eval_equals_nn_lstm_and_train_changes_output():
    ref, ours = make_pair(4, 5, num_layers=3, dropout=0.5)
    ref.eval()
    ours.eval()
    x = torch.randn(7, 2, 4, dtype=torch.float64)
    torch.testing.assert_close(ours(x)[0], ref(x)[0], **tolerance("lstm", torch.float64))
    ours.train()
    torch.manual_seed(3)
    train_out = ours(x)[0]
    assert not torch.allclose(train_out, ref(x)[0])
    # and the dropped activations differ between two training calls
    assert not torch.allclose(train_out, ours(x)[0])


def test_inference_keeps_no_activations():
    _, ours = make_pair(4, 5)
    x = torch.randn(6, 2, 4, dtype=torch.float64)
    with torch.no_grad():
        _, _, _, gates, cells = torch.ops.fusedlstm.lstm_layer(
            x, torch.zeros(2, 5, dtype=torch.float64), torch.zeros(2, 5, dtype=torch.float64),
            ours.weight_ih_l0, ours.weight_hh_l0, ours.bias_ih_l0, ours.bias_hh_l0, None, None,
            False, fusedlstm.ops.needs_backward(x, ours.weight_ih_l0))
    assert gates.numel() == 0 and cells.numel() == 0


def test_module_contract_matches_nn_lstm():
    kwargs = dict(num_layers=2, bidirectional=True, proj_size=3, batch_first=True)
    ref, ours = make_pair(4, 5, **kwargs)
    assert list(ours.state_dict()) == list(ref.state_dict())
    assert [p.shape for p in ours.parameters()] == [p.shape for p in ref.parameters()]
    assert repr(ours).replace("LSTM", "X") == repr(ref).replace("LSTM", "X")
    assert isinstance(ours, nn.RNNBase) and not isinstance(ours, nn.LSTM)
    torch.manual_seed(2)
    fresh_ref = nn.LSTM(4, 5, **kwargs)
    torch.manual_seed(2)
    fresh_ours = fusedlstm.LSTM(4, 5, **kwargs)
    for a, b in zip(fresh_ours.parameters(), fresh_ref.parameters(), strict=True):
        assert torch.equal(a, b)


def test_functional_call_uses_the_given_weights():
    ref, ours = make_pair(4, 5)
    x = torch.randn(3, 2, 4, dtype=torch.float64)
    doubled = {k: 2 * v for k, v in ref.state_dict().items()}
    expected = torch.func.functional_call(ref, doubled, (x,))[0]
    actual = torch.func.functional_call(ours, doubled, (x,))[0]
    torch.testing.assert_close(actual, expected, **tolerance("lstm", torch.float64))


def test_does_not_call_aten_lstm_kernels():
    _, ours = make_pair(4, 5, torch.float32, num_layers=2, bidirectional=True)
    x = torch.randn(5, 2, 4, requires_grad=True)
    with torch.profiler.profile() as prof:
        out, (h, c) = ours(x)
        (out.sum() + h.sum() + c.sum()).backward()
    names = {e.name for e in prof.events()}
    assert "fusedlstm::lstm_layer" in names and "fusedlstm::lstm_layer_backward" in names
    forbidden = {"aten::lstm", "aten::_thnn_fused_lstm_cell", "aten::mkldnn_rnn_layer",
                 "aten::lstm_cell", "aten::mkldnn_rnn_layer_backward"}
    assert not names & forbidden


@pytest.mark.parametrize("frozen", ["input", "weights", "layer0"])
def test_gradients_when_some_inputs_need_none(frozen):
    """The backward skips the GEMMs of gradients nobody asked for; the rest still match."""
    ref, ours = make_pair(4, 5, num_layers=2, proj_size=3)
    for module in (ref, ours):
        for name, p in module.named_parameters():
            p.requires_grad_(not (frozen == "weights" or (frozen == "layer0" and "l0" in name)))
    x = torch.randn(6, 2, 4, dtype=torch.float64, requires_grad=frozen != "input")
    results = []
    for module in (ref, ours):
        out, (h, c) = module(x)
        grads = torch.autograd.grad(out.sin().sum() + h.sum(), [p for p in module.parameters()
                                    if p.requires_grad] + ([x] if x.requires_grad else []))
        results.append(grads)
    assert len(results[0]) == len(results[1]) > 0
    for a, b in zip(results[1], results[0], strict=True):
        torch.testing.assert_close(a, b, **tolerance("lstm", torch.float64))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("bidirectional,proj_size", [(False, 0), (True, 8)])
def test_reduced_precision_close_to_float64(dtype, bidirectional, proj_size):
    """bfloat16 / float16 (gate math in float32) against nn.LSTM run in float64."""
    ref, ours = make_pair(24, 40, torch.float64, num_layers=2, bidirectional=bidirectional,
                          proj_size=proj_size)
    ours = ours.to(dtype)
    x = torch.randn(12, 5, 24, dtype=torch.float64)
    ref_out, ref_grads = run(ref, x, None)
    our_out, our_grads = run(ours, x.to(dtype), None)
    for i, (a, b) in enumerate(zip(our_out + our_grads, ref_out + ref_grads, strict=True)):
        assert a.dtype == dtype
        assert_close_scaled(a, b, REDUCED_TOL[dtype], f"tensor {i}")

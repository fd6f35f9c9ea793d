"""fusedlstm.LSTMCell against torch.nn.LSTMCell: outputs and every gradient."""

import pytest
import torch
from conftest import REDUCED_TOL, assert_close_scaled, tolerance
from state_pairs import cell_output, make_cell_pair
from torch import nn

import fusedlstm


def make_pair(input_size, hidden_size, bias, dtype):
    ref = nn.LSTMCell(input_size, hidden_size, bias=bias, dtype=dtype)
    ours = fusedlstm.LSTMCell(input_size, hidden_size, bias=bias, dtype=dtype)
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def run(cell, x, hx):
    """Forward + backward of a loss touching h' and c'; returns outputs and all gradients."""
    x = x.clone().requires_grad_()
    hx = None if hx is None else tuple(t.clone().requires_grad_() for t in hx)
    h, c = cell(x, hx)
    (h.sin().sum() + 0.5 * c.cos().sum()).backward()
    grads = [x.grad] + ([] if hx is None else [t.grad for t in hx])
    grads += [p.grad for p in cell.parameters()]
    return [h, c], grads


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("with_hx", [True, False])
@pytest.mark.parametrize("batch,input_size,hidden_size",
                         [(1, 1, 1), (3, 5, 7), (4, 17, 33), (2, 64, 48)])
def test_matches_nn_lstmcell(dtype, bias, with_hx, batch, input_size, hidden_size):
    ref, ours = make_pair(input_size, hidden_size, bias, dtype)
    x = torch.randn(batch, input_size, dtype=dtype)
    hx = None
    if with_hx:
        hx = (torch.randn(batch, hidden_size, dtype=dtype),
              torch.randn(batch, hidden_size, dtype=dtype))
    ref_out, ref_grads = run(ref, x, hx)
    our_out, our_grads = run(ours, x, hx)
    for a, b in zip(our_out + our_grads, ref_out + ref_grads, strict=True):
        torch.testing.assert_close(a, b, **tolerance("cell", dtype))


@pytest.mark.parametrize("frozen", ["input", "state", "weights"])
def test_a_loop_where_some_inputs_need_no_gradient(frozen):
    """A decoder-style loop over steps; the backward skips the GEMMs of what needs no
    gradient and every gradient that is asked for still equals nn.LSTMCell's."""
    dtype = torch.float64
    ref, ours = make_pair(5, 7, True, dtype)
    xs = torch.randn(4, 3, 5, dtype=dtype, requires_grad=frozen != "input")
    h0 = torch.randn(3, 7, dtype=dtype, requires_grad=frozen != "state")
    results = []
    for cell in (ref, ours):
        cell.requires_grad_(frozen != "weights")
        state, loss = (h0, h0 * 0.5), 0
        for x in xs:
            state = cell(x, state)
            loss = loss + state[0].sin().sum() + state[1].cos().sum()
        leaves = [t for t in (xs, h0, *cell.parameters()) if t.requires_grad]
        results.append(torch.autograd.grad(loss, leaves))
    for a, b in zip(results[1], results[0], strict=True):
        torch.testing.assert_close(a, b, **tolerance("cell", dtype))


@pytest.mark.parametrize("with_hx", [True, False])
def test_unbatched_input(with_hx):
    ref, ours = make_pair(6, 5, True, torch.float64)
    x = torch.randn(6, dtype=torch.float64)
    hx = None
    if with_hx:
        hx = (torch.randn(5, dtype=torch.float64), torch.randn(5, dtype=torch.float64))
    ref_out, ref_grads = run(ref, x, hx)
    our_out, our_grads = run(ours, x, hx)
    assert our_out[0].shape == (5,) and our_out[1].shape == (5,)
    for a, b in zip(our_out + our_grads, ref_out + ref_grads, strict=True):
        torch.testing.assert_close(a, b, **tolerance("cell", torch.float64))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_reduced_precision_close_to_float64(dtype):
    ref, ours = make_pair(24, 40, True, torch.float64)
    ours = ours.to(dtype)
    x = torch.randn(5, 24, dtype=torch.float64)
    hx = (torch.randn(5, 40, dtype=torch.float64), torch.randn(5, 40, dtype=torch.float64))
    ref_out, ref_grads = run(ref, x, hx)
    our_out, our_grads = run(ours, x.to(dtype), tuple(t.to(dtype) for t in hx))
    for i, (a, b) in enumerate(zip(our_out + our_grads, ref_out + ref_grads, strict=True)):
        assert a.dtype == dtype
        assert_close_scaled(a, b, REDUCED_TOL[dtype], f"tensor {i}")


def test_parameters_and_state_dict_match_nn_lstmcell():
    ref = nn.LSTMCell(3, 4)
    ours = fusedlstm.LSTMCell(3, 4)
    assert list(ours.state_dict()) == list(ref.state_dict())
    assert [p.shape for p in ours.parameters()] == [p.shape for p in ref.parameters()]
    assert isinstance(ours, nn.RNNCellBase)
    no_bias = fusedlstm.LSTMCell(3, 4, bias=False)
    assert no_bias.bias_ih is None and no_bias.bias_hh is None


def test_init_matches_nn_lstmcell_distribution():
    torch.manual_seed(1)
    ref = nn.LSTMCell(10, 20)
    torch.manual_seed(1)
    ours = fusedlstm.LSTMCell(10, 20)
    for a, b in zip(ours.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_does_not_call_aten_lstm_kernels():
    ours = fusedlstm.LSTMCell(4, 6)
    x = torch.randn(3, 4, requires_grad=True)
    with torch.profiler.profile() as prof:
        h, c = ours(x)
        (h.sum() + c.sum()).backward()
    names = {e.name for e in prof.events()}
    assert "fusedlstm::lstm_cell" in names and "fusedlstm::lstm_cell_backward" in names
    forbidden = {"aten::lstm_cell", "aten::_thnn_fused_lstm_cell", "aten::lstm",
                 "aten::_thnn_fused_lstm_cell_backward_impl"}
    assert not names & forbidden


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh"])
def test_large_float32_cells_match_nn(cell):
    """B=64 I=H=512: the forward's products take oneDNN (from 4M multiply-adds), the backward's
    ATen; outputs and gradients within float32 rounding of nn's."""
    ref, ours = make_cell_pair(cell, 512, 512, dtype=torch.float32)
    x, h = torch.randn(64, 512), torch.randn(64, 512)

    def outputs_and_grads(module):
        xg, hg = x.clone().requires_grad_(), h.clone().requires_grad_()
        hy = cell_output(module, cell, xg, hg)
        grads = torch.autograd.grad(hy.sin().sum(), [xg, hg, *module.parameters()])
        return [hy, *grads]

    for name, a, b in zip(["h'", "x", "hx", "w_ih", "w_hh", "b_ih", "b_hh"],
                          outputs_and_grads(ours), outputs_and_grads(ref), strict=True):
        assert_close_scaled(a, b, 1e-5, name)

"""What the LSTM modules support, for GRU and the Elman RNN too: replace_rnns, torch.compile
(fullgraph), torch.func (grad, vmap of per-sample gradients), higher-order gradients and autocast,
each against the torch.nn module."""

import pytest
import torch
from conftest import tolerance
from state_pairs import CELLS, LAYERS, assert_all_close, make_pair
from torch import nn

import fusedlstm

KINDS = list(LAYERS)


class Model(nn.Module):
    """Every recurrent module torch.nn has, in one model."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(4, 6)
        self.gru = nn.GRU(6, 5, num_layers=2, bidirectional=True)
        self.rnn = nn.RNN(10, 4, nonlinearity="relu", batch_first=False)
        self.gru_cell = nn.GRUCell(4, 3)
        self.rnn_cell = nn.RNNCell(3, 3, nonlinearity="tanh")
        self.lstm_cell = nn.LSTMCell(3, 2)

    def forward(self, x):
        out, _ = self.lstm(x)
        out, _ = self.gru(out)
        out, h = self.rnn(out)
        h = self.rnn_cell(self.gru_cell(out[-1]))
        return self.lstm_cell(h)[0].sum() + out.sum()


def test_replace_rnns_swaps_every_module_keeping_parameters_and_outputs():
    model = Model().double()
    x = torch.randn(5, 2, 4, dtype=torch.float64)
    expected = model(x)
    parameters = list(model.parameters())
    fusedlstm.replace_rnns(model)
    kinds = {name: type(child) for name, child in model.named_children()}
    assert kinds == {"lstm": fusedlstm.LSTM, "gru": fusedlstm.GRU, "rnn": fusedlstm.RNN,
                     "gru_cell": fusedlstm.GRUCell, "rnn_cell": fusedlstm.RNNCell,
                     "lstm_cell": fusedlstm.LSTMCell}
    assert model.rnn.nonlinearity == "relu" and model.rnn_cell.nonlinearity == "tanh"
    assert all(a is b for a, b in zip(model.parameters(), parameters, strict=True))
    torch.testing.assert_close(model(x), expected, **tolerance("lstm", torch.float64))
    fusedlstm.restore_rnns(model)
    assert type(model.gru) is nn.GRU and type(model.rnn_cell) is nn.RNNCell
    assert all(a is b for a, b in zip(model.parameters(), parameters, strict=True))


def test_replace_lstm_leaves_gru_and_rnn_alone():
    model = fusedlstm.replace_lstm(Model())
    assert type(model.lstm) is fusedlstm.LSTM and type(model.gru) is nn.GRU


@pytest.mark.parametrize("kind", KINDS)
def test_compile_fullgraph_matches_eager(kind):
    _, ours = make_pair(kind, 4, 6, num_layers=2, bidirectional=True, batch_first=True)
    x = torch.randn(3, 5, 4, dtype=torch.float64)
    results = []
    for fn in (ours, torch.compile(ours, fullgraph=True, backend="aot_eager")):
        ours.zero_grad()
        out, h = fn(x)
        (out.sin().sum() + h.sum()).backward()
        results.append([out, h] + [p.grad.clone() for p in ours.parameters()])
    assert_all_close(results[1], results[0], kind, **tolerance("lstm", torch.float64))


@pytest.mark.parametrize("kind", list(CELLS))
def test_compile_cell_loop(kind):
    _, ours = make_pair(kind, 4, 6, cell=True)

    def loop(x):
        h = None
        for t in range(x.shape[0]):
            h = ours(x[t], h)
        return h.sum()

    x = torch.randn(5, 2, 4, dtype=torch.float64)
    torch.testing.assert_close(torch.compile(loop, fullgraph=True, backend="aot_eager")(x),
                               loop(x))


@pytest.mark.parametrize("kind", KINDS)
def test_func_grad_matches_nn(kind):
    ref, ours = make_pair(kind, 4, 6, bidirectional=True)
    x = torch.randn(5, 3, 4, dtype=torch.float64)

    def loss(module):
        def of(params):
            out, h = torch.func.functional_call(module, params, (x,))
            return out.sin().sum() + h.sum()
        return of

    params = dict(ref.named_parameters())
    expected = torch.func.grad(loss(ref))(params)
    got = torch.func.grad(loss(ours))(params)
    for name in params:
        torch.testing.assert_close(got[name], expected[name], **tolerance("lstm", torch.float64))


@pytest.mark.parametrize("kind", KINDS + ["gru_cell"])
def test_per_sample_grads_match_a_loop_of_nn(kind):
    cell = kind.endswith("_cell")
    ref, ours = make_pair(kind.removesuffix("_cell"), 4, 5, cell=cell)
    samples = torch.randn(3, 6, 4, dtype=torch.float64)  # 3 samples of 6 steps

    def loss(module, params, sample):
        if cell:
            return torch.func.functional_call(module, params, (sample[0],)).sum()
        out, _ = torch.func.functional_call(module, params, (sample,))
        return out.sin().sum()

    params = {k: v.detach() for k, v in ours.named_parameters()}
    got = torch.func.vmap(torch.func.grad(lambda p, s: loss(ours, p, s)), in_dims=(None, 0))(
        params, samples)
    for index in range(samples.shape[0]):
        expected = torch.func.grad(lambda p, i=index: loss(ref, p, samples[i]))(params)
        for name in params:
            torch.testing.assert_close(got[name][index], expected[name],
                                       **tolerance("lstm", torch.float64))


@pytest.mark.parametrize("kind", KINDS)
def test_gradient_penalty_matches_nn(kind):
    """create_graph=True: the gradients are themselves differentiated (double backward)."""
    ref, ours = make_pair(kind, 3, 4, num_layers=2)
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    results = []
    for module in (ours, ref):
        xg = x.clone().requires_grad_()
        out, h = module(xg)
        (grad_x,) = torch.autograd.grad(out.sin().sum() + h.sum(), xg, create_graph=True)
        penalty = (grad_x ** 2).sum()
        penalty.backward()
        results.append([penalty.detach()] + [p.grad for p in module.parameters()])
    assert_all_close(results[0], results[1], kind, **tolerance("lstm", torch.float64))


@pytest.mark.parametrize("kind", KINDS)
def test_cpu_autocast_dtypes_and_values_match_nn(kind):
    ref, ours = make_pair(kind, 8, 16, torch.float32)
    x = torch.randn(6, 3, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out_ref, h_ref = ref(x)
        out, h = ours(x)
    assert (out.dtype, h.dtype) == (out_ref.dtype, h_ref.dtype)
    torch.testing.assert_close(out.float(), out_ref.float(), atol=3e-2, rtol=3e-2)
    cell_ref, cell = make_pair(kind, 8, 16, torch.float32, cell=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert cell(x[0]).dtype == cell_ref(x[0]).dtype


def test_does_not_call_aten_rnn_kernels():
    _, ours = make_pair("gru", 3, 4)
    x = torch.randn(5, 2, 3, dtype=torch.float64, requires_grad=True)
    with torch.profiler.profile() as profile:
        out, h = ours(x)
        out.sum().backward()
    names = {event.name for event in profile.events()}
    assert "fusedlstm::gru_layer" in names and "fusedlstm::gru_layer_backward" in names
    assert not names & {"aten::gru", "aten::gru_cell", "aten::rnn_tanh", "aten::linear"}


@pytest.mark.parametrize("kind", KINDS)
def test_jit_trace_runs_at_other_shapes_and_saves(kind, tmp_path):
    ref, ours = make_pair(kind, 4, 6, num_layers=2, bidirectional=True)
    traced = torch.jit.trace(ours, (torch.randn(5, 3, 4, dtype=torch.float64),))
    path = tmp_path / "traced.pt"
    traced.save(str(path))
    loaded = torch.jit.load(str(path))
    x = torch.randn(7, 2, 4, dtype=torch.float64)  # other length and batch than traced
    for module in (traced, loaded):
        assert_all_close(list(module(x)), list(ref(x)), kind, **tolerance("lstm", torch.float64))

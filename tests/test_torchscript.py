"""TorchScript: torch.jit.trace and torch.jit.script of models holding fusedlstm modules, against
the same models with nn.LSTM / nn.LSTMCell; saved modules load and run (forward and backward) in a
fresh process after `import fusedlstm`."""

import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import tolerance
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

import fusedlstm

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.*` is deprecated:FutureWarning")
F64 = torch.float64


class Tagger(nn.Module):
    """An LSTM and a linear head: the shape of most models that get traced or scripted."""

    def __init__(self, lstm: nn.Module):
        super().__init__()
        self.lstm = lstm
        features = getattr(lstm, "proj_size", 0) or lstm.hidden_size
        self.head = nn.Linear(features * (2 if lstm.bidirectional else 1), 3, dtype=F64)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.lstm(x)[0])


class PackedTagger(Tagger):
    def forward(self, x: PackedSequence) -> Tensor:
        return self.lstm(x)[1][0]


class Decoder(nn.Module):
    """A loop over LSTMCell steps, as a decoder runs it."""

    def __init__(self, cell: nn.Module):
        super().__init__()
        self.cell = cell

    def forward(self, x: Tensor) -> Tensor:
        h = torch.zeros(x.shape[1], self.cell.hidden_size, dtype=x.dtype)
        c = torch.zeros_like(h)
        for step in range(x.shape[0]):
            h, c = self.cell(x[step], (h, c))
        return h


def pair(config):
    torch.manual_seed(0)
    ref = Tagger(nn.LSTM(5, 7, dtype=F64, **config))
    ours = Tagger(fusedlstm.LSTM(5, 7, dtype=F64, **config))
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def grads_of(module, x):
    x = x.clone().requires_grad_()
    module.zero_grad()
    out = module(x)
    out.sin().sum().backward()
    return [out, x.grad] + [p.grad for p in module.parameters()]


def assert_all_close(actual, expected):
    for a, e in zip(actual, expected, strict=True):
        torch.testing.assert_close(a, e, **tolerance("lstm", F64))


CONFIGS = [{}, {"num_layers": 2, "bidirectional": True, "batch_first": True}, {"proj_size": 3}]


@pytest.mark.parametrize("config", CONFIGS, ids=str)
def test_trace_matches_nn_at_other_shapes(config):
    ref, ours = pair(config)
    traced = torch.jit.trace(ours, (torch.randn(4, 3, 5, dtype=F64),))  # checks the trace too
    x = torch.randn(6, 2, 5, dtype=F64)
    assert_all_close(grads_of(traced, x), grads_of(ref, x))


@pytest.mark.parametrize("config", CONFIGS, ids=str)
def test_script_matches_nn(config):
    ref, ours = pair(config)
    scripted = torch.jit.script(ours)
    graph = scripted.lstm.forward__0.graph.copy()
    torch._C._jit_pass_inline(graph)
    assert "fusedlstm::lstm_layer" in str(graph)  # our kernels, not aten::lstm
    x = torch.randn(4, 3, 5, dtype=F64)
    assert_all_close(grads_of(scripted, x), grads_of(ref, x))


def test_script_packed_and_unbatched_inputs():
    ref, ours = pair({"bidirectional": True})
    scripted = torch.jit.script(PackedTagger(ours.lstm))
    x = torch.randn(4, 3, 5, dtype=F64)
    packed = pack_padded_sequence(x, [4, 1, 2], enforce_sorted=False)
    torch.testing.assert_close(scripted(packed), ref.lstm(packed)[1][0])
    unbatched = torch.jit.script(ours)
    torch.testing.assert_close(unbatched(x[:, 0]), ref(x[:, 0]))


def test_script_lstm_cell_loop_matches_nn():
    ref = Decoder(nn.LSTMCell(5, 7, dtype=F64))
    ours = Decoder(fusedlstm.LSTMCell(5, 7, dtype=F64))
    ours.load_state_dict(ref.state_dict())
    scripted = torch.jit.script(ours)
    x = torch.randn(4, 3, 5, dtype=F64)
    assert_all_close(grads_of(scripted, x), grads_of(ref, x))


def test_script_of_the_module_alone_compiles_as_nn_lstm_does():
    """nn.LSTM scripted on its own compiles its overloads (forward__0, forward__1); so does ours."""
    for module in (nn.LSTM(5, 7), fusedlstm.LSTM(5, 7)):
        scripted = torch.jit.script(module)
        assert hasattr(scripted, "forward__0") and hasattr(scripted, "forward__1")


LOAD_AND_RUN = textwrap.dedent("""
    import sys, torch, fusedlstm
    module = torch.jit.load(sys.argv[1])
    x, expected = torch.load(sys.argv[2])
    x.requires_grad_()
    out = module(x)
    torch.testing.assert_close(out, expected, atol=1e-9, rtol=1e-9)
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    print("loaded and ran")
""")


@pytest.mark.parametrize("how", ["trace", "script"])
def test_saved_module_loads_and_runs_in_a_fresh_process(tmp_path, how):
    ref, ours = pair({"num_layers": 2})
    x = torch.randn(4, 3, 5, dtype=F64)
    compiled = torch.jit.trace(ours, (x,)) if how == "trace" else torch.jit.script(ours)
    compiled.save(str(tmp_path / "model.pt"))
    other = torch.randn(7, 2, 5, dtype=F64)
    torch.save((other, ref(other).detach()), tmp_path / "data.pt")
    done = subprocess.run(
        [sys.executable, "-c", LOAD_AND_RUN, str(tmp_path / "model.pt"), str(tmp_path / "data.pt")],
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "loaded and ran" in done.stdout


# ---- GRU and Elman RNN ------------------------------------------------------------------


class StateTagger(nn.Module):
    def __init__(self, rnn: nn.Module):
        super().__init__()
        self.rnn = rnn

    def forward(self, x: Tensor) -> Tensor:
        output, h_n = self.rnn(x)
        return output.sin().sum() + h_n.sum()


class StatePackedTagger(StateTagger):
    def forward(self, x: PackedSequence) -> Tensor:
        return self.rnn(x)[1]


class StateDecoder(nn.Module):
    def __init__(self, cell: nn.Module):
        super().__init__()
        self.cell = cell

    def forward(self, x: Tensor) -> Tensor:
        h = torch.zeros(x.shape[1], self.cell.hidden_size, dtype=x.dtype)
        for step in range(x.shape[0]):
            h = self.cell(x[step], h)
        return h


@pytest.mark.parametrize("kind", ["gru", "rnn_tanh", "rnn_relu"])
def test_gru_and_rnn_script_match_nn_forward_and_backward(kind, tmp_path):
    from state_pairs import make_pair as make_state_pair

    ref, ours = make_state_pair(kind, 4, 6, num_layers=2, bidirectional=True)
    scripted = torch.jit.script(StateTagger(ours))
    assert "fusedlstm::" in str(scripted.inlined_graph)
    path = tmp_path / "scripted.pt"
    scripted.save(str(path))
    x = torch.randn(5, 3, 4, dtype=F64)
    results = []
    for model in (torch.jit.load(str(path)), StateTagger(ref)):
        model.zero_grad()
        loss = model(x)
        loss.backward()
        results.append([loss] + [p.grad for p in model.parameters()])
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, **tolerance("lstm", F64))
    packed = pack_padded_sequence(x, [5, 3, 2])
    torch.testing.assert_close(torch.jit.script(StatePackedTagger(ours))(packed),
                               StatePackedTagger(ref)(packed), **tolerance("lstm", F64))


@pytest.mark.parametrize("kind", ["gru", "rnn_relu"])
def test_scripted_gru_and_rnn_cell_decoder(kind):
    from state_pairs import make_pair as make_state_pair

    ref, ours = make_state_pair(kind, 4, 6, cell=True)
    x = torch.randn(5, 3, 4, dtype=F64)
    torch.testing.assert_close(torch.jit.script(StateDecoder(ours))(x), StateDecoder(ref)(x),
                               **tolerance("cell", F64))

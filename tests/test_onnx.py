"""ONNX export with both exporters: standard ONNX LSTM (GRU, RNN) nodes (default domain), run in
onnxruntime with a batch and length other than the exported ones, against torch.nn's outputs."""

import numpy as np
import pytest
import torch
from lstm_pairs import make_pair
from state_pairs import make_pair as make_state_pair
from torch import nn

import fusedlstm

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

ATOL = 1e-4
CONFIGS = [
    {},
    {"num_layers": 2, "bidirectional": True},
    {"batch_first": True, "num_layers": 2},
    {"bias": False, "bidirectional": True},
]


def export(module, args, path, dynamo, dynamic, input_names, output_names):
    """torch.onnx.export with the sequence and batch dimensions of args[0] dynamic."""
    options = {"input_names": input_names, "output_names": output_names, "dynamo": dynamo}
    if dynamo:
        options["verbose"] = False
        if dynamic:
            first = {index: torch.export.Dim.DYNAMIC for index in dynamic}
            options["dynamic_shapes"] = (first, *[None] * (len(args) - 1))
    elif dynamic:
        options["dynamic_axes"] = {"x": dict.fromkeys(dynamic, "n")}
    torch.onnx.export(module, args, path, **options)
    return onnx.load(path)


def assert_standard_lstm_nodes(model, count):
    nodes = model.graph.node
    assert all(node.domain == "" for node in nodes), {node.domain for node in nodes}
    assert sum(node.op_type == "LSTM" for node in nodes) == count


def run_onnx(path, feeds):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {name: value.numpy() for name, value in feeds.items()})


def assert_outputs_close(actual, expected):
    for a, e in zip(actual, expected, strict=True):
        np.testing.assert_allclose(a, e.detach().numpy(), atol=ATOL, rtol=ATOL)


@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "torchscript"])
@pytest.mark.parametrize("config", CONFIGS, ids=str)
def test_lstm_exports_to_onnx_lstm_nodes(tmp_path, dynamo, config):
    ref, ours = make_pair(5, 7, dtype=torch.float32, **config)
    ours.eval()
    path = tmp_path / "lstm.onnx"
    model = export(ours, (torch.randn(4, 3, 5),), path, dynamo, (0, 1), ["x"], ["y", "h", "c"])
    assert_standard_lstm_nodes(model, ours.num_layers * (2 if ours.bidirectional else 1))
    x = torch.randn(6, 2, 5)  # other length and batch than exported
    with torch.no_grad():
        y, (h, c) = ref(x)
    assert_outputs_close(run_onnx(path, {"x": x}), (y, h, c))


@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "torchscript"])
def test_lstm_with_initial_state_exports(tmp_path, dynamo):
    ref, ours = make_pair(5, 7, dtype=torch.float32, num_layers=2)
    x, h0, c0 = torch.randn(4, 3, 5), torch.randn(2, 3, 7), torch.randn(2, 3, 7)

    class WithState(nn.Module):
        def __init__(self, lstm):
            super().__init__()
            self.lstm = lstm

        def forward(self, x, h0, c0):
            return self.lstm(x, (h0, c0))

    path = tmp_path / "state.onnx"
    export(WithState(ours), (x, h0, c0), path, dynamo, (), ["x", "h0", "c0"], ["y", "h", "c"])
    with torch.no_grad():
        y, (h, c) = ref(x, (h0, c0))
    assert_outputs_close(run_onnx(path, {"x": x, "h0": h0, "c0": c0}), (y, h, c))


@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "torchscript"])
def test_lstm_cell_exports(tmp_path, dynamo):
    ref = nn.LSTMCell(5, 7)
    ours = fusedlstm.LSTMCell(5, 7)
    ours.load_state_dict(ref.state_dict())
    x, h, c = torch.randn(3, 5), torch.randn(3, 7), torch.randn(3, 7)
    path = tmp_path / "cell.onnx"
    model = export(ours, (x, (h, c)), path, dynamo, (), ["x", "h", "c"], ["h1", "c1"])
    assert_standard_lstm_nodes(model, 1)
    with torch.no_grad():
        expected = ref(x, (h, c))
    assert_outputs_close(run_onnx(path, {"x": x, "h": h, "c": c}), expected)


class Packed(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = fusedlstm.LSTM(5, 7)

    def forward(self, x):
        return self.lstm(nn.utils.rnn.pack_padded_sequence(x, [4, 2, 1]))[1][0]


@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "torchscript"])
@pytest.mark.parametrize("case", ["proj_size", "PackedSequence"])
def test_what_onnx_cannot_express_is_refused_by_name(tmp_path, dynamo, case):
    module = fusedlstm.LSTM(5, 7, proj_size=3) if case == "proj_size" else Packed()
    with pytest.raises(Exception) as caught:
        torch.onnx.export(module, (torch.randn(4, 3, 5),), tmp_path / "m.onnx", dynamo=dynamo)
    messages = [str(caught.value), str(caught.value.__cause__)]
    assert any("fusedlstm: ONNX export of" in m and case in m for m in messages), messages


def test_torch_export_keeps_the_fusedlstm_ops():
    program = torch.export.export(fusedlstm.LSTM(5, 7, num_layers=2), (torch.randn(4, 3, 5),))
    targets = [str(node.target) for node in program.graph.nodes]
    assert targets.count("fusedlstm.lstm_layer.default") == 2
    assert not any("onnx" in target for target in targets)


# ---- GRU and Elman RNN: ONNX GRU / RNN nodes ------------------------------------------------

STATE_CONFIGS = [{}, {"num_layers": 2, "bidirectional": True, "batch_first": True},
                 {"bias": False}]


@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "torchscript"])
@pytest.mark.parametrize("config", STATE_CONFIGS, ids=str)
@pytest.mark.parametrize("kind", ["gru", "rnn_tanh", "rnn_relu"])
def test_gru_and_rnn_export_to_standard_nodes(tmp_path, kind, config, dynamo):
    ref, ours = make_state_pair(kind, 5, 7, dtype=torch.float32, **config)
    ours.eval()
    path = tmp_path / f"{kind}.onnx"
    h0 = torch.randn(ours.num_layers * (2 if ours.bidirectional else 1), 3, 7)

    class WithState(nn.Module):
        def __init__(self, rnn):
            super().__init__()
            self.rnn = rnn

        def forward(self, x, h0):
            return self.rnn(x, h0)

    model = export(WithState(ours), (torch.randn(3, 3, 5), h0), path, dynamo, (), ["x", "h0"],
                   ["y", "h"])
    nodes = model.graph.node
    assert all(node.domain == "" for node in nodes)
    operator = "GRU" if kind == "gru" else "RNN"
    assert sum(node.op_type == operator for node in nodes) == h0.shape[0]
    x = torch.randn(3, 3, 5)
    with torch.no_grad():
        expected = ref(x, h0)
    assert_outputs_close(run_onnx(path, {"x": x, "h0": h0}), expected)


@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "torchscript"])
@pytest.mark.parametrize("kind", ["gru", "rnn_tanh"])
def test_gru_and_rnn_dynamic_shapes_and_cells(tmp_path, kind, dynamo):
    ref, ours = make_state_pair(kind, 5, 7, dtype=torch.float32)
    path = tmp_path / "layer.onnx"
    export(ours.eval(), (torch.randn(4, 3, 5),), path, dynamo, (0, 1), ["x"], ["y", "h"])
    x = torch.randn(6, 2, 5)  # other length and batch than exported
    with torch.no_grad():
        assert_outputs_close(run_onnx(path, {"x": x}), ref(x))
    ref_cell, cell = make_state_pair(kind, 5, 7, dtype=torch.float32, cell=True)
    path = tmp_path / "cell.onnx"
    xc, hc = torch.randn(3, 5), torch.randn(3, 7)
    export(cell, (xc, hc), path, dynamo, (), ["x", "h"], ["h_next"])
    with torch.no_grad():
        assert_outputs_close(run_onnx(path, {"x": xc, "h": hc}), (ref_cell(xc, hc),))


@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "torchscript"])
def test_packed_gru_is_refused_by_name(tmp_path, dynamo):
    _, ours = make_state_pair("gru", 5, 7, dtype=torch.float32)

    class Packed(nn.Module):
        def __init__(self, rnn):
            super().__init__()
            self.rnn = rnn

        def forward(self, x):
            packed = nn.utils.rnn.pack_padded_sequence(x, [3, 2])
            return self.rnn(packed)[1]

    with pytest.raises(Exception) as caught:
        export(Packed(ours), (torch.randn(3, 2, 5),), tmp_path / "p.onnx", dynamo, (), ["x"],
               ["h"])
    messages = [str(caught.value), str(caught.value.__cause__)]
    assert any("fusedlstm: ONNX export of a PackedSequence input" in m for m in messages), messages

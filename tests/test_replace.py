"""replace_lstm swaps nn.LSTM / nn.LSTMCell for ours, keeping weights, device, dtype and mode."""

import torch
from conftest import tolerance
from torch import nn

import fusedlstm


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(3, 4))
        self.lstm = nn.LSTM(4, 5, num_layers=2, bidirectional=True, proj_size=2)
        self.inner = nn.ModuleDict({"cell": nn.LSTMCell(4, 3)})

    def forward(self, x):
        x = self.encoder(x)
        out, _ = self.lstm(x)
        h, c = self.inner["cell"](x[0])
        return out.sum() + h.sum() + c.sum()


def test_replace_keeps_outputs_and_parameters():
    model = Model().double().eval()
    x = torch.randn(6, 2, 3, dtype=torch.float64)
    expected = model(x)
    params_before = {name: p for name, p in model.named_parameters()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    replaced = fusedlstm.replace_lstm(model)
    assert replaced is model
    assert type(model.lstm) is fusedlstm.LSTM and type(model.inner["cell"]) is fusedlstm.LSTMCell
    assert not model.training and not model.lstm.training
    for name, p in model.named_parameters():
        assert p is params_before[name] and p.dtype == torch.float64
    torch.testing.assert_close(model(x), expected, **tolerance("lstm", torch.float64))
    # the optimizer built before the swap still updates the swapped module's weights
    model(x).backward()
    before = model.lstm.weight_hh_l0.detach().clone()
    optimizer.step()
    assert not torch.equal(model.lstm.weight_hh_l0, before)


def test_replace_top_level_module():
    lstm = nn.LSTM(3, 4, batch_first=True)
    replaced = fusedlstm.replace_lstm(lstm)
    assert isinstance(replaced, fusedlstm.LSTM) and replaced.batch_first
    assert replaced.weight_ih_l0 is lstm.weight_ih_l0


def test_restore_is_the_inverse_of_replace():
    model = Model().double().train()
    params_before = {name: p for name, p in model.named_parameters()}
    fusedlstm.restore_lstm(fusedlstm.replace_lstm(model))
    assert type(model.lstm) is nn.LSTM and type(model.inner["cell"]) is nn.LSTMCell
    assert model.lstm.training
    assert {name: p for name, p in model.named_parameters()} == params_before
    assert model.lstm._flat_weights[0] is params_before["lstm.weight_ih_l0"]


def test_quantize_dynamic_after_restore_quantizes_the_lstms():
    """quantize_dynamic matches exact nn types, so it leaves a fusedlstm.LSTM in float;
    restore_lstm first gives it the nn.LSTM it quantizes."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.LSTM(3, 16, num_layers=2)).eval()  # (torch's int8 LSTM has no proj)
    x = torch.randn(6, 2, 3)
    expected = model(x)[0]
    fusedlstm.replace_lstm(model)
    untouched = torch.ao.quantization.quantize_dynamic(model, {nn.LSTM})
    assert type(untouched[0]) is fusedlstm.LSTM
    quantized = torch.ao.quantization.quantize_dynamic(
        fusedlstm.restore_lstm(model), {nn.LSTM}, dtype=torch.qint8)
    assert type(quantized[0]) is torch.ao.nn.quantized.dynamic.LSTM
    torch.testing.assert_close(quantized(x)[0], expected, atol=0.02, rtol=0.05)

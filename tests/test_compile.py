"""torch.compile(fullgraph=True) of models holding fusedlstm modules: forward and backward
match eager."""

import pytest
import torch
from conftest import tolerance
from torch import nn

import fusedlstm


class Tagger(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = fusedlstm.LSTM(6, 8, num_layers=2, bidirectional=True, batch_first=True)
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        out, (h, c) = self.lstm(x)
        return self.head(out).sum() + h.sum() + c.sum()


class CellLoop(nn.Module):
    def __init__(self):
        super().__init__()
        self.cell = fusedlstm.LSTMCell(6, 8)

    def forward(self, x):
        h = c = None
        for t in range(x.shape[0]):
            h, c = self.cell(x[t], None if h is None else (h, c))
        return h.sum() + c.sum()


def eager_and_compiled(model_cls, x):
    torch.manual_seed(0)
    model = model_cls().double()
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    results = []
    for fn in (model, compiled):
        model.zero_grad()
        loss = fn(x)
        loss.backward()
        results.append([loss.detach()] + [p.grad.clone() for p in model.parameters()])
    return results


@pytest.mark.parametrize("model_cls,shape", [(Tagger, (3, 5, 6)), (CellLoop, (4, 2, 6))])
def test_compiled_matches_eager(model_cls, shape):
    torch._dynamo.reset()
    x = torch.randn(*shape, dtype=torch.float64)
    eager, compiled = eager_and_compiled(model_cls, x)
    for a, b in zip(compiled, eager, strict=True):
        torch.testing.assert_close(a, b, **tolerance("lstm", torch.float64))


def test_compiled_inference():
    torch._dynamo.reset()
    model = fusedlstm.LSTM(6, 8, proj_size=4).eval()
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    x = torch.randn(5, 2, 6)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x)[0], model(x)[0], **tolerance("lstm", torch.float32))

"""End-to-end: the seed sentiment model (Embedding -> LSTM -> Linear -> sigmoid) trains to the
same loss curve with nn.LSTM and fusedlstm.LSTM from the same initialisation."""

import pytest
import torch
from torch import nn

import fusedlstm


class Sentiment(nn.Module):
    def __init__(self, lstm_cls, vocab=50, embed=30, hidden=32):
        super().__init__()
        self.embedding = nn.Embedding(vocab, embed)
        self.lstm = lstm_cls(embed, hidden, batch_first=True)
        self.fc = nn.Linear(hidden, 1)

    def forward(self, tokens):
        _, (h_n, _) = self.lstm(self.embedding(tokens))
        return torch.sigmoid(self.fc(h_n[-1])).squeeze(-1)


def loss_curve(lstm_cls, dtype, steps=15):
    torch.manual_seed(0)
    model = Sentiment(lstm_cls).to(dtype)
    torch.manual_seed(1)
    tokens = torch.randint(0, 50, (16, 12))
    labels = (tokens.float().mean(1) > 24.5).to(dtype)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = nn.functional.binary_cross_entropy(model(tokens), labels)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return torch.tensor(losses, dtype=torch.float64)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-9), (torch.float32, 1e-4)])
def test_same_loss_curve_as_nn_lstm(dtype, tol):
    expected = loss_curve(nn.LSTM, dtype)
    actual = loss_curve(fusedlstm.LSTM, dtype)
    assert expected[-1] < expected[0]  # it does learn
    torch.testing.assert_close(actual, expected, atol=tol, rtol=tol)

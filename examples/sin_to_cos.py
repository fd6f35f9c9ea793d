"""Sequence regression: read sin(t) and predict cos(t) at every step with a 2-layer LSTM, trained
with nn.LSTM and with fusedlstm from the same initial weights. Prints the time per training step
of each and plots fusedlstm's prediction against the target.

    python examples/sin_to_cos.py [--device cuda] [--steps 300]
"""

import matplotlib.pyplot as plt
import torch
from common import parse_args, report, train_both, twin
from torch import nn


class Regressor(nn.Module):
    def __init__(self, hidden: int):
        super().__init__()
        self.lstm = nn.LSTM(1, hidden, num_layers=2, batch_first=True)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x):
        return self.head(self.lstm(x)[0])


def waves(batch: int, length: int, generator: torch.Generator):
    phase = torch.rand(batch, 1, generator=generator) * 6.283
    t = phase + torch.linspace(0, 12.566, length)
    return torch.sin(t).unsqueeze(-1), torch.cos(t).unsqueeze(-1)


def main():
    args = parse_args(__doc__.splitlines()[0], steps=300)
    batch, length, hidden = (4, 16, 8) if args.tiny else (32, 100, 64)
    torch.manual_seed(0)
    model = Regressor(hidden).to(args.device)
    fused = twin(model)
    generator = torch.Generator().manual_seed(0)
    data = [waves(batch, length, generator) for _ in range(args.steps)]
    results = train_both(model, fused, data, nn.functional.mse_loss, args, lr=1e-2)
    report("sin -> cos training", results["nn.LSTM"][1], results["fusedlstm"][1])
    print(f"final MSE: nn.LSTM {results['nn.LSTM'][0][-1]:.4f}, "
          f"fusedlstm {results['fusedlstm'][0][-1]:.4f}")
    x, y = waves(1, length, torch.Generator().manual_seed(1))
    with torch.no_grad():
        prediction = fused(x.to(args.device)).cpu()
    plt.figure(figsize=(6, 4))
    plt.plot(y[0, :, 0], label="target cos(t)")
    plt.plot(prediction[0, :, 0], "--", label="fusedlstm prediction")
    plt.plot(x[0, :, 0], ":", label="input sin(t)")
    plt.xlabel("step")
    plt.legend()
    path = args.out / "sin_to_cos.png"
    plt.savefig(path, dpi=100)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

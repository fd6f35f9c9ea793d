"""An LSTM cell written from scratch with autograd, next to fusedlstm.LSTMCell: the same weights
give the same outputs and gradients, and the fused cell is faster. Runs both over a sequence in a
Python loop (as a decoder does), checks them against each other and plots the time per step.

    python examples/cell_from_scratch.py [--device cuda]
"""

import time

import matplotlib.pyplot as plt
import torch
from common import parse_args, sync
from torch import nn

import fusedlstm


class ScratchLSTMCell(nn.Module):
    """The textbook cell: gates = x W_ih^T + b_ih + h W_hh^T + b_hh, split as i, f, g, o."""

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.weight_ih = nn.Parameter(torch.empty(4 * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(4 * hidden_size, hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(4 * hidden_size))
        self.bias_hh = nn.Parameter(torch.empty(4 * hidden_size))

    def forward(self, x, state):
        h, c = state
        gates = x @ self.weight_ih.t() + self.bias_ih + h @ self.weight_hh.t() + self.bias_hh
        i, f, g, o = gates.chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c


def unroll(cell, xs, state):
    outputs = []
    for x in xs:
        state = cell(x, state)
        outputs.append(state[0])
    return torch.stack(outputs)


def timed_step(cell, xs, state, device, rounds):
    """Seconds per step of forward + backward over the sequence (median of rounds)."""
    times = []
    for _ in range(rounds):
        cell.zero_grad(set_to_none=True)
        sync(device)
        start = time.perf_counter()
        unroll(cell, xs, state).sum().backward()
        sync(device)
        times.append((time.perf_counter() - start) / len(xs))
    return sorted(times)[len(times) // 2]


def main():
    args = parse_args(__doc__.splitlines()[0], steps=20)
    steps, batch, size = (4, 2, 8) if args.tiny else (50, 32, 256)
    torch.manual_seed(0)
    fused = fusedlstm.LSTMCell(size, size, device=args.device)
    scratch = ScratchLSTMCell(size, size).to(args.device)
    scratch.load_state_dict(fused.state_dict())  # the same parameter names as nn.LSTMCell
    xs = torch.randn(steps, batch, size, device=args.device)
    state = (torch.zeros(batch, size, device=args.device),) * 2

    outputs = {}
    for name, cell in (("scratch", scratch), ("fusedlstm", fused)):
        out = unroll(cell, xs, state)
        out.sin().sum().backward()
        outputs[name] = [out] + [p.grad for p in cell.parameters()]
    for a, b in zip(outputs["scratch"], outputs["fusedlstm"], strict=True):
        torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-4)
    print("same outputs and gradients (float32, 1e-4)")

    rounds = 3 if args.tiny else args.steps
    seconds = {name: timed_step(cell, xs, state, args.device, rounds)
               for name, cell in (("scratch", scratch), ("fusedlstm", fused))}
    print(f"per step, forward + backward: scratch {seconds['scratch'] * 1e6:.0f} us, "
          f"fusedlstm.LSTMCell {seconds['fusedlstm'] * 1e6:.0f} us "
          f"({seconds['scratch'] / seconds['fusedlstm']:.2f}x)")
    plt.figure(figsize=(5, 4))
    plt.bar(list(seconds), [s * 1e6 for s in seconds.values()])
    plt.ylabel("us per step (forward + backward)")
    plt.title(f"LSTM cell, B={batch} I=H={size}")
    path = args.out / "cell_from_scratch.png"
    plt.savefig(path, dpi=100)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

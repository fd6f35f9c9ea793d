"""What the examples share: arguments, one training loop run for nn.LSTM and fusedlstm side by
side from the same initial weights, timing, and where the plots go."""

import argparse
import copy
import time
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import torch  # noqa: E402

import fusedlstm  # noqa: E402


def parse_args(description: str, steps: int) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--steps", type=int, default=steps, help="training steps per model")
    parser.add_argument("--tiny", action="store_true", help="a few steps on small shapes (tests)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out",
                        help="directory for the PNG")
    args = parser.parse_args()
    if args.tiny:
        args.steps = 3
    args.out.mkdir(parents=True, exist_ok=True)
    return args


def twin(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of `model` with every nn.LSTM / nn.LSTMCell swapped for fusedlstm's: the same
    initial weights, so both train from the same point."""
    return fusedlstm.replace_lstm(copy.deepcopy(model))


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def train(model: torch.nn.Module, batches: Callable[[int], tuple], loss_fn: Callable,
          steps: int, device: str, lr: float = 1e-3) -> tuple[list[float], float]:
    """Adam on batches(step) -> (inputs, target); returns the losses and seconds per step
    (after the first step, which warms up allocators and kernels)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses, start = [], None
    for step in range(steps):
        if step == 1:
            sync(device)
            start = time.perf_counter()
        inputs, target = batches(step)
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(*inputs), target)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    sync(device)
    per_step = (time.perf_counter() - start) / max(1, steps - 1) if start else float("nan")
    return losses, per_step


def train_both(model: torch.nn.Module, fused: torch.nn.Module, data: list, loss_fn: Callable,
               args: argparse.Namespace, lr: float = 1e-3) -> dict[str, tuple[list[float], float]]:
    """train() for the nn.LSTM model and its fusedlstm twin on the same batches: data[step] is
    (input, target) on the CPU. Returns {"nn.LSTM": (losses, s/step), "fusedlstm": ...}."""

    def batches(step):
        inputs, target = data[step]
        return (inputs.to(args.device),), target.to(args.device)

    return {name: train(m, batches, loss_fn, args.steps, args.device, lr=lr)
            for name, m in (("nn.LSTM", model), ("fusedlstm", fused))}


def report(name: str, nn_seconds: float, fused_seconds: float) -> None:
    print(f"{name}: nn.LSTM {nn_seconds * 1e3:.1f} ms/step, fusedlstm {fused_seconds * 1e3:.1f} "
          f"ms/step ({nn_seconds / fused_seconds:.2f}x)")

"""Side-by-side timing: every implementation of a case in one process, interleaved round by
round in a shuffled order, so drifts in clock speed or load hit all of them alike."""

import random
import statistics
import time
from collections.abc import Callable

import torch


def synchronizer(device: str) -> Callable[[], None]:
    return torch.cuda.synchronize if device == "cuda" else (lambda: None)


def timed(run: Callable, sync: Callable) -> float:
    sync()
    start = time.perf_counter()
    run()
    sync()
    return time.perf_counter() - start


def interleaved(runners: dict[str, Callable], device: str, budget_s: float,
                min_rounds: int = 3, max_rounds: int = 25, seed: int = 0) -> dict[str, dict]:
    """Times each runner `rounds` times (chosen to fit budget_s), returns per implementation the
    median, quartiles and all samples, in seconds."""
    sync = synchronizer(device)
    estimate = {}
    for name, run in runners.items():
        run()  # warm-up: allocator, oneDNN primitive cache, lazy init
        estimate[name] = timed(run, sync)
    per_round = max(sum(estimate.values()), 1e-9)
    rounds = int(min(max_rounds, max(min_rounds, budget_s // per_round)))
    samples = {name: [] for name in runners}
    order = list(runners)
    rng = random.Random(seed)
    for _ in range(rounds):
        rng.shuffle(order)
        for name in order:
            samples[name].append(timed(runners[name], sync))
    return {name: summarize(values) for name, values in samples.items()}


def summarize(values: list[float]) -> dict:
    q = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else values * 3
    return {"median": statistics.median(values), "q1": q[0], "q3": q[2], "rounds": len(values),
            "samples": values}

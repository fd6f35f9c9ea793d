"""The quick GPU report of `make gpu-check`: fusedlstm's persistent kernel and its per-step path
(the switch cuda.step) vs nn.LSTM (cuDNN) on the main bench shapes, float32 with TF32 off and
on, bfloat16; the GRU and Elman RNN (persistent kernels too, forward and backward) vs
nn.GRU / nn.RNN on three of them in float32; inference and training (forward +
backward). Side by side in one process, interleaved rounds, medians. Writes
bench/results/report-gpu.md.

Usage: python bench/gpu_report.py [--budget SECONDS_PER_CASE]
"""

import argparse
import contextlib
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cases import (  # noqa: E402
    MAIN_SHAPES,
    MODES,
    STATE_FAMILIES,
    Case,
    build_runners,
    environment,
)
from timing import interleaved  # noqa: E402

import fusedlstm  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
IMPLS = ("persistent", "per_step", "nn")
# (label, dtype, TF32 allowed): cuDNN RNNs run with TF32 allowed by default, matmuls without.
PRECISIONS = [("float32, TF32 off", torch.float32, False),
              ("float32, TF32 on", torch.float32, True),
              ("bfloat16", torch.bfloat16, False)]
# The GRU's and RNN's rows: float32 (TF32 off) on these shapes.
STATE_SHAPES = ("fastrnns", "small-2layer", "lm-2layer")


@contextlib.contextmanager
def tf32(allowed: bool):
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = allowed
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def with_cuda_step(run, step: str):
    """The runner with the switch cuda.step set around each call."""
    def stepped():
        with fusedlstm.backends.flags(cuda_step=step):
            return run()
    return stepped


def measure_case(case: Case, label: str, allow_tf32: bool, budget_s: float) -> dict:
    with tf32(allow_tf32):
        built = build_runners(case, ("fused", "nn"))
        runners = {"persistent": with_cuda_step(built["fused"], "persistent"),
                   "per_step": with_cuda_step(built["fused"], "per_step"),
                   "nn": built["nn"]}
        times = interleaved(runners, "cuda", budget_s)
    r = {"family": case.family, "shape": case.shape, "precision": label, "mode": case.mode,
         **{impl: times[impl]["median"] * 1e3 for impl in IMPLS}}
    print(f"{case.family:4s} {case.shape.name:14s} {label:18s} {case.mode:9s} persistent "
          f"{r['persistent']:8.3f} ms  per-step {r['per_step']:8.3f} ms  cuDNN {r['nn']:8.3f} ms",
          flush=True)
    return r


def measure(budget_s: float) -> list[dict]:
    rows = []
    for shape in MAIN_SHAPES:
        for label, dtype, allow_tf32 in PRECISIONS:
            for mode in MODES:
                rows.append(measure_case(Case(shape, mode, "cuda", dtype), label, allow_tf32,
                                         budget_s))
    for family in STATE_FAMILIES:
        for shape in (s for s in MAIN_SHAPES if s.name in STATE_SHAPES):
            for mode in MODES:
                rows.append(measure_case(Case(shape, mode, "cuda", torch.float32, family),
                                         PRECISIONS[0][0], False, budget_s))
    return rows


def write(rows: list[dict], path: Path) -> None:
    env = environment("cuda")
    lines = [
        "# GPU report (make gpu-check)", "",
        f"{env.get('gpu')}, torch {env['torch']}, cuDNN {env.get('cudnn')}. Medians of "
        "interleaved rounds in one process; training is forward + backward. `persistent`: "
        "cuda.step=persistent, which runs the per-step path where a layer does not fit the "
        "device (then the two columns agree).", "",
        "| network | case | precision | mode | persistent ms | per-step ms | torch.nn (cuDNN) ms "
        "| persistent / cuDNN | per-step / cuDNN |",
        "|---|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['family']} | {r['shape'].name} — {r['shape'].label} "
                     f"| {r['precision']} | {r['mode']} "
                     f"| {r['persistent']:.3f} | {r['per_step']:.3f} | {r['nn']:.3f} "
                     f"| {r['persistent'] / r['nn']:.2f} | {r['per_step'] / r['nn']:.2f} |")
    path.write_text("\n".join(lines) + "\n")
    print(f"wrote {path}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=1.0, help="seconds per case")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("gpu_report: no CUDA device; nothing measured")
        return 0
    RESULTS.mkdir(exist_ok=True)
    write(measure(args.budget), RESULTS / "report-gpu.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())

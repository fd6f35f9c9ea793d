"""The quick GPU report of `make gpu-check`: fusedlstm vs nn.LSTM (cuDNN) on the main bench
shapes, float32 with TF32 off and on, bfloat16; inference and training (forward + backward).
Side by side in one process, interleaved rounds, medians. Writes bench/results/report-gpu.md.

Usage: python bench/gpu_report.py [--budget SECONDS_PER_CASE]
"""

import argparse
import contextlib
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cases import MAIN_SHAPES, MODES, Case, build_runners, environment  # noqa: E402
from timing import interleaved  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
IMPLS = ("fused", "nn")
# (label, dtype, TF32 allowed): cuDNN RNNs run with TF32 allowed by default, matmuls without.
PRECISIONS = [("float32, TF32 off", torch.float32, False),
              ("float32, TF32 on", torch.float32, True),
              ("bfloat16", torch.bfloat16, False)]


@contextlib.contextmanager
def tf32(allowed: bool):
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = allowed
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def measure(budget_s: float) -> list[dict]:
    rows = []
    for shape in MAIN_SHAPES:
        for label, dtype, allow_tf32 in PRECISIONS:
            for mode in MODES:
                with tf32(allow_tf32):
                    runners = build_runners(Case(shape, mode, "cuda", dtype), IMPLS)
                    times = interleaved(runners, "cuda", budget_s)
                rows.append({"shape": shape, "precision": label, "mode": mode,
                             **{impl: times[impl]["median"] * 1e3 for impl in IMPLS}})
                print(f"{shape.name:14s} {label:18s} {mode:9s} fused {rows[-1]['fused']:8.3f} ms"
                      f"  cuDNN {rows[-1]['nn']:8.3f} ms", flush=True)
    return rows


def write(rows: list[dict], path: Path) -> None:
    env = environment("cuda")
    lines = [
        "# GPU report (make gpu-check)", "",
        f"{env.get('gpu')}, torch {env['torch']}, cuDNN {env.get('cudnn')}. Medians of "
        "interleaved rounds in one process; training is forward + backward.", "",
        "| case | precision | mode | fusedlstm per-step ms | nn.LSTM (cuDNN) ms "
        "| per-step / cuDNN |",
        "|---|---|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['shape'].name} — {r['shape'].label} | {r['precision']} | {r['mode']} "
                     f"| {r['fused']:.3f} | {r['nn']:.3f} | {r['fused'] / r['nn']:.2f} |")
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

"""`make bench`: time fusedlstm against nn.LSTM (and friends) on every case, side by side, then
write bench/results/{results.json, report.md, *.png}.

Usage: python bench/run.py [--quick] [--device cpu|cuda] [--no-memory] [--budget SECONDS]
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import report  # noqa: E402
from cases import (  # noqa: E402
    CELL_DTYPES,
    CELL_IMPLS,
    CELL_SHAPES,
    LAYER_IMPLS,
    MAIN_SHAPES,
    MODES,
    MODULE_IMPLS,
    ROOFLINE_IMPLS,
    STATE_FAMILIES,
    STATE_LAYER_IMPLS,
    Case,
    bf16_shapes,
    build_runners,
    environment,
    parity,
    roofline_available,
    shapes_for,
)
from timing import interleaved  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def plan(device: str, quick: bool) -> list[tuple[Case, tuple[str, ...]]]:
    dtypes = [torch.float32] + ([torch.float16, torch.bfloat16] if device == "cuda" else [])
    cases = []
    layer_impls = tuple(i for i in LAYER_IMPLS if roofline_available(i, device))
    for dtype in dtypes:
        for shape in shapes_for(device, quick):
            for mode in MODES:
                cases.append((Case(shape, mode, device, dtype), layer_impls))
    if device == "cpu" and not quick:
        # bfloat16 on the CPU: fused vs nn.LSTM (and the GEMM rooflines) on the main shapes
        rooflines = tuple(i for i in ROOFLINE_IMPLS
                          if roofline_available(i, device, torch.bfloat16))
        for shape in bf16_shapes():
            for mode in MODES:
                cases.append((Case(shape, mode, device, torch.bfloat16),
                              ("fused", "nn", *rooflines)))
    for dtype in CELL_DTYPES:
        for shape in CELL_SHAPES[:2] if quick else CELL_SHAPES:
            for mode in MODES:
                cases.append((Case(shape, mode, device, dtype), CELL_IMPLS))
    # GRU and Elman RNN against nn.GRU / nn.RNN: the main shapes (float32; bfloat16 on the CPU
    # too, as the LSTM's) and the cell loops
    state_dtypes = [torch.float32] + ([torch.bfloat16] if device == "cpu" and not quick else [])
    for family in STATE_FAMILIES:
        for dtype in state_dtypes:
            shapes = bf16_shapes() if dtype == torch.bfloat16 else MAIN_SHAPES
            for shape in shapes[:1] if quick else shapes:
                for mode in MODES:
                    cases.append((Case(shape, mode, device, dtype, family), STATE_LAYER_IMPLS))
        for dtype in CELL_DTYPES[:1] if quick else CELL_DTYPES:
            for shape in CELL_SHAPES[:1] if quick else CELL_SHAPES:
                for mode in MODES:
                    cases.append((Case(shape, mode, device, dtype, family), CELL_IMPLS))
    return cases


def memory_of(case: Case, impl: str) -> int | None:
    command = [sys.executable, str(Path(__file__).parent / "peak_memory.py"), case.shape.name,
               impl, case.device, str(case.dtype).replace("torch.", ""), case.family]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        print(f"    memory of {impl} failed: {done.stderr.strip().splitlines()[-1:]}")
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])["peak_bytes"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a handful of cases (< 2 minutes)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--no-memory", action="store_true", help="skip peak-memory runs")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds of timed rounds per case (default 4, quick 1.5)")
    args = parser.parse_args()
    budget = args.budget or (1.5 if args.quick else 4.0)
    env = environment(args.device)
    print(f"fusedlstm benchmark on {env['cpu']} ({args.device}), torch {env['torch']}, "
          f"{env['threads']} threads")
    cases = plan(args.device, args.quick)
    started = time.perf_counter()
    records = []
    for index, (case, impls) in enumerate(cases, 1):
        t0 = time.perf_counter()
        print(f"[{index}/{len(cases)}] {case.key} ({case.shape.label}): {', '.join(impls)}",
              flush=True)
        timings = interleaved(build_runners(case, impls), case.device, budget)
        record = {"case": case.key, "family": case.family, "shape": case.shape.__dict__,
                  "mode": case.mode,
                  "device": case.device, "dtype": str(case.dtype).replace("torch.", ""),
                  "impls": list(impls), "timings": timings, "parity": parity(case),
                  "tokens": case.shape.T * case.shape.B}
        records.append(record)
        fused = "fused" if "fused" in impls else "fused_cell"
        base = "nn" if "nn" in impls else "nn_cell"
        ratio = timings[fused]["median"] / timings[base]["median"]
        print(f"    {fused} {timings[fused]['median'] * 1e3:.2f} ms, {base} "
              f"{timings[base]['median'] * 1e3:.2f} ms, ratio {ratio:.2f} "
              f"({time.perf_counter() - t0:.1f} s, {time.perf_counter() - started:.0f} s total)",
              flush=True)
    memory = []
    if not args.no_memory:
        memory_shapes = MAIN_SHAPES[:1] if args.quick else MAIN_SHAPES
        jobs = [(Case(s, "training", args.device, torch.float32), impl)
                for s in memory_shapes for impl in MODULE_IMPLS]
        jobs += [(Case(s, "training", args.device, torch.float32, family), impl)
                 for family in STATE_FAMILIES for s in memory_shapes
                 for impl in STATE_LAYER_IMPLS if not args.quick]
        for index, (case, impl) in enumerate(jobs, 1):
            print(f"[memory {index}/{len(jobs)}] {case.family} {case.shape.name} {impl}",
                  flush=True)
            memory.append({"family": case.family, "shape": case.shape.name,
                           "label": case.shape.label, "impl": impl,
                           "peak_bytes": memory_of(case, impl)})
    RESULTS.mkdir(parents=True, exist_ok=True)
    results = {"environment": env, "quick": args.quick, "records": records, "memory": memory,
               "elapsed_s": time.perf_counter() - started}
    # The full CPU run is the published one: results.json / report.md; others get a suffix.
    suffix = ("-cuda" if args.device == "cuda" else "") + ("-quick" if args.quick else "")
    path = RESULTS / f"results{suffix}.json"
    path.write_text(json.dumps(results, indent=1))
    written = report.write(results, RESULTS, suffix=suffix)
    print(f"done in {time.perf_counter() - started:.0f} s: {path}, " + ", ".join(map(str, written)))


if __name__ == "__main__":
    main()

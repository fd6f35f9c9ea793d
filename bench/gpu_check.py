"""`make gpu-check`: the one command a machine with an NVIDIA GPU runs, in a few minutes.

1. builds fusedlstm (CPU and CUDA) for the present GPU's arch only, all cores;
2. runs tests/test_cuda.py: the CUDA back-end against cuDNN and float64, against its own kernels
   emulated on the CPU (same inputs), CUDA-graph capture, streams, autocast, opcheck;
3. the CUDA kernels' resource usage (registers, shared memory, spills): bench/kernel_resources.py;
4. the quick GPU benchmark: bench/gpu_report.py -> bench/results/report-gpu.md.

Without a GPU it says so and exits 0 having done nothing. Logs go to bench/results/gpu-check/.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOGS = ROOT / "bench" / "results" / "gpu-check"


def gpu_arch() -> str | None:
    """'9.0' for the first visible GPU, or None when there is none (checked in a child process,
    so that this one never initialises CUDA before the build)."""
    probe = ("import torch; print('%d.%d' % torch.cuda.get_device_capability() "
             "if torch.cuda.is_available() else '')")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    return done.stdout.strip() or None


def stage(name: str, command: list[str], env: dict, limit_s: int) -> bool:
    log = LOGS / f"{name}.log"
    start = time.monotonic()
    print(f"=== {name}: {' '.join(command)}", flush=True)
    with log.open("w") as out:
        try:
            done = subprocess.run(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                  timeout=limit_s)
            ok = done.returncode == 0
        except subprocess.TimeoutExpired:
            ok = False
            out.write(f"\n[gpu-check] {name} ran past {limit_s} s\n")
    tail = log.read_text(errors="replace").splitlines()[-15:]
    print("\n".join(tail))
    print(f"=== {name}: {'ok' if ok else 'FAILED'} in {time.monotonic() - start:.0f} s "
          f"(log: {log.relative_to(ROOT)})", flush=True)
    return ok


def main() -> int:
    arch = gpu_arch()
    if arch is None:
        print("make gpu-check: no CUDA GPU visible to torch (torch.cuda.is_available() is "
              "False); nothing to do.")
        return 0
    LOGS.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, TORCH_CUDA_ARCH_LIST=arch, FUSEDLSTM_CUDA="1",
               MAX_JOBS=str(os.cpu_count() or 4))
    py = sys.executable
    stages = [
        ("build", [py, "-m", "pip", "install", "-v", "--no-build-isolation", "--no-deps",
                   "-e", "."], 300),
        ("test_cuda", [py, "-m", "pytest", "tests/test_cuda.py", "-q", "-p", "no:cacheprovider"],
         150),
        ("kernel_resources", [py, "bench/kernel_resources.py"], 30),
        ("gpu_report", [py, "bench/gpu_report.py"], 150),
    ]
    results = {}
    for name, command, limit_s in stages:
        results[name] = stage(name, command, env, limit_s)
        if name == "build" and not results[name]:
            break
    print("gpu-check:", ", ".join(f"{k} {'ok' if v else 'FAILED'}" for k, v in results.items()))
    return 0 if all(results.values()) and len(results) == len(stages) else 1


if __name__ == "__main__":
    sys.exit(main())

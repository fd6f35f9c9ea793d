"""Fails CI on compiler warnings in our own sources, on register spills in our CUDA kernels, and
on a build that skipped the CUDA sources although a CUDA toolkit is on this machine.

Usage: check_build_log.py BUILD_LOG   (the output of a verbose `pip wheel -v` build)
"""

import re
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUR_SOURCES = re.compile(r"(^|[\s/])csrc/[^\s:]+:\d+(:\d+)?: warning", re.MULTILINE)
SPILLS = re.compile(r"(\d+) bytes spill stores, (\d+) bytes spill loads")
KERNEL = re.compile(r"Function properties for (\S+)")


def main(log_path: str) -> int:
    log = Path(log_path).read_text(errors="replace")
    failures = []
    warnings = [line for line in log.splitlines() if OUR_SOURCES.search(line)]
    if warnings:
        failures.append("compiler warnings in csrc/:\n  " + "\n  ".join(warnings))

    kernels = KERNEL.findall(log)
    spills = [(k, s) for k, s in zip(kernels, SPILLS.findall(log), strict=False) if s != ("0", "0")]
    if spills:
        failures.append(f"register spills (stores, loads) in CUDA kernels: {spills}")

    if shutil.which("nvcc") and "pointwise_cuda.cu" not in log:
        failures.append("nvcc is on PATH but the build did not compile csrc/cuda/pointwise_cuda.cu")

    print(f"checked {log_path}: {len(kernels)} CUDA kernel builds (per arch), "
          f"{len(warnings)} warnings in csrc/, {len(spills)} kernels with spills")
    for failure in failures:
        print("FAIL:", failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

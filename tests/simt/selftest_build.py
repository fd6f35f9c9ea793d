"""Builds and runs the SIMT emulation's standalone self-test (selftest.cpp).

    python tests/simt/selftest_build.py                 # plain build, run, must pass
    python tests/simt/selftest_build.py --tsan          # under ThreadSanitizer, must pass clean
    python tests/simt/selftest_build.py --tsan --plant 1  # a __syncthreads() left out: must fail

--plant 1 / 2 leaves out a block / grid barrier of harness_kernels.cuh (3: the persistent
kernels' barrier between steps, cuda/persistent_kernels.cuh) and succeeds only when
ThreadSanitizer reports a data race: the proof that a missing barrier fails `make sanitize`.
"""

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def build(output: Path, tsan: bool = False, plant: int = 0) -> None:
    torch_dir = Path(torch.__file__).parent
    flags = ["-fsanitize=thread", "-O1", "-g"] if tsan else ["-O1"]
    command = [
        os.environ.get("CXX", "g++"), "-std=c++20", *flags, f"-DFUSEDLSTM_SIMT_PLANT={plant}",
        f"-I{ROOT / 'csrc' / 'include'}", f"-I{torch_dir / 'include'}",
        str(HERE / "selftest.cpp"), str(ROOT / "csrc" / "simt" / "simt_runtime.cpp"),
        f"-L{torch_dir / 'lib'}", "-lc10", f"-Wl,-rpath,{torch_dir / 'lib'}", "-pthread",
        "-o", str(output),
    ]
    subprocess.run(command, check=True)


def run(tsan: bool, plant: int) -> int:
    with tempfile.TemporaryDirectory() as scratch:
        binary = Path(scratch) / "simt_selftest"
        build(binary, tsan=tsan, plant=plant)
        env = dict(os.environ, TSAN_OPTIONS="halt_on_error=0 exitcode=66")
        done = subprocess.run([str(binary)], capture_output=True, text=True, env=env)
    print(done.stdout[-4000:], done.stderr[-4000:], sep="\n")
    if plant == 0:
        return done.returncode
    caught = done.returncode != 0 and "ThreadSanitizer: data race" in done.stderr
    print(f"planted missing barrier {plant}: "
          f"{'caught by ThreadSanitizer' if caught else 'NOT CAUGHT'}")
    return 0 if caught else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tsan", action="store_true", help="build with -fsanitize=thread")
    parser.add_argument("--plant", type=int, default=0, choices=(0, 1, 2, 3),
                        help="leave out a barrier (1: __syncthreads, 2: grid, 3: the persistent "
                             "kernels' step barrier) and expect a race")
    args = parser.parse_args()
    if args.plant and not args.tsan:
        parser.error("--plant needs --tsan")
    return run(args.tsan, args.plant)


if __name__ == "__main__":
    sys.exit(main())

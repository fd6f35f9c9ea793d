"""Peak memory of one training step (forward + backward) of one implementation on one case.

CPU: tracemalloc does not see tensor memory, so this runs in a fresh process per case: one warm-up
step (one-time set-up: thread pools, oneDNN primitives and JIT code), then the memory freed since
is handed back to the OS (fusedlstm's buffer pool emptied, malloc_trim), the kernel's high-water
mark is reset (/proc/self/clear_refs) and the report is how far the resident set rose during a
second step.
GPU: torch.cuda.max_memory_allocated over the second step.

Usage: python bench/peak_memory.py SHAPE_NAME IMPL DEVICE DTYPE [FAMILY]  -> prints JSON
(FAMILY: lstm, the default, gru or rnn)
"""

import ctypes
import gc
import json
import re
import sys
from pathlib import Path

import torch

import fusedlstm

sys.path.insert(0, str(Path(__file__).parent))
from cases import (  # noqa: E402  # noqa: E402
    B_SWEEP,
    CELL_IMPLS,
    CELL_SHAPES,
    GPU_SHAPES,
    H_SWEEP,
    MAIN_SHAPES,
    MODULE_IMPLS,
    STATE_LAYER_IMPLS,
    Case,
    build_runners,
)


def status_kib(field: str) -> int:
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE).group(1))


def main() -> None:
    shape_name, impl, device, dtype_name = sys.argv[1:5]
    family = sys.argv[5] if len(sys.argv) > 5 else "lstm"
    shape = next(s for s in MAIN_SHAPES + H_SWEEP + B_SWEEP + GPU_SHAPES + CELL_SHAPES
                 if s.name == shape_name)
    impls = CELL_IMPLS if impl in CELL_IMPLS else MODULE_IMPLS if family == "lstm" else (
        STATE_LAYER_IMPLS)
    case = Case(shape, "training", device, getattr(torch, dtype_name), family)
    run = build_runners(case, impls)[impl]
    run()
    gc.collect()
    if device == "cuda":
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        run()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - before
        method = "torch.cuda.max_memory_allocated"
    else:
        # fusedlstm's buffer pool keeps freed blocks resident for the next call; empty it too, so
        # the second step allocates its buffers afresh and the rise counts all of them.
        fusedlstm.buffers.release_cpu_buffers()
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        before = status_kib("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        run()
        peak = (status_kib("VmHWM") - before) * 1024
        method = "RSS high-water mark of a fresh process"
    print(json.dumps({"peak_bytes": peak, "method": method}))


if __name__ == "__main__":
    main()

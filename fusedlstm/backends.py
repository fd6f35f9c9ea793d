"""Run-time strategy switches, in the style of torch.backends.

    fusedlstm.backends.cpu.step = "gemm"           # set for the process
    with fusedlstm.backends.flags(cpu_step="fused", cpu_input_fusion="off"):
        ...                                         # set inside the block only

- `cpu.step`: `auto`, `fused`, `gemm`. The CPU's per-step strategy: the fused recurrent step,
  or a GEMM per step plus a pointwise pass.
- `cpu.input_fusion`: `auto`, `on`, `off`. The input projection inside the fused step (`on`: at
  any batch size).
- `cpu.gemm`: `auto`, `aten`. `aten`: the CUDA back-end's ATen GEMMs on the CPU and no fused step
  (the CUDA build's host path).
- `cpu.bf16_compute`: `auto`, `float`, `bf16`. How bfloat16 LSTM layers compute (inference and
  training): in float32 inside (`auto` where the CPU lacks the bfloat16 dot product), or in
  bfloat16.
- `cpu.emulate_cuda_kernels`: `off`, `on`. CPU tensors take the CUDA back-end with its kernels on
  the SIMT emulation (tests; fusedlstm.simt).
- `cuda.step`: `auto`, `persistent`, `per_step`, `persistent_refused`. The CUDA back-end's time
  loop (the emulated one too): the persistent kernel (a chunk of steps per cooperative launch,
  W_hh in shared memory) where every block fits on the device at once, or a GEMM plus a
  pointwise kernel per step. `auto`: persistent up to 512 batch rows; `persistent`: wherever it
  fits; `persistent_refused` (tests): as `persistent`, with every launch treated as refused by
  the device, so the step-by-step fallback runs.
- `backward_chunk_steps`: `0` (auto), or a count. Steps per chunk of the layer backward (auto:
  ~8 MiB of gate gradients).

`auto` is the default everywhere: the choice measured fastest (docs/cpu.md). The switches are
process-wide (every thread sees them) and take effect at the next op call. Environment variables
are only for the build (setup.py).
"""

import contextlib
from collections.abc import Iterator

import torch

_ops = torch.ops.fusedlstm


def get(name: str) -> str:
    """The value of switch `name` ("cpu.step", ...), as a string."""
    return _ops._switch(name)


def set(name: str, value: str | int | bool) -> str:  # noqa: A001  (torch.backends style)
    """Sets switch `name`; returns its previous value. Bad names and values raise ValueError."""
    if isinstance(value, bool):
        value = "on" if value else "off"
    return _ops._set_switch(name, str(value))


class _Group:
    """Attribute access to the switches under a prefix: backends.cpu.step = "gemm"."""

    def __init__(self, prefix: str, names: tuple[str, ...]):
        object.__setattr__(self, "_prefix", prefix)
        object.__setattr__(self, "_names", names)

    def __getattr__(self, name: str) -> str:
        if name not in self._names:
            raise AttributeError(f"fusedlstm.backends{self._prefix}: no switch {name!r}")
        return get(self._prefix.lstrip(".") + "." + name if self._prefix else name)

    def __setattr__(self, name: str, value) -> None:
        if name not in self._names:
            raise AttributeError(f"fusedlstm.backends{self._prefix}: no switch {name!r}; "
                                 f"the switches are {', '.join(self._names)}")
        set(self._prefix.lstrip(".") + "." + name if self._prefix else name, value)

    def __repr__(self) -> str:
        return "{" + ", ".join(f"{n}={getattr(self, n)!r}" for n in self._names) + "}"


cpu = _Group(".cpu", ("step", "input_fusion", "gemm", "bf16_compute", "emulate_cuda_kernels"))
cuda = _Group(".cuda", ("step",))
layer = _Group("", ("backward_chunk_steps",))


@contextlib.contextmanager
def flags(**switches) -> Iterator[None]:
    """Sets switches inside the block and restores them after: keyword names with "_" for ".",
    e.g. flags(cpu_step="fused", backward_chunk_steps=1)."""
    previous = []
    try:
        for key, value in switches.items():
            name = key
            for group in ("cpu_", "cuda_"):
                if key.startswith(group):
                    name = key.replace("_", ".", 1)
            previous.append((name, set(name, value)))
        yield
    finally:
        for name, value in reversed(previous):
            set(name, value)

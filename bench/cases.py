"""What the benchmarks compare: shapes, implementations, modes, and how to run one of each.

Every implementation gets the same weights and the same input, built here once per case.
"""

import platform
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import nn

import fusedlstm


@dataclass(frozen=True)
class Shape:
    name: str
    T: int
    B: int
    I: int  # noqa: E741  (the docs' name for the input size)
    H: int
    layers: int = 1
    bidirectional: bool = False
    sweep: str = ""  # "H" or "B" when the shape belongs to a sweep plot

    @property
    def label(self) -> str:
        extra = f" L{self.layers}" + (" bi" if self.bidirectional else "")
        return f"T={self.T} B={self.B} I={self.I} H={self.H}{extra}"


MAIN_SHAPES = [
    Shape("fastrnns", 100, 64, 512, 512),
    Shape("sentiment", 200, 50, 30, 512),
    Shape("small-2layer", 50, 8, 64, 128, layers=2),
    Shape("batch1", 100, 1, 128, 128),
    Shape("bi-2layer", 100, 32, 256, 256, layers=2, bidirectional=True),
    Shape("lm-2layer", 35, 20, 200, 200, layers=2),  # a word-level language model's batch
]
H_SWEEP = [Shape(f"H{h}", 100, 32, h, h, sweep="H") for h in (64, 128, 256, 512, 1024)]
B_SWEEP = [Shape(f"B{b}", 100, b, 256, 256, sweep="B") for b in (1, 8, 32, 128)]
GPU_SHAPES = [Shape("haste", 250, 32, 128, 256), Shape("large", 100, 64, 1024, 1024)]
# The cell comparison: a Python loop of T steps carrying (h, c), as decoders and step-by-step
# programs run a cell; in training, the backward of the whole loop.
CELL_SHAPES = [Shape("cell-B97-H51", 20, 97, 51, 51), Shape("cell-B64-H512", 20, 64, 512, 512),
               Shape("cell-B1-H128", 20, 1, 128, 128), Shape("cell-B32-H256", 20, 32, 128, 256)]
CELL_DTYPES = (torch.float32, torch.float64)

MODES = ("inference", "training")  # no_grad forward; forward + backward
# The recurrent networks benchmarked: the LSTM everywhere; GRU and Elman RNN (tanh) against
# nn.GRU / nn.RNN on the main shapes and in cell loops.
FAMILIES = ("lstm", "gru", "rnn")
STATE_FAMILIES = FAMILIES[1:]
# family -> (nn layer, fusedlstm layer, nn cell, fusedlstm cell)
MODULES = {
    "lstm": (nn.LSTM, fusedlstm.LSTM, nn.LSTMCell, fusedlstm.LSTMCell),
    "gru": (nn.GRU, fusedlstm.GRU, nn.GRUCell, fusedlstm.GRUCell),
    "rnn": (nn.RNN, fusedlstm.RNN, nn.RNNCell, fusedlstm.RNNCell),
}
STATE_LAYER_IMPLS = ("fused", "nn")

MODULE_IMPLS = ("fused", "nn", "nn_native", "nn_cell_loop", "fused_cell_loop")
# GEMMs only, no LSTM: the roofline columns (see GemmRoofline)
ROOFLINE_IMPLS = ("mm_roofline", "onednn_roofline")
LAYER_IMPLS = MODULE_IMPLS + ROOFLINE_IMPLS
CELL_IMPLS = ("fused_cell", "nn_cell")
BASELINE = {"fused": "nn", "fused_cell": "nn_cell"}


def shapes_for(device: str, quick: bool) -> list[Shape]:
    if quick:
        return [MAIN_SHAPES[0], MAIN_SHAPES[3], H_SWEEP[1]]
    shapes = MAIN_SHAPES + H_SWEEP + [s for s in B_SWEEP if s.B != 32]
    if device == "cuda":
        shapes += GPU_SHAPES
    return shapes


def onednn_has_bf16() -> bool:
    """Whether this CPU's oneDNN has bfloat16 kernels (AVX-512 or AVX2-VNNI-2; not an AVX2-only
    CPU such as AMD Zen 3)."""
    return torch.ops.mkldnn._is_mkldnn_bf16_supported()


def bf16_shapes() -> list[Shape]:
    """The CPU's bfloat16 rows. Where oneDNN has no bfloat16 kernels (an AVX2-only CPU such as
    AMD Zen 3), nn.LSTM's bfloat16 and torch.mm's take ATen's reference GEMM: ~6 s for one
    fastrnns forward and ~100 s for its roofline (10x and 160x fusedlstm's 0.6 s), so there only
    the small shapes run, without roofline columns, and make bench keeps its time."""
    if onednn_has_bf16():
        return MAIN_SHAPES
    return [s for s in MAIN_SHAPES if s.T * s.B * s.H * (s.I + s.H) * s.layers < 2 * 10**8]


def native_flags(device: str):
    """nn.LSTM's own ATen path: oneDNN (CPU) or cuDNN (GPU) switched off."""
    if device == "cuda":
        return torch.backends.cudnn.flags(enabled=False)
    return torch.backends.mkldnn.flags(enabled=False)


class CellLoop(nn.Module):
    """A Python loop over LSTMCells, layer by layer and direction by direction: the baseline a
    user writes by hand. Holds its own cells with the weights of an nn.LSTM."""

    def __init__(self, cell_cls, lstm: nn.LSTM):
        super().__init__()
        self.bidirectional = lstm.bidirectional
        self.cells = nn.ModuleList()
        for layer in range(lstm.num_layers):
            for suffix in ("", "_reverse")[: 2 if lstm.bidirectional else 1]:
                cell = cell_cls(lstm.input_size if layer == 0 else lstm.hidden_size *
                                (2 if lstm.bidirectional else 1), lstm.hidden_size,
                                device=lstm.weight_ih_l0.device, dtype=lstm.weight_ih_l0.dtype)
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    getattr(cell, name).data.copy_(getattr(lstm, f"{name}_l{layer}{suffix}"))
                self.cells.append(cell)

    def forward(self, x):
        directions = 2 if self.bidirectional else 1
        for layer in range(len(self.cells) // directions):
            outputs = []
            for direction in range(directions):
                cell = self.cells[layer * directions + direction]
                steps = range(x.shape[0]) if direction == 0 else reversed(range(x.shape[0]))
                state, per_step = None, [None] * x.shape[0]
                for t in steps:
                    state = cell(x[t], state)
                    per_step[t] = state[0]
                outputs.append(torch.stack(per_step))
            x = torch.cat(outputs, dim=-1) if directions == 2 else outputs[0]
        return x


def lstm_gemms(s: Shape, mode: str) -> list[tuple[int, int, int, int]]:
    """(m, k, n, count): every matrix product an LSTM of this shape needs, at its shape. Per layer
    and direction: the input projection of all steps and one recurrent product per step; training
    adds one recurrent product per step backward, the weight gradients over all steps, and the
    input gradient of every layer but the first (the benchmark input needs no gradient)."""
    directions = 2 if s.bidirectional else 1
    gates, rows = 4 * s.H, s.T * s.B
    gemms = []
    for layer in range(s.layers):
        inner = s.I if layer == 0 else s.H * directions
        for _ in range(directions):
            gemms += [(rows, inner, gates, 1), (s.B, s.H, gates, s.T)]
            if mode == "training":
                gemms += [(s.B, gates, s.H, s.T), (gates, rows, inner, 1), (gates, rows, s.H, 1)]
                if layer > 0:
                    gemms.append((rows, gates, inner, 1))
    return gemms


class GemmRoofline:
    """The roofline columns: the same GEMM FLOPs as the LSTM (lstm_gemms), each product into a
    preallocated output and nothing else: no gate math, no allocation. `mm_roofline` runs them as
    torch.mm (ATen's GEMM: MKL on the CPU, cuBLAS on the GPU); `onednn_roofline` as oneDNN's
    inner product (mkldnn._linear_pointwise, CPU), which is 2x faster than MKL on AMD CPUs with
    AVX-512. How far an implementation is from the time of its GEMMs alone."""

    def __init__(self, s: Shape, mode: str, device: str, dtype: torch.dtype, onednn: bool):
        def make(*shape):
            return torch.randn(*shape, device=device, dtype=dtype)

        self.onednn = onednn
        # oneDNN computes x w^T: keep b as (n, k)
        self.products = [(make(m, k), make(n, k) if onednn else make(k, n),
                          torch.empty(m, n, device=device, dtype=dtype), count)
                         for m, k, n, count in lstm_gemms(s, mode)]

    def __call__(self) -> torch.Tensor:
        linear = torch.ops.mkldnn._linear_pointwise
        with torch.no_grad():
            for a, b, out, count in self.products:
                for _ in range(count):
                    if self.onednn:
                        out = linear(a, b, None, "none", [], "")
                    else:
                        torch.mm(a, b, out=out)
        return out


def roofline_available(impl: str, device: str, dtype: torch.dtype = torch.float32) -> bool:
    """oneDNN's inner product runs on the CPU only. In bfloat16 on a CPU whose oneDNN has no
    bfloat16 kernel neither roofline is one: oneDNN refuses the product and torch.mm takes
    ATen's reference GEMM."""
    if device == "cpu" and dtype == torch.bfloat16 and not onednn_has_bf16():
        return False
    return impl != "onednn_roofline" or (device == "cpu" and torch.backends.mkldnn.is_available())


@dataclass
class Case:
    shape: Shape
    mode: str
    device: str
    dtype: torch.dtype
    family: str = "lstm"

    @property
    def key(self) -> str:
        dtype = str(self.dtype).replace("torch.", "")
        family = "" if self.family == "lstm" else f"{self.family}/"
        return f"{family}{self.shape.name}/{self.mode}/{self.device}/{dtype}"


def build_runners(case: Case, impls: tuple[str, ...]) -> dict[str, Callable[[], torch.Tensor]]:
    """One zero-argument callable per implementation, each running one forward (inference) or one
    forward + backward (training) and returning the output."""
    s, device, dtype = case.shape, case.device, case.dtype
    nn_layer, fused_layer, nn_cell, fused_cell = MODULES[case.family]
    torch.manual_seed(0)
    if impls == CELL_IMPLS:
        ref = nn_cell(s.I, s.H, device=device, dtype=dtype)
        ours = fused_cell(s.I, s.H, device=device, dtype=dtype)
        ours.load_state_dict(ref.state_dict())
        modules = {"nn_cell": ref, "fused_cell": ours}
        xs = torch.randn(s.T, s.B, s.I, device=device, dtype=dtype)
        h0 = torch.randn(s.B, s.H, device=device, dtype=dtype)
        hx = (h0, torch.randn(s.B, s.H, device=device, dtype=dtype)) if case.family == "lstm" \
            else h0

        def cell_loop(cell):
            state, outputs = hx, []
            for x in xs:
                state = cell(x, state)
                outputs.append(state[0] if isinstance(state, tuple) else state)
            return torch.stack(outputs)

        call = {name: (lambda m=m: cell_loop(m)) for name, m in modules.items()}
    else:
        ref = nn_layer(s.I, s.H, s.layers, bidirectional=s.bidirectional, device=device,
                       dtype=dtype)
        ours = fused_layer(s.I, s.H, s.layers, bidirectional=s.bidirectional, device=device,
                           dtype=dtype)
        ours.load_state_dict(ref.state_dict())
        modules = {"nn": ref, "nn_native": ref, "fused": ours}
        if case.family == "lstm":
            modules.update(nn_cell_loop=CellLoop(nn.LSTMCell, ref),
                           fused_cell_loop=CellLoop(fusedlstm.LSTMCell, ref))
        x = torch.randn(s.T, s.B, s.I, device=device, dtype=dtype)

        def call_module(name, m):
            if name in ("nn_cell_loop", "fused_cell_loop"):
                return lambda: m(x)
            native = name == "nn_native"

            def run():
                with native_flags(device) if native else nullcontext():
                    return m(x)[0]

            return run

        call = {name: call_module(name, modules[name]) for name in impls if name in modules}

    def runner(name):
        if name in ROOFLINE_IMPLS:
            return GemmRoofline(s, case.mode, device, dtype, onednn=name == "onednn_roofline")
        module, forward = modules[name], call[name]
        if case.mode == "inference":
            def run():
                with torch.no_grad():
                    return forward()
        else:
            def run():
                module.zero_grad(set_to_none=True)
                out = forward()
                out.sum().backward()
                return out
        return run

    return {name: runner(name) for name in impls}


def parity(case: Case) -> dict:
    """Max |difference| of the output and of one weight gradient, fused vs nn, for this case."""
    s, device, dtype = case.shape, case.device, case.dtype
    nn_layer, fused_layer, nn_cell, fused_cell = MODULES[case.family]
    torch.manual_seed(0)
    if s.name.startswith("cell-"):
        ref = nn_cell(s.I, s.H, device=device, dtype=dtype)
        ours = fused_cell(s.I, s.H, device=device, dtype=dtype)
        x = torch.randn(s.B, s.I, device=device, dtype=dtype)
        weight = "weight_ih"  # (with no hx, h_{t-1} = 0 and weight_hh's gradient is zero)
    else:
        ref = nn_layer(s.I, s.H, s.layers, bidirectional=s.bidirectional, device=device,
                       dtype=dtype)
        ours = fused_layer(s.I, s.H, s.layers, bidirectional=s.bidirectional, device=device,
                           dtype=dtype)
        x = torch.randn(s.T, s.B, s.I, device=device, dtype=dtype)
        weight = "weight_hh_l0"
    ours.load_state_dict(ref.state_dict())
    outs = []
    for module in (ref, ours):
        out = module(x)
        out = out if isinstance(out, torch.Tensor) else out[0]
        out.float().pow(2).mean().backward()
        outs.append((out.detach().float(), getattr(module, weight).grad.float()))
    return {"max_abs_diff_output": (outs[0][0] - outs[1][0]).abs().max().item(),
            "max_abs_diff_grad_" + weight: (outs[0][1] - outs[1][1]).abs().max().item()}


def environment(device: str) -> dict:
    from fusedlstm import _build_info

    info = {
        "torch": torch.__version__,
        "fusedlstm": fusedlstm.__version__,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cuda_kernels": _build_info.CUDA_COMPILED,
        "device": device,
        "onednn_bf16": onednn_has_bf16(),
    }
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        info["cpu"] = names[0] if names else info["cpu"]
    except OSError:
        pass
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
        info["cudnn"] = torch.backends.cudnn.version()
    return info

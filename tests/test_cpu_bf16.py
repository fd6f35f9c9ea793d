"""The CPU's bfloat16 paths against nn.LSTM in float64: the fused steps built on the CPU's
bfloat16 dot product (vdpbf16ps: pairs of k, float32 sums; forward with input fusion, backward),
the GEMM-per-step path, and layers computed in float32 inside (on CPUs without the dot product,
csrc/cpu/layer_cpu.h).

The float64 reference gets the module's bfloat16 weights and the bfloat16 input exactly, so the
error measured is our arithmetic's, not the rounding of the weights. The shapes stress the
kernels: odd I, H and P (the last k or u of a pair alone), H around the 16-lane block, B around
the 4-row tile, T=1, packed sequences, both directions, projections, no bias, 1 and 2 threads.
The suite runs again with the step strategy and the training route forced
(test_cpu_step_strategies.py), so every path runs on every shape.
"""

import contextlib
import re
from pathlib import Path

import pytest
import torch
from conftest import REDUCED_TOL, assert_close_scaled, threads
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import fusedlstm

# Inference: one rounding of h_t and c_t to bfloat16 per step (and of the h fed back); measured
# 0.1-0.5% of the largest output. Tighter than REDUCED_TOL (which covers training's roundings of
# gates and gradients), so that a dropped bias or a lost k shows.
INFERENCE_REL = 1e-2

# (T, B, I, H, num_layers, bidirectional, proj_size)
SHAPES = [
    (1, 1, 8, 16, 1, False, 0),
    (7, 1, 5, 37, 1, True, 0),
    (6, 3, 9, 16, 2, False, 0),
    (5, 5, 3, 130, 1, False, 0),
    (4, 8, 12, 21, 2, True, 0),
    (6, 6, 7, 20, 1, False, 5),
    (9, 33, 64, 48, 1, False, 0),
]


def shape_id(s):
    return "T{}-B{}-I{}-H{}-L{}-{}-P{}".format(*s[:5], "bi" if s[5] else "uni", s[6])


def bf16_pair(input_size, hidden, layers, bidirectional, proj_size, bias=True):
    """fusedlstm.LSTM in bfloat16 and nn.LSTM in float64 with exactly the same weights."""
    ours = fusedlstm.LSTM(input_size, hidden, layers, bias=bias, bidirectional=bidirectional,
                          proj_size=proj_size).to(torch.bfloat16)
    ref = nn.LSTM(input_size, hidden, layers, bias=bias, bidirectional=bidirectional,
                  proj_size=proj_size, dtype=torch.float64)
    ref.load_state_dict({k: v.double() for k, v in ours.state_dict().items()})
    return ours, ref


def run(module, x, hx, lengths=None, train=False):
    inp = x if lengths is None else pack_padded_sequence(x, lengths, enforce_sorted=False)
    with contextlib.nullcontext() if train else torch.no_grad():
        out, (h_n, c_n) = module(inp, hx)
    if isinstance(out, nn.utils.rnn.PackedSequence):
        out = out.data
    return [out, h_n, c_n]


@pytest.mark.parametrize("num_threads", [1, 2])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
def test_bf16_inference_matches_float64(shape, bias, num_threads):
    steps, batch, input_size, hidden, layers, bidirectional, proj = shape
    ours, ref = bf16_pair(input_size, hidden, layers, bidirectional, proj, bias)
    directions = 2 if bidirectional else 1
    x = torch.randn(steps, batch, input_size).to(torch.bfloat16)
    hx = (torch.randn(layers * directions, batch, proj or hidden).to(torch.bfloat16),
          torch.randn(layers * directions, batch, hidden).to(torch.bfloat16))
    with threads(num_threads):
        got = run(ours, x, hx)
    expected = run(ref, x.double(), tuple(t.double() for t in hx))
    for i, (a, b) in enumerate(zip(got, expected, strict=True)):
        assert a.dtype == torch.bfloat16 and a.shape == b.shape
        assert_close_scaled(a, b, INFERENCE_REL, f"{shape_id(shape)} output {i}")


# Both routes of a bfloat16 layer (the switch cpu.bf16_compute; auto takes float32 on CPUs without
# the bfloat16 dot product): computed in bfloat16, or in float32 and rounded once.
@pytest.mark.parametrize("route", ["float", "bf16"])
@pytest.mark.parametrize("shape", [SHAPES[2], SHAPES[5], SHAPES[6]], ids=shape_id)
def test_bf16_inference_routes_match_float64(shape, route):
    steps, batch, input_size, hidden, layers, bidirectional, proj = shape
    ours, ref = bf16_pair(input_size, hidden, layers, bidirectional, proj)
    x = torch.randn(steps, batch, input_size).to(torch.bfloat16)
    with fusedlstm.backends.flags(cpu_bf16_compute=route):
        got = run(ours, x, None)
    expected = run(ref, x.double(), None)
    for i, (a, b) in enumerate(zip(got, expected, strict=True)):
        assert a.dtype == torch.bfloat16 and a.shape == b.shape
        assert_close_scaled(a, b, INFERENCE_REL, f"{route} route, output {i}")


@pytest.mark.parametrize("bidirectional", [False, True])
def test_bf16_inference_packed(bidirectional):
    ours, ref = bf16_pair(11, 24, 2, bidirectional, 0)
    x = torch.randn(8, 6, 11).to(torch.bfloat16)
    lengths = torch.tensor([8, 3, 5, 1, 8, 6])
    got = run(ours, x, None, lengths)
    expected = run(ref, x.double(), None, lengths)
    for i, (a, b) in enumerate(zip(got, expected, strict=True)):
        assert_close_scaled(a, b, INFERENCE_REL, f"packed output {i}")


@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("shape", SHAPES[1:], ids=shape_id)
def test_bf16_training_matches_float64(shape, packed):
    steps, batch, input_size, hidden, layers, bidirectional, proj = shape
    ours, ref = bf16_pair(input_size, hidden, layers, bidirectional, proj)
    x = torch.randn(steps, batch, input_size).to(torch.bfloat16)
    lengths = torch.randint(1, steps + 1, (batch,)) if packed else None
    results = []
    for module, dtype in ((ours, torch.bfloat16), (ref, torch.float64)):
        xi = x.to(dtype).clone().requires_grad_()
        outputs = run(module, xi, None, lengths, train=True)
        loss = sum((o.double() * torch.linspace(-1, 1, o.numel()).view(o.shape)).sum()
                   for o in outputs)
        loss.backward()
        results.append(outputs + [xi.grad] + [p.grad for p in module.parameters()])
    for i, (a, b) in enumerate(zip(*results, strict=True)):
        assert a.dtype == torch.bfloat16 and a.shape == b.shape
        assert_close_scaled(a, b, REDUCED_TOL[torch.bfloat16], f"{shape_id(shape)} tensor {i}")


def test_bf16_fused_step_used_where_the_cpu_has_the_dot_product():
    """The inference tests above run the vdpbf16ps kernel wherever it exists: on x86-64 CPUs
    reporting avx512_bf16 with the AVX512 kernels selected (as on the machine that runs CI)."""
    cpuinfo = Path("/proc/cpuinfo")
    flags = set(re.findall(r"\w+", cpuinfo.read_text())) if cpuinfo.exists() else set()
    expected = "avx512_bf16" in flags and torch.backends.cpu.get_cpu_capability() == "AVX512"
    assert fusedlstm.cpu_kernels.bf16_fused_step() == expected

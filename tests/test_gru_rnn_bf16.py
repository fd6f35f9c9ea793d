"""The GRU's and Elman RNN's bfloat16 layers on the CPU against nn.GRU / nn.RNN in float64: the
fused forward step on the CPU's bfloat16 dot product (vdpbf16ps on pairs of k, float32 sums and
pre-activations; always with input fusion) where the CPU has it, and the GEMM per step, each
strategy forced (the switch cpu.step) and the automatic choice.

The float64 reference gets the module's bfloat16 weights, input and h0 exactly, so the error
measured is our arithmetic's. The shapes stress the kernel: odd I and H (the last k of a pair
alone), H around the GRU's 16-unit blocks and the RNN's 64-unit blocks (later vectors of a block
without units), B around the 4-row tiles and the threads' row groups, T=1, packed sequences in
both directions, stacked and bidirectional layers, no bias, 1 and 2 threads, training.
"""

import pytest
import torch
from conftest import REDUCED_TOL, assert_close_scaled, threads
from state_pairs import LAYERS, loss_of
from torch.nn.utils.rnn import pack_padded_sequence

import fusedlstm

# Inference: one rounding of h_t to bfloat16 per step (the h fed back included); tighter than
# REDUCED_TOL, so that a dropped bias or a lost k shows (test_cpu_bf16.py has the same bound).
INFERENCE_REL = 1e-2
KINDS = list(LAYERS)
STRATEGIES = {"fused": {"cpu_step": "fused"}, "gemm": {"cpu_step": "gemm"}, "auto": {}}

# (T, B, I, H, num_layers, bidirectional)
SHAPES = [
    (1, 1, 8, 16, 1, False),
    (7, 1, 5, 37, 1, True),
    (6, 3, 9, 70, 2, False),
    (5, 5, 3, 130, 1, False),
    (4, 13, 12, 21, 2, True),
    (9, 33, 64, 48, 1, False),
]


def shape_id(s):
    return "T{}-B{}-I{}-H{}-L{}-{}".format(*s[:5], "bi" if s[5] else "uni")


def bf16_pair(kind, input_size, hidden, **kwargs):
    """The fusedlstm module in bfloat16 and the nn one in float64 with exactly its weights."""
    ref_class, our_class, extra = LAYERS[kind]
    ours = our_class(input_size, hidden, **extra, **kwargs).to(torch.bfloat16)
    ref = ref_class(input_size, hidden, **extra, **kwargs, dtype=torch.float64)
    ref.load_state_dict({k: v.double() for k, v in ours.state_dict().items()})
    return ours, ref


def forward(module, x, hx, lengths=None):
    inp = x if lengths is None else pack_padded_sequence(x, lengths, enforce_sorted=False)
    out, h_n = module(inp, hx)
    return [out.data if lengths is not None else out, h_n]


def assert_matches(got, expected, rel, what):
    for i, (a, b) in enumerate(zip(got, expected, strict=True)):
        assert a.dtype == torch.bfloat16 and a.shape == b.shape, what
        assert_close_scaled(a, b, rel, f"{what} tensor {i}")


@pytest.mark.parametrize("num_threads", [1, 2])
@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
@pytest.mark.parametrize("kind", KINDS)
def test_inference_matches_float64(kind, shape, bias, strategy, num_threads):
    steps, batch, input_size, hidden, layers, bidirectional = shape
    ours, ref = bf16_pair(kind, input_size, hidden, num_layers=layers,
                          bidirectional=bidirectional, bias=bias)
    x = torch.randn(steps, batch, input_size).to(torch.bfloat16)
    hx = torch.randn(layers * (2 if bidirectional else 1), batch, hidden).to(torch.bfloat16)
    with torch.no_grad(), threads(num_threads), fusedlstm.backends.flags(**STRATEGIES[strategy]):
        got = forward(ours, x, hx)
        expected = forward(ref, x.double(), hx.double())
    assert_matches(got, expected, INFERENCE_REL, f"{kind} {shape_id(shape)} {strategy}")


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("kind", KINDS)
def test_packed_inference_matches_float64(kind, strategy):
    ours, ref = bf16_pair(kind, 11, 24, num_layers=2, bidirectional=True)
    x = torch.randn(8, 6, 11).to(torch.bfloat16)
    lengths = torch.tensor([8, 3, 5, 1, 8, 6])
    with torch.no_grad(), fusedlstm.backends.flags(**STRATEGIES[strategy]):
        got = forward(ours, x, None, lengths)
        expected = forward(ref, x.double(), None, lengths)
    assert_matches(got, expected, INFERENCE_REL, f"{kind} packed {strategy}")


@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("shape", SHAPES[1:], ids=shape_id)
@pytest.mark.parametrize("kind", ["gru", "rnn_tanh"])
def test_training_matches_float64(kind, shape, strategy, packed):
    """The fused forward's float32 pre-activations and saved gates feed the backward (a GEMM per
    step). The ReLU RNN's bfloat16 gradients are a lottery at its kink (test_gru_rnn_parity.py):
    its forward is checked above, its training there."""
    steps, batch, input_size, hidden, layers, bidirectional = shape
    ours, ref = bf16_pair(kind, input_size, hidden, num_layers=layers,
                          bidirectional=bidirectional)
    x = torch.randn(steps, batch, input_size).to(torch.bfloat16)
    lengths = torch.randint(1, steps + 1, (batch,)) if packed else None
    results = []
    with fusedlstm.backends.flags(**STRATEGIES[strategy]):
        for module, dtype in ((ours, torch.bfloat16), (ref, torch.float64)):
            xi = x.to(dtype).clone().requires_grad_()
            out, h_n = forward(module, xi, None, lengths)
            loss_of(out.double(), h_n.double()).backward()
            results.append([out, h_n, xi.grad] + [p.grad for p in module.parameters()])
    assert_matches(*results, REDUCED_TOL[torch.bfloat16], f"{kind} {shape_id(shape)} {strategy}")


@pytest.mark.parametrize("kind", KINDS)
def test_fused_step_keeps_float32_sums_where_the_cpu_has_the_dot_product(kind):
    """Where the bfloat16 fused step runs, its sums and the cell's pre-activations stay float32,
    while the GEMM per step rounds each step's products to bfloat16: the forced strategies give
    different outputs, both near float64, the fused one nearer (mean error over many units; a
    single unit's error is dominated by the rounding of h_t, which both share)."""
    if not fusedlstm.cpu_kernels.bf16_fused_step():
        pytest.skip("this CPU has no bfloat16 dot product (avx512_bf16)")
    ours, ref = bf16_pair(kind, 96, 96)
    x = torch.randn(12, 16, 96).to(torch.bfloat16)
    expected = ref(x.double())[0]
    errors = {}
    with torch.no_grad():
        for strategy in ("fused", "gemm"):
            with fusedlstm.backends.flags(**STRATEGIES[strategy]):
                out = ours(x)[0]
            errors[strategy] = (out.double() - expected).abs().mean().item()
            assert_close_scaled(out, expected, INFERENCE_REL, strategy)
    assert errors["fused"] < errors["gemm"], errors

"""The CPU's fused GRU / Elman RNN step (float32: the recurrent GEMM in register tiles and the cell
in one pass, with input fusion the input projection too; in training the backward's recurrent
GEMM and the cell's backward in one pass too) against nn.GRU / nn.RNN in float64, each
strategy forced (the switches cpu.step and cpu.input_fusion) so every one runs on every shape:
H around the tiles' blocks (the GRU's one vector of units per gate; the RNN's four vectors, so
blocks whose later vectors hold no units), B around the row tiles and the threads' row groups,
T=1, packed sequences in both directions, stacked and bidirectional layers, 1 and 2 threads,
training and inference, and weights changed in place between calls."""

import pytest
import torch
from conftest import assert_all_close_scaled, threads
from state_pairs import LAYERS, loss_of, make_pair
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import fusedlstm

REL = 2e-5  # float32 against float64, relative to the largest reference magnitude
KINDS = list(LAYERS)
STRATEGIES = {
    "fused": {"cpu_step": "fused", "cpu_input_fusion": "on"},
    "fused-without-input-fusion": {"cpu_step": "fused", "cpu_input_fusion": "off"},
    "gemm": {"cpu_step": "gemm"},
}

# (T, B, I, H, num_layers, bidirectional)
SHAPES = [
    (1, 1, 8, 16, 1, False),
    (7, 1, 5, 37, 1, True),
    (6, 3, 9, 70, 2, False),
    (5, 5, 4, 130, 1, False),
    (4, 13, 12, 21, 2, True),
    (3, 4, 6, 7, 1, False),
    (3, 9, 300, 261, 1, False),  # k over several passes of the tiles (kFusedInnerChunk)
]


def shape_id(s):
    return "T{}-B{}-I{}-H{}-L{}-{}".format(*s[:5], "bi" if s[5] else "uni")


def pair(kind, input_size, hidden_size, **kwargs):
    ref, ours = make_pair(kind, input_size, hidden_size, torch.float64, **kwargs)
    return ref, ours.float()


def forward_backward(module, x, dtype, hx=None, lengths=None):
    x = x.to(dtype).clone().requires_grad_()
    hx = None if hx is None else hx.to(dtype).clone().requires_grad_()
    inp = x if lengths is None else pack_padded_sequence(x, lengths, enforce_sorted=False)
    out, h_n = module(inp, hx)
    loss_of(out, h_n).backward()
    grads = [x.grad] + ([] if hx is None else [hx.grad]) + [p.grad for p in module.parameters()]
    data = out.data if isinstance(out, nn.utils.rnn.PackedSequence) else out
    return [data, h_n] + grads


def assert_matches(ours, ref, what):
    assert_all_close_scaled(ours, ref, REL, what)


@pytest.mark.parametrize("num_threads", [1, 2])
@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
@pytest.mark.parametrize("kind", KINDS)
def test_training_matches_nn(kind, shape, strategy, num_threads):
    steps, batch, input_size, hidden, layers, bidirectional = shape
    ref, ours = pair(kind, input_size, hidden, num_layers=layers, bidirectional=bidirectional)
    x = torch.randn(steps, batch, input_size, dtype=torch.float64)
    hx = torch.randn(layers * (2 if bidirectional else 1), batch, hidden, dtype=torch.float64)
    with threads(num_threads), fusedlstm.backends.flags(**STRATEGIES[strategy]):
        got = forward_backward(ours, x, torch.float32, hx)
        again = forward_backward(ours.zero_grad() or ours, x, torch.float32, hx)
    assert_matches(got, forward_backward(ref, x, torch.float64, hx), f"{strategy} vs nn")
    for a, b in zip(got, again, strict=True):
        assert torch.equal(a, b), "two runs with the same thread count differ"


# Inference takes the fused step with input fusion for batches up to 256 rows by default: B=100
# takes that path without a switch.
@pytest.mark.parametrize("num_threads", [1, 2])
@pytest.mark.parametrize("strategy", [*STRATEGIES, "auto"])
@pytest.mark.parametrize("shape", SHAPES + [(5, 100, 9, 21, 2, True)], ids=shape_id)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("kind", KINDS)
def test_inference_matches_nn(kind, bias, shape, strategy, num_threads):
    steps, batch, input_size, hidden, layers, bidirectional = shape
    ref, ours = pair(kind, input_size, hidden, num_layers=layers, bidirectional=bidirectional,
                     bias=bias)
    x = torch.randn(steps, batch, input_size, dtype=torch.float64)
    hx = torch.randn(layers * (2 if bidirectional else 1), batch, hidden, dtype=torch.float64)
    switches = STRATEGIES.get(strategy, {})
    with torch.no_grad(), threads(num_threads), fusedlstm.backends.flags(**switches):
        out, h_n = ours(x.float(), hx.float())
        ref_out, ref_h = ref(x, hx)
    assert_matches([out, h_n], [ref_out, ref_h], f"{strategy} inference vs nn")


# The second case gives two slices on two threads, which split blocks' rows between them while
# rows leave the batch (forward direction) and join it (reverse direction), unsorted.
@pytest.mark.parametrize("num_threads", [1, 2])
@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("hidden,lengths", [(37, [3, 9, 1, 6, 9, 4]),
                                            (45, [3, 9, 1, 6, 9, 4, 8, 2, 9, 5])])
@pytest.mark.parametrize("kind", KINDS)
def test_packed_matches_nn(kind, hidden, lengths, strategy, num_threads):
    ref, ours = pair(kind, 6, hidden, num_layers=2, bidirectional=True)
    lengths = torch.tensor(lengths)
    x = torch.randn(9, len(lengths), 6, dtype=torch.float64)
    with threads(num_threads), fusedlstm.backends.flags(**STRATEGIES[strategy]):
        got = forward_backward(ours, x, torch.float32, lengths=lengths)
        with torch.no_grad():
            inference = ours(pack_padded_sequence(x.float(), lengths, enforce_sorted=False))
    expected = forward_backward(ref, x, torch.float64, lengths=lengths)
    assert_matches(got, expected, f"{strategy} packed")
    assert_matches([inference[0].data, inference[1]], expected[:2], f"{strategy} packed inference")


# The backward in chunks of 1 and 2 steps (the switch backward_chunk_steps): the fused backward
# carries dL/dh out of each chunk with a step of no rows of its own; packed rows leave and join
# the batch at chunk boundaries.
@pytest.mark.parametrize("num_threads", [1, 2])
@pytest.mark.parametrize("chunk_steps", [1, 2])
@pytest.mark.parametrize("lengths", [None, [3, 9, 1, 6, 9, 4, 8, 2, 9, 5]],
                         ids=["padded", "packed"])
@pytest.mark.parametrize("kind", KINDS)
def test_backward_chunks_match_nn(kind, lengths, chunk_steps, num_threads):
    ref, ours = pair(kind, 6, 37, num_layers=2, bidirectional=True)
    x = torch.randn(9, 10, 6, dtype=torch.float64)
    hx = None if lengths else torch.randn(4, 10, 37, dtype=torch.float64)
    lengths = None if lengths is None else torch.tensor(lengths)
    with threads(num_threads), fusedlstm.backends.flags(cpu_step="fused",
                                                        backward_chunk_steps=chunk_steps):
        got = forward_backward(ours, x, torch.float32, hx, lengths)
    expected = forward_backward(ref, x, torch.float64, hx, lengths)
    assert_matches(got, expected, f"fused backward in chunks of {chunk_steps} steps")


@pytest.mark.parametrize("kind", KINDS)
def test_weights_changed_in_place_between_calls(kind):
    ref, ours = pair(kind, 5, 20)
    x = torch.randn(6, 3, 5, dtype=torch.float64)
    with fusedlstm.backends.flags(cpu_step="fused"):
        forward_backward(ours, x, torch.float32)
        with torch.no_grad():
            for mine, theirs in zip(ours.parameters(), ref.parameters(), strict=True):
                theirs.mul_(1.5)
                mine.copy_(theirs)
        ours.zero_grad()
        got = forward_backward(ours, x, torch.float32)
    assert_matches(got, forward_backward(ref, x, torch.float64), "after an in-place update")

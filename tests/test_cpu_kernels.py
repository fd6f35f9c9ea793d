"""The CPU's fused recurrent kernels (forward and backward, float32) on the shapes that stress them:
H around the 16-lane block (full blocks, a ragged last block, H below one block), B around the
4-row register tile (1, 3, 5, 8) and the forward's 6-row one on AVX-512 (6; 7 = 4 + 3; 14 = 6 +
4 + 4), I and H past the k per pass of the tiles (300, 261), T=1, packed sequences in both
directions, bidirectional and stacked layers, 1 and 2 threads (1 and 2 slices of blocks, a
block's rows split between slices), and weights changed in place between calls (packing must see
the new values); training and inference (input fusion) alike. float32 results against nn.LSTM in
float64.
"""


import pytest
import torch
from conftest import assert_all_close_scaled, threads
from lstm_pairs import loss_of, make_pair
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

REL = 2e-5  # float32 against float64, relative to the largest reference magnitude

# (T, B, I, H, num_layers, bidirectional)
SHAPES = [
    (1, 1, 8, 16, 1, False),
    (7, 1, 5, 37, 1, True),
    (6, 3, 9, 16, 2, False),
    (5, 5, 4, 130, 1, False),
    (4, 8, 12, 21, 2, True),
    (3, 4, 6, 7, 1, False),
    (3, 6, 10, 33, 1, False),
    (2, 7, 5, 16, 1, False),
    (4, 14, 7, 18, 1, True),
    # k over several passes of the tiles (kFusedInnerChunk): the input part, then the recurrent
    # part with a ragged last block
    (3, 5, 300, 20, 1, False),
    (2, 6, 4, 261, 1, False),
]


def pair(input_size, hidden_size, layers, bidirectional):
    ref, ours = make_pair(input_size, hidden_size, torch.float64, num_layers=layers,
                          bidirectional=bidirectional)
    return ref, ours.float()


def forward_backward(module, x, dtype, hx=None, lengths=None):
    x = x.to(dtype).clone().requires_grad_()
    hx = None if hx is None else tuple(t.to(dtype).clone().requires_grad_() for t in hx)
    inp = x if lengths is None else pack_padded_sequence(x, lengths, enforce_sorted=False)
    out, (h_n, c_n) = module(inp, hx)
    loss_of(out, h_n, c_n).backward()
    grads = [x.grad] + ([] if hx is None else [h.grad for h in hx])
    grads += [p.grad for p in module.parameters()]
    data = out.data if isinstance(out, nn.utils.rnn.PackedSequence) else out
    return [data, h_n, c_n] + grads


def assert_matches(ours, ref, what):
    assert_all_close_scaled(ours, ref, REL, what)


@pytest.mark.parametrize("num_threads", [1, 2])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "T{}-B{}-I{}-H{}-L{}-{}".format(
    *s[:5], "bi" if s[5] else "uni"))
def test_fused_kernels_match_nn_lstm(shape, num_threads):
    steps, batch, input_size, hidden, layers, bidirectional = shape
    ref, ours = pair(input_size, hidden, layers, bidirectional)
    x = torch.randn(steps, batch, input_size, dtype=torch.float64)
    directions = 2 if bidirectional else 1
    hx = (torch.randn(layers * directions, batch, hidden, dtype=torch.float64),
          torch.randn(layers * directions, batch, hidden, dtype=torch.float64))
    with threads(num_threads):
        got = forward_backward(ours, x, torch.float32, hx)
        again = forward_backward(ours.zero_grad() or ours, x, torch.float32, hx)
    assert_matches(got, forward_backward(ref, x, torch.float64, hx), "fused vs nn.LSTM")
    for a, b in zip(got, again, strict=True):
        assert torch.equal(a, b), "two runs with the same thread count differ"


# Inference runs the fused step with input fusion (bias + x_t W_ih^T in the step's own tiles),
# and in inference the fused step is chosen for batches up to 256 rows: B=100 takes that path.
@pytest.mark.parametrize("num_threads", [1, 2])
@pytest.mark.parametrize("shape", SHAPES + [(5, 100, 9, 21, 2, True)],
                         ids=lambda s: "T{}-B{}-I{}-H{}-L{}-{}".format(
                             *s[:5], "bi" if s[5] else "uni"))
@pytest.mark.parametrize("bias", [True, False])
def test_fused_inference_matches_nn_lstm(shape, num_threads, bias):
    steps, batch, input_size, hidden, layers, bidirectional = shape
    ref, ours = make_pair(input_size, hidden, torch.float64, num_layers=layers,
                          bidirectional=bidirectional, bias=bias)
    ours = ours.float()
    x = torch.randn(steps, batch, input_size, dtype=torch.float64)
    directions = 2 if bidirectional else 1
    hx = tuple(torch.randn(layers * directions, batch, hidden, dtype=torch.float64)
               for _ in range(2))
    with torch.no_grad(), threads(num_threads):
        out, (h_n, c_n) = ours(x.float(), tuple(t.float() for t in hx))
        ref_out, (ref_h, ref_c) = ref(x, hx)
    assert_matches([out, h_n, c_n], [ref_out, ref_h, ref_c], "inference vs nn.LSTM")


# Weights past the inference rule's 20 MiB (W_ih + W_hh: 38.7 MiB at H = 1100): on AMD CPUs and
# with the AVX2 kernels the fused step still runs, without input fusion at 8 rows and with it at
# 32; elsewhere a GEMM per step. Either way, nn.LSTM's numbers.
@pytest.mark.parametrize("batch", [8, 32])
def test_inference_with_streamed_weights_matches_nn_lstm(batch):
    ref, ours = make_pair(1100, 1100, torch.float64)
    ours = ours.float()
    x = torch.randn(3, batch, 1100, dtype=torch.float64)
    with torch.no_grad():
        out, (h_n, c_n) = ours(x.float())
        ref_out, (ref_h, ref_c) = ref(x)
    assert_matches([out, h_n, c_n], [ref_out, ref_h, ref_c], "inference vs nn.LSTM")


# The second case is large enough for two slices on two threads, which then split a block's rows
# between them (3 blocks x 3 row groups) while rows leave and join the batch.
@pytest.mark.parametrize("num_threads", [1, 2])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("hidden,lengths", [(37, [3, 9, 1, 6, 9, 4]),
                                            (45, [3, 9, 1, 6, 9, 4, 8, 2, 9, 5])])
def test_fused_kernels_packed(bidirectional, num_threads, hidden, lengths):
    # Rows leave the batch (forward direction) and join it (reverse direction), unsorted.
    ref, ours = pair(6, hidden, 2, bidirectional)
    lengths = torch.tensor(lengths)
    x = torch.randn(9, len(lengths), 6, dtype=torch.float64)
    with threads(num_threads):
        got = forward_backward(ours, x, torch.float32, lengths=lengths)
        with torch.no_grad():
            inference = ours(pack_padded_sequence(x.float(), lengths, enforce_sorted=False))
    expected = forward_backward(ref, x, torch.float64, lengths=lengths)
    assert_matches(got, expected, "packed")
    assert_matches([inference[0].data, *inference[1]], expected[:3], "packed inference")


def test_weights_changed_in_place_between_calls():
    ref, ours = pair(5, 20, 1, False)
    x = torch.randn(6, 3, 5, dtype=torch.float64)
    forward_backward(ours, x, torch.float32)
    with torch.no_grad():
        for mine, theirs in zip(ours.parameters(), ref.parameters(), strict=True):
            noise = torch.randn_like(theirs) * 0.5
            theirs.add_(noise)
            mine.add_(noise.float())
    ours.zero_grad()
    assert_matches(forward_backward(ours, x, torch.float32),
                   forward_backward(ref, x, torch.float64), "after an in-place update")

"""PackedSequence input: sorted and unsorted lengths, both directions, against nn.LSTM."""

import pytest
import torch
from conftest import tolerance
from lstm_pairs import hidden_state, loss_of, make_pair
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


def run_packed(module, padded, lengths, enforce_sorted, hx):
    padded = padded.clone().requires_grad_()
    hx = None if hx is None else tuple(t.clone().requires_grad_() for t in hx)
    packed = pack_padded_sequence(padded, lengths, batch_first=module.batch_first,
                                  enforce_sorted=enforce_sorted)
    output, (h_n, c_n) = module(packed, hx)
    unpacked, out_lengths = pad_packed_sequence(output, batch_first=module.batch_first)
    loss_of(output, h_n, c_n).backward()
    grads = [padded.grad] + ([] if hx is None else [hx[0].grad, hx[1].grad])
    grads += [p.grad for p in module.parameters()]
    return [output.data, output.batch_sizes, unpacked, out_lengths, h_n, c_n], grads


@pytest.mark.parametrize("lengths,enforce_sorted", [
    ([5, 3, 3, 1], True),
    ([2, 5, 1, 4], False),
    ([4, 4, 4], True),
    ([1], True),
])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("proj_size", [0, 2])
@pytest.mark.parametrize("with_hx", [False, True])
@pytest.mark.parametrize("batch_first", [False, True])
def test_packed_matches_nn_lstm(lengths, enforce_sorted, bidirectional, proj_size, with_hx,
                                batch_first):
    ref, ours = make_pair(3, 4, num_layers=2, bidirectional=bidirectional, proj_size=proj_size,
                          batch_first=batch_first)
    batch, steps = len(lengths), max(lengths)
    padded = torch.randn((batch, steps, 3) if batch_first else (steps, batch, 3),
                         dtype=torch.float64)
    hx = hidden_state(ref, batch, torch.float64) if with_hx else None
    ref_out, ref_grads = run_packed(ref, padded, lengths, enforce_sorted, hx)
    our_out, our_grads = run_packed(ours, padded, lengths, enforce_sorted, hx)
    for a, b in zip(our_out + our_grads, ref_out + ref_grads, strict=True):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, **tolerance("lstm", torch.float64))


def test_packed_output_keeps_indices():
    ref, ours = make_pair(3, 4)
    padded = torch.randn(4, 3, 3, dtype=torch.float64)
    packed = pack_padded_sequence(padded, [2, 4, 1], enforce_sorted=False)
    ours_out, _ = ours(packed)
    ref_out, _ = ref(packed)
    assert torch.equal(ours_out.sorted_indices, ref_out.sorted_indices)
    assert torch.equal(ours_out.unsorted_indices, ref_out.unsorted_indices)

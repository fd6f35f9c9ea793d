"""The GRU's and Elman RNN's persistent CUDA kernels (a layer direction's steps per cooperative
launch; the backward's a chunk's) through the SIMT emulation, against nn.GRU / nn.RNN: forward
(training and inference) and backward over odd H, B=1, several blocks, stacked and
bidirectional layers, no bias, packed input, several backward chunks and every dtype; the
per-step path and the refused launch's fallback give the same."""

import contextlib
import copy

import pytest
import torch
from conftest import REDUCED_TOL, assert_close_scaled, tolerance
from state_pairs import LAYERS, loss_of, make_pair, run
from test_persistent import inputs
from test_persistent import run_emulated as run_emulated_with
from torch.nn.utils.rnn import pack_padded_sequence

from fusedlstm import backends, simt

pytestmark = pytest.mark.simt

KINDS = list(LAYERS)
CONFIGS = [
    ({"input_size": 5, "hidden_size": 7}, 4, 3),
    ({"input_size": 3, "hidden_size": 33}, 5, 4),  # 8 emulated multiprocessors: 5 units a block
    ({"input_size": 6, "hidden_size": 16}, 6, 1),
    ({"input_size": 4, "hidden_size": 9, "num_layers": 2, "bidirectional": True}, 4, 3),
    ({"input_size": 4, "hidden_size": 8, "bias": False}, 3, 2),
    ({"input_size": 4, "hidden_size": 8, "batch_first": True}, 3, 5),
]


@contextlib.contextmanager
def emulated(step):
    """The CUDA back-end's kernels emulated, with the switch cuda.step = step."""
    with simt.emulated_cuda_kernels(), backends.flags(cuda_step=step):
        yield


def run_emulated(module, x, hx, step):
    return run_emulated_with(module, x, hx, step, runner=run)


def directions(module):
    return module.num_layers * (2 if module.bidirectional else 1)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("config,steps,batch", CONFIGS, ids=str)
def test_persistent_forward_matches_nn(kind, config, steps, batch):
    ref, ours = make_pair(kind, **config)
    x = inputs(config, steps, batch)
    h0 = torch.randn(directions(ref), batch, config["hidden_size"], dtype=torch.float64)
    expected_outputs, expected_grads = run(ref, x, h0)
    outputs, grads, launches = run_emulated(ours, x, h0, "persistent")
    assert launches == 2 * directions(ours)  # a forward and a backward launch per direction
    for a, e in zip(outputs + grads, expected_outputs + expected_grads, strict=True):
        torch.testing.assert_close(a, e, **tolerance("lstm", torch.float64))
    with torch.no_grad(), emulated("persistent"):
        before = simt.cooperative_launches()
        inference = ours(x, h0)
        assert simt.cooperative_launches() - before == directions(ours)
    for a, e in zip(inference, expected_outputs, strict=True):
        torch.testing.assert_close(a, e, **tolerance("lstm", torch.float64))


@pytest.mark.parametrize("kind", KINDS)
def test_persistent_packed_both_directions_matches_nn(kind):
    """Rows end at different steps: forward they drop out, in reverse they start from h0."""
    ref, ours = make_pair(kind, 4, 11, bidirectional=True)
    x = torch.randn(5, 4, 4, dtype=torch.float64)
    h0 = torch.randn(2, 4, 11, dtype=torch.float64)
    lengths = [5, 2, 4, 1]

    def packed_run(module):
        xs, hx = x.clone().requires_grad_(), h0.clone().requires_grad_()
        output, h_n = module(pack_padded_sequence(xs, lengths, enforce_sorted=False), hx)
        loss_of(output, h_n).backward()
        return [output.data, h_n, xs.grad, hx.grad, *(p.grad for p in module.parameters())]

    expected = packed_run(ref)
    with emulated("persistent"):
        before = simt.cooperative_launches()
        actual = packed_run(ours)
        assert simt.cooperative_launches() - before == 4
    for a, e in zip(actual, expected, strict=True):
        torch.testing.assert_close(a, e, **tolerance("lstm", torch.float64))


@pytest.mark.parametrize("chunk,chunks", [(1, 5), (2, 3)])
@pytest.mark.parametrize("kind", KINDS)
def test_backward_chunks_match_nn(kind, chunk, chunks):
    """The backward in chunks of `chunk` steps (the switch backward_chunk_steps), one launch per
    chunk, each carrying dL/dh into the next; packed input in reverse too (rows starting late)."""
    ref, ours = make_pair(kind, 3, 10, bidirectional=True)
    x = torch.randn(5, 3, 3, dtype=torch.float64)
    h0 = torch.randn(2, 3, 10, dtype=torch.float64)
    lengths = [5, 3, 2]

    def packed_run(module):
        xs, hx = x.clone().requires_grad_(), h0.clone().requires_grad_()
        output, h_n = module(pack_padded_sequence(xs, lengths), hx)
        loss_of(output, h_n).backward()
        return [output.data, h_n, xs.grad, hx.grad, *(p.grad for p in module.parameters())]

    expected = packed_run(ref)
    with emulated("persistent"), backends.flags(backward_chunk_steps=chunk):
        before = simt.cooperative_launches()
        actual = packed_run(ours)
        assert simt.cooperative_launches() - before == 2 * (1 + chunks)
    for a, e in zip(actual, expected, strict=True):
        torch.testing.assert_close(a, e, **tolerance("lstm", torch.float64))


@pytest.mark.parametrize("step", ["per_step", "persistent_refused"])
@pytest.mark.parametrize("kind", KINDS)
def test_per_step_and_refused_fallback_match_nn(kind, step):
    """per_step: no persistent kernel; persistent_refused: every cooperative launch is refused,
    so the same steps run one at a time (a GEMM and the pointwise kernel each)."""
    ref, ours = make_pair(kind, 5, 13, num_layers=2)
    x = torch.randn(4, 3, 5, dtype=torch.float64)
    h0 = torch.randn(2, 3, 13, dtype=torch.float64)
    expected_outputs, expected_grads = run(ref, x, h0)
    outputs, grads, launches = run_emulated(ours, x, h0, step)
    assert launches == 0
    for a, e in zip(outputs + grads, expected_outputs + expected_grads, strict=True):
        torch.testing.assert_close(a, e, **tolerance("lstm", torch.float64))


@pytest.mark.parametrize("hidden", [40, 90], ids=["H40", "H90"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("kind", KINDS)
def test_persistent_dtypes_against_float64_nn(kind, dtype, hidden):
    """float16 / bfloat16 take the tensor-core kernels (emulated wmma; 18 rows: two row tiles; at
    H=90 the GRU's 270 gate rows are two of the backward's column chunks), float32 the FMA ones.
    Within the suite's reduced-precision tolerance of float64 nn, or (where nn itself is further
    off in that dtype: a ReLU RNN's gradients, whose kinks the rounding moves) 1.5x nn's error."""
    ref, ours = make_pair(kind, 6, hidden)
    ref_low = copy.deepcopy(ref).to(dtype)
    ours = ours.to(dtype)
    x = torch.randn(5, 18, 6, dtype=torch.float64)
    expected_outputs, expected_grads = run(ref, x, None)
    low_outputs, low_grads = run(ref_low, x.to(dtype), None)
    tensor_core_before = simt.tensor_core_launches()
    with backends.flags(backward_chunk_steps=5):  # one backward chunk
        outputs, grads, launches = run_emulated(ours, x.to(dtype), None, "persistent")
    assert launches == 2
    half = dtype in (torch.bfloat16, torch.float16)
    assert simt.tensor_core_launches() - tensor_core_before == (2 if half else 0)
    for index, (a, low, e) in enumerate(zip(outputs + grads, low_outputs + low_grads,
                                            expected_outputs + expected_grads, strict=True)):
        assert a.dtype == dtype
        nn_error = ((low.double() - e).abs().max() / e.abs().max()).item()
        rel = max(REDUCED_TOL.get(dtype, 1e-4), 1.5 * nn_error)
        assert_close_scaled(a, e, rel, f"{kind} {dtype} output/grad {index}")


def test_layer_too_large_for_the_device_takes_the_per_step_path():
    """The GRU's W_hh slices exceed the emulated device's shared memory (227 KiB a block): neither
    kernel is launched."""
    ref, ours = make_pair("gru", 4, 600)
    x = torch.randn(2, 1, 4, dtype=torch.float64)
    expected_outputs, expected_grads = run(ref, x, None)
    outputs, grads, launches = run_emulated(ours, x, None, "persistent")
    assert launches == 0
    for a, e in zip(outputs + grads, expected_outputs + expected_grads, strict=True):
        torch.testing.assert_close(a, e, **tolerance("lstm", torch.float64))

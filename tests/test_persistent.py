"""The persistent CUDA kernels (a chunk of steps per cooperative launch) through the SIMT
emulation, against nn.LSTM: forward and backward over odd H, B=1, packed, reverse, projection,
stacked layers and every dtype; the per-step path and the refused-launch fallback give the same."""

import pytest
import torch
from conftest import REDUCED_TOL, assert_close_scaled, tolerance
from lstm_pairs import loss_of, make_pair, run
from torch.nn.utils.rnn import pack_padded_sequence

import fusedlstm
from fusedlstm import backends, simt

pytestmark = pytest.mark.simt

CONFIGS = [
    ({"input_size": 5, "hidden_size": 7}, 4, 3),
    ({"input_size": 3, "hidden_size": 33}, 5, 4),
    ({"input_size": 6, "hidden_size": 16}, 6, 1),
    ({"input_size": 4, "hidden_size": 9, "num_layers": 2, "bidirectional": True}, 4, 3),
    ({"input_size": 4, "hidden_size": 10, "proj_size": 3}, 3, 2),
    ({"input_size": 4, "hidden_size": 8, "batch_first": True}, 3, 5),
]


def run_emulated(module, x, hx, step, runner=run):
    """Forward + backward (runner: lstm_pairs' run, or state_pairs' for the GRU / RNN) on the
    emulated CUDA back-end with cuda.step = step: outputs, grads, cooperative launches."""
    with simt.emulated_cuda_kernels(), backends.flags(cuda_step=step):
        before = simt.cooperative_launches()
        outputs, grads = runner(module, x, hx)
        return outputs, grads, simt.cooperative_launches() - before


def inputs(config, steps, batch, dtype=torch.float64):
    shape = (batch, steps) if config.get("batch_first") else (steps, batch)
    return torch.randn(*shape, config["input_size"], dtype=dtype)


@pytest.mark.parametrize("config,steps,batch", CONFIGS, ids=lambda c: str(c))
def test_persistent_matches_nn(config, steps, batch):
    ref, ours = make_pair(**config)
    x = inputs(config, steps, batch)
    expected_outputs, expected_grads = run(ref, x, None)
    outputs, grads, launches = run_emulated(ours, x, None, "persistent")
    layers = ours.num_layers * (2 if ours.bidirectional else 1)
    # a forward launch per layer direction, and a backward one unless a projection
    # (whose per-step GEMM sits between steps: a forward launch per step, no fused backward)
    if ours.proj_size:
        assert launches == steps * layers
    else:
        assert launches == 2 * layers
    for a, e in zip(outputs + grads, expected_outputs + expected_grads, strict=True):
        torch.testing.assert_close(a, e, **tolerance("lstm", torch.float64))


def packed_run(module, x, hx, lengths):
    """Forward + backward of packed input: [output data, h_n, c_n] and the gradients."""
    x = x.clone().requires_grad_()
    hx = tuple(t.clone().requires_grad_() for t in hx)
    output, (h_n, c_n) = module(pack_padded_sequence(x, lengths, enforce_sorted=False), hx)
    loss_of(output, h_n, c_n).backward()
    return [output.data, h_n, c_n], [x.grad, *(t.grad for t in hx),
                                     *(p.grad for p in module.parameters())]


def test_persistent_packed_both_directions_matches_nn():
    ref, ours = make_pair(4, 11, bidirectional=True)
    x = torch.randn(5, 4, 4, dtype=torch.float64)
    h0 = torch.randn(2, 4, 11, dtype=torch.float64)
    hx = (h0, torch.randn_like(h0))
    lengths = [5, 2, 4, 1]
    expected = packed_run(ref, x, hx, lengths)
    with simt.emulated_cuda_kernels(), backends.flags(cuda_step="persistent"):
        before = simt.cooperative_launches()
        actual = packed_run(ours, x, hx, lengths)
        assert simt.cooperative_launches() - before == 4
    for a, e in zip(actual[0] + actual[1], expected[0] + expected[1], strict=True):
        torch.testing.assert_close(a, e, **tolerance("lstm", torch.float64))


@pytest.mark.parametrize("step", ["per_step", "persistent_refused"])
def test_per_step_and_refused_fallback_match_persistent(step):
    """per_step: no persistent kernel; persistent_refused: every cooperative launch is refused,
    so the same steps run one at a time (the fallback that keeps a refused launch from hanging)."""
    _, ours = make_pair(5, 13, num_layers=2)
    x = torch.randn(4, 3, 5, dtype=torch.float64)
    persistent = run_emulated(ours, x, None, "persistent")
    other = run_emulated(ours, x, None, step)
    assert persistent[2] == 4 and other[2] == 0
    for a, e in zip(other[0] + other[1], persistent[0] + persistent[1], strict=True):
        torch.testing.assert_close(a, e, **tolerance("lstm", torch.float64))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("hidden,batch", [(12, 3), (40, 18)], ids=["H12-B3", "H40-B18"])
def test_persistent_dtypes_against_float64_nn(dtype, hidden, batch):
    """float16 / bfloat16 take the tensor-core kernels (emulated wmma; 18 rows: two row tiles),
    float32 the FMA ones."""
    ref, ours = make_pair(6, hidden)
    ours = ours.to(dtype)
    x = torch.randn(5, batch, 6, dtype=torch.float64)
    expected_outputs, expected_grads = run(ref, x, None)
    tensor_core_before = simt.tensor_core_launches()
    outputs, grads, launches = run_emulated(ours, x.to(dtype), None, "persistent")
    assert launches == 2
    half = dtype in (torch.bfloat16, torch.float16)
    assert simt.tensor_core_launches() - tensor_core_before == (2 if half else 0)
    rel = REDUCED_TOL.get(dtype, 1e-4)
    for index, (a, e) in enumerate(zip(outputs + grads, expected_outputs + expected_grads,
                                       strict=True)):
        assert_close_scaled(a, e, rel, f"{dtype} output/grad {index}")


def test_layer_too_large_for_the_device_takes_the_per_step_path():
    """W_hh's slices exceed the emulated device's shared memory (227 KiB a block): not launched."""
    ref, ours = make_pair(4, 600)
    x = torch.randn(2, 1, 4, dtype=torch.float64)
    with torch.no_grad():
        expected = ref(x)[0]
        with simt.emulated_cuda_kernels(), backends.flags(cuda_step="persistent"):
            before = simt.cooperative_launches()
            actual = ours(x)[0]
            assert simt.cooperative_launches() == before
    torch.testing.assert_close(actual, expected, **tolerance("lstm", torch.float64))


def test_cuda_step_switch_names_its_choices():
    with pytest.raises(ValueError, match="cuda.step takes one of auto, persistent, per_step"):
        fusedlstm.backends.cuda.step = "fast"
    assert fusedlstm.backends.cuda.step == "auto"

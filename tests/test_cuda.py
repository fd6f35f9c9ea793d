"""The CUDA back-end against cuDNN's nn.LSTM, a float64 CPU reference and its own kernels emulated
on the CPU (fusedlstm.simt). Skipped without a GPU; run by `make test` and `make gpu-check` on any
machine that has one."""

import pytest
import torch
from conftest import tolerance
from lstm_pairs import hidden_state, loss_of, make_pair, run
from test_lstm_parity import GRID, grid_id
from torch import nn

import fusedlstm


def missing_for_cuda_tests() -> str | None:
    """What these tests lack on this machine, in words, or None."""
    if not torch.cuda.is_available():
        return ("no CUDA device: torch.cuda.is_available() is False (torch "
                f"{torch.__version__}, built for CUDA {torch.version.cuda})")
    if not fusedlstm.CUDA_LOADED:
        return "fusedlstm's CUDA kernels are not loaded: `python -m fusedlstm` says why"
    return None


pytestmark = pytest.mark.skipif(missing_for_cuda_tests() is not None,
                                reason=str(missing_for_cuda_tests()))
CUDA = "cuda"


def to_cuda(ref, ours):
    return ref.to(CUDA), ours.to(CUDA)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("case", GRID, ids=[grid_id(c) for c in GRID])
def test_lstm_matches_nn_lstm_on_cuda(case, dtype):
    """The CPU suite's grid (test_lstm_parity.GRID), against cuDNN."""
    layers, bidir, batch_first, bias, proj, with_hx, steps, batch = case
    ref, ours = to_cuda(*make_pair(4, 5, dtype, num_layers=layers, bidirectional=bidir,
                                   batch_first=batch_first, bias=bias, proj_size=proj))
    shape = (batch, steps, 4) if batch_first else (steps, batch, 4)
    x = torch.randn(shape, dtype=dtype, device=CUDA)
    hx = tuple(t.to(CUDA) for t in hidden_state(ref, batch, dtype)) if with_hx else None
    ref_out, ref_grads = run(ref, x, hx)
    our_out, our_grads = run(ours, x, hx)
    for a, b in zip(our_out + our_grads, ref_out + ref_grads, strict=True):
        assert a.device.type == "cuda"
        torch.testing.assert_close(a, b, **tolerance("lstm", dtype))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_packed_on_cuda(dtype):
    ref, ours = to_cuda(*make_pair(3, 4, dtype, num_layers=2, bidirectional=True))
    padded = torch.randn(5, 4, 3, dtype=dtype, device=CUDA)
    packed = nn.utils.rnn.pack_padded_sequence(padded, [2, 5, 1, 4], enforce_sorted=False)
    outs = []
    for module in (ref, ours):
        output, (h, c) = module(packed)
        loss_of(output, h, c).backward()
        outs.append([output.data, h, c] + [p.grad for p in module.parameters()])
    for a, b in zip(outs[1], outs[0], strict=True):
        torch.testing.assert_close(a, b, **tolerance("lstm", dtype))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cell_matches_nn_lstmcell_on_cuda(dtype):
    ref = nn.LSTMCell(7, 9, dtype=dtype, device=CUDA)
    ours = fusedlstm.LSTMCell(7, 9, dtype=dtype, device=CUDA)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(4, 7, dtype=dtype, device=CUDA)
    results = []
    for cell in (ref, ours):
        h, c = cell(x)
        (h.sin().sum() + c.cos().sum()).backward()
        results.append([h, c] + [p.grad for p in cell.parameters()])
    for a, b in zip(results[1], results[0], strict=True):
        torch.testing.assert_close(a, b, **tolerance("cell", dtype))


def max_error(outputs, reference):
    return max((a.double().cpu() - b.double().cpu()).abs().max().item()
               for a, b in zip(outputs, reference, strict=True))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_reduced_precision_error_at_most_twice_cudnn(dtype):
    """Against a float64 CPU reference, our error is at most 2x cuDNN's at the same dtype."""
    ref64, _ = make_pair(32, 64, torch.float64, num_layers=2)
    x64 = torch.randn(20, 8, 32, dtype=torch.float64)
    reference, reference_grads = run(ref64, x64, None)
    errors = {}
    for name, cls in (("cudnn", nn.LSTM), ("fused", fusedlstm.LSTM)):
        module = cls(32, 64, num_layers=2).to(CUDA, dtype)
        module.load_state_dict(ref64.state_dict())
        outputs, grads = run(module, x64.to(CUDA, dtype), None)
        errors[name] = (max_error(outputs, reference), max_error(grads, reference_grads))
    floor = {torch.float16: 1e-3, torch.bfloat16: 8e-3}[dtype]
    for ours, cudnn in zip(errors["fused"], errors["cudnn"], strict=True):
        assert ours <= 2 * max(cudnn, floor), errors


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cell_reduced_precision_runs_on_cuda(dtype):
    cell = fusedlstm.LSTMCell(8, 16, device=CUDA, dtype=dtype)
    h, c = cell(torch.randn(4, 8, device=CUDA, dtype=dtype))
    assert h.dtype == dtype and torch.isfinite(h).all() and torch.isfinite(c).all()


def test_opcheck_on_cuda():
    from test_layer_ops import CASES, layer_args

    for case in CASES:
        args = layer_args(**case, dtype=torch.float32)
        args = tuple(a.detach().to(CUDA).requires_grad_()
                     if a is not None and a.dtype.is_floating_point else a for a in args)
        torch.library.opcheck(torch.ops.fusedlstm.lstm_layer.default, (*args, False, True))
    from test_cell_ops import cell_args

    cell = tuple(None if a is None else a.detach().float().to(CUDA).requires_grad_()
                 for a in cell_args())
    torch.library.opcheck(torch.ops.fusedlstm.lstm_cell.default, cell)


def test_compile_fullgraph_on_cuda():
    torch._dynamo.reset()
    model = fusedlstm.LSTM(6, 8, num_layers=2, bidirectional=True).to(CUDA)
    compiled = torch.compile(model, fullgraph=True)
    x = torch.randn(5, 3, 6, device=CUDA)
    eager = model(x)[0]
    torch.testing.assert_close(compiled(x)[0], eager, **tolerance("lstm", torch.float32))
    compiled(x)[0].sum().backward()


def test_cuda_graph_capture_of_forward_and_backward():
    model = fusedlstm.LSTM(6, 8, num_layers=2).to(CUDA)
    static_x = torch.randn(5, 3, 6, device=CUDA)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            model.zero_grad(set_to_none=True)
            model(static_x)[0].sum().backward()
    torch.cuda.current_stream().wait_stream(side)
    model.zero_grad(set_to_none=True)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_out = model(static_x)[0]
        static_out.sum().backward()
    new_x = torch.randn_like(static_x)
    static_x.copy_(new_x)
    graph.replay()
    captured_grads = [p.grad.clone() for p in model.parameters()]
    expected = model(new_x)[0]
    model.zero_grad(set_to_none=True)
    expected.sum().backward()
    torch.testing.assert_close(static_out, expected)
    for a, p in zip(captured_grads, model.parameters(), strict=True):
        torch.testing.assert_close(a, p.grad)


def test_non_default_stream():
    ref, ours = to_cuda(*make_pair(4, 5, torch.float32, num_layers=2))
    x = torch.randn(6, 3, 4, device=CUDA)
    expected = ours(x)[0]
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        actual = ours(x)[0]
    torch.cuda.current_stream().wait_stream(stream)
    torch.testing.assert_close(actual, expected, atol=0, rtol=0)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_model_on_second_gpu():
    ref, ours = make_pair(4, 5, torch.float32)
    ref, ours = ref.to("cuda:1"), ours.to("cuda:1")
    x = torch.randn(6, 3, 4, device="cuda:1")
    with torch.cuda.device(0):
        out = ours(x)[0]
    assert out.device == torch.device("cuda:1")
    torch.testing.assert_close(out, ref(x)[0], **tolerance("lstm", torch.float32))


def test_device_mismatch_is_a_clear_error():
    cell = fusedlstm.LSTMCell(4, 6).to(CUDA)
    with pytest.raises(RuntimeError, match="device|cuda|cpu"):
        cell(torch.randn(3, 4), (torch.randn(3, 6, device=CUDA), torch.randn(3, 6, device=CUDA)))


@pytest.mark.parametrize("module", ["LSTM", "LSTMCell"])
def test_autocast_on_cuda_gives_nn_dtypes(module):
    """Under torch.autocast("cuda") nn.LSTM and nn.LSTMCell run in float16 (CUDA's autocast
    lists), so do ours (csrc/autocast.cpp); weight gradients stay float32."""
    ref = getattr(nn, module)(8, 16).to(CUDA)
    ours = getattr(fusedlstm, module)(8, 16).to(CUDA)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(5, 3, 8, device=CUDA) if module == "LSTM" else torch.randn(3, 8, device=CUDA)
    results = []
    for m in (ref, ours):
        with torch.autocast("cuda", dtype=torch.float16):
            out = m(x)
            first = out[0]
            first.float().sum().backward()
        results.append((first, next(m.parameters()).grad))
    (ref_out, ref_grad), (our_out, our_grad) = results
    assert our_out.dtype == ref_out.dtype == torch.float16
    assert our_grad.dtype == ref_grad.dtype == torch.float32
    torch.testing.assert_close(our_out.float(), ref_out.float(), atol=5e-3, rtol=5e-3)
    torch.testing.assert_close(our_grad, ref_grad, atol=2e-2, rtol=2e-2)


def emulated_on_cpu(op, *args):
    """op on CPU copies of args, with the CUDA kernels emulated (fusedlstm.simt)."""
    with fusedlstm.simt.emulated_cuda_kernels():
        return op(*[a.cpu() if isinstance(a, torch.Tensor) else a for a in args])


# Tolerance between the GPU's kernels and their emulation on the same inputs: the source is the
# same, the transcendentals are not (CUDA's expf/tanhf against glibc's, a few ulp apart).
KERNEL_ULPS = {torch.float64: 1e-13, torch.float32: 2e-6, torch.float16: 2e-3,
               torch.bfloat16: 1.6e-2}


@pytest.mark.parametrize("dtype", list(KERNEL_ULPS))
def test_pointwise_kernels_on_gpu_equal_their_emulation(dtype):
    """Zero weights make every GEMM exact, so the two runs differ only inside the kernels."""
    B, I, H = 5, 3, 37  # noqa: E741  (the docs' names)
    inputs = [torch.randn(B, I), torch.randn(B, H), torch.randn(B, H),
              torch.zeros(4 * H, I), torch.zeros(4 * H, H), 2 * torch.randn(4 * H),
              torch.randn(4 * H)]
    inputs = [t.to(CUDA, dtype) for t in inputs]
    gpu = torch.ops.fusedlstm.lstm_cell(*inputs)
    emulated = emulated_on_cpu(torch.ops.fusedlstm.lstm_cell, *inputs)
    tol = KERNEL_ULPS[dtype]
    for a, b in zip(gpu, emulated, strict=True):
        torch.testing.assert_close(a.cpu(), b, atol=tol, rtol=tol)
    x, hx, cx, w_ih, w_hh = inputs[:5]
    h, c, gates = gpu
    grads = (torch.randn_like(h), torch.randn_like(c), x, hx, cx, w_ih, w_hh, c, gates)
    gpu_back = torch.ops.fusedlstm.lstm_cell_backward(*grads)
    emulated_back = emulated_on_cpu(torch.ops.fusedlstm.lstm_cell_backward, *grads)
    for a, b in zip(gpu_back, emulated_back, strict=True):  # grad_cx and grad_bias: kernel only
        torch.testing.assert_close(a.cpu(), b, atol=tol, rtol=tol)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("packed,reverse", [(False, False), (False, True), (True, False)])
def test_layer_on_gpu_equals_its_emulation(dtype, packed, reverse):
    from test_simt import forward_and_backward, layer_inputs

    args = layer_inputs(dtype, steps=6, batch=4, input_size=5, hidden=33, packed=packed)
    gpu_args = [a.to(CUDA) if isinstance(a, torch.Tensor) and a.dtype.is_floating_point else a
                for a in args]
    gpu = forward_and_backward(gpu_args, reverse)
    with fusedlstm.simt.emulated_cuda_kernels():
        emulated = forward_and_backward(args, reverse)
    tol = {torch.float64: 1e-10, torch.float32: 1e-4}[dtype]
    for a, b in zip(gpu, emulated, strict=True):
        torch.testing.assert_close(a.cpu(), b, atol=tol, rtol=tol)


def test_compile_reduce_overhead_replays_cuda_graphs():
    torch._dynamo.reset()
    model = fusedlstm.LSTM(6, 8, num_layers=2).to(CUDA)
    compiled = torch.compile(model, mode="reduce-overhead", fullgraph=True)
    x = torch.randn(5, 3, 6, device=CUDA)
    for _ in range(3):  # warm-up, record, replay
        out = compiled(x)[0].clone()
    torch.testing.assert_close(out, model(x)[0], **tolerance("lstm", torch.float32))


@pytest.mark.parametrize("step", ["persistent", "per_step", "persistent_refused"])
@pytest.mark.parametrize("packed", [False, True])
def test_persistent_and_per_step_match_nn_on_gpu(step, packed):
    """The persistent kernel (W_hh slices in shared memory; several blocks per layer at H=256),
    the per-step path and the refused-launch fallback, each against cuDNN's nn.LSTM."""
    ref, ours = to_cuda(*make_pair(64, 256, torch.float32, num_layers=2, bidirectional=True))
    x = torch.randn(12, 32, 64, device=CUDA)
    if packed:
        lengths = torch.randint(1, 13, (32,)).tolist()
        lengths[0] = 12
        x = nn.utils.rnn.pack_padded_sequence(x, lengths, enforce_sorted=False)
    with fusedlstm.backends.flags(cuda_step=step):
        ours_out, ours_grads = run_packed_or_not(ours, x)
    ref_out, ref_grads = run_packed_or_not(ref, x)
    for a, b in zip(ours_out + ours_grads, ref_out + ref_grads, strict=True):
        torch.testing.assert_close(a, b, atol=2e-4, rtol=2e-4)


def run_packed_or_not(module, x):
    if isinstance(x, nn.utils.rnn.PackedSequence):
        output, (h_n, c_n) = module(x)
        loss_of(output, h_n, c_n).backward()
        grads = [p.grad.clone() for p in module.parameters()]
        module.zero_grad()
        return [output.data, h_n, c_n], grads
    outputs, grads = run(module, x, None)
    module.zero_grad()
    return outputs, grads


# ---- GRU and Elman RNN on the GPU ----------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("kind", ["gru", "rnn_tanh", "rnn_relu"])
def test_gru_and_rnn_match_nn_on_cuda(kind, packed, dtype):
    """Against cuDNN's nn.GRU / nn.RNN: 2 layers, bidirectional, fwd + bwd."""
    from state_pairs import make_pair as make_state_pair
    from state_pairs import run as run_state
    from state_pairs import run_packed

    ref, ours = to_cuda(*make_state_pair(kind, 4, 6, dtype, num_layers=2, bidirectional=True))
    x = torch.randn(5, 3, 4, dtype=dtype, device=CUDA)
    lengths = torch.tensor([5, 2, 4])
    out = [run_packed(m, x, lengths, None) if packed else run_state(m, x, None)
           for m in (ours, ref)]
    for a, b in zip(out[0][0] + out[0][1], out[1][0] + out[1][1], strict=True):
        assert a.device.type == "cuda"
        torch.testing.assert_close(a, b, **tolerance("lstm", dtype))


@pytest.mark.parametrize("kind", ["gru", "rnn_tanh"])
def test_gru_and_rnn_cells_and_emulation_on_cuda(kind):
    """The cells against nn's on the GPU, and the GPU layer equal to its emulated kernels."""
    from state_pairs import make_pair as make_state_pair

    ref, ours = to_cuda(*make_state_pair(kind, 4, 6, torch.float64, cell=True))
    x, h = (torch.randn(3, n, dtype=torch.float64, device=CUDA) for n in (4, 6))
    torch.testing.assert_close(ours(x, h), ref(x, h), **tolerance("cell", torch.float64))
    _, layer = make_state_pair(kind, 4, 6, torch.float64)
    xs = torch.randn(5, 3, 4, dtype=torch.float64)
    with fusedlstm.simt.emulated_cuda_kernels():
        emulated = layer(xs)
    on_gpu = layer.to(CUDA)(xs.to(CUDA))
    for a, b in zip(on_gpu, emulated, strict=True):
        torch.testing.assert_close(a.cpu(), b, rtol=1e-12, atol=1e-12)

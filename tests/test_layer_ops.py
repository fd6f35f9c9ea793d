"""The lstm_layer ops checked by gradcheck and torch.library.opcheck."""

import pytest
import torch

import fusedlstm


def layer_args(steps=4, batch=3, input_size=2, hidden=3, proj=0, bias=True, packed=False,
               requires_grad=True, dtype=torch.float64):
    def t(*shape):
        return torch.randn(*shape, dtype=dtype, requires_grad=requires_grad)

    out = proj or hidden
    batch_sizes = torch.tensor([3, 3, 2, 1][:steps]) if packed else None
    x = t(int(batch_sizes.sum()), input_size) if packed else t(steps, batch, input_size)
    return (x, t(batch, out), t(batch, hidden), t(4 * hidden, input_size), t(4 * hidden, out),
            t(4 * hidden) if bias else None, t(4 * hidden) if bias else None,
            t(proj, hidden) if proj else None, batch_sizes)


CASES = [
    dict(),
    dict(bias=False),
    dict(proj=2),
    dict(packed=True),
    dict(packed=True, proj=2),
    dict(steps=1, batch=1, hidden=1, input_size=1),
]


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("case", CASES, ids=[str(c) for c in CASES])
def test_gradcheck(case, reverse):
    args = layer_args(**case)

    def layer(*tensors):
        return fusedlstm.ops.lstm_layer(*tensors[:-1], batch_sizes=args[-1], reverse=reverse)

    assert torch.autograd.gradcheck(layer, args)


# bfloat16: its own CPU paths (the fused inference step on the BF16 dot product, training in
# float32 for small layers) behind the same op contract.
DTYPES = [torch.float32, torch.bfloat16]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("requires_grad", [True, False])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("case", CASES, ids=[str(c) for c in CASES])
def test_opcheck_lstm_layer(case, reverse, requires_grad, dtype):
    args = layer_args(**case, requires_grad=requires_grad, dtype=dtype)
    train = fusedlstm.ops.needs_backward(*args[:-1])
    torch.library.opcheck(torch.ops.fusedlstm.lstm_layer.default, (*args, reverse, train))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", CASES, ids=[str(c) for c in CASES])
def test_opcheck_lstm_layer_backward(case, dtype):
    x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes = layer_args(
        **case, requires_grad=False, dtype=dtype)
    out, h_n, c_n, gates, cells = torch.ops.fusedlstm.lstm_layer(
        x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes, True, True)
    for need_input_grad, need_weight_grads in [(True, True), (False, True), (True, False)]:
        args = (torch.randn_like(out), torch.randn_like(h_n), torch.randn_like(c_n), x, h0, c0,
                w_ih, w_hh, w_hr, batch_sizes, True, out, gates, cells, need_input_grad,
                need_weight_grads)
        torch.library.opcheck(torch.ops.fusedlstm.lstm_layer_backward.default, args)


def test_op_does_not_mutate_inputs():
    args = layer_args(requires_grad=False)
    before = [a.clone() for a in args if a is not None]
    torch.ops.fusedlstm.lstm_layer(*args, False, True)
    for a, b in zip([a for a in args if a is not None], before, strict=True):
        assert torch.equal(a, b)


def test_backward_of_inference_call_is_refused():
    args = layer_args(requires_grad=True)
    output = torch.ops.fusedlstm.lstm_layer(*args, False, False)[0]
    with pytest.raises(RuntimeError, match="train=False"):
        output.sum().backward()

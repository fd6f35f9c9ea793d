"""The GRU and Elman RNN ops (torch.ops.fusedlstm.gru_* / rnn_*) checked by gradcheck,
gradgradcheck and torch.library.opcheck (the fake kernels, autograd registration and schemas)."""

import pytest
import torch

import fusedlstm

_ops = torch.ops.fusedlstm
CELLS = {"gru": 3, "tanh": 1, "relu": 1}  # cell -> gates per hidden unit


def layer_args(cell, steps=4, batch=3, input_size=2, hidden=3, bias=True, packed=False,
               requires_grad=True, dtype=torch.float64):
    def t(*shape):
        return torch.randn(*shape, dtype=dtype, requires_grad=requires_grad)

    gates = CELLS[cell] * hidden
    batch_sizes = torch.tensor([3, 3, 2, 1][:steps]) if packed else None
    x = t(int(batch_sizes.sum()), input_size) if packed else t(steps, batch, input_size)
    return (x, t(batch, hidden), t(gates, input_size), t(gates, hidden),
            t(gates) if bias else None, t(gates) if bias else None, batch_sizes)


def call_layer(cell, args, reverse):
    if cell == "gru":
        return fusedlstm.ops.gru_layer(*args, reverse=reverse)
    return fusedlstm.ops.rnn_layer(*args, reverse=reverse, nonlinearity=cell)


CASES = [dict(), dict(bias=False), dict(packed=True), dict(steps=1, batch=1, hidden=1,
                                                            input_size=1)]


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("case", CASES, ids=[str(c) for c in CASES])
@pytest.mark.parametrize("cell", list(CELLS))
def test_layer_gradcheck(cell, case, reverse):
    args = layer_args(cell, **case)

    def layer(*tensors):
        return call_layer(cell, (*tensors, args[-1]), reverse)

    assert torch.autograd.gradcheck(layer, args[:-1])


@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("packed", [False, True])
def test_layer_gradgradcheck(cell, packed):
    args = layer_args(cell, packed=packed)

    def layer(*tensors):
        return call_layer(cell, (*tensors, args[-1]), True)

    assert torch.autograd.gradgradcheck(layer, args[:-1])


@pytest.mark.parametrize("cell", list(CELLS))
def test_cell_gradcheck_and_gradgradcheck(cell):
    x, h, w_ih, w_hh, b_ih, b_hh, _ = layer_args(cell)
    x = x[0].detach().requires_grad_()

    def step(*tensors):
        if cell == "gru":
            return fusedlstm.ops.gru_cell(*tensors)
        return fusedlstm.ops.rnn_cell(*tensors, nonlinearity=cell)

    inputs = (x, h, w_ih, w_hh, b_ih, b_hh)
    assert torch.autograd.gradcheck(step, inputs)
    assert torch.autograd.gradgradcheck(step, inputs)




@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("reverse", [False, True])
def test_opcheck_gru_layer(reverse, packed, train):
    args = layer_args("gru", packed=packed, requires_grad=train)
    torch.library.opcheck(_ops.gru_layer.default, (*args, reverse, train))


@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_opcheck_rnn_layer(nonlinearity, packed):
    args = layer_args(nonlinearity, packed=packed)
    torch.library.opcheck(_ops.rnn_layer.default, (*args, True, nonlinearity))


@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("cell", list(CELLS))
def test_opcheck_layer_backwards(cell, packed):
    x, h0, w_ih, w_hh, b_ih, b_hh, batch_sizes = layer_args(cell, packed=packed,
                                                             requires_grad=False)
    if cell == "gru":
        output, h_n, saved = _ops.gru_layer(x, h0, w_ih, w_hh, b_ih, b_hh, batch_sizes, False,
                                            True)
        tail = (output, saved)
        op = _ops.gru_layer_backward.default
    else:
        output, h_n = _ops.rnn_layer(x, h0, w_ih, w_hh, b_ih, b_hh, batch_sizes, False, cell)
        tail = (cell, output)
        op = _ops.rnn_layer_backward.default
    for need_input, need_weights in ((True, True), (False, True), (True, False)):
        args = (torch.randn_like(output), torch.randn_like(h_n), x, h0, w_ih, w_hh, batch_sizes,
                False, *tail, need_input, need_weights)
        torch.library.opcheck(op, args)


@pytest.mark.parametrize("cell", list(CELLS))
def test_opcheck_cells(cell):
    x, h, w_ih, w_hh, b_ih, b_hh, _ = layer_args(cell)
    x = x[0].detach().requires_grad_()
    if cell == "gru":
        torch.library.opcheck(_ops.gru_cell.default, (x, h, w_ih, w_hh, b_ih, b_hh))
        hy, saved = _ops.gru_cell(x, h, w_ih, w_hh, b_ih, b_hh)
        backward, tail = _ops.gru_cell_backward.default, (hy.detach(), saved)
    else:
        torch.library.opcheck(_ops.rnn_cell.default, (x, h, w_ih, w_hh, b_ih, b_hh, cell))
        hy = _ops.rnn_cell(x, h, w_ih, w_hh, b_ih, b_hh, cell)
        backward, tail = _ops.rnn_cell_backward.default, (hy.detach(), cell)
    detached = [t.detach() for t in (x, h, w_ih, w_hh)]
    for flags in ((True, True, True), (False, True, False), (True, False, True)):
        torch.library.opcheck(backward, (torch.randn_like(hy), *detached, *tail, *flags))


@pytest.mark.parametrize("cell", list(CELLS))
def test_layer_does_not_mutate_inputs(cell):
    args = layer_args(cell, requires_grad=False)
    before = [None if a is None else a.clone() for a in args]
    call_layer(cell, args, False)
    for a, b in zip(args, before, strict=True):
        assert (a is None and b is None) or torch.equal(a, b)


def test_backward_of_inference_call_is_refused():
    args = layer_args("gru")
    output, h_n, saved = _ops.gru_layer(*args, False, False)
    assert saved.numel() == 0
    with pytest.raises(RuntimeError, match="train=False"):
        output.sum().backward()


def test_bad_nonlinearity_is_refused_by_name():
    args = layer_args("tanh", requires_grad=False)
    with pytest.raises(RuntimeError, match="unknown nonlinearity 'sigmoid'"):
        _ops.rnn_layer(*args, False, "sigmoid")


@pytest.mark.parametrize("cell", list(CELLS))
def test_weight_shapes_are_checked_by_name(cell):
    x, h0, w_ih, w_hh, b_ih, b_hh, _ = layer_args(cell, requires_grad=False)
    gates = CELLS[cell]
    with pytest.raises(RuntimeError, match=rf"w_hh row count \({gates}\*hidden_size\)"):
        call_layer(cell, (x, h0, w_ih, w_hh[:-1], b_ih, b_hh, None), False)
    with pytest.raises(RuntimeError, match=rf"b_hh size \({gates}\*hidden_size\)"):
        call_layer(cell, (x, h0, w_ih, w_hh, b_ih, b_hh[:-1], None), False)
    with pytest.raises(RuntimeError, match=r"h0 feature size \(dim 1\) is 2, expected 3"):
        call_layer(cell, (x, h0[:, :2], w_ih, w_hh, b_ih, b_hh, None), False)

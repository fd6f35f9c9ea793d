"""The fake kernels reject what the real kernels reject, with the same message (fusedlstm/_checks.py
against csrc/include/fusedlstm/checks.h): a bad shape fails at trace time too."""

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode


def t(*shape, dtype=torch.float32):
    return torch.randn(*shape, dtype=dtype)


def cell(B=3, I=4, H=6, **over):  # noqa: E741
    args = dict(input=t(B, I), hx=t(B, H), cx=t(B, H), w_ih=t(4 * H, I), w_hh=t(4 * H, H),
                b_ih=t(4 * H), b_hh=t(4 * H))
    return {**args, **over}


def layer(T=5, B=3, I=4, H=6, **over):  # noqa: E741
    args = dict(input=t(T, B, I), h0=t(B, H), c0=t(B, H), w_ih=t(4 * H, I), w_hh=t(4 * H, H),
                b_ih=t(4 * H), b_hh=t(4 * H), w_hr=None, batch_sizes=None, reverse=False,
                train=False)
    return {**args, **over}


CELL_CASES = {
    "input feature size": cell(input=t(3, 5)),
    "hx batch": cell(hx=t(2, 6)),
    "cx features": cell(cx=t(3, 7)),
    "hx dtype": cell(hx=t(3, 6, dtype=torch.float64)),
    "integer weights": cell(w_ih=torch.zeros(24, 4, dtype=torch.int64)),
    "w_hh rows": cell(w_hh=t(8, 6)),
    "bias size": cell(b_ih=t(7)),
    "3-D input": cell(input=t(1, 3, 4)),
}
LAYER_CASES = {
    "2-D input": layer(input=t(5, 4)),
    "empty sequence": layer(input=t(0, 3, 4)),
    "h0 batch": layer(h0=t(2, 6)),
    "c0 features": layer(c0=t(3, 5)),
    "input features": layer(input=t(5, 3, 7)),
    "w_hr columns": layer(w_hr=t(2, 5), h0=t(3, 2), w_hh=t(24, 2)),
    "packed 3-D data": layer(input=t(5, 3, 4), batch_sizes=torch.tensor([3, 2])),
}


def eager_and_fake_errors(op, kwargs):
    with pytest.raises(Exception) as eager:
        op(**kwargs)
    with FakeTensorMode(allow_non_fake_inputs=True) as mode:
        fake = {k: mode.from_tensor(v) if isinstance(v, torch.Tensor) and k != "batch_sizes"
                else v for k, v in kwargs.items()}
        with pytest.raises(Exception) as traced:
            op(**fake)
    return str(eager.value).splitlines()[0], str(traced.value)


@pytest.mark.parametrize("case", list(CELL_CASES))
def test_cell_fake_rejects_as_the_kernel_does(case):
    eager, traced = eager_and_fake_errors(torch.ops.fusedlstm.lstm_cell, CELL_CASES[case])
    assert eager.startswith("fusedlstm::lstm_cell: "), eager
    assert eager in traced, f"eager: {eager!r}\ntraced: {traced!r}"


@pytest.mark.parametrize("case", list(LAYER_CASES))
def test_layer_fake_rejects_as_the_kernel_does(case):
    eager, traced = eager_and_fake_errors(torch.ops.fusedlstm.lstm_layer, LAYER_CASES[case])
    assert eager.startswith("fusedlstm::lstm_layer: "), eager
    assert eager in traced, f"eager: {eager!r}\ntraced: {traced!r}"


def test_valid_arguments_trace():
    with FakeTensorMode(allow_non_fake_inputs=True) as mode:
        args = {k: mode.from_tensor(v) if isinstance(v, torch.Tensor) else v
                for k, v in layer().items()}
        output, h_n, c_n, _, _ = torch.ops.fusedlstm.lstm_layer(**args)
    assert output.shape == (5, 3, 6) and h_n.shape == (3, 6) and c_n.shape == (3, 6)

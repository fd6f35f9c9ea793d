"""Bad input raises a clear Python exception naming the argument and both sizes; never a crash."""

import pytest
import torch
from torch import nn

import fusedlstm

ERRORS = (RuntimeError, ValueError)


# ---- LSTMCell -------------------------------------------------------------------------------

@pytest.fixture
def cell():
    return fusedlstm.LSTMCell(4, 6)


def test_cell_wrong_feature_size(cell):
    with pytest.raises(ERRORS, match=r"input.*feature size.*is 5, expected 4"):
        cell(torch.randn(3, 5))


def test_cell_wrong_hx_batch(cell):
    hx = (torch.randn(2, 6), torch.randn(3, 6))
    with pytest.raises(ERRORS, match=r"hx batch size.*is 2, expected 3"):
        cell(torch.randn(3, 4), hx)


def test_cell_wrong_cx_size(cell):
    hx = (torch.randn(3, 6), torch.randn(3, 7))
    with pytest.raises(ERRORS, match=r"cx feature size.*is 7, expected 6"):
        cell(torch.randn(3, 4), hx)


def test_cell_dtype_mismatch(cell):
    with pytest.raises(ERRORS, match=r"dtype.*Double.*Float|dtype.*Float.*Double"):
        cell(torch.randn(3, 4, dtype=torch.float64))


def test_cell_hx_dtype_mismatch(cell):
    hx = (torch.randn(3, 6, dtype=torch.float64), torch.randn(3, 6))
    with pytest.raises(ERRORS, match=r"hx has dtype Double but input has dtype Float"):
        cell(torch.randn(3, 4), hx)


def test_cell_3d_input(cell):
    with pytest.raises(ValueError, match="Expected input to be 1D or 2D, got 3D"):
        cell(torch.randn(2, 3, 4))


def test_cell_integer_input(cell):
    with pytest.raises(ERRORS, match="dtype"):
        cell(torch.ones(3, 4, dtype=torch.long))


# ---- LSTM -----------------------------------------------------------------------------------

@pytest.fixture
def lstm():
    return fusedlstm.LSTM(4, 6, num_layers=2)


def expect_same_error_as_nn_lstm(ours, args, match):
    ref = nn.LSTM(ours.input_size, ours.hidden_size, num_layers=ours.num_layers,
                  bidirectional=ours.bidirectional, proj_size=ours.proj_size)
    with pytest.raises(ERRORS, match=match) as ours_error:
        ours(*args)
    with pytest.raises(ERRORS) as ref_error:
        ref(*args)
    assert type(ours_error.value) is type(ref_error.value)


def test_lstm_wrong_feature_size(lstm):
    expect_same_error_as_nn_lstm(lstm, (torch.randn(5, 2, 3),),
                                 r"input.size\(-1\) must be equal to input_size. Expected 4, got 3")


def test_lstm_wrong_hx_layers(lstm):
    hx = (torch.randn(1, 2, 6), torch.randn(2, 2, 6))
    expect_same_error_as_nn_lstm(lstm, (torch.randn(5, 2, 4), hx),
                                 r"Expected hidden\[0\] size \(2, 2, 6\), got \[1, 2, 6\]")


def test_lstm_wrong_hx_batch(lstm):
    hx = (torch.randn(2, 2, 6), torch.randn(2, 3, 6))
    expect_same_error_as_nn_lstm(lstm, (torch.randn(5, 2, 4), hx),
                                 r"Expected hidden\[1\] size \(2, 2, 6\), got \[2, 3, 6\]")


def test_lstm_wrong_hidden_size(lstm):
    hx = (torch.randn(2, 2, 5), torch.randn(2, 2, 6))
    expect_same_error_as_nn_lstm(lstm, (torch.randn(5, 2, 4), hx),
                                 r"Expected hidden\[0\] size \(2, 2, 6\), got \[2, 2, 5\]")


def test_lstm_dtype_mismatch(lstm):
    expect_same_error_as_nn_lstm(lstm, (torch.randn(5, 2, 4, dtype=torch.float64),),
                                 r"input dtype \(torch.float64\) does not match weight dtype")


def test_lstm_4d_input(lstm):
    expect_same_error_as_nn_lstm(lstm, (torch.randn(5, 2, 4, 1),),
                                 "Expected input to be 2D or 3D, got 4D")


def test_lstm_hx_of_wrong_rank(lstm):
    hx = (torch.randn(2, 6), torch.randn(2, 6))
    expect_same_error_as_nn_lstm(lstm, (torch.randn(5, 2, 4), hx),
                                 "hx and cx should also be 3-D but got")


def test_lstm_empty_sequence(lstm):
    with pytest.raises(ERRORS, match=r"seq_len 0"):
        lstm(torch.randn(0, 2, 4))


def test_lstm_empty_batch_is_accepted_like_nn_lstm(lstm):
    ref = nn.LSTM(4, 6, num_layers=2)
    out, (h, c) = lstm(torch.randn(5, 0, 4))
    ref_out, (ref_h, ref_c) = ref(torch.randn(5, 0, 4))
    assert out.shape == ref_out.shape and h.shape == ref_h.shape and c.shape == ref_c.shape


# ---- the ops called directly ----------------------------------------------------------------

def test_layer_op_bad_batch_sizes():
    w_ih, w_hh = torch.randn(8, 3), torch.randn(8, 2)
    h0, c0 = torch.zeros(2, 2), torch.zeros(2, 2)
    with pytest.raises(RuntimeError, match=r"non-increasing, but batch_sizes\[1\] is 3 after 2"):
        torch.ops.fusedlstm.lstm_layer(torch.randn(5, 3), h0, c0, w_ih, w_hh, None, None, None,
                                       torch.tensor([2, 3]), False, False)
    with pytest.raises(RuntimeError, match="batch_sizes sum to 4 but packed input data has 5"):
        torch.ops.fusedlstm.lstm_layer(torch.randn(5, 3), h0, c0, w_ih, w_hh, None, None, None,
                                       torch.tensor([2, 2]), False, False)


def test_layer_op_bad_weights():
    x, h0, c0 = torch.randn(3, 2, 3), torch.zeros(2, 2), torch.zeros(2, 2)
    with pytest.raises(RuntimeError, match=r"w_hh row count.*is 4, expected 8"):
        torch.ops.fusedlstm.lstm_layer(x, h0, c0, torch.randn(8, 3), torch.randn(4, 2), None,
                                       None, None, None, False, False)
    with pytest.raises(RuntimeError, match=r"b_ih size.*is 7, expected 8"):
        torch.ops.fusedlstm.lstm_layer(x, h0, c0, torch.randn(8, 3), torch.randn(8, 2),
                                       torch.randn(7), None, None, None, False, False)

"""The op-level parity suites again, with the CUDA back-end's kernels emulated on CPU threads.

Every test imported below runs here a second time inside fusedlstm.simt.emulated_cuda_kernels():
the fusedlstm ops on CPU tensors take the CUDA back-end (its time loop, buffers and launch code,
ATen's GEMMs where the GPU has cuBLAS) and its kernels' own source, compiled against the SIMT
emulation. The oracle is unchanged: nn.LSTM / nn.LSTMCell (nn.GRU, nn.RNN and their cells for
the GRU and RNN suites), gradcheck and opcheck.
"""

import pytest
from test_cell_ops import (  # noqa: F401
    test_gradcheck as test_cell_gradcheck,
)
from test_cell_parity import (  # noqa: F401  (collected here again)
    test_matches_nn_lstmcell,
)
from test_gru_rnn_ops import (  # noqa: F401
    test_layer_gradcheck as test_gru_rnn_layer_gradcheck,
)
from test_gru_rnn_ops import (  # noqa: F401
    test_opcheck_gru_layer,
    test_opcheck_layer_backwards,
    test_opcheck_rnn_layer,
)
from test_gru_rnn_parity import (  # noqa: F401
    test_cell_matches_nn,
    test_packed_matches_nn,
)
from test_gru_rnn_parity import (  # noqa: F401
    test_matches_nn as test_gru_rnn_matches_nn,
)
from test_gru_rnn_parity import (  # noqa: F401
    test_reduced_precision_close_to_float64 as test_gru_rnn_reduced_precision,
)
from test_gru_rnn_parity import (  # noqa: F401
    test_unbatched_input as test_gru_rnn_unbatched_input,
)
from test_layer_ops import (  # noqa: F401
    test_gradcheck,
    test_op_does_not_mutate_inputs,
    test_opcheck_lstm_layer,
    test_opcheck_lstm_layer_backward,
)
from test_lstm_parity import (  # noqa: F401
    test_gradients_when_some_inputs_need_none,
    test_matches_nn_lstm,
    test_reduced_precision_close_to_float64,
    test_unbatched_input,
)
from test_packed import test_packed_matches_nn_lstm  # noqa: F401

import fusedlstm

pytestmark = pytest.mark.simt


@pytest.fixture(autouse=True)
def _cuda_kernels_emulated():
    before = fusedlstm.simt.launches()
    with fusedlstm.simt.emulated_cuda_kernels():
        yield
    assert fusedlstm.simt.launches() > before, "no emulated CUDA kernel ran in this test"

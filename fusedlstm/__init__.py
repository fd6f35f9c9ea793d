"""fusedlstm: fused recurrent kernels behind drop-in replacements for torch.nn.LSTM, LSTMCell,
GRU, GRUCell, RNN and RNNCell, registered as torch.ops.fusedlstm.* custom ops."""

from . import _loader

CUDA_LOADED = _loader.load()

# The ops must be loaded first.
from . import backends, buffers, cpu_kernels, functional, ops, simt  # noqa: E402
from .modules import (  # noqa: E402
    LSTM,
    LSTMCell,
    replace_lstm,
    replace_rnns,
    restore_lstm,
    restore_rnns,
)
from .state_modules import GRU, RNN, GRUCell, RNNCell  # noqa: E402

__version__ = "0.1.0"
__all__ = ["LSTM", "LSTMCell", "GRU", "GRUCell", "RNN", "RNNCell", "replace_lstm", "replace_rnns",
           "restore_lstm", "restore_rnns", "backends", "buffers", "cpu_kernels",
           "functional", "ops", "simt", "CUDA_LOADED"]

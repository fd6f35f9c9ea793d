"""fusedlstm: fused-gate LSTM kernels behind drop-in replacements for torch.nn.LSTM and
torch.nn.LSTMCell, registered as torch.ops.fusedlstm.* custom ops."""

from . import _loader

CUDA_LOADED = _loader.load()

# The ops must be loaded first.
from . import backends, buffers, cpu_kernels, functional, ops, simt  # noqa: E402
from .modules import LSTM, LSTMCell, replace_lstm, restore_lstm  # noqa: E402

__version__ = "0.1.0"
__all__ = ["LSTM", "LSTMCell", "replace_lstm", "restore_lstm", "backends", "buffers", "cpu_kernels",
           "functional", "ops", "simt", "CUDA_LOADED"]

"""Drop-in replacements for torch.nn.GRU, nn.RNN, nn.GRUCell and nn.RNNCell (the cells whose
only state is h), computed by the fusedlstm kernels. As fusedlstm.LSTM, the layers subclass
nn.RNNBase (not nn.GRU / nn.RNN, which torch.compile refuses) and the cells nn.RNNCellBase."""

from typing import overload

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from . import functional


def _check_types(module: str, input, hx, *also: type) -> None:
    """TypeError naming the argument for inputs of the wrong Python type."""
    if not isinstance(input, (Tensor, *also)):
        kinds = " or ".join(["Tensor"] + [t.__name__ for t in also])
        raise TypeError(f"{module}: input must be a {kinds}, got {type(input).__name__}")
    if hx is not None and not isinstance(hx, Tensor):
        raise TypeError(f"{module}: hx must be a Tensor (h_0), got {type(hx).__name__}")


class _StateRNN(nn.RNNBase):
    """The forward shared by GRU and RNN: nn.GRU's and nn.RNN's input handling (3-D, unbatched
    2-D, PackedSequence; hx given or zeros), then functional.state_layers. TorchScript-compatible:
    each subclass declares nn's two forward overloads and calls _run."""

    def _run(self, name: str, input: Tensor, hx: Tensor | None, batch_sizes: Tensor | None,
             sorted_indices: Tensor | None, is_batched: bool) -> tuple[Tensor, Tensor]:
        """(output, h_n) of the layers for `input` (padded, or packed data with batch_sizes)."""
        batch_dim = 0 if self.batch_first else 1
        if batch_sizes is None:
            if input.dim() not in (2, 3):
                suffix = "tensor instead" if name == "RNN" else "instead"
                raise ValueError(f"{name}: Expected input to be 2D or 3D, got {input.dim()}D "
                                 + suffix)
            if not is_batched:
                input = input.unsqueeze(batch_dim)
                if hx is not None:
                    if hx.dim() != 2:
                        raise RuntimeError("For unbatched 2-D input, hx should also be 2-D but "
                                           f"got {hx.dim()}-D tensor")
                    hx = hx.unsqueeze(1)
            elif hx is not None and hx.dim() != 3:
                raise RuntimeError("For batched 3-D input, hx should also be 3-D but got "
                                   f"{hx.dim()}-D tensor")
        elif hx is not None:
            hx = self.permute_hidden(hx, sorted_indices)
        if hx is not None:
            self.check_forward_args(input, hx, batch_sizes)
        else:
            self.check_input(input, batch_sizes)
        output, h_n = functional.state_layers(
            self.mode, input, hx, self._current_weights(), self.num_layers, self.bias,
            self.batch_first, float(self.dropout), self.training, self.bidirectional,
            batch_sizes)
        if not is_batched:
            output, h_n = output.squeeze(batch_dim), h_n.squeeze(1)
        return output, h_n

    def _current_weights(self) -> list[Tensor]:
        if torch.jit.is_scripting():
            return self._flat_weights
        # Read by name on every call, so torch.func.functional_call and re-assigned parameters
        # are honoured.
        return [getattr(self, name) for name in self._flat_weights_names]


def _forward(module: "_StateRNN", name: str, input, hx):
    """The eager forward of GRU and RNN (TorchScript compiles the subclasses' own)."""
    _check_types(name, input, hx, PackedSequence)
    if isinstance(input, PackedSequence):
        data, batch_sizes, sorted_indices, unsorted_indices = input
        output, h_n = module._run(name, data, hx, batch_sizes, sorted_indices, True)
        return (PackedSequence(output, batch_sizes, sorted_indices, unsorted_indices),
                module.permute_hidden(h_n, unsorted_indices))
    return module._run(name, input, hx, None, None, input.dim() == 3)


class GRU(_StateRNN):
    """torch.nn.GRU's contract (arguments, parameters, state_dict, inputs, outputs, errors),
    computed by the fusedlstm kernels. isinstance(m, nn.GRU) is False, nn.RNNBase True."""

    def __init__(self, *args, **kwargs):
        if "proj_size" in kwargs:
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        super().__init__("GRU", *args, **kwargs)

    @overload
    @torch._jit_internal._overload_method
    def forward(self, input: Tensor, hx: Tensor | None = None) -> tuple[Tensor, Tensor]:
        pass

    @overload
    @torch._jit_internal._overload_method
    def forward(self, input: PackedSequence, hx: Tensor | None = None
                ) -> tuple[PackedSequence, Tensor]:
        pass

    def forward(self, input, hx=None):
        """input: (T, B, I) (or (B, T, I) with batch_first), unbatched (T, I), or a
        PackedSequence; hx: optional h_0. Returns (output, h_n) like nn.GRU."""
        if not torch.jit.is_scripting():
            return _forward(self, "GRU", input, hx)
        if isinstance(input, PackedSequence):
            data, batch_sizes, sorted_indices, unsorted_indices = input
            output, h_n = self._run("GRU", data, hx, batch_sizes, sorted_indices, True)
            return (PackedSequence(output, batch_sizes, sorted_indices, unsorted_indices),
                    self.permute_hidden(h_n, unsorted_indices))
        return self._run("GRU", input, hx, None, None, input.dim() == 3)


class RNN(_StateRNN):
    """torch.nn.RNN's contract (nonlinearity 'tanh' or 'relu'), computed by the fusedlstm
    kernels."""

    def __init__(self, *args, **kwargs):
        if "proj_size" in kwargs:
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        if len(args) > 3:
            self.nonlinearity = args[3]
            args = args[:3] + args[4:]
        else:
            self.nonlinearity = kwargs.pop("nonlinearity", "tanh")
        modes = {"tanh": "RNN_TANH", "relu": "RNN_RELU"}
        if self.nonlinearity not in modes:
            raise ValueError(f"Unknown nonlinearity '{self.nonlinearity}'. Select from 'tanh' "
                             "or 'relu'.")
        super().__init__(modes[self.nonlinearity], *args, **kwargs)

    @overload
    @torch._jit_internal._overload_method
    def forward(self, input: Tensor, hx: Tensor | None = None) -> tuple[Tensor, Tensor]:
        pass

    @overload
    @torch._jit_internal._overload_method
    def forward(self, input: PackedSequence, hx: Tensor | None = None
                ) -> tuple[PackedSequence, Tensor]:
        pass

    def forward(self, input, hx=None):
        """As GRU.forward, for nn.RNN."""
        if not torch.jit.is_scripting():
            return _forward(self, "RNN", input, hx)
        if isinstance(input, PackedSequence):
            data, batch_sizes, sorted_indices, unsorted_indices = input
            output, h_n = self._run("RNN", data, hx, batch_sizes, sorted_indices, True)
            return (PackedSequence(output, batch_sizes, sorted_indices, unsorted_indices),
                    self.permute_hidden(h_n, unsorted_indices))
        return self._run("RNN", input, hx, None, None, input.dim() == 3)


class _StateCell(nn.RNNCellBase):
    """nn.GRUCell / nn.RNNCell's input handling: (B, I) or unbatched (I,), hx or zeros."""

    def _prepare(self, name: str, input: Tensor, hx: Tensor | None
                 ) -> tuple[Tensor, Tensor, bool]:
        if input.dim() not in (1, 2):
            raise ValueError(f"{name}: Expected input to be 1D or 2D, got {input.dim()}D instead")
        if hx is not None and hx.dim() not in (1, 2):
            raise ValueError(f"{name}: Expected hidden to be 1D or 2D, got {hx.dim()}D instead")
        is_batched = input.dim() == 2
        if not is_batched:
            input = input.unsqueeze(0)
        if hx is None:
            hx = input.new_zeros((input.size(0), self.hidden_size))
        elif not is_batched:
            hx = hx.unsqueeze(0)
        return input, hx, is_batched


class GRUCell(_StateCell):
    """torch.nn.GRUCell's contract, computed by the fusedlstm kernels."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None,
                 dtype=None) -> None:
        super().__init__(input_size, hidden_size, bias, num_chunks=3, device=device, dtype=dtype)

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        """input: (B, I) or unbatched (I,); hx: optional h. Returns h'."""
        if not torch.jit.is_scripting():
            _check_types("GRUCell", input, hx)
        input, h, is_batched = self._prepare("GRUCell", input, hx)
        h = functional.gru_cell(input, h, self.weight_ih, self.weight_hh, self.bias_ih,
                                self.bias_hh)
        return h if is_batched else h.squeeze(0)


class RNNCell(_StateCell):
    """torch.nn.RNNCell's contract (nonlinearity 'tanh' or 'relu'), computed by the fusedlstm
    kernels."""

    __constants__ = ["input_size", "hidden_size", "bias", "nonlinearity"]

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 nonlinearity: str = "tanh", device=None, dtype=None) -> None:
        super().__init__(input_size, hidden_size, bias, num_chunks=1, device=device, dtype=dtype)
        self.nonlinearity = nonlinearity

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        """input: (B, I) or unbatched (I,); hx: optional h. Returns h'."""
        if not torch.jit.is_scripting():
            _check_types("RNNCell", input, hx)
        input, h, is_batched = self._prepare("RNNCell", input, hx)
        if self.nonlinearity != "tanh" and self.nonlinearity != "relu":
            raise RuntimeError(f"Unknown nonlinearity: {self.nonlinearity}")
        h = functional.rnn_cell(input, h, self.weight_ih, self.weight_hh, self.bias_ih,
                                self.bias_hh, self.nonlinearity)
        return h if is_batched else h.squeeze(0)

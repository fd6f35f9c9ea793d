"""Drop-in replacements for torch.nn.LSTM and torch.nn.LSTMCell; replace_lstm() / replace_rnns()
and their inverses."""

from typing import overload

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from . import functional

_Hidden = tuple[Tensor, Tensor]


def _check_types(module: str, input, hx, *also: type) -> None:
    """TypeError naming the argument for inputs of the wrong Python type (nn.LSTM would fail
    later with an AttributeError deep inside)."""
    if not isinstance(input, (Tensor, *also)):
        kinds = " or ".join(["Tensor"] + [t.__name__ for t in also])
        raise TypeError(f"{module}: input must be a {kinds}, got {type(input).__name__}")
    if hx is not None and not (
        isinstance(hx, (tuple, list)) and len(hx) == 2 and all(isinstance(t, Tensor) for t in hx)
    ):
        got = type(hx).__name__ if not isinstance(hx, (tuple, list)) else (
            f"{type(hx).__name__} of " + ", ".join(type(t).__name__ for t in hx))
        raise TypeError(f"{module}: hx must be a tuple (h_0, c_0) of two Tensors, got {got}")


class LSTM(nn.RNNBase):
    """torch.nn.LSTM's contract (arguments, parameters, state_dict, inputs, outputs, errors),
    computed by the fusedlstm kernels.

    Subclasses nn.RNNBase rather than nn.LSTM because torch.compile refuses every nn.LSTM
    instance (subclasses too), and compiling with fullgraph=True is one of our promises; so
    `isinstance(m, nn.LSTM)` is False while `isinstance(m, nn.RNNBase)` is True.
    """

    def __init__(self, *args, **kwargs):
        super().__init__("LSTM", *args, **kwargs)

    def get_expected_cell_size(self, input: Tensor, batch_sizes: Tensor | None):
        if batch_sizes is not None:
            mini_batch = int(batch_sizes[0])
        else:
            mini_batch = input.size(0) if self.batch_first else input.size(1)
        directions = 2 if self.bidirectional else 1
        return (self.num_layers * directions, mini_batch, self.hidden_size)

    def check_forward_args(self, input: Tensor, hidden: tuple[Tensor, Tensor],
                           batch_sizes: Tensor | None):
        self.check_input(input, batch_sizes)
        self.check_hidden_size(
            hidden[0],
            self.get_expected_hidden_size(input, batch_sizes),
            "Expected hidden[0] size {}, got {}",
        )
        self.check_hidden_size(
            hidden[1],
            self.get_expected_cell_size(input, batch_sizes),
            "Expected hidden[1] size {}, got {}",
        )

    def permute_hidden(self, hx: tuple[Tensor, Tensor],
                       permutation: Tensor | None) -> tuple[Tensor, Tensor]:
        if permutation is None:
            return hx
        return hx[0].index_select(1, permutation), hx[1].index_select(1, permutation)

    # The two forms of forward, as nn.LSTM declares them, so that torch.jit.script compiles one
    # forward per input type.
    @overload
    @torch._jit_internal._overload_method
    def forward(self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None
                ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        pass

    @overload
    @torch._jit_internal._overload_method
    def forward(self, input: PackedSequence, hx: tuple[Tensor, Tensor] | None = None
                ) -> tuple[PackedSequence, tuple[Tensor, Tensor]]:
        pass

    def forward(self, input, hx=None):
        """input: (T, B, I) (or (B, T, I) with batch_first), unbatched (T, I), or a
        PackedSequence; hx: optional (h_0, c_0). Returns (output, (h_n, c_n)) like nn.LSTM."""
        if not torch.jit.is_scripting():
            _check_types("LSTM", input, hx, PackedSequence)
        orig_input = input
        batch_sizes = None
        sorted_indices = None
        unsorted_indices = None
        is_batched = True
        if isinstance(orig_input, PackedSequence):
            input, batch_sizes, sorted_indices, unsorted_indices = orig_input
        else:
            if input.dim() not in (2, 3):
                raise ValueError(f"LSTM: Expected input to be 2D or 3D, got {input.dim()}D instead")
            is_batched = input.dim() == 3
            if not is_batched:
                input = input.unsqueeze(0 if self.batch_first else 1)

        if hx is not None:
            if is_batched and (hx[0].dim() != 3 or hx[1].dim() != 3):
                raise RuntimeError(
                    "For batched 3-D input, hx and cx should also be 3-D but got "
                    f"({hx[0].dim()}-D, {hx[1].dim()}-D) tensors"
                )
            if not is_batched:
                if hx[0].dim() != 2 or hx[1].dim() != 2:
                    raise RuntimeError(
                        "For unbatched 2-D input, hx and cx should also be 2-D but got "
                        f"({hx[0].dim()}-D, {hx[1].dim()}-D) tensors"
                    )
                hx = (hx[0].unsqueeze(1), hx[1].unsqueeze(1))
            self.check_forward_args(input, hx, batch_sizes)
            hx = self.permute_hidden(hx, sorted_indices)
        else:
            self.check_input(input, batch_sizes)

        output, (h_n, c_n) = functional.lstm_layers(
            input, hx, self._current_weights(), self.num_layers, self.bias, self.batch_first,
            float(self.dropout), self.training, self.bidirectional, self.proj_size, batch_sizes,
        )
        if isinstance(orig_input, PackedSequence):
            packed = PackedSequence(output, batch_sizes, sorted_indices, unsorted_indices)
            return packed, self.permute_hidden((h_n, c_n), unsorted_indices)
        if not is_batched:
            output = output.squeeze(0 if self.batch_first else 1)
            h_n, c_n = h_n.squeeze(1), c_n.squeeze(1)
        return output, (h_n, c_n)

    def _current_weights(self) -> list[Tensor]:
        if torch.jit.is_scripting():
            return self._flat_weights
        # Read the parameters by name on every call (not a cached list), so that
        # torch.func.functional_call and re-assigned parameters are honoured.
        return [getattr(self, name) for name in self._flat_weights_names]


class LSTMCell(nn.RNNCellBase):
    """torch.nn.LSTMCell's contract, computed by the fusedlstm kernels."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None,
                 dtype=None) -> None:
        super().__init__(input_size, hidden_size, bias, num_chunks=4, device=device, dtype=dtype)

    def forward(self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None
                ) -> tuple[Tensor, Tensor]:
        """input: (B, I) or unbatched (I,); hx: optional (h, c). Returns (h', c')."""
        if not torch.jit.is_scripting():
            _check_types("LSTMCell", input, hx)
        if input.dim() not in (1, 2):
            raise ValueError(f"LSTMCell: Expected input to be 1D or 2D, got {input.dim()}D instead")
        if hx is not None:
            for index, value in enumerate(hx):
                if value.dim() not in (1, 2):
                    raise ValueError(
                        f"LSTMCell: Expected hx[{index}] to be 1D or 2D, got {value.dim()}D instead"
                    )
        is_batched = input.dim() == 2
        if not is_batched:
            input = input.unsqueeze(0)
        if hx is None:
            zeros = input.new_zeros((input.size(0), self.hidden_size))
            hx = (zeros, zeros)
        elif not is_batched:
            hx = (hx[0].unsqueeze(0), hx[1].unsqueeze(0))
        h, c = functional.lstm_cell(
            input, hx, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh
        )
        if not is_batched:
            return h.squeeze(0), c.squeeze(0)
        return h, c


def _constructor_arguments(module: nn.Module) -> tuple[tuple, dict, list[str]]:
    """What rebuilds `module` as its counterpart: positional and keyword constructor arguments
    and the names of its parameters."""
    if isinstance(module, nn.RNNBase):
        keywords = {"num_layers": module.num_layers, "bias": module.bias,
                    "batch_first": module.batch_first, "dropout": module.dropout,
                    "bidirectional": module.bidirectional}
        if module.mode == "LSTM":
            keywords["proj_size"] = module.proj_size
        elif module.mode != "GRU":
            keywords["nonlinearity"] = module.nonlinearity
        return (module.input_size, module.hidden_size), keywords, module._flat_weights_names
    keywords = {"bias": module.bias}
    if hasattr(module, "nonlinearity"):
        keywords["nonlinearity"] = module.nonlinearity
    names = [name for name, _ in module.named_parameters(recurse=False)]
    return (module.input_size, module.hidden_size), keywords, names


def _rebuild(module: nn.Module, pairs: dict[type, type]) -> nn.Module:
    """The module of type pairs[type(module)] that `module` stands for, holding the very same
    Parameter objects (so optimizers keep working); other modules as they are."""
    target = next((to for source, to in pairs.items() if isinstance(module, source)), None)
    if target is None:
        return module
    args, keywords, names = _constructor_arguments(module)
    new = target(*args, **keywords, device="meta")
    for name in names:
        setattr(new, name, getattr(module, name))
    new.train(module.training)
    return new


def _swap_all(model: nn.Module, pairs: dict[type, type]) -> nn.Module:
    converted = _rebuild(model, pairs)
    if converted is not model:
        return converted
    for name, child in model.named_children():
        setattr(model, name, _swap_all(child, pairs))
    return model


_LSTM_PAIRS = {nn.LSTM: LSTM, nn.LSTMCell: LSTMCell}


def _all_pairs() -> dict[type, type]:
    from . import state_modules as state

    return {**_LSTM_PAIRS, nn.GRU: state.GRU, nn.RNN: state.RNN, nn.GRUCell: state.GRUCell,
            nn.RNNCell: state.RNNCell}


def _inverse(pairs: dict[type, type]) -> dict[type, type]:
    return {to: source for source, to in pairs.items()}


def restore_lstm(model: nn.Module) -> nn.Module:
    """The inverse of replace_lstm: every fusedlstm.LSTM / LSTMCell inside `model` becomes the
    nn.LSTM / nn.LSTMCell it stands for, with the same Parameter objects. For tools that match
    the torch.nn types exactly, e.g. torch.ao.quantization.quantize_dynamic. Returns the model."""
    return _swap_all(model, _inverse(_LSTM_PAIRS))


def replace_lstm(model: nn.Module) -> nn.Module:
    """Swaps every nn.LSTM / nn.LSTMCell inside `model` (or `model` itself) for the fusedlstm
    equivalent, keeping the weights (the same Parameter objects), device, dtype and mode.
    Returns the model."""
    return _swap_all(model, _LSTM_PAIRS)


def replace_rnns(model: nn.Module) -> nn.Module:
    """replace_lstm for every recurrent module torch.nn has: nn.LSTM, LSTMCell, GRU, GRUCell,
    RNN and RNNCell, each swapped for the fusedlstm equivalent with the same Parameter
    objects. Returns the model."""
    return _swap_all(model, _all_pairs())


def restore_rnns(model: nn.Module) -> nn.Module:
    """The inverse of replace_rnns."""
    return _swap_all(model, _inverse(_all_pairs()))

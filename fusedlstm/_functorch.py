"""The ops under torch.func transforms (grad, vjp, jacrev, vmap and their nestings).

torch.library.register_autograd builds an autograd.Function without a setup_context, which
functorch refuses; so while a transform is active the op wrappers in fusedlstm.ops call these
Functions instead: the same op, setup_context, backward and vmap rules, in the form functorch
accepts. Outside transforms (eager, torch.compile, export) the ops are called directly.
"""

import torch
from torch._functorch.pyfunctorch import TransformType, retrieve_all_functorch_interpreters

from . import _vmap, ops

_ops = torch.ops.fusedlstm


def transforms_active() -> bool:
    return torch._C._are_functorch_transforms_active()


def backward_is_differentiated() -> bool:
    """In a backward run by a torch.func grad level: whether a further grad (or jvp) level
    will differentiate what the backward computes (grad(grad(f)), jacrev of a grad, ...)."""
    differentiating = (TransformType.Grad, TransformType.Jvp)
    levels = [interpreter.key() for interpreter in retrieve_all_functorch_interpreters()]
    return sum(key in differentiating for key in levels) > 1


def vjp_of(forward, inputs, wanted, grad_outputs) -> tuple:
    """torch.func.vjp of forward at inputs, for the inputs at positions `wanted`: a backward
    that is itself differentiable, by torch.autograd as by outer torch.func levels (where
    torch.autograd.grad would not see the levels' wrapped tensors)."""

    def of_wanted(*chosen):
        full = list(inputs)
        for index, value in zip(wanted, chosen, strict=True):
            full[index] = value
        return forward(*full)

    _, pullback = torch.func.vjp(of_wanted, *[inputs[index] for index in wanted])
    return pullback(tuple(grad_outputs))


class LayerFunction(torch.autograd.Function):
    @staticmethod
    def forward(input, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes, reverse, train):
        return _ops.lstm_layer.default(
            input, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes, reverse, train
        )

    setup_context = staticmethod(ops._lstm_layer_setup_context)
    backward = staticmethod(ops._lstm_layer_backward)

    @staticmethod
    def vmap(info, in_dims, *args):
        # Calls apply again (not the op) so that transforms outside this vmap still see a
        # differentiable Function.
        return _vmap.layer_rule(LayerFunction.apply)(info, in_dims, *args)


class CellFunction(torch.autograd.Function):
    @staticmethod
    def forward(input, hx, cx, w_ih, w_hh, b_ih, b_hh):
        return _ops.lstm_cell.default(input, hx, cx, w_ih, w_hh, b_ih, b_hh)

    setup_context = staticmethod(ops._lstm_cell_setup_context)
    backward = staticmethod(ops._lstm_cell_backward)

    @staticmethod
    def vmap(info, in_dims, *args):
        return _vmap.cell_rule(CellFunction.apply)(info, in_dims, *args)


def _state_vmap_rule(function, single_output: bool):
    @staticmethod
    def vmap(info, in_dims, *args):
        rule = _vmap.single_output_loop_rule if single_output else _vmap.loop_rule
        return rule(function.apply)(info, in_dims, *args)

    return vmap


_state_functions: dict[str, type] = {}


def state_function(name: str) -> type:
    """The autograd.Function of a GRU / RNN op (fusedlstm._state_ops): the op, its
    setup_context and backward, and a vmap rule running it once per slice."""
    if name not in _state_functions:
        from . import _state_ops

        layer = name.endswith("_layer")
        op = getattr(_ops, name).default
        function = type(f"{name}_function", (torch.autograd.Function,), {
            "forward": staticmethod(lambda *args: op(*args)),
            "setup_context": staticmethod(
                _state_ops._layer_setup_context if layer else _state_ops._cell_setup_context),
            "backward": staticmethod(
                _state_ops._layer_backward if layer else _state_ops._cell_backward),
        })
        function.vmap = _state_vmap_rule(function, single_output=name == "rnn_cell")
        _state_functions[name] = function
    return _state_functions[name]

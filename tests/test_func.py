"""torch.func over the modules and ops: grad, vjp, jacrev, vmap and per-sample gradients
(vmap(grad)), against nn.LSTM / nn.LSTMCell under the same transform or, where nn fails
(vmap of nn.LSTM, vmap(grad) of nn.LSTMCell), against a loop of nn over the samples."""

import pytest
import torch
from conftest import tolerance
from lstm_pairs import make_pair
from torch import nn
from torch.func import functional_call, grad, jacrev, vjp, vmap
from torch.utils._pytree import tree_leaves

import fusedlstm

CONFIGS = [
    {},
    {"num_layers": 2, "bidirectional": True},
    {"proj_size": 3, "batch_first": True},
    {"bias": False},
]


def assert_trees_close(actual, expected, kind="lstm"):
    for a, e in zip(tree_leaves(actual), tree_leaves(expected), strict=True):
        torch.testing.assert_close(a, e, **tolerance(kind, torch.float64))


def squared_output(module):
    """loss(params, x): sum of squares of the module's output, through functional_call."""
    def loss(params, x):
        return functional_call(module, params, (x,))[0].pow(2).sum()
    return loss


def params_of(module):
    return dict(module.named_parameters())


@pytest.mark.parametrize("config", CONFIGS, ids=str)
def test_grad_matches_nn(config):
    ref, ours = make_pair(5, 7, **config)
    x = torch.randn(4, 3, 5, dtype=torch.float64)
    for argnums in (0, 1):
        expected = grad(squared_output(ref), argnums=argnums)(params_of(ref), x)
        actual = grad(squared_output(ours), argnums=argnums)(params_of(ours), x)
        assert_trees_close(actual, expected)


@pytest.mark.parametrize("config", CONFIGS, ids=str)
def test_vjp_and_jacrev_match_nn(config):
    ref, ours = make_pair(5, 7, **config)
    x = torch.randn(3, 2, 5, dtype=torch.float64)
    results = []
    for module in (ref, ours):
        params = params_of(module)

        def output(x, module=module, params=params):
            return functional_call(module, params, (x,))[0]

        out, pullback = vjp(output, x)
        results.append((pullback(torch.cos(out)), jacrev(output)(x)))
    assert_trees_close(results[1], results[0])


@pytest.mark.parametrize("config", CONFIGS, ids=str)
def test_per_sample_grads_match_a_loop_of_nn(config):
    """vmap(grad) over unbatched samples (DP-SGD); nn.LSTM cannot be vmapped, so the oracle is
    nn.LSTM's grad per sample."""
    ref, ours = make_pair(5, 7, **config)
    samples = torch.randn(6, 4, 5, dtype=torch.float64)
    actual = vmap(grad(squared_output(ours)), in_dims=(None, 0))(params_of(ours), samples)
    per_sample = [grad(squared_output(ref))(params_of(ref), s) for s in samples]
    expected = {name: torch.stack([g[name] for g in per_sample]) for name in per_sample[0]}
    assert_trees_close(actual, expected)


def test_per_sample_grads_of_lstm_cell():
    """nn.LSTMCell fails under vmap(grad) (in torch 2.14); ours matches its per-sample loop."""
    ref = nn.LSTMCell(5, 7, dtype=torch.float64)
    ours = fusedlstm.LSTMCell(5, 7, dtype=torch.float64)
    ours.load_state_dict(ref.state_dict())
    samples = torch.randn(6, 5, dtype=torch.float64)

    def loss(module):
        return lambda params, x: functional_call(module, params, (x,))[0].pow(2).sum()

    actual = vmap(grad(loss(ours)), in_dims=(None, 0))(params_of(ours), samples)
    per_sample = [grad(loss(ref))(params_of(ref), s) for s in samples]
    expected = {name: torch.stack([g[name] for g in per_sample]) for name in per_sample[0]}
    assert_trees_close(actual, expected, "cell")
    cell_grad = grad(loss(ours))(params_of(ours), samples)
    assert_trees_close(cell_grad, grad(loss(ref))(params_of(ref), samples), "cell")


@pytest.mark.parametrize("config", CONFIGS, ids=str)
def test_vmap_inference_matches_a_loop_of_nn(config):
    ref, ours = make_pair(5, 7, **config)
    sequences = torch.randn(5, 4, 3, 5, dtype=torch.float64)
    with torch.no_grad():
        actual = vmap(ours)(sequences)
        expected = [ref(s) for s in sequences]
    expected = (torch.stack([e[0] for e in expected]),
                (torch.stack([e[1][0] for e in expected]),
                 torch.stack([e[1][1] for e in expected])))
    assert_trees_close(actual, expected)


def test_vmap_with_vmapped_weights_and_packed_input():
    """The fallback rule (one op call per slice): an ensemble of weights, and packed input."""
    ref, ours = make_pair(5, 7)
    x = torch.randn(4, 3, 5, dtype=torch.float64)
    weights = torch.randn(3, *ours.weight_hh_l0.shape, dtype=torch.float64)

    def run(module, w_hh):
        params = dict(params_of(module), weight_hh_l0=w_hh)
        packed = nn.utils.rnn.pack_padded_sequence(x, [4, 3, 1])
        return functional_call(module, params, (packed,))[1][0]

    with torch.no_grad():
        actual = vmap(lambda w: run(ours, w))(weights)
        expected = torch.stack([run(ref, w) for w in weights])
    torch.testing.assert_close(actual, expected, **tolerance("lstm", torch.float64))


def test_second_derivative_by_nested_grad():
    ref, ours = make_pair(5, 7, num_layers=2)
    x = torch.randn(4, 3, 5, dtype=torch.float64)

    def gradient_norm(module):
        def inner(x):
            return functional_call(module, params_of(module), (x,))[0].pow(2).sum()
        return lambda x: grad(inner)(x).pow(2).sum()

    assert_trees_close(grad(gradient_norm(ours))(x), grad(gradient_norm(ref))(x))


def test_ops_vmap_rules_with_raw_ops():
    """torch.vmap directly over torch.ops.fusedlstm.* (the registered vmap rules)."""
    ref = nn.LSTMCell(5, 7, dtype=torch.float64)
    inputs = torch.randn(4, 3, 5, dtype=torch.float64)
    h = torch.randn(4, 3, 7, dtype=torch.float64)
    weights = (ref.weight_ih, ref.weight_hh, ref.bias_ih, ref.bias_hh)
    with torch.no_grad():
        hy, cy, _ = vmap(torch.ops.fusedlstm.lstm_cell, in_dims=(0, 0, 0, None, None, None, None))(
            inputs, h, h, *weights)
        expected = [ref(x, (s, s)) for x, s in zip(inputs, h, strict=True)]
    torch.testing.assert_close(hy, torch.stack([e[0] for e in expected]))
    torch.testing.assert_close(cy, torch.stack([e[1] for e in expected]))


@pytest.mark.parametrize("cell", [False, True], ids=["layer", "cell"])
@pytest.mark.parametrize("kind", ["gru", "rnn_tanh", "rnn_relu"])
def test_gru_rnn_grad_jacrev_and_vmap_match_nn(kind, cell):
    """grad and jacrev against nn.GRU / nn.RNN (and cells) under the same transform; vmap over
    the batch against nn on the whole batch (nn's layers have no batching rule)."""
    from state_pairs import make_pair as make_state_pair
    config = {} if cell else {"num_layers": 2, "bidirectional": True}
    ref, ours = make_state_pair(kind, 4, 5, cell=cell, **config)
    x = torch.randn(*(() if cell else (3,)), 6, 4, dtype=torch.float64)
    batch_dim = 0 if cell else 1

    def output(module):
        return lambda p, xi: (functional_call(module, p, (xi,)) if cell
                              else functional_call(module, p, (xi,))[0])

    def loss(module):
        return lambda p, xi: output(module)(p, xi).pow(2).sum()

    assert_trees_close(grad(loss(ours))(params_of(ours), x), grad(loss(ref))(params_of(ref), x))
    assert_trees_close(jacrev(loss(ours), argnums=1)(params_of(ours), x),
                       jacrev(loss(ref), argnums=1)(params_of(ref), x))
    per_sample = vmap(lambda xi: output(ours)(params_of(ours), xi.unsqueeze(batch_dim)),
                      in_dims=batch_dim)(x)
    expected = output(ref)(params_of(ref), x).movedim(batch_dim, 0).unsqueeze(batch_dim + 1)
    assert_trees_close(per_sample, expected)

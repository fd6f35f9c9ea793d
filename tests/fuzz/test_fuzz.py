"""Fuzzing every public entry point: random shapes (0 and 1 included), dtypes, memory layouts,
hx present, absent or of the wrong shape, packed sequences, NaN/Inf, direct op calls with
inconsistent sizes, arguments of the wrong type. Each case runs in a worker process, so a crash
is a failing case. Every case must end in nn.LSTM's result (where nn.LSTM accepts the input) or
a clean Python exception; the same for fusedlstm.GRU / RNN against nn.GRU / nn.RNN.

FUZZ_EXAMPLES sets the number of cases per test (CI: a fixed-seed slice; `make fuzz`: 10,000+).
"""

import multiprocessing
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from . import worker

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "150"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                    suppress_health_check=list(HealthCheck))


def refusal_nn_lacks(result: dict, spec: dict) -> bool:
    """Inputs we refuse and nn.LSTM lets through, each a deliberate choice (README, "Errors")."""
    message = result["message"]
    # nn.LSTM checks hx only for unpacked input; with a PackedSequence it takes a wrong-sized hx.
    return spec.get("packed", False) and "Expected hidden[" in message


class Worker:
    """One worker process, restarted after a crash."""

    def __init__(self):
        self.context = multiprocessing.get_context("spawn")
        self.start()
        self.outcomes = {}

    def start(self):
        self.parent, child = self.context.Pipe()
        self.process = self.context.Process(target=worker.serve, args=(child,), daemon=True)
        self.process.start()

    def run(self, spec: dict, timeout: float = 60.0) -> dict:
        result = self._run(spec, timeout)
        key = f"{spec['kind']}:{result['outcome']}"
        self.outcomes[key] = self.outcomes.get(key, 0) + 1
        return result

    def _run(self, spec: dict, timeout: float) -> dict:
        self.parent.send(spec)
        if not self.parent.poll(timeout):
            self.process.kill()
            self.start()
            return {"outcome": "hang", "message": f"no answer in {timeout} s"}
        try:
            return self.parent.recv()
        except EOFError:
            code = self.process.exitcode
            self.process.join()
            self.start()
            return {"outcome": "crash", "message": f"worker died with exit code {code}"}

    def close(self):
        self.parent.send(None)
        self.process.join(timeout=10)


@pytest.fixture(scope="module")
def pool():
    w = Worker()
    yield w
    w.close()
    print(f"\nfuzz cases by outcome: {dict(sorted(w.outcomes.items()))}, "
          f"total {sum(w.outcomes.values())}")


def check(result: dict, spec: dict) -> None:
    outcome = result["outcome"]
    assert outcome not in ("crash", "hang", "harness_error", "mismatch"), (result, spec)
    if outcome == "only_ours_refused":
        assert refusal_nn_lacks(result, spec), (result, spec)
    assert outcome != "only_nn_refused", (result, spec)
    if outcome in ("both_refused", "only_ours_refused", "error"):
        assert len(result["message"]) > 10, (result, spec)


@st.composite
def module_specs(draw):
    hidden = draw(st.integers(1, 6))
    dtype = draw(st.sampled_from(["float32", "float64", "float64", "bfloat16"]))
    input_size = draw(st.integers(1, 5))
    return {
        "kind": "module",
        "seed": draw(st.integers(0, 2**31 - 1)),
        "T": draw(st.integers(0, 6)),
        "B": draw(st.integers(0, 4)),
        "I": input_size,
        "H": hidden,
        "layers": draw(st.integers(1, 3)),
        "bias": draw(st.booleans()),
        "batch_first": draw(st.booleans()),
        "bidirectional": draw(st.booleans()),
        "proj": draw(st.one_of(st.just(0), st.integers(0, hidden - 1))),
        "dtype": dtype,
        "x_dtype": draw(st.sampled_from([dtype] * 9 + ["float32", "float64"])),
        "x_features": draw(st.sampled_from([input_size] * 9 + [input_size + 1])),
        "unbatched": draw(st.booleans()),
        "extra_dim": draw(st.sampled_from([False] * 19 + [True])),
        "layout": draw(st.sampled_from(["contiguous", "transposed", "sliced", "expanded",
                                        "overlapping"])),
        "special": draw(st.sampled_from(["none"] * 7 + ["nan", "inf", "-inf"])),
        "hx": draw(st.sampled_from(["none", "ok", "ok", "wrong_layers", "wrong_batch",
                                    "wrong_size"])),
        "packed": draw(st.booleans()),
    }


@st.composite
def op_specs(draw):
    """Consistent sizes for a direct lstm_layer call, then often one of them made wrong."""
    T, B, I, H = (draw(st.integers(1, 4)) for _ in range(4))  # noqa: E741  (the docs' names)
    proj = draw(st.booleans()) and H > 1
    P = draw(st.integers(1, H - 1)) if proj else H
    packed = draw(st.booleans())
    batch_sizes = sorted((draw(st.integers(1, B)) for _ in range(T)), reverse=True)
    batch_sizes[0] = B
    sizes = {"N": sum(batch_sizes), "T": T, "B": B, "I": I, "hB": B, "cB": B, "H": H, "P": P,
             "wI": I, "wP": P}
    if draw(st.booleans()):
        key = draw(st.sampled_from(sorted(sizes)))
        sizes[key] = draw(st.integers(-1, 5).filter(lambda v, old=sizes[key]: v != old))
    if packed and draw(st.integers(0, 3)) == 0:
        batch_sizes = draw(st.lists(st.integers(-1, 5), min_size=0, max_size=5))
    return {
        "kind": "op",
        "seed": draw(st.integers(0, 2**31 - 1)),
        "dtype": draw(st.sampled_from(["float32", "float64"])),
        "sizes": sizes,
        "batch_sizes": batch_sizes if packed else None,
        "bias": draw(st.booleans()),
        "proj": proj,
        "reverse": draw(st.booleans()),
    }


@SETTINGS
@given(spec=module_specs())
def test_module_inputs(pool, spec):
    check(pool.run(spec), spec)


@st.composite
def gru_rnn_module_specs(draw):
    """module_specs for nn.GRU and nn.RNN (no projection; hx is h_0 alone)."""
    spec = draw(module_specs())
    spec["family"] = draw(st.sampled_from(["gru", "rnn_tanh", "rnn_relu"]))
    spec["proj"] = 0
    return spec


@SETTINGS
@given(spec=gru_rnn_module_specs())
def test_gru_rnn_module_inputs(pool, spec):
    check(pool.run(spec), spec)


@SETTINGS
@given(spec=op_specs())
def test_direct_op_calls(pool, spec):
    check(pool.run(spec), spec)


@settings(max_examples=min(EXAMPLES, 64), deadline=None, database=None, derandomize=True)
@given(spec=st.fixed_dictionaries({
    "kind": st.just("types"),
    "module": st.sampled_from(["LSTM", "LSTMCell"]),
    "argument": st.sampled_from(["input", "hx"]),
    "value": st.sampled_from(sorted(worker.WRONG_VALUES)),
}))
def test_arguments_of_wrong_types(pool, spec):
    result = pool.run(spec)
    check(result, spec)
    if spec["value"] != "none" or spec["argument"] == "input":
        assert result["outcome"] == "error" and "must be" in result["message"], (result, spec)

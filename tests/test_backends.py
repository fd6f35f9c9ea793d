"""fusedlstm.backends: the run-time switchboard (csrc/switches.cpp)."""

import pytest
import torch
from conftest import tolerance
from lstm_pairs import make_pair, run

import fusedlstm
from fusedlstm import backends


def test_defaults_are_auto():
    assert backends.cpu.step == "auto" and backends.cpu.input_fusion == "auto"
    assert backends.layer.backward_chunk_steps == "0"


def test_flags_sets_inside_the_block_and_restores():
    with backends.flags(cpu_step="gemm", backward_chunk_steps=2):
        assert backends.cpu.step == "gemm" and backends.get("backward_chunk_steps") == "2"
        with backends.flags(cpu_step="fused"):
            assert backends.cpu.step == "fused"
        assert backends.cpu.step == "gemm"
    assert backends.cpu.step == "auto" and backends.layer.backward_chunk_steps == "0"


def test_restored_after_an_exception():
    with pytest.raises(RuntimeError), backends.flags(cpu_step="gemm"):
        raise RuntimeError("inside")
    assert backends.cpu.step == "auto"


@pytest.mark.parametrize("name,value,message", [
    ("cpu.step", "fast", "cpu.step takes one of auto, fused, gemm; got 'fast'"),
    ("backward_chunk_steps", "-1", "takes a count >= 0"),
    ("cpu.nothing", "on", "no switch named 'cpu.nothing'"),
])
def test_bad_names_and_values_are_clear_errors(name, value, message):
    with pytest.raises(ValueError, match=message):
        backends.set(name, value)


def test_attribute_typo_is_an_error():
    with pytest.raises(AttributeError, match="no switch 'stepp'"):
        backends.cpu.stepp = "gemm"


def test_a_switch_changes_the_strategy_at_run_time():
    """The same process runs both strategies: each matches nn.LSTM, and they differ from each
    other in the last bits (different summation orders), so the switch really took effect."""
    ref, ours = make_pair(256, 256, torch.float32)
    x = torch.randn(10, 8, 256)
    ref_out, _ = run(ref, x, None)
    outputs = {}
    for strategy in ("fused", "gemm"):
        with backends.flags(cpu_step=strategy):
            outputs[strategy], _ = run(ours, x, None)
        for a, b in zip(outputs[strategy], ref_out, strict=True):
            torch.testing.assert_close(a, b, **tolerance("lstm", torch.float32))
    assert not torch.equal(outputs["fused"][0], outputs["gemm"][0])


def test_environment_variables_are_not_switches(monkeypatch):
    monkeypatch.setenv("FUSEDLSTM_CPU_STEP", "gemm")
    assert fusedlstm.backends.cpu.step == "auto"

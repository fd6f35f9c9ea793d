"""Both CPU per-step strategies on every shape of the parity suite.

The CPU picks, per call, between the fused recurrent step (GEMM and gate math in one pass, for
small batches) and a GEMM call per step (oneDNN / MKL-packed) followed by the pointwise pass.
FUSEDLSTM_CPU_STEP forces one of them, so each is checked against nn.LSTM everywhere, not only on
the shapes where it would be chosen.
"""

import pytest
from conftest import run_suite_with_env


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["fused", "gemm"])
def test_parity_suite_with_forced_step_strategy(strategy):
    run_suite_with_env({"FUSEDLSTM_CPU_STEP": strategy},
                       ["test_lstm_parity.py", "test_packed.py", "test_layer_ops.py",
                        "test_reliability.py", "-k", "not compile and not 2_pow_31"])

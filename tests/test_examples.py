"""Each example in examples/ runs in its tiny mode and writes its plot."""

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.parametrize("name,says", [
    ("sentiment", "sentiment training: nn.LSTM"),
    ("sin_to_cos", "final MSE"),
    ("bilstm_attention", "held-out accuracy"),
    ("cell_from_scratch", "same outputs and gradients"),
])
def test_example_runs(name, says, tmp_path):
    done = subprocess.run([sys.executable, str(EXAMPLES / f"{name}.py"), "--tiny", "--out",
                           str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert says in done.stdout
    assert (tmp_path / f"{name}.png").stat().st_size > 1000

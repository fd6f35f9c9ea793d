"""Each example in examples/ runs in its tiny mode and writes its plot."""

import re
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


def test_deploy_example_matches_nn_everywhere(tmp_path):
    """examples/deploy.py: ONNX, TorchScript, per-sample gradients and a gradient penalty, each
    against nn.LSTM; every difference it prints must be float32-small."""
    done = subprocess.run([sys.executable, str(EXAMPLES / "deploy.py"), "--tiny", "--out",
                           str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    lines = [line for line in done.stdout.splitlines() if "vs nn.LSTM" in line]
    assert len(lines) == 4, done.stdout
    for line in lines:  # the differences are printed as d.de±dd
        figures = [float(f) for f in re.findall(r"\d\.\de[+-]\d\d", line)]
        assert figures and max(figures) < 1e-4, line
    assert (tmp_path / "sentiment.onnx").stat().st_size > 1000

"""Shared fixtures and the tolerances of the whole suite, stated once.

The oracle is torch.nn.LSTM / nn.LSTMCell (and gradcheck / opcheck); fusedlstm's own output is
never the reference.
"""

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import fusedlstm

# Absolute and relative tolerances against the nn.LSTM / nn.LSTMCell oracle.
TOL = {
    "cell": {torch.float64: (1e-10, 1e-10), torch.float32: (1e-5, 1e-5)},
    "lstm": {torch.float64: (1e-9, 1e-9), torch.float32: (1e-4, 1e-4)},
}
# Reduced precision: error relative to the largest magnitude of the float64 reference. bfloat16
# has an 8-bit mantissa (~4e-3 relative per rounding); a few roundings per step compound.
REDUCED_TOL = {torch.bfloat16: 3e-2, torch.float16: 5e-3}


def tolerance(kind: str, dtype: torch.dtype) -> dict:
    atol, rtol = TOL[kind][dtype]
    return {"atol": atol, "rtol": rtol}


def assert_close_scaled(actual: torch.Tensor, expected: torch.Tensor, rel: float, what: str):
    """|actual - expected| <= rel * max|expected| elementwise, computed in float64."""
    actual, expected = actual.double(), expected.double()
    scale = expected.abs().max().clamp_min(1e-6)
    error = (actual - expected).abs().max()
    assert error <= rel * scale, f"{what}: max error {error:.3g} > {rel} * {scale:.3g}"


def assert_all_close_scaled(actual: list, expected: list, rel: float, what: str):
    """assert_close_scaled on each pair of two equally long lists of tensors of equal shapes."""
    assert len(actual) == len(expected), f"{what}: {len(actual)} vs {len(expected)} tensors"
    for i, (a, b) in enumerate(zip(actual, expected, strict=True)):
        assert a.shape == b.shape, f"{what}[{i}]: shape {a.shape} vs {b.shape}"
        assert_close_scaled(a, b, rel, f"{what}[{i}]")


@contextlib.contextmanager
def threads(n: int):
    """torch.set_num_threads(n) for the block (the CPU kernels' slices: 1 or n per step)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_suite_with_switches(switches: dict, selection: list[str], env: dict | None = None) -> None:
    """Runs part of this suite in a fresh process with fusedlstm.backends switches set for the
    whole run (--fusedlstm-switches; env: extra environment, e.g. ATEN_CPU_CAPABILITY), and fails
    with its output if it fails."""
    spec = ",".join(f"{name}={value}" for name, value in switches.items())
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
         f"--fusedlstm-switches={spec}", *selection],
        cwd=Path(__file__).parent, env=dict(os.environ, **(env or {})), capture_output=True,
        text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert " passed" in done.stdout


def pytest_addoption(parser):
    parser.addoption("--fusedlstm-switches", default="",
                     help="fusedlstm.backends switches for the whole run: name=value,...")


@pytest.fixture(autouse=True, scope="session")
def _session_switches(request):
    """Sets the run's --fusedlstm-switches, and checks each one took."""
    spec = request.config.getoption("--fusedlstm-switches")
    for name, value in (pair.split("=", 1) for pair in spec.split(",") if pair):
        fusedlstm.backends.set(name, value)
        assert fusedlstm.backends.get(name) == value, (name, value)
    yield


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)

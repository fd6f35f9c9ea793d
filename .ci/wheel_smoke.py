"""Run by wheel_smoke.sh inside the fresh environment (stdin, so nothing but the installed wheel
provides fusedlstm): where it was imported from, parity with nn.LSTM, the wheel's contents."""

import sys
import zipfile
from importlib import metadata
from pathlib import Path

import torch
from torch import nn

import fusedlstm

wheel = Path(sys.argv[1])
assert "site-packages" in fusedlstm.__file__, f"fusedlstm imported from {fusedlstm.__file__}"
requires = metadata.requires("fusedlstm")
assert requires == [f"torch=={torch.__version__.split('+')[0]}"], requires
assert metadata.version("fusedlstm").startswith("0.1.0+torch"), metadata.version("fusedlstm")

torch.manual_seed(0)
ref = nn.LSTM(5, 7, num_layers=2, bidirectional=True, dtype=torch.float64)
ours = fusedlstm.LSTM(5, 7, num_layers=2, bidirectional=True, dtype=torch.float64)
ours.load_state_dict(ref.state_dict())
x = torch.randn(6, 3, 5, dtype=torch.float64, requires_grad=True)
results = []
for module in (ref, ours):
    out, (h, c) = module(x)
    (out.sin().sum() + h.sum() + c.cos().sum()).backward()
    results.append([out, h, c, x.grad.clone()] + [p.grad for p in module.parameters()])
    x.grad = None
for a, b in zip(results[0], results[1], strict=True):
    torch.testing.assert_close(b, a, atol=1e-9, rtol=1e-9)

names = zipfile.ZipFile(wheel).namelist()
leftovers = [n for n in names if not (n.startswith("fusedlstm/") or ".dist-info/" in n)
             or "__pycache__" in n or n.endswith((".o", ".a", ".cpp", ".cu", ".h"))]
assert not leftovers, f"the wheel carries build or test leftovers: {leftovers}"
print(f"wheel smoke test passed: {wheel.name}, {len(names)} files, parity with nn.LSTM to 1e-9")

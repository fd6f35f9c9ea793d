"""pytest-benchmark suite: `pytest bench/ --benchmark-json=out.json` (separate from tests/).

One benchmark per (shape, mode, implementation), grouped per shape and mode so pytest-benchmark
prints fusedlstm beside nn.LSTM. `make bench` (bench/run.py) is the interleaved report; this suite
is for pytest-benchmark's own tooling (comparisons between commits, histograms).
"""

import pytest
import torch
from cases import (
    CELL_IMPLS,
    CELL_SHAPES,
    LAYER_IMPLS,
    MAIN_SHAPES,
    MODES,
    STATE_FAMILIES,
    STATE_LAYER_IMPLS,
    Case,
    build_runners,
    environment,
    roofline_available,
)

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
LAYER_CASES = [(s, m, i) for s in MAIN_SHAPES for m in MODES for i in LAYER_IMPLS
               if roofline_available(i, DEVICE)]
CELL_CASES = [(s, m, i) for s in CELL_SHAPES for m in MODES for i in CELL_IMPLS]
STATE_CASES = [(f, s, m, i) for f in STATE_FAMILIES for s in MAIN_SHAPES for m in MODES
               for i in STATE_LAYER_IMPLS]


def bench_case(benchmark, shape, mode, impl, impls, family="lstm"):
    case = Case(shape, mode, DEVICE, torch.float32, family)
    run = build_runners(case, impls)[impl]
    benchmark.group = f"{family} {shape.name} ({shape.label}) {mode}"
    benchmark.extra_info.update(environment(DEVICE))
    benchmark.extra_info.update({"shape": shape.label, "mode": mode, "impl": impl,
                                 "dtype": "float32"})
    sync = torch.cuda.synchronize if DEVICE == "cuda" else (lambda: None)

    def once():
        run()
        sync()

    benchmark.pedantic(once, rounds=5, iterations=1, warmup_rounds=1)


@pytest.mark.parametrize("shape,mode,impl", LAYER_CASES,
                         ids=[f"{s.name}-{m}-{i}" for s, m, i in LAYER_CASES])
def test_layer(benchmark, shape, mode, impl):
    bench_case(benchmark, shape, mode, impl, (impl,))


@pytest.mark.parametrize("shape,mode,impl", CELL_CASES,
                         ids=[f"{s.name}-{m}-{i}" for s, m, i in CELL_CASES])
def test_cell(benchmark, shape, mode, impl):
    bench_case(benchmark, shape, mode, impl, CELL_IMPLS)


@pytest.mark.parametrize("family,shape,mode,impl", STATE_CASES,
                         ids=[f"{f}-{s.name}-{m}-{i}" for f, s, m, i in STATE_CASES])
def test_gru_rnn_layer(benchmark, family, shape, mode, impl):
    bench_case(benchmark, shape, mode, impl, (impl,), family)

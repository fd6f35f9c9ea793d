"""Writes the benchmark report from run.py's results: report.md (one table per device and dtype,
ratios in bold where fusedlstm is faster) and PNG plots of time ratios against nn.LSTM over the
hidden-size and batch-size sweeps.

Usage: python bench/report.py [results.json] [--publish]   (run.py calls write() itself)
A run writes bench/results/ (not tracked); --publish makes it the one in docs/benchmarks/ and the
README.
"""

import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PUBLISHED = ROOT / "docs" / "benchmarks"
NAMES = {
    "fused": "fusedlstm.LSTM",
    "nn": "nn.LSTM",
    "nn_native": "nn.LSTM native",
    "nn_cell_loop": "loop of nn.LSTMCell",
    "fused_cell_loop": "loop of fusedlstm.LSTMCell",
    "fused_cell": "fusedlstm.LSTMCell",
    "nn_cell": "nn.LSTMCell",
    "mm_roofline": "at::mm roofline",
    "onednn_roofline": "oneDNN GEMM roofline",
}


FAMILY_NAMES = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}


def family_of(record: dict) -> str:
    return record.get("family", "lstm")


def ms(t: dict) -> str:
    return f"{t['median'] * 1e3:.2f} ({t['q1'] * 1e3:.2f}–{t['q3'] * 1e3:.2f})"


def ratio(value: float) -> str:
    return f"**{value:.2f}**" if value < 1 else f"{value:.2f}"


def layer_table(records: list[dict], names: dict) -> list[str]:
    impls = records[0]["impls"]
    others = [i for i in impls if i != "fused"]
    head = (["shape", "mode"] + [f"{names[i]} ms" for i in impls]
            + [f"fused / {names[i]}" for i in others]
            + ["fused tokens/s", "max Δ out", "max Δ grad"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in records:
        t = r["timings"]
        fused = t["fused"]["median"]
        parity = list(r["parity"].values())
        cells = ([r["shape"]["name"] + " — " + label(r["shape"]), r["mode"]]
                 + [ms(t[i]) for i in impls] + [ratio(fused / t[i]["median"]) for i in others]
                 + [f"{r['tokens'] / fused:,.0f}", f"{parity[0]:.1e}", f"{parity[1]:.1e}"])
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def summary_table(records: list[dict]) -> list[str]:
    """The published shapes (no sweeps) in one table: fused time and its ratio to each baseline."""
    lines = ["| shape | dtype | mode | fusedlstm ms | nn.LSTM ms | fused / nn.LSTM | "
             "fused / native | fused / loop of nn.LSTMCell | at::mm roofline ms | "
             "fused / at::mm roofline | oneDNN GEMM roofline ms | fused / oneDNN roofline |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in records:
        if "fused" not in r["impls"] or r["shape"]["sweep"] or family_of(r) != "lstm":
            continue
        t = {k: v["median"] for k, v in r["timings"].items()}

        def vs(name, t=t):
            return ratio(t["fused"] / t[name]) if name in t else "—"

        roofline = " | ".join(
            f"{t[name] * 1e3:.2f} | {t['fused'] / t[name]:.2f}" if name in t else "— | —"
            for name in ("mm_roofline", "onednn_roofline"))
        lines.append(f"| {r['shape']['name']} — {label(r['shape'])} | {r['dtype']} | {r['mode']} | "
                     f"{t['fused'] * 1e3:.2f} | {t['nn'] * 1e3:.2f} | {vs('nn')} | "
                     f"{vs('nn_native')} | {vs('nn_cell_loop')} | {roofline} |")
    return lines


def state_summary_table(records: list[dict]) -> list[str]:
    """GRU and Elman RNN (tanh) against nn.GRU / nn.RNN: the layer shapes and the cell loops."""
    lines = ["| network | shape | dtype | mode | fusedlstm ms | torch.nn ms | fused / nn | "
             "max Δ out | max Δ grad |", "|---|---|---|---|---:|---:|---:|---:|---:|"]
    for r in records:
        if family_of(r) == "lstm":
            continue
        cell = "fused_cell" in r["impls"]
        fused, base = ("fused_cell", "nn_cell") if cell else ("fused", "nn")
        t = {k: v["median"] for k, v in r["timings"].items()}
        name = FAMILY_NAMES[family_of(r)] + ("Cell loop" if cell else "")
        parity = list(r["parity"].values())
        lines.append(f"| {name} | {r['shape']['name']} — {label(r['shape'])} | {r['dtype']} | "
                     f"{r['mode']} | {t[fused] * 1e3:.2f} | {t[base] * 1e3:.2f} | "
                     f"{ratio(t[fused] / t[base])} | {parity[0]:.1e} | {parity[1]:.1e} |")
    return lines


def label(shape: dict) -> str:
    text = f"T={shape['T']} B={shape['B']} I={shape['I']} H={shape['H']}"
    if shape["layers"] > 1:
        text += f" L{shape['layers']}"
    return text + (" bi" if shape["bidirectional"] else "")


def family_names(family: str) -> dict:
    """NAMES with the family's modules (fusedlstm.GRU, nn.GRUCell, ...)."""
    return {k: v.replace("LSTM", FAMILY_NAMES[family]) for k, v in NAMES.items()}


def memory_table(memory: list[dict], family: str = "lstm") -> list[str]:
    memory = [m for m in memory if m.get("family", "lstm") == family]
    names = family_names(family)
    shapes = list(dict.fromkeys(m["shape"] for m in memory))
    impls = list(dict.fromkeys(m["impl"] for m in memory))
    peak = {(m["shape"], m["impl"]): m["peak_bytes"] for m in memory}
    head = ["shape"] + [f"{names[i]} MiB" for i in impls] + [f"fused / {names['nn']}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in shapes:
        values = [peak.get((s, i)) for i in impls]
        fused, nn = peak.get((s, "fused")), peak.get((s, "nn"))
        cells = [s] + ["—" if v is None else f"{v / 2**20:.1f}" for v in values]
        cells.append(ratio(fused / nn) if fused and nn else "—")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def plot_sweeps(records: list[dict], out_dir: Path, suffix: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FormatStrFormatter, NullFormatter

    written = []
    for sweep, axis_label in (("H", "hidden size H (T=100, B=32, I=H)"),
                              ("B", "batch size B (T=100, I=H=256)")):
        chosen = [r for r in records if r["dtype"] == "float32" and "fused" in r["impls"]
                  and (r["shape"]["sweep"] == sweep
                       or (sweep == "B" and r["shape"]["name"] == "H256"))]
        if len(chosen) < 2:
            continue
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
        for ax, mode in zip(axes, ("inference", "training"), strict=True):
            rows = sorted((r for r in chosen if r["mode"] == mode),
                          key=lambda r: r["shape"][sweep])
            xs = [r["shape"][sweep] for r in rows]
            for impl in rows[0]["impls"]:
                if impl == "nn":
                    continue
                ys = [r["timings"][impl]["median"] / r["timings"]["nn"]["median"] for r in rows]
                ax.plot(xs, ys, marker="o", label=NAMES[impl], linewidth=2.2 if impl == "fused"
                        else 1.2)
            ax.axhline(1.0, color="black", linestyle="--", linewidth=1, label="nn.LSTM (= 1)")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xticks(xs, [str(x) for x in xs])
            ax.yaxis.set_major_formatter(FormatStrFormatter("%.2g"))
            ax.yaxis.set_minor_formatter(FormatStrFormatter("%.2g"))
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xlabel(axis_label)
            ax.set_title(f"{mode} ({'no_grad forward' if mode == 'inference' else 'fwd + bwd'})")
            ax.grid(True, which="both", alpha=0.3)
        axes[0].set_ylabel("time / nn.LSTM time (lower is faster)")
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=9,
                   frameon=False)
        device = rows[0]["device"]
        fig.suptitle(f"fusedlstm vs nn.LSTM on {device}, float32: time ratio vs {sweep}")
        fig.tight_layout(rect=(0, 0.07, 1, 1))
        path = out_dir / f"ratio_vs_{sweep}{suffix}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def write(results: dict, out_dir: Path, suffix: str = "") -> list[Path]:
    env = results["environment"]
    records = results["records"]
    lines = [f"# fusedlstm benchmark{' (quick)' if results.get('quick') else ''}", "",
             f"- machine: {env['cpu']}, device `{env['device']}`"
             + (f" ({env['gpu']}, cuDNN {env['cudnn']})" if "gpu" in env else ""),
             f"- torch {env['torch']}, fusedlstm {env['fusedlstm']}, {env['threads']} threads, "
             f"CPU kernels {env['cpu_capability']}",
             "- times: median (first–third quartile) of interleaved rounds, one process, same "
             "weights and input for every implementation; ratios < 1 (bold) mean fusedlstm is "
             "faster. `nn.LSTM` is the default path (oneDNN on CPU, cuDNN on GPU); `native` is "
             "nn.LSTM with those switched off (ATen's own LSTM).",
             "- parity: max |fused − nn.LSTM| of the output and of one weight gradient, per case.",
             "- roofline columns: the same GEMMs as the LSTM at the same shapes (input projection, "
             "one product per step, and in training the backward's per-step product, weight and "
             "input gradients), nothing else. `at::mm`: torch.mm into preallocated outputs (MKL "
             "on the CPU); `oneDNN GEMM`: mkldnn._linear_pointwise, which allocates each output "
             "(on AMD CPUs with AVX-512 oneDNN runs about 2x faster than MKL, so fusedlstm, which "
             "uses it, can beat the at::mm roofline; on an AVX2-only AMD Zen 3 the two are "
             "even on large products and MKL is faster on small ones).",
             f"- total run time {results['elapsed_s']:.0f} s"]
    if env["device"] == "cpu" and not env.get("onednn_bf16", True):
        lines.append("- bfloat16: this CPU's oneDNN has no bfloat16 kernels (they need AVX-512 or "
                     "AVX2-VNNI-2), so nn.LSTM / nn.GRU / nn.RNN and torch.mm take ATen's "
                     "reference GEMM in bfloat16 (a fastrnns forward ~6 s): the bfloat16 rows "
                     "cover the small shapes only (bench/cases.py `bf16_shapes`), without "
                     "roofline columns.")
    lines += ["", "## Summary", ""]
    lines += summary_table(records) + [""]
    if any(family_of(r) != "lstm" for r in records):
        lines += ["GRU and Elman RNN (tanh) against nn.GRU / nn.RNN (ATen's own; the CPU has "
                  "no oneDNN GRU or RNN):", ""] + state_summary_table(records) + [""]
    groups = {}
    for r in records:
        kind = "cell" if "fused_cell" in r["impls"] else "layer"
        key = (family_of(r), kind, r["device"], r["dtype"], tuple(r["impls"]))
        groups.setdefault(key, []).append(r)
    for (family, kind, device, dtype, _), rows in groups.items():
        name = FAMILY_NAMES[family]
        title = f"{name}Cell in a loop" if kind == "cell" else f"{name} layer stack"
        lines += [f"## {title}: {device}, {dtype}", ""]
        lines += layer_table_for(kind, rows, family_names(family)) + [""]
    if results.get("memory"):
        method = ("rise of the resident set (RSS high-water mark) during a second training step "
                  "in a fresh process per case" if env["device"] == "cpu"
                  else "torch.cuda.max_memory_allocated over a training step")
        lines += ["## Peak memory of one training step (forward + backward), float32", "",
                  f"Method: {method}.", ""] + memory_table(results["memory"]) + [""]
        for family in ("gru", "rnn"):
            if any(m.get("family") == family for m in results["memory"]):
                lines += [f"{FAMILY_NAMES[family]}:", ""]
                lines += memory_table(results["memory"], family) + [""]
    resources = out_dir / "kernel_resources.md"
    if resources.exists():  # written by bench/kernel_resources.py from the built CUDA extension
        lines += ["## CUDA kernels: registers and spills per arch", ""]
        lines += [line for line in resources.read_text().splitlines()[1:] if line.strip()] + [""]
    plots = plot_sweeps(records, out_dir, suffix)
    for p in plots:
        lines += [f"![{p.stem}]({p.name})", ""]
    path = out_dir / f"report{suffix}.md"
    path.write_text("\n".join(lines))
    return [path] + plots


def layer_table_for(kind: str, rows: list[dict], names: dict) -> list[str]:
    if kind == "layer":
        return layer_table(rows, names)
    head = ["shape (a loop of T steps)", "mode", f"{names['fused_cell']} ms",
            f"{names['nn_cell']} ms", "fused / nn", "max Δ out", "max Δ grad"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        t = r["timings"]
        parity = list(r["parity"].values())
        lines.append("| " + " | ".join([
            f"T={r['shape']['T']} B={r['shape']['B']} I={r['shape']['I']} H={r['shape']['H']}",
            r["mode"],
            ms(t["fused_cell"]), ms(t["nn_cell"]),
            ratio(t["fused_cell"]["median"] / t["nn_cell"]["median"]),
            f"{parity[0]:.1e}", f"{parity[1]:.1e}"]) + " |")
    return lines


def update_readme(report_path: Path, readme: Path) -> None:
    """Copies the report's summary and memory tables between the README's bench markers."""
    report = report_path.read_text()
    summary = report[report.index("## Summary") + len("## Summary"):
                     report.index("## LSTM layer stack")].strip()
    memory_section = report[report.index("| shape | fusedlstm.LSTM MiB"):]
    memory = memory_section.split("\n## ")[0].strip()  # the LSTM's table, then GRU's and RNN's
    cells = [section.split("\n\n", 1) for section in report.split("## LSTMCell in a loop: ")[1:]]
    cell_tables = "".join(f"\n\nLSTMCell in a Python loop, {title.strip()}:\n\n"
                          f"{table.split(chr(10) + '## ')[0].strip()}" for title, table in cells)
    text = readme.read_text()
    begin, end = "<!-- bench:begin -->", "<!-- bench:end -->"
    block = (f"{begin}\n{summary}{cell_tables}\n\nPeak memory of one training step (RSS rise "
             f"of a fresh process, second step):\n\n{memory}\n{end}")
    readme.write_text(text[:text.index(begin)] + block + text[text.index(end) + len(end):])


def publish(source: Path) -> list[Path]:
    """Makes a run the published one: its results, report, plots and the CUDA kernel resources
    in docs/benchmarks/ (tracked), its tables in the README. Local runs stay in bench/results/
    (ignored by git)."""
    PUBLISHED.mkdir(parents=True, exist_ok=True)
    results = json.loads(source.read_text())
    (PUBLISHED / "results.json").write_text(json.dumps(results, indent=1))
    resources = source.parent / "kernel_resources.md"
    if resources.exists():
        shutil.copy(resources, PUBLISHED / "kernel_resources.md")
    written = write(results, PUBLISHED)
    update_readme(written[0], ROOT / "README.md")
    return written


if __name__ == "__main__":
    # python bench/report.py [results.json] [--publish]
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    source = Path(args[0]) if args else ROOT / "bench" / "results" / "results.json"
    if "--publish" in sys.argv:
        print(publish(source))
    else:
        print(write(json.loads(source.read_text()), source.parent,
                    suffix=source.stem.replace("results", "")))

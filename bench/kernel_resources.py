"""Registers, shared memory, stack and local memory per CUDA kernel per arch, read from the built
extension with cuobjdump (the toolkit's, or the one triton ships). LOCAL or STACK above zero means
register spills or local arrays: the target is zero. Writes bench/results/kernel_resources.md.

Usage: python bench/kernel_resources.py [path/to/_C_cuda*.so]
"""

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def find_cuobjdump() -> str | None:
    found = shutil.which("cuobjdump")
    if found:
        return found
    for candidate in ("/usr/local/cuda/bin/cuobjdump",):
        if Path(candidate).exists():
            return candidate
    try:
        import triton  # the CUDA build of torch installs it, with NVIDIA's binutils

        tool = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
        return str(tool) if tool.exists() else None
    except ImportError:
        return None


def demangle(names: list[str]) -> list[str]:
    if not shutil.which("c++filt"):
        return names
    out = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True)
    return out.stdout.splitlines() or names


def short_name(demangled: str) -> str:
    """'void fusedlstm::cuda::(anon)::forward_kernel<float>(...)' -> 'forward_kernel<float>'."""
    head = demangled.replace("(anonymous namespace)::", "").split("(")[0].replace("void ", "")
    name, _, template = head.partition("<")
    return name.split("::")[-1] + ("<" + template.replace("c10::", "") if template else "")


def parse(dump: str) -> list[dict]:
    rows, arch = [], None
    function = None
    for line in dump.splitlines():
        if m := re.match(r"\s*arch = (sm_\d+)", line):
            arch = m.group(1)
        elif m := re.match(r"\s*Function (\S+):", line):
            function = m.group(1)
        elif function and "REG:" in line:
            fields = dict(re.findall(r"(\w+(?:\[\d+\])?):(\d+)", line))
            rows.append({"arch": arch, "mangled": function, "REG": int(fields.get("REG", 0)),
                         "STACK": int(fields.get("STACK", 0)),
                         "SHARED": int(fields.get("SHARED", 0)),
                         "LOCAL": int(fields.get("LOCAL", 0))})
            function = None
    for row, name in zip(rows, demangle([r["mangled"] for r in rows]), strict=True):
        row["kernel"] = short_name(name)
    return rows


def main() -> int:
    if len(sys.argv) > 1:
        library = Path(sys.argv[1])
    else:
        found = sorted((ROOT / "fusedlstm").glob("_C_cuda*.so"))
        if not found:
            print("no CUDA extension built (fusedlstm/_C_cuda*.so): nothing to report")
            return 0
        library = found[0]
    tool = find_cuobjdump()
    if tool is None:
        print("cuobjdump not found (CUDA toolkit or triton): cannot report kernel resources")
        return 0
    dump = subprocess.run([tool, "--dump-resource-usage", str(library)], capture_output=True,
                          text=True, check=True).stdout
    rows = parse(dump)
    lines = ["| arch | kernel | registers/thread | shared (B) | stack (B) | local (B) |",
             "|---|---|---:|---:|---:|---:|"]
    lines += [f"| {r['arch']} | `{r['kernel']}` | {r['REG']} | {r['SHARED']} | {r['STACK']} | "
              f"{r['LOCAL']} |" for r in sorted(rows, key=lambda r: (r["arch"], r["kernel"]))]
    spilling = [r for r in rows if r["LOCAL"] or r["STACK"]]
    table = "\n".join(lines)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "kernel_resources.md").write_text(
        f"# CUDA kernel resources\n\nFrom `cuobjdump --dump-resource-usage {library.name}`.\n\n"
        f"{table}\n\nKernels with local memory or stack (spills): {len(spilling)}\n")
    print(table)
    print(f"{len(rows)} kernels, {len(spilling)} with local memory or stack")
    return 1 if spilling else 0


if __name__ == "__main__":
    sys.exit(main())

"""Builds fusedlstm: the CPU extension always, the CUDA one when it can.

Switches (environment): FUSEDLSTM_CUDA=auto|0|1, TORCH_CUDA_ARCH_LIST, MAX_JOBS, DEBUG=1,
FUSEDLSTM_SANITIZE=1, FUSEDLSTM_BUILD_DIR (where objects are kept; default build/<configuration>).
Build against the torch you have: pip install --no-build-isolation .
"""

import os
import platform
import re
import shutil
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_clib import build_clib

ROOT = Path(__file__).parent.resolve()
CSRC = Path("csrc")


def real_cuda_home() -> str | None:
    """The CUDA toolkit directory, seeing through an nvcc wrapper script.

    torch derives CUDA_HOME from the nvcc on PATH; when that nvcc is a wrapper that execs the real
    one, the derived directory has no lib64 and linking fails (-lcudart). Prefer CUDA_HOME/CUDA_PATH
    when set, then the toolkit the wrapper points at, then the conventional /usr/local/cuda.
    """
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var):
            return os.environ[var]
    candidates = []
    nvcc = shutil.which("nvcc")
    if nvcc:
        nvcc = os.path.realpath(nvcc)
        candidates.append(Path(nvcc).parent.parent)
        try:
            text = Path(nvcc).read_text(errors="ignore")[:4096]
            match = re.search(r"exec\s+\"?(/\S+?/bin/nvcc)\"?\s", text)
            if match:
                candidates.insert(0, Path(os.path.realpath(match.group(1))).parent.parent)
        except OSError:
            pass
    candidates.append(Path("/usr/local/cuda"))
    for home in candidates:
        if (home / "bin" / "nvcc").exists() and any((home / d / "libcudart.so").exists()
                                                     for d in ("lib64", "lib")):
            return str(home)
    return None


def cuda_mode() -> str:
    mode = os.environ.get("FUSEDLSTM_CUDA", "auto").strip().lower()
    if mode not in ("auto", "0", "1"):
        sys.exit(f"FUSEDLSTM_CUDA must be auto, 0 or 1, got {mode!r}")
    return mode


MODE = cuda_mode()
if MODE != "0":
    home = real_cuda_home()
    if home:
        os.environ["CUDA_HOME"] = home  # torch.utils.cpp_extension reads it at import

import torch  # noqa: E402
from torch.utils.cpp_extension import (  # noqa: E402
    CUDA_HOME,
    BuildExtension,
    CppExtension,
    CUDAExtension,
    include_paths,
)

DEBUG = os.environ.get("DEBUG", "0") == "1"
# FUSEDLSTM_SANITIZE=1 (make sanitize): AddressSanitizer + UndefinedBehaviorSanitizer, CPU only.
SANITIZE = os.environ.get("FUSEDLSTM_SANITIZE", "0") == "1"
SANITIZER_FLAGS = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined",
                   "-fno-omit-frame-pointer", "-g"] if SANITIZE else []
OPT = (["-O0", "-g"] if DEBUG else ["-O1" if SANITIZE else "-O3"]) + SANITIZER_FLAGS
# at::parallel_for is a header template: without -fopenmp in our own translation units it runs
# every range on the calling thread. Linking it resolves to the libgomp torch already loaded
# (same soname), so there is one OpenMP runtime in the process.
OPENMP = [] if sys.platform == "darwin" else ["-fopenmp"]
X86 = platform.machine().lower() in ("x86_64", "amd64")
ABI = f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}"
INCLUDE = [str(ROOT / "csrc" / "include")]


def build_cuda() -> bool:
    if MODE == "0" or SANITIZE:
        return False
    found = torch.version.cuda is not None and CUDA_HOME is not None
    if MODE == "1" and not found:
        sys.exit(
            "FUSEDLSTM_CUDA=1 but CUDA can't be built: "
            f"torch.version.cuda={torch.version.cuda}, CUDA toolkit={CUDA_HOME}"
        )
    return found


def nvidia_include_dirs() -> list[str]:
    """cuBLAS/cuSPARSE headers that ATen/cuda includes ship with torch's nvidia pip packages."""
    dirs = []
    for entry in sys.path:
        base = Path(entry) / "nvidia"
        if base.is_dir():
            dirs += [str(p) for p in sorted(base.glob("cu*/include")) if p.is_dir()]
            dirs += [str(p) for p in sorted(base.glob("*/include")) if p.is_dir()]
    return list(dict.fromkeys(dirs))


# Per-capability kernels, each compiled alone with its -m flags (as ATen compiles its own kernels)
# into a static library linked into the CPU extension; chosen at run time. name: (source,
# CPU_CAPABILITY namespace, -m flags). The bfloat16 fused step is AVX-512 code with the BF16 dot
# product, in a namespace of its own (see csrc/cpu/fused_step_bf16.cpp).
AVX512_FLAGS = ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mavx2", "-mfma", "-mf16c"]
CAPABILITIES = {
    "avx2": ("pointwise_cpu_avx2.cpp", "AVX2", ["-mavx2", "-mfma", "-mf16c"]),
    "avx512": ("pointwise_cpu_avx512.cpp", "AVX512", AVX512_FLAGS),
    "avx512_bf16": ("fused_step_bf16.cpp", "AVX512_BF16",
                    [*AVX512_FLAGS, "-mavx512bf16"]),
}
capability_libraries = [
    (
        f"fusedlstm_{name}",
        {
            "sources": [str(CSRC / "cpu" / source)],
            "include_dirs": INCLUDE + include_paths(),
            # ATen's vector headers trip -Wall (Python's CFLAGS) in ways that are theirs to fix.
            "cflags": ["-std=c++20", "-fPIC", ABI, *OPT, *flags,
                       "-Wno-unknown-pragmas", "-Wno-maybe-uninitialized",
                       f"-DCPU_CAPABILITY={namespace}", "-DCPU_CAPABILITY_AVX512"
                       if namespace.startswith("AVX512") else f"-DCPU_CAPABILITY_{namespace}"],
        },
    )
    for name, (source, namespace, flags) in CAPABILITIES.items()
] if X86 else []

cpu_sources = [
    CSRC / "ops.cpp",
    CSRC / "switches.cpp",
    CSRC / "autocast.cpp",
    CSRC / "cell_autograd.cpp",
    CSRC / "cpu" / "ops_cpu.cpp",
    CSRC / "cpu" / "layer_cpu.cpp",
    CSRC / "cpu" / "pointwise_cpu.cpp",
    CSRC / "cpu" / "pointwise_cpu_default.cpp",
    CSRC / "cpu" / "cpu_gemm.cpp",
    CSRC / "cpu" / "fused_step.cpp",
    CSRC / "cpu" / "fused_state_step.cpp",
    CSRC / "cpu" / "weight_packing.cpp",
    CSRC / "cpu" / "mkl_packed_gemm.cpp",
    CSRC / "cpu" / "onednn_linear.cpp",
    CSRC / "cpu" / "buffer_pool.cpp",
    # The CUDA kernels' own sources compiled as host C++ on the SIMT emulation (csrc/simt).
    CSRC / "simt" / "simt_runtime.cpp",
    CSRC / "simt" / "pointwise_simt.cpp",
    CSRC / "simt" / "persistent_simt.cpp",
    CSRC / "simt" / "ops_simt.cpp",
]
ext_modules = [
    CppExtension(
        "fusedlstm._C",
        [str(s) for s in cpu_sources],
        include_dirs=INCLUDE,
        define_macros=[("FUSEDLSTM_X86_KERNELS", None)] if X86 else [],
        extra_compile_args={"cxx": OPT + OPENMP},
        extra_link_args=SANITIZER_FLAGS + OPENMP,
    )
]

WITH_CUDA = build_cuda()
ARCHS = ""
if WITH_CUDA:
    ARCHS = os.environ.get("TORCH_CUDA_ARCH_LIST", "8.0;9.0")
    os.environ["TORCH_CUDA_ARCH_LIST"] = ARCHS
    ext_modules.append(
        CUDAExtension(
            "fusedlstm._C_cuda",
            [str(CSRC / "cuda" / "ops_cuda.cpp"), str(CSRC / "cuda" / "switches_cuda.cpp"),
             str(CSRC / "cuda" / "pointwise_cuda.cu"), str(CSRC / "cuda" / "persistent_cuda.cu")],
            include_dirs=INCLUDE + nvidia_include_dirs(),
            extra_compile_args={
                "cxx": OPT,
                "nvcc": [*OPT, "--expt-relaxed-constexpr", "-Xptxas=-warn-spills",
                         "--resource-usage"] + (["-G"] if DEBUG else []),
            },
        )
    )


# Objects live in build/<configuration>/ across builds, so that a rebuild (every `make` target,
# and pip's editable installs, which would otherwise build in a fresh temporary directory)
# recompiles only what changed: ninja tracks the extensions' headers, obj_deps the libraries'.
CONFIGURATION = "-".join(name for name, on in (("debug", DEBUG), ("sanitize", SANITIZE)) if on)
# FUSEDLSTM_BUILD_DIR overrides it (make wheel: a fresh directory, so its log shows every compile).
BUILD_DIR = Path(os.environ.get("FUSEDLSTM_BUILD_DIR") or ROOT / "build" / (CONFIGURATION or
                                                                          "release")).resolve()
HEADERS = sorted(str(p) for p in (ROOT / "csrc").rglob("*.h*"))
for _, library in capability_libraries:
    library["obj_deps"] = {"": HEADERS + [str(ROOT / "setup.py")]}


class PersistentBuildClib(build_clib):
    def finalize_options(self):
        super().finalize_options()
        self.build_temp = self.build_clib = str(BUILD_DIR / "libraries")


class BuildWithCapabilities(BuildExtension):
    """build_ext that builds the per-capability static libraries first (editable installs too),
    both in the persistent BUILD_DIR."""

    def finalize_options(self):
        super().finalize_options()
        self.build_temp = str(BUILD_DIR / "extensions")

    def run(self):
        if self.distribution.has_c_libraries():
            self.run_command("build_clib")
        super().run()


def write_build_info() -> None:
    (ROOT / "fusedlstm" / "_build_info.py").write_text(
        '"""Written by setup.py at build time."""\n\n'
        f"CUDA_COMPILED = {WITH_CUDA}\n"
        f"CUDA_ARCHS = {ARCHS.replace(' ', ';').split(';') if WITH_CUDA else []!r}\n"
        f"BUILT_WITH_TORCH = {torch.__version__!r}\n"
        f"BUILT_WITH_CUDA = {torch.version.cuda if WITH_CUDA else None!r}\n"
        f"DEBUG = {DEBUG}\n"
    )


def remove_stale_cuda_extension() -> None:
    """An editable build without CUDA must not leave an older _C_cuda*.so beside the new _C: its
    op signatures may no longer match, and loading it would abort the process."""
    for stale in (ROOT / "fusedlstm").glob("_C_cuda*.so"):
        stale.unlink()


BASE_VERSION = "0.1.0"


def torch_release() -> str:
    """'2.14.1' for torch 2.14.1+cu130: the torch whose C++ ABI the extensions are built for."""
    return torch.__version__.split("+")[0]


def version_and_requirements() -> tuple[str, list[str]]:
    """A built fusedlstm is bound to the C++ ABI of the torch it was compiled against, so a wheel
    (or any build from source) says which in its version's local part and requires exactly that
    torch: 0.1.0+torch2.14.1.cu130 requires torch==2.14.1. An sdist compiles nothing: it requires
    any torch and is bound to the one present when it is built."""
    if "sdist" in sys.argv:
        return BASE_VERSION, ["torch"]
    flavour = f"cu{torch.version.cuda.replace('.', '')}" if WITH_CUDA else "cpu"
    return f"{BASE_VERSION}+torch{torch_release()}.{flavour}", [f"torch=={torch_release()}"]


write_build_info()
if not WITH_CUDA:
    remove_stale_cuda_extension()
VERSION, REQUIREMENTS = version_and_requirements()
setup(
    version=VERSION,
    install_requires=REQUIREMENTS,
    libraries=capability_libraries,
    ext_modules=ext_modules,
    cmdclass={"build_clib": PersistentBuildClib,
              "build_ext": BuildWithCapabilities.with_options(use_ninja=True)},
)

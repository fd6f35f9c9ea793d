// AVX2 build of the pointwise kernels. setup.py compiles this file alone with the matching -m
// flags and the CPU_CAPABILITY=AVX2 / CPU_CAPABILITY_AVX2 defines (as ATen builds its own
// kernels); pointwise_cpu.cpp calls it only when the CPU reports AVX2.
#include "pointwise_cpu_kernel.h"

namespace fusedlstm::cpu {
RowKernels row_kernels_avx2() { return AVX2::row_kernels_here("AVX2"); }
}  // namespace fusedlstm::cpu

// AVX512 build of the pointwise kernels. setup.py compiles this file alone with the matching -m
// flags and the CPU_CAPABILITY=AVX512 / CPU_CAPABILITY_AVX512 defines (as ATen builds its own
// kernels); pointwise_cpu.cpp calls it only when the CPU reports AVX512.
#include "pointwise_cpu_kernel.h"

namespace fusedlstm::cpu {
RowKernels row_kernels_avx512() { return AVX512::row_kernels_here("AVX512"); }
}  // namespace fusedlstm::cpu

// Baseline-ISA build of the pointwise kernels: the fallback on every CPU.
#define CPU_CAPABILITY DEFAULT
#include "pointwise_cpu_kernel.h"

namespace fusedlstm::cpu {
RowKernels row_kernels_default() {
  return DEFAULT::row_kernels_here("DEFAULT");
}
}  // namespace fusedlstm::cpu

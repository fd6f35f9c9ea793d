// Baseline-ISA build of the pointwise kernels: the fallback on every CPU.
#define CPU_CAPABILITY DEFAULT
#include "pointwise_cpu_kernel.h"

namespace fusedlstm::cpu {
RowKernels row_kernels_default() {
  return {&DEFAULT::forward_rows, &DEFAULT::backward_rows, "DEFAULT"};
}
}  // namespace fusedlstm::cpu

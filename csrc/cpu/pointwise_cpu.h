// The CPU pointwise kernels, one set per vector capability, over a range of a step's rows.
// Framework-free: the capability translation units include nothing of ATen but at::vec.
#pragma once

#include <fusedlstm/pointwise.h>

#include <cstdint>

namespace fusedlstm::cpu {

// The row-range kernels each capability translation unit provides.
using ForwardRowsFn = void (*)(const PointwiseForwardArgs&, int64_t row_begin, int64_t row_end);
using BackwardRowsFn = void (*)(const PointwiseBackwardArgs&, int64_t row_begin, int64_t row_end);

struct RowKernels {
  ForwardRowsFn forward;
  BackwardRowsFn backward;
  const char* capability;
};

// One per capability; AVX2 and AVX-512 exist only in x86-64 builds (FUSEDLSTM_X86_KERNELS).
RowKernels row_kernels_default();
RowKernels row_kernels_avx2();
RowKernels row_kernels_avx512();

// The kernels chosen for this process (honours ATEN_CPU_CAPABILITY, as ATen's own kernels do).
const RowKernels& selected_row_kernels();

}  // namespace fusedlstm::cpu

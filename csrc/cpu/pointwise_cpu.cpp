#include "cpu_backend.h"
#include "pointwise_cpu.h"

#include <ATen/Parallel.h>
#include <ATen/Version.h>

#include <algorithm>

namespace fusedlstm::cpu {

namespace {
// Units (one hidden unit of one row) per task: below this a step's pointwise pass runs on one
// thread, since a fork/join costs a few microseconds and a vectorised float unit a couple of
// nanoseconds. A float64 unit costs about ten times more (half the lanes, Sleef's double exp and
// tanh), so its passes split into threads from an eighth of the size.
constexpr int64_t kUnitsPerTask = 8192;
constexpr int64_t kDoubleUnitsPerTask = 1024;

int64_t rows_per_task(c10::ScalarType dtype, int64_t hidden) {
  const int64_t units = dtype == c10::ScalarType::Double ? kDoubleUnitsPerTask : kUnitsPerTask;
  return std::max<int64_t>(1, units / hidden);
}
}  // namespace

const RowKernels& selected_row_kernels() {
  static const RowKernels kernels = [] {
#if defined(FUSEDLSTM_X86_KERNELS)
    const std::string capability = at::get_cpu_capability();
    if (capability == "AVX512") return row_kernels_avx512();
    if (capability == "AVX2") return row_kernels_avx2();
#endif
    return row_kernels_default();
  }();
  return kernels;
}

bool avx2_row_kernels() {
  static const bool avx2 = std::string(selected_row_kernels().capability) == "AVX2";
  return avx2;
}

namespace {
// A pass over a step's rows, split into tasks of rows_per_task rows.
template <typename Args, typename Kernel>
void over_rows(const Args& args, Kernel kernel) {
  at::parallel_for(0, args.rows, rows_per_task(args.dtype, args.hidden),
                   [&](int64_t begin, int64_t end) { kernel(args, begin, end); });
}
}  // namespace

void CpuBackend::forward(const PointwiseForwardArgs& args) {
  over_rows(args, selected_row_kernels().forward);
}

void CpuBackend::backward(const PointwiseBackwardArgs& args) {
  over_rows(args, selected_row_kernels().backward);
}

void CpuBackend::state_forward(const StateForwardArgs& args) {
  over_rows(args, selected_row_kernels().state_forward);
}

void CpuBackend::state_backward(const StateBackwardArgs& args) {
  over_rows(args, selected_row_kernels().state_backward);
}

}  // namespace fusedlstm::cpu

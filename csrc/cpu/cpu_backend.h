// The CPU back-end of the shared time loop: the fused pointwise passes (a step's rows split over
// threads, each running the kernel compiled for this CPU's vector capability) and the per-step
// GEMMs (cpu_gemm.h).
#pragma once

#include <fusedlstm/pointwise.h>
#include <fusedlstm/state_cell_units.h>

#include "buffer_pool.h"
#include "cpu_gemm.h"
#include "fused_step.h"

namespace fusedlstm::cpu {

struct CpuBackend : CpuGemm {
  using StepGemm = CpuStepGemm;
  using FusedStep = FusedRecurrentStep;
  using FusedBackward = FusedRecurrentBackward;
  static void forward(const PointwiseForwardArgs& args);
  static void backward(const PointwiseBackwardArgs& args);
  static void state_forward(const StateForwardArgs& args);  // GRU, Elman RNN
  static void state_backward(const StateBackwardArgs& args);
  // The time loop's large buffers: from the pool, reused across calls (buffer_pool.h).
  static at::Tensor empty(at::IntArrayRef sizes, const at::TensorOptions& options) {
    return pooled_empty(sizes, options);
  }
};

// The cell ops' back-end: the same pointwise passes, ATen's GEMMs (MKL). A cell's products run
// once per call, where oneDNN's per-call cost and the transposed copies it needs for the
// backward (dgates W and dgates^T x) cost more than they save (docs/performance.md).
struct CpuCellBackend : AtenGemm {
  using StepGemm = AtenStepGemm;
  static void forward(const PointwiseForwardArgs& args) { CpuBackend::forward(args); }
  static void backward(const PointwiseBackwardArgs& args) { CpuBackend::backward(args); }
  static void state_forward(const StateForwardArgs& args) { CpuBackend::state_forward(args); }
  static void state_backward(const StateBackwardArgs& args) { CpuBackend::state_backward(args); }
  static at::Tensor empty(at::IntArrayRef sizes, const at::TensorOptions& options) {
    return at::empty(sizes, options);
  }
};

}  // namespace fusedlstm::cpu

// The CPU's fused recurrent step (float32): h_{t-1} W_hh^T and the gate math in one pass over
// blocks of hidden units, W_hh packed once per call (fused_step_kernel.h has the kernel). Chosen
// for small batches, where a GEMM call per step costs more in overhead than in arithmetic.
#pragma once

#include <ATen/ATen.h>

#include <fusedlstm/pointwise.h>

#include <cstdint>

#include "pointwise_cpu.h"

namespace fusedlstm::cpu {

// Batch rows up to which the fused step beats a per-step GEMM call here (bench/, DESIGN notes).
constexpr int64_t kFusedStepMaxRows = 4;

class FusedRecurrentStep {
 public:
  // w_hh: (4H, P). Active only for float32 weights used for more than one step, at most
  // kFusedStepMaxRows rows, unless FUSEDLSTM_CPU_STEP=fused|gemm forces the choice.
  FusedRecurrentStep(const at::Tensor& w_hh, int64_t max_rows, int64_t calls);

  bool active() const { return packed_.defined(); }

  // Adds h_prev W_hh^T into args.preact (in place), then runs the pointwise step `args`
  // (which must not write h_prev: h_copy must be null).
  void forward(const PointwiseForwardArgs& args, const at::Tensor& h_prev) const;

 private:
  at::Tensor packed_;
  int64_t inner_ = 0;
  int64_t blocks_ = 0;
  FusedBlocksFn kernel_ = nullptr;
};

}  // namespace fusedlstm::cpu

// The CPU's fused recurrent step (float32): h_{t-1} W_hh^T and the gate math in one pass over
// blocks of hidden units, W_hh packed once per call (fused_step_kernel.h has the kernel). Chosen
// for small batches, where a GEMM call per step costs more in overhead than in arithmetic.
#pragma once

#include <ATen/ATen.h>

#include <fusedlstm/pointwise.h>

#include <cstdint>

#include "pointwise_cpu.h"

namespace fusedlstm::cpu {

// When the fused step beats a GEMM call per step here (measured with FUSEDLSTM_CPU_STEP, T=100,
// 2 threads): always up to 4 rows; up to 16 rows while W_hh fits in L2 (1.6-1.8x faster at
// B=8, H=128/256; even at B=16, H=256); beyond that, or with a larger W_hh, oneDNN's GEMM wins.
constexpr int64_t kFusedStepAlwaysRows = 4;
constexpr int64_t kFusedStepMaxRows = 16;
constexpr int64_t kFusedStepMaxWeightBytes = int64_t{2} << 20;

class FusedRecurrentStep {
 public:
  // w_hh: (4H, P). Active only for float32 weights used for more than one step, in the cases
  // above, unless FUSEDLSTM_CPU_STEP=fused|gemm forces the choice.
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

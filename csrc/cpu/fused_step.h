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

// Multiply-accumulates per step that one more thread must get to repay the wait for the other
// slices at every step (see slices_for; measured in DESIGN.md terms in the issue note).
constexpr int64_t kMinMacsPerSlice = int64_t{1} << 15;

class FusedRecurrentStep {
 public:
  // w_hh: (4H, P). Active only for float32 weights used for more than one step, in the cases
  // above, unless FUSEDLSTM_CPU_STEP=fused|gemm forces the choice.
  FusedRecurrentStep(const at::Tensor& w_hh, int64_t max_rows, int64_t calls);

  bool active() const { return packed_.defined(); }

  // Runs `count` consecutive steps: per step, adds h_{t-1} W_hh^T into the pre-activations (in
  // place) and runs the pointwise step on them. A step must not write its own h_{t-1}.
  //
  // Several steps run in one parallel region: each thread owns a fixed slice of hidden-unit
  // blocks for all of them (its slice of the packed W_hh stays in its cache), and a step starts
  // once every slice has finished the one before it (one counter, no fork/join per step).
  void forward_steps(const RecurrentStep* steps, int64_t count) const;

  // Threads (slices of blocks) for steps of `rows` rows: one unless each thread gets enough
  // work per step to repay the per-step wait.
  int64_t slices_for(int64_t rows) const;

 private:
  at::Tensor packed_;
  int64_t inner_ = 0;
  int64_t blocks_ = 0;
  int64_t kernel_width_ = 0;  // hidden units per block
  FusedBlocksFn kernel_ = nullptr;
};

}  // namespace fusedlstm::cpu

// The CPU's fused recurrent steps: per step, the recurrent GEMM and the gate math in one pass over
// blocks of hidden units, W_hh packed once per call (fused_step_kernel.h has the float32 kernels,
// fused_step_bf16.cpp the bfloat16 inference one); with input fusion the step's input projection
// too. Chosen for small batches, where a GEMM call per step costs more in overhead than in
// arithmetic, and in inference for batches up to a few hundred rows (the rules below).
//
// Several steps run in one parallel region: each thread owns a fixed slice of hidden-unit blocks
// for all of them (its slice of the packed W_hh stays in its cache), and a step starts once every
// slice has finished the one before it (one shared counter, no fork/join per step).
#pragma once

#include <ATen/ATen.h>

#include <fusedlstm/pointwise.h>

#include <cstdint>

#include "pointwise_cpu.h"

namespace fusedlstm::cpu {

// When the fused steps beat a GEMM call per step here (measured with FUSEDLSTM_CPU_STEP, T=100,
// 2 threads, inference and training): always up to 4 rows; up to 64 rows with a W_hh of 1 MiB or
// less (H <= 256: 1.4-3x faster at B=32, H=64-256, still 5-8% at B=64, H=256); up to 32 rows
// with W_hh up to 4 MiB (H=512: 6-10% faster at B=32, 5% slower in training at B=64). Beyond
// that, or with a larger W_hh (H=1024: 17% slower in training at B=16), oneDNN's GEMM wins.
constexpr int64_t kFusedStepAlwaysRows = 4;
constexpr int64_t kFusedStepSmallWeightBytes = int64_t{1} << 20;
constexpr int64_t kFusedStepSmallWeightMaxRows = 64;
constexpr int64_t kFusedStepMaxWeightBytes = int64_t{4} << 20;
constexpr int64_t kFusedStepMaxRows = 32;

// In inference with input fusion the fused step does all of a step's arithmetic from W_ih and W_hh
// read once per step, and wins more widely (T=100, 2 threads, inference, fused / GEMM path:
// B=128 H=256 0.88 / 1.00, B=256 H=256 0.87 / 0.95, B=64 H=512 0.92 / 0.99, B=128 H=512
// 0.94 / 0.99, B=32 H=768 0.95 / 1.02 of nn.LSTM): while both weights fit in the 32 MiB L3 with
// room to spare (H=1024, 32 MiB of weights: 1.17 / 0.98 at B=16) and up to 256 rows
// (B=512 H=256: 0.88 / 0.86).
constexpr int64_t kInputFusedMaxWeightBytes = int64_t{20} << 20;
constexpr int64_t kInputFusedMaxRows = 256;

// Multiply-accumulates per step that one more thread must get to repay the wait for the other
// slices at every step (see slices_for).
constexpr int64_t kMinMacsPerSlice = int64_t{1} << 15;

// Whether the fused step applies to a float32 W_hh used for `calls` steps of up to `max_rows`
// rows: the rule above, unless FUSEDLSTM_CPU_STEP=fused|gemm forces the choice.
bool fused_step_applies(const at::Tensor& w_hh, int64_t max_rows, int64_t calls);

// Input fusion (x_t W_ih^T in the fused step) reads W_ih once per step instead of once per call:
// it pays from a full 4-row register tile on (each weight vector feeding 4 rows); below, a step
// is a GEMV and the extra weight traffic costs more than the projection GEMM (T=100, H=256,
// inference, fused with / without input fusion / nn.LSTM: B=1 0.96 / 0.61, B=2 0.78 / 0.46, B=4
// 0.66 / 0.69, B=8 0.79 / 1.08; H=512: B=1 1.26 / 0.68, B=4 0.89 / 0.95). In training, where
// the saved gates are written either way, from 8 rows (B=4: 0.73 / 0.73 at H=256, 1.03 / 0.97 at
// H=512; B=8 H=256 1.00 / 1.02; B=32 H=128-256 4-6% faster).
constexpr int64_t kInputFusionMinRows = 4;
constexpr int64_t kInputFusionMinRowsTraining = 8;

// Whether a fused step that applies also takes over the input projection of W_ih: float32,
// I > 0, the rows above; FUSEDLSTM_CPU_INPUT_FUSION=0 / =1 forces it off / on.
bool input_fusion_applies(const at::Tensor& w_ih, const at::Tensor& w_hh, int64_t max_rows,
                          bool inference);

// Whether the fused step applies in inference, with input fusion: fused_step_applies, or the
// wider inference rule above.
bool fused_inference_applies(const at::Tensor& w_ih, const at::Tensor& w_hh, int64_t max_rows,
                             int64_t calls);

// bfloat16 (CPUs with avx512_bf16; the forward with input fusion): the fused steps do a k pair
// per instruction and win wherever measured, in inference and training alike, up to 1024 rows
// while W_ih + W_hh fit in 20 MiB (bf16 / nn.LSTM bf16, 2 threads, fused step / GEMM per step:
// training T=100 B=32 H=256 2L bi 0.61 / 0.83, B=64 H=512 0.70 / 0.76, B=128 H=256 0.61 / 0.68,
// T=50 B=256 H=256 0.57 / 0.69, T=30 B=512 H=256 0.56 / 0.64, T=50 B=16 H=1024 0.42 / 0.59;
// inference T=30 B=512 H=256 0.82 / 0.88, B=1024 H=128 0.56 / 0.83, B=64 H=1024 1.08 / 1.10).
// FUSEDLSTM_CPU_STEP forces it too. w_ih: the forward's, or undefined for the backward.
constexpr int64_t kBf16FusedMaxRows = 1024;
bool bf16_fused_applies(const at::Tensor& w_ih, const at::Tensor& w_hh, int64_t max_rows,
                        int64_t calls);

// Threads (slices of `blocks` blocks) for steps of `macs_per_step`: one unless each thread gets
// enough work per step to repay the per-step wait.
int64_t slices_for(int64_t macs_per_step, int64_t blocks);

// Forward: h_{t-1} W_hh^T into the step's pre-activations, then the pointwise step.
class FusedRecurrentStep {
 public:
  // w_hh: (4H, P); w_ih (4H, I) and bias (4H, or undefined) for input fusion (see
  // fuses_input); `inference`: the forward keeps no activations (a wider rule applies).
  FusedRecurrentStep(const at::Tensor& w_hh, int64_t max_rows, int64_t calls,
                     const at::Tensor& w_ih, const at::Tensor& bias, bool inference);

  bool active() const { return packed_.defined(); }

  // Whether each step computes bias + x_t W_ih^T itself (RecurrentStep::x): no input projection
  // GEMM and no buffer of projected gates; the step's weights (W_ih and W_hh) stay in the
  // thread's cache from step to step.
  bool fuses_input() const { return packed_input_.defined(); }

  // The element type of the pre-activation buffer the steps' `preact` points to, for a layer of
  // `dtype`: float32 for a bfloat16 step (its sums stay float32 until the gate math).
  at::ScalarType preact_dtype(at::ScalarType dtype) const {
    return active() && dtype_ == at::kBFloat16 ? at::kFloat : dtype;
  }

  // Runs `count` consecutive steps; a step must not write its own h_{t-1}.
  void forward_steps(const RecurrentStep* steps, int64_t count) const;

 private:
  at::Tensor packed_;  // [block][k][gate][lane] (bfloat16: pairs of k, see pack_blocks)
  at::Tensor packed_input_;  // W_ih, the same layout, when fusing the input projection
  at::Tensor bias_;          // (4H) float32 contiguous, or undefined
  int64_t inner_ = 0;
  int64_t input_inner_ = 0;
  int64_t blocks_ = 0;
  int64_t width_ = 0;  // hidden units per block
  FusedBlocksFn kernel_ = nullptr;
  at::ScalarType dtype_ = at::kFloat;  // of the layer: float32, or bfloat16 (fused_step_bf16.cpp)
};

// Backward: dL/dh_t = dgates_{t+1} W_hh for the step's rows, then the pointwise backward step.
class FusedRecurrentBackward {
 public:
  // w_hh: (4H, H) (no projection).
  FusedRecurrentBackward(const at::Tensor& w_hh, int64_t max_rows, int64_t calls);

  bool active() const { return packed_.defined(); }

  // The element type of the steps' grad_h_state (dL/dh between steps) for a layer of `dtype`:
  // float32 for a bfloat16 step.
  at::ScalarType grad_h_dtype(at::ScalarType dtype) const {
    return active() && dtype_ == at::kBFloat16 ? at::kFloat : dtype;
  }

  // Runs `count` consecutive steps of the backward (in the order they are processed).
  void backward_steps(const RecurrentBackwardStep* steps, int64_t count) const;

 private:
  at::Tensor packed_;  // [block][u][gate][lane]: W_hh[gate * H + u][block * V + lane] (or pairs)
  int64_t hidden_ = 0;
  int64_t blocks_ = 0;
  int64_t width_ = 0;
  FusedBackwardBlocksFn kernel_ = nullptr;
  at::ScalarType dtype_ = at::kFloat;
};

}  // namespace fusedlstm::cpu

// The CPU's fused recurrent steps: per step, the recurrent GEMM and the gate math in one pass over
// blocks of hidden units, W_hh packed once per call (fused_step_kernel.h has the float32 kernels,
// fused_step_bf16.cpp the bfloat16 ones, forward and backward); with input fusion the step's
// input projection too. Chosen for small batches, where a GEMM call per step costs more in
// overhead than in arithmetic, and in inference for batches up to a few hundred rows (the rules
// below).
//
// Several steps run in one parallel region: each thread owns a fixed share of hidden-unit blocks
// (split inside a block by groups of rows where that balances better) for all of them (its part
// of the packed W_hh stays in its cache), and a step starts once every share has finished the one
// before it (one shared counter, no fork/join per step).
#pragma once

#include <ATen/ATen.h>

#include <fusedlstm/pointwise.h>

#include <cstdint>

#include "pointwise_cpu.h"

namespace fusedlstm::cpu {

// Where the fused steps beat a GEMM call per step: small batches, and mid batches while W_hh is
// small enough to stay in L2 between steps; beyond, oneDNN's GEMM wins (the measurements:
// docs/performance.md, "When the fused step runs").
constexpr int64_t kFusedStepAlwaysRows = 4;
constexpr int64_t kFusedStepSmallWeightBytes = int64_t{1} << 20;
constexpr int64_t kFusedStepSmallWeightMaxRows = 64;
constexpr int64_t kFusedStepMaxWeightBytes = int64_t{4} << 20;
constexpr int64_t kFusedStepMaxRows = 32;

// In inference with input fusion the fused step does all of a step's arithmetic from W_ih and W_hh
// read once per step, and wins more widely: while both weights fit in the 32 MiB L3 with room to
// spare, up to 256 rows (docs/performance.md).
constexpr int64_t kInputFusedMaxWeightBytes = int64_t{20} << 20;
constexpr int64_t kInputFusedMaxRows = 256;
// With the AVX2 kernels (an AMD Zen 3) the fused step, with or without input fusion, beat a GEMM
// per step at every size measured, weights streamed from memory included (H = 2048: 128 MiB),
// LSTM, GRU and RNN alike; on an AMD Zen 5 with AVX-512 the LSTM's and RNN's too, the GRU's
// (a tile of 3 vectors) only below kStreamedInputFusionMinRows rows, without input fusion
// (docs/performance-by-machine.md). Intel CPUs with AVX-512 keep the rule above (not measured).
constexpr int64_t kStreamedFusedMaxWeightBytes = int64_t{128} << 20;
// Weights past kInputFusedMaxWeightBytes stream from memory at every step: there input fusion
// (W_ih streamed too) pays from 32 rows; below, the input projection is one GEMM (LSTM B = 8,
// H = 1024: 0.63-0.71 of nn.LSTM without input fusion, 0.83-0.85 with it).
constexpr int64_t kStreamedInputFusionMinRows = 32;

// Multiply-accumulates per step that one more thread must get to repay the wait for the other
// slices at every step (see slices_for).
constexpr int64_t kMinMacsPerSlice = int64_t{1} << 15;

// Whether the fused step applies to a float32 W_hh used for `calls` steps of up to `max_rows`
// rows: the rule above, unless the switch cpu.step = fused | gemm forces the choice.
bool fused_step_applies(const at::Tensor& w_hh, int64_t max_rows, int64_t calls);

// Input fusion (x_t W_ih^T in the fused step) reads W_ih once per step instead of once per call:
// it pays from a full 4-row register tile on (each weight vector feeding 4 rows); below, a step
// is a GEMV and the extra weight traffic costs more than the projection GEMM. In training, where
// the saved gates are written either way, from 8 rows (docs/performance.md).
constexpr int64_t kInputFusionMinRows = 4;
constexpr int64_t kInputFusionMinRowsTraining = 8;

// Whether a fused step that applies also takes over the input projection of W_ih: float32,
// I > 0, the rows above; the switch cpu.input_fusion = off | on forces it.
bool input_fusion_applies(const at::Tensor& w_ih, const at::Tensor& w_hh, int64_t max_rows,
                          bool inference);

// Whether the fused step applies in inference: fused_step_applies, or the wider inference rule
// above (with input fusion; with the AVX2 kernels and on AMD CPUs, with or without it).
// tile_vectors: the cell's register tile's vectors per row (LSTM and RNN 4, GRU 3).
bool fused_inference_applies(const at::Tensor& w_ih, const at::Tensor& w_hh, int64_t max_rows,
                             int64_t calls, int tile_vectors);

// bfloat16 (CPUs with avx512_bf16; the forward with input fusion): the fused steps do a k pair
// per instruction and win wherever measured, in inference and training alike, up to 1024 rows
// while W_ih + W_hh fit in 20 MiB (docs/performance.md). The switch cpu.step forces it too.
// w_ih: the forward's, or undefined for the backward.
constexpr int64_t kBf16FusedMaxRows = 1024;
// On CPUs with AMX (bfloat16 tile multiplies), oneDNN's bfloat16 GEMMs run on AMX and beat the
// vdpbf16ps fused steps above about 8M multiply-adds per step; below, the fused steps' lower
// per-step overhead still wins (docs/performance.md, measured on a Xeon with amx_bf16).
constexpr int64_t kBf16FusedMaxStepMacsWithAmx = int64_t{8} << 20;
bool bf16_fused_applies(const at::Tensor& w_ih, const at::Tensor& w_hh, int64_t max_rows,
                        int64_t calls);
// Whether this CPU has AMX bfloat16 tiles (which oneDNN's bfloat16 GEMMs use).
bool cpu_has_amx_bf16();
// Whether the bfloat16 fused steps can run here (fusedlstm.cpu_kernels.bf16_fused_step()).
bool bf16_fused_step_available();

// Whether a fused forward step (the LSTM's, the GRU's and RNN's) applies to a layer's weights,
// and how it runs: element type, units per block, input fusion (the rules above).
struct FusedForwardChoice {
  bool applies = false;
  at::ScalarType dtype = at::kFloat;  // float32, or bfloat16 (fused_step_bf16.cpp)
  int64_t width = 0;
  bool fuse_input = false;
};
FusedForwardChoice choose_fused_forward(const at::Tensor& w_ih, const at::Tensor& w_hh,
                                        int64_t max_rows, int64_t calls, bool inference,
                                        int tile_vectors);

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

  // Inference projects the input in cache-sized chunks of steps (not all steps at once).
  bool whole_sequence() const { return false; }

  // The element type of the pre-activation buffer the steps' `preact` points to, for a layer of
  // `dtype`: float32 for a bfloat16 step (its sums stay float32 until the gate math).
  at::ScalarType preact_dtype(at::ScalarType dtype) const {
    return active() && dtype_ == at::kBFloat16 ? at::kFloat : dtype;
  }

  // Runs `count` consecutive steps; a step must not write its own h_{t-1}.
  void forward_steps(const RecurrentStep* steps, int64_t count) const;

 private:
  at::Tensor packed_;  // [block][k][gate][lane] (bfloat16: pairs of k, see pack_bf16_blocks)
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

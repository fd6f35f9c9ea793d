// The GRU's and Elman RNN's fused recurrent step on the CPU (float32; bfloat16 where the CPU has
// its dot product): per step the recurrent GEMM and the cell in one pass over blocks of units,
// W_hh packed once per call, with input fusion the step's input projection too
// (fused_state_kernel.h and fused_step_bf16.cpp have the kernels). Where it runs,
// the threads and the packing are the LSTM's (fused_step.h: the same rules, run_sliced,
// weight_packing.h).
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Optional.h>

#include <fusedlstm/state_cell_units.h>

#include <cstdint>

#include "pointwise_cpu.h"

namespace fusedlstm::cpu {

class FusedStateStep {
 public:
  // w_hh (G, H), w_ih (G, I) for input fusion, biases as the layer's; `inference`: the wider
  // inference rule applies (fused_step.h).
  FusedStateStep(StateCell cell, const at::Tensor& w_hh, int64_t max_rows, int64_t calls,
                 const at::Tensor& w_ih, const c10::optional<at::Tensor>& b_ih,
                 const c10::optional<at::Tensor>& b_hh, bool inference);

  bool active() const { return packed_.defined(); }
  // Whether each step computes b_ih + x_t W_ih^T itself (no input projection GEMM).
  bool fuses_input() const { return packed_input_.defined(); }
  bool whole_sequence() const { return false; }
  // The element type of the steps' x_part and h_part for a layer of `dtype`: float32 for a
  // bfloat16 step (its sums stay float32 until the cell math).
  at::ScalarType preact_dtype(at::ScalarType dtype) const {
    return active() && dtype_ == at::kBFloat16 ? at::kFloat : dtype;
  }

  // Runs `count` consecutive steps; a step must not write its own h_{t-1}.
  void forward_steps(const StateRecurrentStep* steps, int64_t count) const;

 private:
  StateCell cell_ = StateCell::kGru;
  at::Tensor packed_;        // W_hh as [block][k][vector][lane] (weight_packing.h; bfloat16:
                             // pairs of k)
  at::Tensor packed_input_;  // W_ih the same way, with input fusion
  at::Tensor bias_ih_;       // float32 contiguous, or undefined
  at::Tensor bias_hh_;
  int64_t hidden_ = 0;
  int64_t input_inner_ = 0;
  int64_t blocks_ = 0;
  FusedStateBlocksFn kernel_ = nullptr;
  at::ScalarType dtype_ = at::kFloat;  // of the layer: float32, or bfloat16 (fused_step_bf16.cpp)
};

// The backward (float32): per step dL/dh_t = the later step's recurrent-side gradients times
// W_hh for the step's units (added to the GRU's direct part), then the cell's pointwise backward
// of those units; the LSTM's rule (fused_step_applies) decides where it runs.
class FusedStateBackward {
 public:
  FusedStateBackward(StateCell cell, const at::Tensor& w_hh, int64_t max_rows, int64_t calls);

  bool active() const { return packed_.defined(); }

  // Runs `count` consecutive steps of the backward (in the order they are processed; see
  // StateRecurrentBackwardStep).
  void backward_steps(const StateRecurrentBackwardStep* steps, int64_t count) const;

 private:
  StateCell cell_ = StateCell::kGru;
  at::Tensor packed_;  // [block][u][gate][lane]: W_hh[gate * H + u][block * width + lane]
  int64_t hidden_ = 0;
  int64_t blocks_ = 0;
  FusedStateBackwardBlocksFn kernel_ = nullptr;
};

}  // namespace fusedlstm::cpu

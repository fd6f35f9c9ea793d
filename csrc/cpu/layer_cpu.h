// The CPU's lstm_layer / lstm_layer_backward: the shared time loop (layer_algorithm.h) with the
// CPU back-end, except that small bfloat16 training runs in float32 on CPUs without the bfloat16
// fused steps (see layer_cpu.cpp).
#pragma once

#include <ATen/ATen.h>

#include <tuple>

namespace fusedlstm::cpu {

// Multiply-accumulates per step (batch x 4H x (I + P)) up to which a bfloat16 training call
// computes in float32 where the CPU has no bfloat16 fused step (fused_step.h; no avx512_bf16):
// there each step is a bfloat16 GEMM call, whose fixed cost (~10 us) exceeds the arithmetic of a
// small step, while the float32 fused steps have none. Measured on this machine with those
// kernels forced off (T=100, 2 threads, training, bf16 GEMM per step / in float32 / nn.LSTM
// bf16, ms): B=32 H=64 6.9 / 3.7 / 4.1, B=32 H=128 11.9 / 9.2 / 7.9, B=1 H=256 7.8 / 2.5 / 4.5,
// B=8 H=256 12.5 / 7.7 / 8.0, B=8 H=128 2 layers 6.9 / 3.3 / 4.7; above it bf16 GEMMs win:
// B=32 H=256 22.5 / 26.3 / 27.0. (The bfloat16 fused steps beat both: 1.6, 4.1, 1.6, 3.9, 1.6
// and 12.2 ms on the same shapes.)
constexpr int64_t kBf16InFloatMaxStepMacs = int64_t{8} << 20;

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> layer_forward_cpu(
    const at::Tensor& input, const at::Tensor& h0, const at::Tensor& c0, const at::Tensor& w_ih,
    const at::Tensor& w_hh, const c10::optional<at::Tensor>& b_ih,
    const c10::optional<at::Tensor>& b_hh, const c10::optional<at::Tensor>& w_hr,
    const c10::optional<at::Tensor>& batch_sizes, bool reverse, bool train);

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
layer_backward_cpu(const at::Tensor& grad_output, const at::Tensor& grad_h_n,
                   const at::Tensor& grad_c_n, const at::Tensor& input, const at::Tensor& h0,
                   const at::Tensor& c0, const at::Tensor& w_ih, const at::Tensor& w_hh,
                   const c10::optional<at::Tensor>& w_hr,
                   const c10::optional<at::Tensor>& batch_sizes, bool reverse,
                   const at::Tensor& output, const at::Tensor& gates, const at::Tensor& cells,
                   bool need_input_grad, bool need_weight_grads);

}  // namespace fusedlstm::cpu

// The CPU's lstm_layer / lstm_layer_backward: the shared time loop (layer_algorithm.h) with the
// CPU back-end, except that bfloat16 layers compute in float32 on CPUs without the bfloat16 dot
// product (see layer_cpu.cpp).
#pragma once

#include <ATen/ATen.h>

#include <tuple>

namespace fusedlstm::cpu {

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

#include "layer_cpu.h"

#include <fusedlstm/layer_algorithm.h>
#include <fusedlstm/switches.h>

#include "cpu_backend.h"
#include "pointwise_cpu.h"

#include <initializer_list>

namespace fusedlstm::cpu {

namespace {

// The switch cpu.bf16_compute: float / bf16 force the choice below (tests run both).
int64_t forced_bf16_compute() { return switch_value(Switch::kCpuBf16Compute); }

// Whether every given tensor is bfloat16 (nullptr: an absent optional argument).
bool all_bf16(std::initializer_list<const at::Tensor*> tensors) {
  for (const at::Tensor* t : tensors) {
    if (t != nullptr && t->defined() && t->scalar_type() != at::kBFloat16) return false;
  }
  return true;
}

// Whether a bfloat16 call of this layer (forward, inference or training, or backward) computes in
// float32 inside, rounding its results once: on CPUs without the bfloat16 dot product
// (avx512_bf16, which the bfloat16 fused steps need), where a bfloat16 step is a GEMM call that
// oneDNN emulates (AVX-512) or we widen (AVX2); on an AVX-512 Xeon without it the float32 path
// ran every bench shape 2.3-4.7x faster (docs/performance-by-machine.md). A training call keeps
// its saved gates in bfloat16 (rounded once); the float32 copies live only during the call. Every
// floating argument must be bfloat16: mixed dtypes go to the time loop, which rejects them.
bool bf16_in_float(const at::Tensor& input, const at::Tensor& w_ih, const at::Tensor& w_hh,
                   const c10::optional<at::Tensor>& w_hr,
                   std::initializer_list<const at::Tensor*> others) {
  if (input.scalar_type() != at::kBFloat16 || forced_bf16_compute() == kBf16ComputeBf16) {
    return false;
  }
  if (!all_bf16({&w_ih, &w_hh, w_hr.has_value() ? &*w_hr : nullptr}) || !all_bf16(others)) {
    return false;
  }
  if (w_ih.dim() != 2 || w_hh.dim() != 2) return false;  // the time loop says what is wrong
  if (forced_bf16_compute() == kBf16ComputeFloat) return true;
  // (cpu.gemm = aten runs the CUDA build's host path, bfloat16 GEMMs included)
  return selected_bf16_fused_kernels() == nullptr && !aten_gemms_only();
}

at::Tensor as_float(const at::Tensor& t) { return t.to(at::kFloat); }

c10::optional<at::Tensor> as_float(const c10::optional<at::Tensor>& t) {
  return t.has_value() ? c10::optional<at::Tensor>(t->to(at::kFloat)) : c10::nullopt;
}

at::Tensor as_bf16(const at::Tensor& t) { return t.defined() ? t.to(at::kBFloat16) : t; }

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> layer_forward_cpu(
    const at::Tensor& input, const at::Tensor& h0, const at::Tensor& c0, const at::Tensor& w_ih,
    const at::Tensor& w_hh, const c10::optional<at::Tensor>& b_ih,
    const c10::optional<at::Tensor>& b_hh, const c10::optional<at::Tensor>& w_hr,
    const c10::optional<at::Tensor>& batch_sizes, bool reverse, bool train) {
  if (!bf16_in_float(input, w_ih, w_hh, w_hr,
                     {&h0, &c0, b_ih.has_value() ? &*b_ih : nullptr,
                      b_hh.has_value() ? &*b_hh : nullptr})) {
    return layer_forward_impl<CpuBackend>(input, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr,
                                          batch_sizes, reverse, train);
  }
  const auto [output, h_n, c_n, gates, cells] = layer_forward_impl<CpuBackend>(
      as_float(input), as_float(h0), as_float(c0), as_float(w_ih), as_float(w_hh),
      as_float(b_ih), as_float(b_hh), as_float(w_hr), batch_sizes, reverse, train);
  return {as_bf16(output), as_bf16(h_n), as_bf16(c_n), as_bf16(gates), as_bf16(cells)};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
layer_backward_cpu(const at::Tensor& grad_output, const at::Tensor& grad_h_n,
                   const at::Tensor& grad_c_n, const at::Tensor& input, const at::Tensor& h0,
                   const at::Tensor& c0, const at::Tensor& w_ih, const at::Tensor& w_hh,
                   const c10::optional<at::Tensor>& w_hr,
                   const c10::optional<at::Tensor>& batch_sizes, bool reverse,
                   const at::Tensor& output, const at::Tensor& gates, const at::Tensor& cells,
                   bool need_input_grad, bool need_weight_grads) {
  if (!bf16_in_float(input, w_ih, w_hh, w_hr,
                     {&grad_output, &grad_h_n, &grad_c_n, &h0, &c0, &output, &gates, &cells})) {
    return layer_backward_impl<CpuBackend>(grad_output, grad_h_n, grad_c_n, input, h0, c0, w_ih,
                                           w_hh, w_hr, batch_sizes, reverse, output, gates, cells,
                                           need_input_grad, need_weight_grads);
  }
  const auto [grad_input, grad_h0, grad_c0, grad_w_ih, grad_w_hh, grad_bias, grad_w_hr] =
      layer_backward_impl<CpuBackend>(
          as_float(grad_output), as_float(grad_h_n), as_float(grad_c_n), as_float(input),
          as_float(h0), as_float(c0), as_float(w_ih), as_float(w_hh), as_float(w_hr), batch_sizes,
          reverse, as_float(output), as_float(gates), as_float(cells), need_input_grad,
          need_weight_grads);
  return {as_bf16(grad_input), as_bf16(grad_h0), as_bf16(grad_c0), as_bf16(grad_w_ih),
          as_bf16(grad_w_hh), as_bf16(grad_bias), as_bf16(grad_w_hr)};
}

}  // namespace fusedlstm::cpu

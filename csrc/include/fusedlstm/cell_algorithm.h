// One LSTM step (the `lstm_cell` ops), written once for every device. `Backend` is the device's
// fused pointwise back-end (see pointwise.h); the GEMMs are ATen calls on the current device.
#pragma once

#include <ATen/ATen.h>

#include <fusedlstm/checks.h>
#include <fusedlstm/gemm.h>
#include <fusedlstm/pointwise.h>

#include <tuple>

namespace fusedlstm {

// Returns (h', c', gates) where gates holds the activated gates (B, 4H) the backward needs.
template <class Backend>
std::tuple<at::Tensor, at::Tensor, at::Tensor> cell_forward_impl(
    const at::Tensor& input, const at::Tensor& hx, const at::Tensor& cx, const at::Tensor& w_ih,
    const at::Tensor& w_hh, const c10::optional<at::Tensor>& b_ih,
    const c10::optional<at::Tensor>& b_hh) {
  const WeightShapes shape =
      check_cell(input, hx, cx, w_ih, w_hh, b_ih, b_hh, "fusedlstm::lstm_cell");
  const int64_t B = input.size(0);
  const int64_t H = shape.hidden;

  at::Tensor gates = Backend::linear(input, w_ih, summed_bias(b_ih, b_hh)).contiguous();
  const typename Backend::StepGemm recurrent(w_hh, /*transpose=*/true, B, /*calls=*/1);
  const at::Tensor recurrent_part = recurrent.add_to(gates, hx);

  const at::Tensor c_prev = cx.contiguous();
  at::Tensor hy = at::empty({B, H}, input.options());
  at::Tensor cy = at::empty({B, H}, input.options());
  if (B > 0) {
    Backend::forward(PointwiseForwardArgs{
        input.scalar_type(), B, H, gates.const_data_ptr(),
        recurrent_part.defined() ? recurrent_part.const_data_ptr() : nullptr, gates.data_ptr(),
        c_prev.const_data_ptr(), cy.data_ptr(), nullptr, hy.data_ptr(), H, nullptr, 0});
  }
  return {hy, cy, gates};
}

// Returns (grad_input, grad_hx, grad_cx, grad_w_ih, grad_w_hh, grad_bias); grad_bias is the
// gradient of b_ih and of b_hh alike (they enter the gates as a sum). Gradients not asked for
// are empty tensors, and their GEMMs are skipped.
template <class Backend>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
cell_backward_impl(const at::Tensor& grad_hy, const at::Tensor& grad_cy, const at::Tensor& input,
                   const at::Tensor& hx, const at::Tensor& cx, const at::Tensor& w_ih,
                   const at::Tensor& w_hh, const at::Tensor& cy, const at::Tensor& gates,
                   bool need_input_grad, bool need_hx_grad, bool need_weight_grads) {
  constexpr const char* op = "fusedlstm::lstm_cell_backward";
  const WeightShapes shape =
      check_cell(input, hx, cx, w_ih, w_hh, c10::nullopt, c10::nullopt, op);
  const int64_t B = input.size(0);
  const int64_t H = shape.hidden;
  for (const auto& [t, name] :
       {std::pair{&grad_hy, "grad_hy"}, {&grad_cy, "grad_cy"}, {&cy, "cy"}}) {
    check_state(*t, B, H, input, op, name);
  }
  check_state(gates, B, 4 * H, input, op, "gates");

  const at::Tensor grad_h = grad_hy.contiguous();
  const at::Tensor grad_c = grad_cy.contiguous();
  const at::Tensor saved_gates = gates.contiguous();
  const at::Tensor c = cy.contiguous();
  const at::Tensor c_prev = cx.contiguous();
  at::Tensor grad_gates = at::empty({B, 4 * H}, input.options());
  at::Tensor grad_cx = at::empty({B, H}, input.options());
  if (B > 0) {
    Backend::backward(PointwiseBackwardArgs{
        input.scalar_type(), B, H, grad_h.const_data_ptr(), H, nullptr, 0,
        grad_c.const_data_ptr(), grad_cx.data_ptr(), saved_gates.const_data_ptr(),
        c.const_data_ptr(), c_prev.const_data_ptr(), grad_gates.data_ptr()});
  }
  const auto skipped = [&] { return at::empty({0}, input.options()); };  // never aliased
  const bool weights = need_weight_grads;
  return {need_input_grad ? Backend::matmul(grad_gates, w_ih) : skipped(),
          need_hx_grad ? Backend::matmul(grad_gates, w_hh) : skipped(),
          grad_cx,
          weights ? Backend::matmul_tn(grad_gates, input) : skipped(),
          weights ? Backend::matmul_tn(grad_gates, hx) : skipped(),
          weights ? grad_gates.sum(0) : skipped()};
}

}  // namespace fusedlstm

// One GRU or Elman RNN step (the gru_cell / rnn_cell ops), written once for every device and both
// cells, as cell_algorithm.h is for the LSTM: two GEMMs and the fused pointwise pass forward; the
// pointwise backward and the GEMMs of the gradients asked for. A step loop in Python calls this
// once per step, so it allocates only its outputs and takes each weight gradient as one GEMM in
// its final layout.
#pragma once

#include <ATen/ATen.h>

#include <fusedlstm/state_layer.h>

#include <tuple>

namespace fusedlstm {

// Returns (hy, saved): saved (B, kSaved * H) is what the backward needs (empty for the RNN).
template <class Backend>
std::tuple<at::Tensor, at::Tensor> state_cell_forward_impl(
    StateCell cell, const at::Tensor& input, const at::Tensor& hx, const at::Tensor& w_ih,
    const at::Tensor& w_hh, const c10::optional<at::Tensor>& b_ih,
    const c10::optional<at::Tensor>& b_hh, const char* op) {
  using namespace state_layer_detail;
  const StateShapes shape = check_state_weights(cell, w_ih, w_hh, b_ih, b_hh, op);
  check_dim(input, 2, op, "input");
  check_like(input, w_ih, op, "input", "w_ih");
  check_size(input, 1, shape.input_size, op, "input", "feature size (input_size)");
  const int64_t B = input.size(0), H = shape.hidden;
  check_state(hx, B, H, input, op, "hx");
  const at::Tensor x_part =
      Backend::linear(input, w_ih, b_ih.has_value() ? *b_ih : at::Tensor()).contiguous();
  const at::Tensor h_prev = hx.contiguous();
  const at::Tensor h_part = Backend::linear(h_prev, w_hh, at::Tensor());
  const at::Tensor b_hh_c = b_hh.has_value() ? b_hh->contiguous() : at::Tensor();
  at::Tensor hy = at::empty({B, H}, input.options());
  const int64_t saved_per_row = state_cell_saved(cell) * H;
  at::Tensor saved = at::empty({saved_per_row ? B : 0, saved_per_row}, input.options());
  if (B > 0) {
    Backend::state_forward(StateForwardArgs{
        cell, input.scalar_type(), B, H, x_part.const_data_ptr(), h_part.const_data_ptr(),
        b_hh_c.defined() ? b_hh_c.const_data_ptr() : nullptr, h_prev.const_data_ptr(),
        hy.data_ptr(), nullptr, saved_per_row ? saved.data_ptr() : nullptr});
  }
  return {hy, saved};
}

// Returns (grad_input, grad_hx, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh); those not asked
// for are empty and their GEMMs skipped. The RNN's bias gradient is grad_b_ih alone (grad_b_hh
// undefined), as state_layer_backward_impl's.
template <class Backend>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
state_cell_backward_impl(StateCell cell, const at::Tensor& grad_hy, const at::Tensor& input,
                         const at::Tensor& hx, const at::Tensor& w_ih, const at::Tensor& w_hh,
                         const at::Tensor& hy, const at::Tensor& saved, bool need_input_grad,
                         bool need_hx_grad, bool need_weight_grads, const char* op) {
  using namespace state_layer_detail;
  const StateShapes shape = check_state_weights(cell, w_ih, w_hh, c10::nullopt, c10::nullopt, op);
  check_dim(input, 2, op, "input");
  const int64_t B = input.size(0), H = shape.hidden, G = shape.gates;
  check_state(hx, B, H, input, op, "hx");
  check_state(grad_hy, B, H, input, op, "grad_hy");
  check_state(hy, B, H, input, op, "hy");
  const int64_t saved_per_row = state_cell_saved(cell) * H;
  TORCH_CHECK(saved.numel() == B * saved_per_row, op, ": saved has ", saved.numel(),
              " elements, expected ", B * saved_per_row);
  const bool sides_differ = cell == StateCell::kGru;
  const at::Tensor grad_h = grad_hy.contiguous();
  const at::Tensor h_prev = hx.contiguous();
  const at::Tensor h_out = hy.contiguous();
  const at::Tensor saved_c = saved.contiguous();
  at::Tensor grad_input_side = at::empty({B, G}, input.options());
  at::Tensor grad_recurrent_side = sides_differ ? at::empty({B, G}, input.options())
                                                : grad_input_side;
  // GRU's direct dL/dh_{t-1} = dL/dh_t z, to which the recurrent GEMM then adds.
  at::Tensor grad_hx = sides_differ ? at::empty({B, H}, input.options()) : at::Tensor();
  if (B > 0) {
    Backend::state_backward(StateBackwardArgs{
        cell, input.scalar_type(), B, H, grad_h.const_data_ptr(), nullptr,
        saved_per_row ? saved_c.const_data_ptr() : nullptr, h_out.const_data_ptr(),
        h_prev.const_data_ptr(), grad_input_side.data_ptr(), grad_recurrent_side.data_ptr(),
        sides_differ ? grad_hx.data_ptr() : nullptr});
  }
  const auto skipped = [&] { return at::empty({0}, input.options()); };  // never aliased
  if (need_hx_grad && sides_differ) {
    const typename Backend::StepGemm recurrent(w_hh, /*transpose=*/false, B, /*calls=*/1);
    recurrent(grad_hx, grad_recurrent_side, /*accumulate=*/true);
  } else if (need_hx_grad) {
    grad_hx = Backend::matmul(grad_recurrent_side, w_hh);
  } else {
    grad_hx = skipped();
  }
  if (!need_weight_grads) {
    return {need_input_grad ? Backend::matmul(grad_input_side, w_ih) : skipped(), grad_hx,
            skipped(), skipped(), skipped(), skipped()};
  }
  const at::Tensor grad_b_ih = grad_input_side.sum(0);
  return {need_input_grad ? Backend::matmul(grad_input_side, w_ih) : skipped(),
          grad_hx,
          Backend::matmul_tn(grad_input_side, input),
          Backend::matmul_tn(grad_recurrent_side, h_prev),
          grad_b_ih,
          sides_differ ? grad_recurrent_side.sum(0) : at::Tensor()};
}

}  // namespace fusedlstm

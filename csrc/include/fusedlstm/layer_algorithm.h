// One direction of one LSTM layer over a whole sequence (the `lstm_layer` ops), written once for
// every device. `Backend` is the device's: `Backend::forward` / `Backend::backward` are its fused
// pointwise passes (see pointwise.h); `linear`, `matmul` and `StepGemm` its GEMMs (see gemm.h).
//
// Forward: one GEMM projects the input of all steps (bias folded in), then per step one GEMM adds
// h_{t-1} W_hh^T into that step's slice of the gate buffer and one fused pointwise pass writes
// h_t, c_t and the activated gates (kept for the backward when training). With a projection, one
// more GEMM per step maps m_t (H) to h_t (P).
//
// The recurrent state lives in (B, P) / (B, H) buffers updated in place for the rows a step
// touches. That single mechanism gives padded input, packed input in both directions (rows join
// or leave the batch) and h_n / c_n (each row's state after its last step) without special cases.
#pragma once

#include <ATen/ATen.h>

#include <fusedlstm/checks.h>
#include <fusedlstm/pointwise.h>
#include <fusedlstm/gemm.h>
#include <fusedlstm/step_schedule.h>

#include <tuple>
#include <vector>

namespace fusedlstm {

namespace layer_detail {

inline WeightShapes check_layer(const at::Tensor& input, const at::Tensor& h0,
                                const at::Tensor& c0, const at::Tensor& w_ih,
                                const at::Tensor& w_hh, const c10::optional<at::Tensor>& b_ih,
                                const c10::optional<at::Tensor>& b_hh,
                                const c10::optional<at::Tensor>& w_hr, const StepSchedule& s,
                                const char* op) {
  const WeightShapes shape = check_weights(w_ih, w_hh, b_ih, b_hh, w_hr, op);
  check_like(input, w_ih, op, "input", "w_ih");
  check_size(input, input.dim() - 1, shape.input_size, op, "input", "feature size (input_size)");
  check_state(h0, s.batch, shape.proj, input, op, "h0");
  check_state(c0, s.batch, shape.hidden, input, op, "c0");
  return shape;
}

// Row index, into the rows of [per_step; initial], of the state each row of each step started
// from: the same row of the previous step in processing order, or the initial state when the row
// had no previous step (packed rows joining the batch).
inline at::Tensor previous_row_index(const StepSchedule& s, bool reverse) {
  at::Tensor index = at::empty({s.total_rows}, at::kLong);
  int64_t* out = index.data_ptr<int64_t>();
  for (int64_t t = 0; t < s.steps; ++t) {
    const int64_t prev = reverse ? t + 1 : t - 1;
    const bool has_prev = prev >= 0 && prev < s.steps;
    for (int64_t b = 0; b < s.rows[t]; ++b) {
      const bool continues = has_prev && b < s.rows[prev];
      out[s.row_offset[t] + b] = continues ? s.row_offset[prev] + b : s.total_rows + b;
    }
  }
  return index;
}

// The state every row of every step started from (h_{t-1} or c_{t-1}), as one (N, F) tensor, so
// the backward's weight gradient is one GEMM. Padded input is a shift of the per-step states by
// one step, done on the device with no host-to-device copy (so CUDA graphs can capture it);
// packed input gathers with an index built on the host.
inline at::Tensor previous_states(const at::Tensor& per_step, const at::Tensor& initial,
                                  const StepSchedule& s, bool packed, bool reverse) {
  if (!packed) {
    const at::Tensor steps = per_step.reshape({s.steps, s.batch, initial.size(1)});
    const at::Tensor first = initial.unsqueeze(0);
    const at::Tensor shifted =
        reverse ? at::cat({steps.narrow(0, 1, s.steps - 1), first})
                : at::cat({first, steps.narrow(0, 0, s.steps - 1)});
    return shifted.reshape({s.total_rows, initial.size(1)});
  }
  const at::Tensor index = previous_row_index(s, reverse).to(per_step.device());
  return at::index_select(at::cat({per_step, initial}), 0, index);
}

inline int64_t step_at(const StepSchedule& s, int64_t i, bool reverse) {
  return reverse ? s.steps - 1 - i : i;
}

}  // namespace layer_detail

// Returns (output, h_n, c_n, gates, cells). output is (T, B, P) for padded input and (N, P) for
// packed input. gates (N, 4H activated) and cells (N, H, c_t of every step) are kept only when
// `train`; otherwise they are empty and the call keeps nothing for a backward.
template <class Backend>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> layer_forward_impl(
    const at::Tensor& input, const at::Tensor& h0, const at::Tensor& c0, const at::Tensor& w_ih,
    const at::Tensor& w_hh, const c10::optional<at::Tensor>& b_ih,
    const c10::optional<at::Tensor>& b_hh, const c10::optional<at::Tensor>& w_hr,
    const c10::optional<at::Tensor>& batch_sizes, bool reverse, bool train) {
  constexpr const char* op = "fusedlstm::lstm_layer";
  const StepSchedule s = make_schedule(input, batch_sizes, op);
  const WeightShapes shape =
      layer_detail::check_layer(input, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, s, op);
  const int64_t H = shape.hidden;
  const int64_t P = shape.proj;
  const int64_t G = 4 * H;
  const auto options = input.options();
  const bool has_proj = w_hr.has_value();

  const at::Tensor x = input.reshape({s.total_rows, shape.input_size});
  at::Tensor gates = Backend::linear(x, w_ih, summed_bias(b_ih, b_hh)).contiguous();

  at::Tensor output = at::empty({s.total_rows, P}, options);
  at::Tensor h_state = h0.contiguous().clone();
  at::Tensor c_state = c0.contiguous().clone();
  at::Tensor cells = train ? at::empty({s.total_rows, H}, options) : at::empty({0}, options);
  at::Tensor m_step = has_proj ? at::empty({s.batch, H}, options) : at::Tensor();
  const typename Backend::StepGemm recurrent(w_hh, /*transpose=*/true, s.batch);
  const typename Backend::StepGemm projection(has_proj ? *w_hr : w_hh, /*transpose=*/true,
                                              has_proj ? s.batch : 0);
  const size_t elem = input.element_size();
  char* gates_base = static_cast<char*>(gates.data_ptr());
  char* output_base = static_cast<char*>(output.data_ptr());
  char* cells_base = train ? static_cast<char*>(cells.data_ptr()) : nullptr;

  for (int64_t i = 0; i < s.steps; ++i) {
    const int64_t t = layer_detail::step_at(s, i, reverse);
    const int64_t rows = s.rows[t];
    const int64_t offset = s.row_offset[t];
    at::Tensor step_gates = gates.narrow(0, offset, rows);
    recurrent(step_gates, h_state.narrow(0, 0, rows), /*accumulate=*/true);
    Backend::forward(PointwiseForwardArgs{
        input.scalar_type(), rows, H, gates_base + offset * G * elem, c_state.const_data_ptr(),
        c_state.data_ptr(), train ? cells_base + offset * H * elem : nullptr,
        has_proj ? m_step.data_ptr() : output_base + offset * P * elem, has_proj ? H : P,
        has_proj ? nullptr : h_state.data_ptr(), P});
    if (has_proj) {
      at::Tensor step_output = output.narrow(0, offset, rows);
      projection(step_output, m_step.narrow(0, 0, rows), /*accumulate=*/false);
      h_state.narrow(0, 0, rows).copy_(step_output);
    }
  }

  std::vector<int64_t> output_shape(input.sizes().begin(), input.sizes().end());
  output_shape.back() = P;
  if (!train) gates = at::empty({0}, options);
  return {output.view(output_shape), h_state, c_state, gates, cells};
}

// Returns (grad_input, grad_h0, grad_c0, grad_w_ih, grad_w_hh, grad_bias, grad_w_hr). grad_bias
// serves b_ih and b_hh alike; grad_w_hr is empty without a projection. Per step: one fused
// pointwise pass (dgates) and one GEMM (dh_{t-1}); the weight gradients are single large GEMMs
// after the loop, so the result is deterministic (no atomics, fixed reduction order).
template <class Backend>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
layer_backward_impl(const at::Tensor& grad_output, const at::Tensor& grad_h_n,
                    const at::Tensor& grad_c_n, const at::Tensor& input, const at::Tensor& h0,
                    const at::Tensor& c0, const at::Tensor& w_ih, const at::Tensor& w_hh,
                    const c10::optional<at::Tensor>& w_hr,
                    const c10::optional<at::Tensor>& batch_sizes, bool reverse,
                    const at::Tensor& output, const at::Tensor& gates, const at::Tensor& cells) {
  constexpr const char* op = "fusedlstm::lstm_layer_backward";
  const StepSchedule s = make_schedule(input, batch_sizes, op);
  const WeightShapes shape = layer_detail::check_layer(input, h0, c0, w_ih, w_hh, c10::nullopt,
                                                       c10::nullopt, w_hr, s, op);
  const int64_t H = shape.hidden;
  const int64_t P = shape.proj;
  const int64_t G = 4 * H;
  const int64_t N = s.total_rows;
  const auto options = input.options();
  const bool has_proj = w_hr.has_value();
  TORCH_CHECK(grad_output.numel() == N * P, op, ": grad_output has ", grad_output.numel(),
              " elements, expected ", N * P, " (", N, " rows x ", P, ")");
  TORCH_CHECK(output.numel() == N * P, op, ": output has ", output.numel(), " elements, expected ",
              N * P);
  TORCH_CHECK(gates.numel() == N * G && cells.numel() == N * H, op,
              ": gates/cells were not saved by the forward (was it called with train=False?)");
  check_state(grad_h_n, s.batch, P, input, op, "grad_h_n");
  check_state(grad_c_n, s.batch, H, input, op, "grad_c_n");

  const at::Tensor x = input.reshape({N, shape.input_size});
  const at::Tensor grad_out = grad_output.reshape({N, P}).contiguous();
  const at::Tensor saved_gates = gates.reshape({N, G}).contiguous();
  const at::Tensor saved_cells = cells.reshape({N, H}).contiguous();
  const bool packed = batch_sizes.has_value();
  const at::Tensor h_prev =
      layer_detail::previous_states(output.reshape({N, P}), h0, s, packed, reverse);
  const at::Tensor c_prev = layer_detail::previous_states(saved_cells, c0, s, packed, reverse)
                                .contiguous();

  at::Tensor grad_gates = at::empty({N, G}, options);
  at::Tensor grad_h_state = grad_h_n.contiguous().clone();
  at::Tensor grad_c_state = grad_c_n.contiguous().clone();
  at::Tensor grad_h_all = has_proj ? at::empty({N, P}, options) : at::Tensor();
  at::Tensor grad_m_step = has_proj ? at::empty({s.batch, H}, options) : at::Tensor();
  const typename Backend::StepGemm recurrent(w_hh, /*transpose=*/false, s.batch);
  const typename Backend::StepGemm projection(has_proj ? *w_hr : w_hh, /*transpose=*/false,
                                              has_proj ? s.batch : 0);
  const size_t elem = input.element_size();
  const char* grad_out_base = static_cast<const char*>(grad_out.const_data_ptr());
  const char* gates_base = static_cast<const char*>(saved_gates.const_data_ptr());
  const char* cells_base = static_cast<const char*>(saved_cells.const_data_ptr());
  const char* c_prev_base = static_cast<const char*>(c_prev.const_data_ptr());
  char* grad_gates_base = static_cast<char*>(grad_gates.data_ptr());

  for (int64_t i = s.steps - 1; i >= 0; --i) {
    const int64_t t = layer_detail::step_at(s, i, reverse);
    const int64_t rows = s.rows[t];
    const int64_t offset = s.row_offset[t];
    at::Tensor step_grad_h_state = grad_h_state.narrow(0, 0, rows);
    const void* grad_h = grad_out_base + offset * P * elem;
    const void* grad_h_extra = step_grad_h_state.const_data_ptr();
    if (has_proj) {
      at::Tensor step_grad_h = grad_h_all.narrow(0, offset, rows);
      at::add_out(step_grad_h, grad_out.narrow(0, offset, rows), step_grad_h_state);
      at::Tensor step_grad_m = grad_m_step.narrow(0, 0, rows);
      projection(step_grad_m, step_grad_h, /*accumulate=*/false);
      grad_h = grad_m_step.const_data_ptr();
      grad_h_extra = nullptr;
    }
    Backend::backward(PointwiseBackwardArgs{
        input.scalar_type(), rows, H, grad_h, has_proj ? H : P, grad_h_extra, P,
        grad_c_state.const_data_ptr(), grad_c_state.data_ptr(), gates_base + offset * G * elem,
        cells_base + offset * H * elem, c_prev_base + offset * H * elem,
        grad_gates_base + offset * G * elem});
    recurrent(step_grad_h_state, grad_gates.narrow(0, offset, rows), /*accumulate=*/false);
  }

  std::vector<int64_t> input_shape(input.sizes().begin(), input.sizes().end());
  at::Tensor grad_w_hr = at::empty({0}, options);
  if (has_proj) {
    const at::Tensor m = saved_gates.narrow(1, 3 * H, H) * at::tanh(saved_cells);
    grad_w_hr = Backend::matmul(grad_h_all.t(), m);
  }
  return {Backend::matmul(grad_gates, w_ih).view(input_shape),
          grad_h_state,
          grad_c_state,
          Backend::matmul(grad_gates.t(), x),
          Backend::matmul(grad_gates.t(), h_prev),
          grad_gates.sum(0),
          grad_w_hr};
}

}  // namespace fusedlstm

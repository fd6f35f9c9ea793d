// One direction of one GRU or Elman RNN layer over a sequence (the gru_layer / rnn_layer ops) and
// one step of either (the cell ops: a layer of one step), written once for every device and
// every single-state cell (state_cell_math.h). `Backend` is a device's (layer_algorithm.h):
// its GEMMs and its state_forward / state_backward pointwise passes (state_cell_units.h).
//
// Forward: one GEMM projects the input of a chunk of steps (b_ih folded in); per step one GEMM
// computes h_{t-1} W_hh^T into a (B, G) buffer and one pointwise pass adds b_hh and runs the cell,
// writing h_t to the output and the carried state (and, training, what the backward needs).
// The state lives in a (B, H) buffer updated in place for the rows a step touches, as the LSTM's
// (layer_algorithm.h): padded and packed input, both directions, h_n, without special cases.
//
// Backward: per step one pointwise pass (the input-side and recurrent-side pre-activation
// gradients, and GRU's direct dL/dh_{t-1} = dL/dh_t z) and one GEMM adding the recurrent side
// times W_hh; per chunk of steps, the input and weight gradients as large GEMMs.
#pragma once

#include <fusedlstm/layer_steps.h>
#include <fusedlstm/state_cell_units.h>


namespace fusedlstm {

namespace state_layer_detail {

using layer_detail::accumulate;
using layer_detail::chunk_rows;
using layer_detail::ChunkRows;
using layer_detail::finish_sum;
using layer_detail::step_at;
using layer_detail::WeightGradSum;

inline const char* cell_name(StateCell cell) {
  return cell == StateCell::kGru ? "gru" : "rnn";
}

struct StateShapes {
  int64_t input_size;
  int64_t hidden;
  int64_t gates;  // G = kGates * H
};

// A size that must be k * hidden_size; the message (built only on failure) names the argument.
inline void check_gate_size(const at::Tensor& t, int64_t dim, int64_t k, int64_t hidden,
                            const char* op, const char* name, const char* what) {
  TORCH_CHECK(t.size(dim) == k * hidden, op, ": ", name, " ", what, " (", k,
              "*hidden_size) (dim ", dim, ") is ", t.size(dim), ", expected ", k * hidden, " (",
              name, " shape ", t.sizes(), ")");
}

inline StateShapes check_state_weights(StateCell cell, const at::Tensor& w_ih,
                                       const at::Tensor& w_hh,
                                       const c10::optional<at::Tensor>& b_ih,
                                       const c10::optional<at::Tensor>& b_hh, const char* op) {
  const int64_t k = state_cell_gates(cell);
  check_floating(w_ih, op, "w_ih");
  check_dim(w_ih, 2, op, "w_ih");
  check_dim(w_hh, 2, op, "w_hh");
  check_like(w_hh, w_ih, op, "w_hh", "w_ih");
  TORCH_CHECK(w_ih.size(0) % k == 0 && w_ih.size(0) > 0, op, ": w_ih must have ", k,
              "*hidden_size rows, got ", w_ih.size(0));
  const int64_t H = w_ih.size(0) / k;
  check_gate_size(w_hh, 0, k, H, op, "w_hh", "row count");
  check_size(w_hh, 1, H, op, "w_hh", "column count (hidden_size)");
  for (const auto* b : {&b_ih, &b_hh}) {
    if (!b->has_value()) continue;
    const char* name = b == &b_ih ? "b_ih" : "b_hh";
    check_dim(**b, 1, op, name);
    check_like(**b, w_ih, op, name, "w_ih");
    check_gate_size(**b, 0, k, H, op, name, "size");
  }
  return {w_ih.size(1), H, k * H};
}

inline StateShapes check_state_layer(StateCell cell, const at::Tensor& input,
                                     const at::Tensor& h0, const at::Tensor& w_ih,
                                     const at::Tensor& w_hh, const c10::optional<at::Tensor>& b_ih,
                                     const c10::optional<at::Tensor>& b_hh,
                                     const StepSchedule& s, const char* op) {
  const StateShapes shape = check_state_weights(cell, w_ih, w_hh, b_ih, b_hh, op);
  check_like(input, w_ih, op, "input", "w_ih");
  check_size(input, input.dim() - 1, shape.input_size, op, "input", "feature size (input_size)");
  check_state(h0, s.batch, shape.hidden, input, op, "h0");
  return shape;
}

inline const void* data_or_null(const c10::optional<at::Tensor>& t) {
  return t.has_value() ? t->const_data_ptr() : nullptr;
}

// Step t for a fused step: its pointwise step without the carried state (the fused step reads
// h_{t-1} from the output rows of the step before, or h0), and its input rows with input
// fusion (x_rows: (N, I) contiguous; undefined without).
inline StateRecurrentStep fused_state_step(const StepSchedule& s, int64_t t, bool reverse,
                                           StateForwardArgs args, const at::Tensor& output,
                                           const at::Tensor& h0_rows, const at::Tensor& x_rows) {
  const int64_t elem = output.element_size();
  const int64_t H = args.hidden;
  const layer_detail::PreviousStep previous = layer_detail::previous_step(s, t, reverse);
  args.h_prev = nullptr;
  args.h_state = nullptr;
  args.bias_hh = nullptr;  // the fused step adds it
  StateRecurrentStep step{args,
                          previous.prev < 0 ? nullptr
                                            : static_cast<const char*>(output.const_data_ptr()) +
                                                  s.row_offset[previous.prev] * H * elem,
                          previous.continuing, h0_rows.const_data_ptr()};
  if (x_rows.defined()) {
    step.x_stride = x_rows.size(1);
    step.x = static_cast<const char*>(x_rows.const_data_ptr()) +
             s.row_offset[t] * step.x_stride * elem;
  }
  return step;
}

}  // namespace state_layer_detail

// Returns (output, h_n, saved): output (T, B, H) for padded input, (N, H) packed; saved
// (N, kSaved * H) when `train` and the cell saves anything, else empty.
template <class Backend>
std::tuple<at::Tensor, at::Tensor, at::Tensor> state_layer_forward_impl(
    StateCell cell, const at::Tensor& input, const at::Tensor& h0, const at::Tensor& w_ih,
    const at::Tensor& w_hh, const c10::optional<at::Tensor>& b_ih,
    const c10::optional<at::Tensor>& b_hh, const c10::optional<at::Tensor>& batch_sizes,
    bool reverse, bool train, const char* op) {
  using namespace state_layer_detail;
  const StepSchedule s = make_schedule(input, batch_sizes, op);
  const StateShapes shape = check_state_layer(cell, input, h0, w_ih, w_hh, b_ih, b_hh, s, op);
  const int64_t H = shape.hidden, G = shape.gates;
  const int64_t saved_per_row = state_cell_saved(cell) * H;
  const int64_t elem = input.element_size();
  const at::Tensor x = input.reshape({s.total_rows, shape.input_size});
  const at::Tensor b_hh_c = b_hh.has_value() ? b_hh->contiguous() : at::Tensor();
  at::Tensor output = Backend::empty({s.total_rows, H}, input.options());
  const at::Tensor h0_rows = h0.contiguous();
  at::Tensor h_state = h0_rows.clone();
  at::Tensor saved = train && saved_per_row > 0
                         ? Backend::empty({s.total_rows, saved_per_row}, input.options())
                         : at::empty({0}, input.options());
  // Where the back-end has a fused step, it runs the recurrent GEMM and the cell in one pass
  // (with input fusion the input projection too, into one (B, G) x_part that every step reuses),
  // h_{t-1} read from the output rows of the step before and h_n gathered after the loop; its
  // x_part and h_part may be of a wider type than the layer's (preact_dtype).
  const typename Backend::FusedStateStep fused(cell, w_hh, s.batch, s.steps, w_ih, b_ih, b_hh,
                                               /*inference=*/!train);
  const at::TensorOptions preact_options =
      input.options().dtype(fused.preact_dtype(input.scalar_type()));
  at::Tensor h_part = Backend::empty({s.batch, G}, preact_options);
  const bool input_fused = fused.fuses_input();
  const at::Tensor x_rows = input_fused ? x.contiguous() : at::Tensor();
  const at::Tensor fused_x_part =
      input_fused ? Backend::empty({s.batch, G}, preact_options) : at::Tensor();
  const typename Backend::StepGemm recurrent(w_hh, /*transpose=*/true, s.batch,
                                             fused.active() ? 0 : s.steps);
  // The input projection a few steps at a time into a buffer that stays in cache
  // (layer_steps.h), training too: the backward keeps none of it (what it needs is `saved`), so
  // a projection of all steps would only raise the peak memory by N x G. A fused step that runs
  // the whole sequence in one launch (whole_sequence(): the persistent kernel) needs it all first.
  const int64_t chunk = input_fused || fused.whole_sequence()
                            ? s.steps
                            : layer_detail::inference_chunk_steps(s, G, elem);
  const int64_t chunk_count = (s.steps + chunk - 1) / chunk;
  const typename Backend::StepGemm input_projection(
      w_ih, /*transpose=*/true, chunk_count == 1 ? s.total_rows : chunk * s.batch,
      input_fused ? 0 : chunk_count);
  const at::Tensor b_ih_t = b_ih.has_value() ? *b_ih : at::Tensor();
  char* output_base = static_cast<char*>(output.data_ptr());
  std::vector<StateRecurrentStep> fused_steps;
  for (int64_t first = 0; first < s.steps; first += chunk) {
    const ChunkRows rows_of_chunk =
        chunk_rows(s, first, std::min(first + chunk, s.steps) - 1, reverse);
    const at::Tensor x_part =
        input_fused ? fused_x_part
                    : input_projection
                          .product(x.narrow(0, rows_of_chunk.row_lo,
                                            rows_of_chunk.row_hi - rows_of_chunk.row_lo),
                                   b_ih_t)
                          .contiguous();
    for (int64_t i = first; i < std::min(first + chunk, s.steps); ++i) {
      const int64_t t = step_at(s, i, reverse);
      const int64_t rows = s.rows[t];
      const int64_t offset = s.row_offset[t];
      StateForwardArgs args{
          cell, input.scalar_type(), rows, H,
          static_cast<const char*>(x_part.const_data_ptr()) +
              (input_fused ? 0 : offset - rows_of_chunk.row_lo) * G * elem,
          h_part.const_data_ptr(), b_hh_c.defined() ? b_hh_c.const_data_ptr() : nullptr,
          h_state.const_data_ptr(), output_base + offset * H * elem, h_state.data_ptr(),
          saved.numel() ? static_cast<char*>(saved.data_ptr()) + offset * saved_per_row * elem
                        : nullptr};
      if (fused.active()) {
        fused_steps.push_back(fused_state_step(s, t, reverse, args, output, h0_rows, x_rows));
        continue;
      }
      at::Tensor step_h_part = h_part.narrow(0, 0, rows);
      recurrent(step_h_part, h_state.narrow(0, 0, rows), /*accumulate=*/false);
      Backend::state_forward(args);
    }
    if (!fused_steps.empty()) {
      fused.forward_steps(fused_steps.data(), static_cast<int64_t>(fused_steps.size()));
      fused_steps.clear();
    }
  }
  if (fused.active()) layer_detail::gather_final_state(s, reverse, output, h_state);
  std::vector<int64_t> output_shape(input.sizes().begin(), input.sizes().end());
  output_shape.back() = H;
  return {output.view(output_shape), h_state, saved};
}

// Returns (grad_input, grad_h0, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh); grad_input and the
// weight and bias gradients are empty when not needed. GRU's b_ih and b_hh gradients differ in
// the candidate rows; the RNN's are one (grad_b_ih; grad_b_hh is then undefined).
template <class Backend>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
state_layer_backward_impl(StateCell cell, const at::Tensor& grad_output,
                          const at::Tensor& grad_h_n, const at::Tensor& input,
                          const at::Tensor& h0, const at::Tensor& w_ih, const at::Tensor& w_hh,
                          const c10::optional<at::Tensor>& batch_sizes, bool reverse,
                          const at::Tensor& output, const at::Tensor& saved,
                          bool need_input_grad, bool need_weight_grads, const char* op) {
  using namespace state_layer_detail;
  const StepSchedule s = make_schedule(input, batch_sizes, op);
  const StateShapes shape =
      check_state_layer(cell, input, h0, w_ih, w_hh, c10::nullopt, c10::nullopt, s, op);
  const int64_t H = shape.hidden, G = shape.gates, N = s.total_rows;
  const int64_t saved_per_row = state_cell_saved(cell) * H;
  const int64_t elem = input.element_size();
  TORCH_CHECK(grad_output.numel() == N * H, op, ": grad_output has ", grad_output.numel(),
              " elements, expected ", N * H, " (", N, " rows x ", H, ")");
  TORCH_CHECK(output.numel() == N * H, op, ": output has ", output.numel(), " elements, expected ",
              N * H);
  TORCH_CHECK(saved.numel() == N * saved_per_row, op,
              ": saved was not kept by the forward (was it called with train=False?)");
  check_state(grad_h_n, s.batch, H, input, op, "grad_h_n");
  const bool sides_differ = cell == StateCell::kGru;
  const bool direct_h_path = cell == StateCell::kGru;

  const at::Tensor x = input.reshape({N, shape.input_size});
  const at::Tensor grad_out = grad_output.reshape({N, H});  // may be expanded (stride 0)
  const at::Tensor out_rows = output.reshape({N, H}).contiguous();
  const at::Tensor saved_rows = saved.contiguous();
  const at::Tensor h_initial = h0.contiguous();
  const int64_t chunk =
      layer_detail::state_backward_chunk_steps(s, (sides_differ ? 2 : 1) * G, elem);
  const int64_t chunk_rows_max = std::min(N, chunk * s.batch);
  at::Tensor grad_input_side = Backend::empty({chunk_rows_max, G}, input.options());
  at::Tensor grad_recurrent_side =
      sides_differ ? Backend::empty({chunk_rows_max, G}, input.options()) : grad_input_side;
  at::Tensor grad_h_state = grad_h_n.contiguous().clone();
  at::Tensor grad_input = need_input_grad ? Backend::empty({N, shape.input_size}, input.options())
                                          : at::empty({0}, input.options());
  // Where the back-end has a fused backward step, each chunk's steps run in one pass of it (the
  // recurrent GEMM of a step done at the start of the step before it, state_cell_units.h's
  // StateRecurrentBackwardStep), then one more step carries dL/dh out of the chunk.
  const typename Backend::FusedStateBackward fused(cell, w_hh, s.batch, s.steps);
  const typename Backend::StepGemm recurrent(w_hh, /*transpose=*/false, s.batch,
                                             fused.active() ? 0 : s.steps);
  std::vector<StateRecurrentBackwardStep> fused_steps;
  const auto recurrent_rows_of = [&](int64_t local) {
    return static_cast<const char*>(grad_recurrent_side.const_data_ptr()) + local * G * elem;
  };
  WeightGradSum<Backend> grad_w_ih(input.scalar_type()), grad_w_hh(input.scalar_type());
  at::Tensor grad_b_ih, grad_b_hh;

  for (int64_t end = s.steps; end > 0; end -= chunk) {
    const int64_t begin = std::max<int64_t>(0, end - chunk);
    const ChunkRows c = chunk_rows(s, begin, end - 1, reverse);
    const int64_t n = c.row_hi - c.row_lo;
    const at::Tensor chunk_grad_out = grad_out.narrow(0, c.row_lo, n).contiguous();
    const at::Tensor h_prev = layer_detail::previous_h_rows(s, reverse, out_rows, h_initial, c);
    const at::Tensor h_prev_rows = h_prev.is_contiguous() ? h_prev : h_prev.contiguous();
    for (int64_t i = end - 1; i >= begin; --i) {
      const int64_t t = step_at(s, i, reverse);
      const int64_t rows = s.rows[t];
      const int64_t local = s.row_offset[t] - c.row_lo;
      const int64_t row = s.row_offset[t];
      const StateBackwardArgs args{
          cell, input.scalar_type(), rows, H,
          static_cast<const char*>(chunk_grad_out.const_data_ptr()) + local * H * elem,
          grad_h_state.const_data_ptr(),
          saved_per_row ? static_cast<const char*>(saved_rows.const_data_ptr()) +
                              row * saved_per_row * elem
                        : nullptr,
          static_cast<const char*>(out_rows.const_data_ptr()) + row * H * elem,
          static_cast<const char*>(h_prev_rows.const_data_ptr()) + local * H * elem,
          static_cast<char*>(grad_input_side.data_ptr()) + local * G * elem,
          static_cast<char*>(grad_recurrent_side.data_ptr()) + local * G * elem,
          direct_h_path ? grad_h_state.data_ptr() : nullptr};
      if (fused.active()) {
        const bool first = i == end - 1;  // its dL/dh was carried in by the chunk after
        const int64_t later = first ? 0 : step_at(s, i + 1, reverse);
        fused_steps.push_back({first ? nullptr : recurrent_rows_of(s.row_offset[later] - c.row_lo),
                               first ? 0 : s.rows[later], grad_h_state.data_ptr(), args});
        continue;
      }
      Backend::state_backward(args);
      at::Tensor step_grad_h = grad_h_state.narrow(0, 0, rows);
      recurrent(step_grad_h, grad_recurrent_side.narrow(0, local, rows), direct_h_path);
    }
    if (fused.active()) {
      const int64_t last = step_at(s, begin, reverse);
      StateBackwardArgs no_rows{};
      no_rows.rows = 0;
      fused_steps.push_back({recurrent_rows_of(s.row_offset[last] - c.row_lo), s.rows[last],
                             grad_h_state.data_ptr(), no_rows});
      fused.backward_steps(fused_steps.data(), static_cast<int64_t>(fused_steps.size()));
      fused_steps.clear();
    }
    const at::Tensor chunk_input_side = grad_input_side.narrow(0, 0, n);
    const at::Tensor chunk_recurrent_side = grad_recurrent_side.narrow(0, 0, n);
    if (need_input_grad) {
      grad_input.narrow(0, c.row_lo, n).copy_(Backend::matmul(chunk_input_side, w_ih));
    }
    if (need_weight_grads) {
      grad_w_ih.add(x.narrow(0, c.row_lo, n), chunk_input_side);
      grad_w_hh.add(h_prev_rows, chunk_recurrent_side);
      accumulate<Backend>(grad_b_ih, chunk_input_side.sum(0));
      if (sides_differ) accumulate<Backend>(grad_b_hh, chunk_recurrent_side.sum(0));
    }
  }
  const at::ScalarType dtype = input.scalar_type();
  const auto skipped = [&] { return at::empty({0}, input.options()); };  // never aliased
  if (need_input_grad) {
    std::vector<int64_t> input_shape(input.sizes().begin(), input.sizes().end());
    grad_input = grad_input.view(input_shape);
  }
  if (!need_weight_grads) {
    return {grad_input, grad_h_state, skipped(), skipped(), skipped(), skipped()};
  }
  const at::Tensor bias_ih = finish_sum(grad_b_ih, dtype);
  return {grad_input,
          grad_h_state,
          grad_w_ih.finish(dtype),
          grad_w_hh.finish(dtype),
          bias_ih,
          sides_differ ? finish_sum(grad_b_hh, dtype) : at::Tensor()};
}

}  // namespace fusedlstm

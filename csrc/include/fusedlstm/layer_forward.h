// The lstm_layer forward, written once for every device (see layer_algorithm.h).
#pragma once

#include <fusedlstm/layer_steps.h>

namespace fusedlstm {

namespace layer_detail {

// One call of the layer forward, as named steps: the constructor sets up the state and the
// back-end's products, run() walks the chunks of steps.
template <class Backend>
class LayerForward {
 public:
  LayerForward(const at::Tensor& input, const at::Tensor& h0, const at::Tensor& c0,
               const at::Tensor& w_ih, const at::Tensor& w_hh,
               const c10::optional<at::Tensor>& b_ih, const c10::optional<at::Tensor>& b_hh,
               const c10::optional<at::Tensor>& w_hr,
               const c10::optional<at::Tensor>& batch_sizes, bool reverse, bool train)
      : input_(input),
        w_ih_(w_ih),
        reverse_(reverse),
        train_(train),
        s_(make_schedule(input, batch_sizes, kOp)),
        shape_(check_layer(input, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, s_, kOp)),
        H_(shape_.hidden),
        P_(shape_.proj),
        G_(4 * H_),
        has_proj_(w_hr.has_value()),
        elem_(input.element_size()),
        x_(input.reshape({s_.total_rows, shape_.input_size})),
        bias_(summed_bias(b_ih, b_hh)),
        output_(Backend::empty({s_.total_rows, P_}, input.options())),
        h_state_(h0.contiguous().clone()),
        h0_rows_(h0.contiguous()),
        c_state_(c0.contiguous().clone()),
        cells_(train ? Backend::empty({s_.total_rows, H_}, input.options())
                     : at::empty({0}, input.options())),
        saved_gates_(at::empty({0}, input.options())),
        m_step_(has_proj_ ? at::empty({s_.batch, H_}, input.options()) : at::Tensor()),
        // Where the back-end's fused step also takes over the input projection (fuses_input),
        // no projection GEMM runs: each step computes bias + x_t W_ih^T + h_{t-1} W_hh^T itself.
        fused_(w_hh, s_.batch, s_.steps, w_ih, bias_, /*inference=*/!train),
        input_fused_(fused_.fuses_input()),
        preact_dtype_(fused_.preact_dtype(input.scalar_type())),
        // Where the fused step keeps pre-activations in another type than the layer's (a
        // bfloat16 step's are float32), a training call saves the activated gates apart from
        // them: the pre-activations go to one scratch of B rows that every step reuses.
        preact_scratch_(train && preact_dtype_ != input.scalar_type()
                            ? Backend::empty({s_.batch, G_},
                                             input.options().dtype(preact_dtype_))
                            : at::Tensor()),
        x_rows_(input_fused_ ? x_.contiguous() : x_),
        recurrent_(w_hh, /*transpose=*/true, s_.batch, fused_.active() ? 0 : s_.steps),
        projection_(has_proj_ ? *w_hr : w_hh, /*transpose=*/true, s_.batch,
                    has_proj_ ? s_.steps : 0) {}

  // Returns (output, h_n, c_n, gates, cells), as layer_forward_impl.
  std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> run() {
    // The input projection of a chunk of steps, one GEMM per chunk. Training keeps all gates
    // (the activated gates are saved in the same buffer), so one chunk covers the sequence;
    // inference keeps none, so it projects a few steps at a time into a buffer that stays in
    // cache. With input fusion there is one chunk, its gates buffer holding all steps
    // (training) or one step (inference: every step writes the same rows). A fused step that
    // runs the whole sequence in one launch (whole_sequence) takes it as one chunk too.
    const int64_t chunk = train_ || input_fused_ || fused_.whole_sequence()
                              ? s_.steps
                              : inference_chunk_steps(s_, G_, elem_);
    // One product per chunk with the same W_ih: worth packing W_ih once when there are several.
    const int64_t chunk_count = (s_.steps + chunk - 1) / chunk;
    const typename Backend::StepGemm input_projection(
        w_ih_, /*transpose=*/true, chunk_count == 1 ? s_.total_rows : chunk * s_.batch,
        input_fused_ ? 0 : chunk_count);
    at::Tensor previous_gates;
    for (int64_t first = 0; first < s_.steps; first += chunk) {
      run_chunk(first, std::min(first + chunk, s_.steps) - 1, input_projection, previous_gates);
    }
    if (fused_.active() && !has_proj_) gather_final_state(s_, reverse_, output_, h_state_);
    std::vector<int64_t> output_shape(input_.sizes().begin(), input_.sizes().end());
    output_shape.back() = P_;
    return {output_.view(output_shape), h_state_, c_state_, saved_gates_, cells_};
  }

 private:
  static constexpr const char* kOp = "fusedlstm::lstm_layer";

  // The gates buffer of steps [first, last]: their input projection, or, with input fusion,
  // where the fused step writes them.
  at::Tensor chunk_gates(const ChunkRows& rows,
                         const typename Backend::StepGemm& input_projection) const {
    if (input_fused_) {
      return Backend::empty({train_ ? rows.row_hi - rows.row_lo : s_.batch, G_},
                            train_ ? input_.options() : input_.options().dtype(preact_dtype_));
    }
    return input_projection.product(x_.narrow(0, rows.row_lo, rows.row_hi - rows.row_lo), bias_)
        .contiguous();
  }

  void run_chunk(int64_t first, int64_t last, const typename Backend::StepGemm& input_projection,
                 at::Tensor& previous_gates) {
    const ChunkRows rows_of_chunk = chunk_rows(s_, first, last, reverse_);
    at::Tensor gates = chunk_gates(rows_of_chunk, input_projection);
    // The previous chunk's buffer is freed only now, after this one was allocated: freed first,
    // it sat at the top of the heap and glibc returned it to the OS, so every chunk's buffer
    // was fresh memory (a page fault per 4 KiB).
    previous_gates = gates;
    if (train_) saved_gates_ = gates;
    // Without a projection the fused step runs the whole chunk at once: h_{t-1} is read from
    // the output rows of the step before (or h0 for rows that start at t) and h_n gathered
    // after the loop. With one, the projection GEMM comes between steps: one step per call.
    std::vector<RecurrentStep> fused_steps;
    for (int64_t i = first; i <= last; ++i) {
      const int64_t t = step_at(s_, i, reverse_);
      PointwiseForwardArgs args = step_args(t, gates, rows_of_chunk.row_lo);
      if (fused_.active()) {
        fused_steps.push_back(fused_step(t, args));
        if (!has_proj_) continue;
        fused_.forward_steps(fused_steps.data(), 1);
        fused_steps.clear();
      } else {
        at::Tensor step_gates = gates.narrow(0, s_.row_offset[t] - rows_of_chunk.row_lo,
                                             s_.rows[t]);
        const at::Tensor recurrent_part =
            recurrent_.add_to(step_gates, h_state_.narrow(0, 0, s_.rows[t]));
        args.preact_addend = recurrent_part.defined() ? recurrent_part.const_data_ptr() : nullptr;
        Backend::forward(args);
      }
      if (has_proj_) project(t);
    }
    if (!fused_steps.empty()) {
      fused_.forward_steps(fused_steps.data(), static_cast<int64_t>(fused_steps.size()));
    }
  }

  // The pointwise pass of step t, whose gates are in `gates` from row row_lo on.
  PointwiseForwardArgs step_args(int64_t t, const at::Tensor& gates, int64_t row_lo) {
    const int64_t rows = s_.rows[t];
    const int64_t offset = s_.row_offset[t];
    char* step_gates_ptr = static_cast<char*>(gates.data_ptr()) +
                           (input_fused_ && !train_ ? 0 : offset - row_lo) * G_ *
                               static_cast<int64_t>(gates.element_size());
    char* step_output_ptr = static_cast<char*>(output_.data_ptr()) + offset * P_ * elem_;
    void* step_preact_ptr =
        preact_scratch_.defined() ? preact_scratch_.data_ptr() : step_gates_ptr;
    char* cells_base = train_ ? static_cast<char*>(cells_.data_ptr()) : nullptr;
    return PointwiseForwardArgs{input_.scalar_type(), rows, H_, step_preact_ptr, nullptr,
                                train_ ? step_gates_ptr : nullptr, c_state_.const_data_ptr(),
                                c_state_.data_ptr(),
                                train_ ? cells_base + offset * H_ * elem_ : nullptr,
                                has_proj_ ? m_step_.data_ptr() : step_output_ptr,
                                has_proj_ ? H_ : P_, has_proj_ ? nullptr : h_state_.data_ptr(), P_};
  }

  // Step t for the fused step: where its h_{t-1} rows are, and its input rows with input fusion.
  RecurrentStep fused_step(int64_t t, PointwiseForwardArgs args) const {
    args.h_copy = nullptr;
    const int64_t rows = s_.rows[t];
    RecurrentStep step{args, h_state_.const_data_ptr(), P_, rows, h_state_.const_data_ptr(), P_};
    if (input_fused_) {
      step.x = static_cast<const char*>(x_rows_.const_data_ptr()) +
               s_.row_offset[t] * shape_.input_size * elem_;
      step.x_stride = shape_.input_size;
    }
    if (!has_proj_) {
      const PreviousStep previous = previous_step(s_, t, reverse_);
      const char* output_base = static_cast<const char*>(output_.const_data_ptr());
      step.h_prev = previous.prev < 0 ? nullptr
                                      : output_base + s_.row_offset[previous.prev] * P_ * elem_;
      step.continuing = previous.continuing;
      step.h_start = h0_rows_.const_data_ptr();
    }
    return step;
  }

  // h_t = m_t W_hr^T for step t's rows, into the output and the carried state.
  void project(int64_t t) {
    const int64_t rows = s_.rows[t];
    at::Tensor step_output = output_.narrow(0, s_.row_offset[t], rows);
    projection_(step_output, m_step_.narrow(0, 0, rows), /*accumulate=*/false);
    h_state_.narrow(0, 0, rows).copy_(step_output);
  }

  const at::Tensor& input_;
  const at::Tensor& w_ih_;
  const bool reverse_;
  const bool train_;
  const StepSchedule s_;
  const WeightShapes shape_;
  const int64_t H_, P_, G_;
  const bool has_proj_;
  const int64_t elem_;
  const at::Tensor x_;
  const at::Tensor bias_;
  at::Tensor output_;
  at::Tensor h_state_;
  const at::Tensor h0_rows_;  // h_{t-1} of rows that start at step t (fused)
  at::Tensor c_state_;
  at::Tensor cells_;
  at::Tensor saved_gates_;
  at::Tensor m_step_;
  const typename Backend::FusedStep fused_;
  const bool input_fused_;
  const at::ScalarType preact_dtype_;
  const at::Tensor preact_scratch_;
  const at::Tensor x_rows_;
  const typename Backend::StepGemm recurrent_;
  const typename Backend::StepGemm projection_;
};

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
  return layer_detail::LayerForward<Backend>(input, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr,
                                             batch_sizes, reverse, train)
      .run();
}

}  // namespace fusedlstm

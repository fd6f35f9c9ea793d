// The lstm_layer backward, written once for every device (see layer_algorithm.h).
#pragma once

#include <fusedlstm/layer_steps.h>

namespace fusedlstm {

namespace layer_detail {

// One call of the layer backward, as named steps. The steps run in chunks (in processing order)
// of ~8 MiB of gate gradients. After a chunk, its rows' contributions to the input and weight
// gradients are taken as a few large GEMMs and the chunk's buffers are reused: no (T*B, 4H)
// buffer, and the weight gradients are sums over chunks in a fixed order (deterministic).
template <class Backend>
class LayerBackward {
 public:
  LayerBackward(const at::Tensor& grad_output, const at::Tensor& grad_h_n,
                const at::Tensor& grad_c_n, const at::Tensor& input, const at::Tensor& h0,
                const at::Tensor& c0, const at::Tensor& w_ih, const at::Tensor& w_hh,
                const c10::optional<at::Tensor>& w_hr,
                const c10::optional<at::Tensor>& batch_sizes, bool reverse,
                const at::Tensor& output, const at::Tensor& gates, const at::Tensor& cells,
                bool need_input_grad, bool need_weight_grads)
      : input_(input),
        h0_(h0),
        w_ih_(w_ih),
        reverse_(reverse),
        need_input_grad_(need_input_grad),
        need_weight_grads_(need_weight_grads),
        s_(make_schedule(input, batch_sizes, kOp)),
        shape_(check_layer(input, h0, c0, w_ih, w_hh, c10::nullopt, c10::nullopt, w_hr, s_, kOp)),
        H_(shape_.hidden),
        P_(shape_.proj),
        G_(4 * H_),
        N_(s_.total_rows),
        has_proj_(w_hr.has_value()),
        elem_(input.element_size()),
        checked_(check_saved(grad_output, grad_h_n, grad_c_n, output, gates, cells)),
        x_(input.reshape({N_, shape_.input_size})),
        grad_out_(grad_output.reshape({N_, P_})),  // may be expanded (stride 0)
        saved_gates_(gates.reshape({N_, G_}).contiguous()),
        saved_cells_(cells.reshape({N_, H_}).contiguous()),
        c_initial_(c0.contiguous()),
        out_rows_(output.reshape({N_, P_})),
        chunk_(backward_chunk_steps(s_, G_, elem_)),
        grad_gates_(Backend::empty({std::min(N_, chunk_ * s_.batch), G_}, input.options())),
        grad_h_chunk_(has_proj_ ? Backend::empty({std::min(N_, chunk_ * s_.batch), P_},
                                                 input.options())
                                : at::Tensor()),
        // The fused backward (where the back-end has one) runs a chunk's steps in one call, and
        // carries dL/dh across chunk boundaries (and into h0) itself, once per chunk.
        fused_(w_hh, s_.batch, has_proj_ ? 0 : s_.steps),
        // dL/dh between steps: float32 for a bfloat16 fused step (grad_h_dtype)
        grad_h_state_(grad_h_n.contiguous().to(fused_.grad_h_dtype(input.scalar_type())).clone()),
        grad_c_state_(grad_c_n.contiguous().clone()),
        grad_m_step_(has_proj_ ? at::empty({s_.batch, H_}, input.options()) : at::Tensor()),
        grad_input_(need_input_grad ? Backend::empty({N_, shape_.input_size}, input.options())
                                    : skipped()),
        recurrent_(w_hh, /*transpose=*/false, s_.batch, fused_.active() ? 0 : s_.steps),
        projection_(has_proj_ ? *w_hr : w_hh, /*transpose=*/false, s_.batch,
                    has_proj_ ? s_.steps : 0) {}

  // Returns (grad_input, grad_h0, grad_c0, grad_w_ih, grad_w_hh, grad_bias, grad_w_hr), as
  // layer_backward_impl.
  std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
  run() {
    for (int64_t end = s_.steps; end > 0; end -= chunk_) {
      const int64_t begin = std::max<int64_t>(0, end - chunk_);
      const ChunkRows rows_of_chunk = chunk_rows(s_, begin, end - 1, reverse_);
      run_chunk(begin, end, rows_of_chunk);
      chunk_gradients(rows_of_chunk);
    }
    if (need_input_grad_) {
      std::vector<int64_t> input_shape(input_.sizes().begin(), input_.sizes().end());
      grad_input_ = grad_input_.view(input_shape);
    }
    const at::ScalarType dtype = input_.scalar_type();
    const at::Tensor grad_h0 = finish_sum(grad_h_state_, dtype);
    // Outputs must not alias one another, so each skipped gradient is its own empty tensor.
    if (!need_weight_grads_) {
      return {grad_input_, grad_h0, grad_c_state_, skipped(), skipped(), skipped(), skipped()};
    }
    return {grad_input_,
            grad_h0,
            grad_c_state_,
            grad_w_ih_.finish(dtype),
            grad_w_hh_.finish(dtype),
            finish_sum(grad_bias_, dtype),
            has_proj_ ? finish_sum(grad_w_hr_, dtype) : skipped()};
  }

 private:
  static constexpr const char* kOp = "fusedlstm::lstm_layer_backward";

  at::Tensor skipped() const { return at::empty({0}, input_.options()); }

  bool check_saved(const at::Tensor& grad_output, const at::Tensor& grad_h_n,
                   const at::Tensor& grad_c_n, const at::Tensor& output,
                   const at::Tensor& gates, const at::Tensor& cells) const {
    TORCH_CHECK(grad_output.numel() == N_ * P_, kOp, ": grad_output has ", grad_output.numel(),
                " elements, expected ", N_ * P_, " (", N_, " rows x ", P_, ")");
    TORCH_CHECK(output.numel() == N_ * P_, kOp, ": output has ", output.numel(),
                " elements, expected ", N_ * P_);
    TORCH_CHECK(gates.numel() == N_ * G_ && cells.numel() == N_ * H_, kOp,
                ": gates/cells were not saved by the forward (was it called with train=False?)");
    check_state(grad_h_n, s_.batch, P_, input_, kOp, "grad_h_n");
    check_state(grad_c_n, s_.batch, H_, input_, kOp, "grad_c_n");
    return true;
  }

  // The steps [begin, end) of one chunk, latest first: dgates of every step into grad_gates_.
  void run_chunk(int64_t begin, int64_t end, const ChunkRows& rows_of_chunk) {
    const int64_t row_lo = rows_of_chunk.row_lo;
    const at::Tensor chunk_grad_out =
        grad_out_.narrow(0, row_lo, rows_of_chunk.row_hi - row_lo).contiguous();
    char* grad_gates_base = static_cast<char*>(grad_gates_.data_ptr());
    std::vector<RecurrentBackwardStep> fused_steps;
    for (int64_t i = end - 1; i >= begin; --i) {
      const int64_t t = step_at(s_, i, reverse_);
      const int64_t rows = s_.rows[t];
      const int64_t local = s_.row_offset[t] - row_lo;  // the step's first row in the chunk
      at::Tensor step_grad_h_state = grad_h_state_.narrow(0, 0, rows);
      const void* grad_h =
          static_cast<const char*>(chunk_grad_out.const_data_ptr()) + local * P_ * elem_;
      const void* grad_h_extra = step_grad_h_state.const_data_ptr();
      if (has_proj_) {
        at::Tensor step_grad_h = grad_h_chunk_.narrow(0, local, rows);
        at::add_out(step_grad_h, chunk_grad_out.narrow(0, local, rows), step_grad_h_state);
        at::Tensor step_grad_m = grad_m_step_.narrow(0, 0, rows);
        projection_(step_grad_m, step_grad_h, /*accumulate=*/false);
        grad_h = grad_m_step_.const_data_ptr();
        grad_h_extra = nullptr;
      }
      const auto [continuing_rows, starting_rows] =
          pointwise_rows(t, local, grad_h, grad_h_extra, grad_gates_base);
      if (fused_.active()) {
        // dL/dh_t of this step's rows comes from the step processed just before (t + 1 going
        // forward in time): its gate gradients times W_hh, inside the fused step; at a chunk's
        // first step it is already in grad_h_state (carried below).
        RecurrentBackwardStep step{nullptr, 0, grad_h_state_.data_ptr(), continuing_rows,
                                   starting_rows};
        if (i + 1 < end) {
          const int64_t later = step_at(s_, i + 1, reverse_);
          step.grad_gates_next = grad_gates_base + (s_.row_offset[later] - row_lo) * G_ * elem_;
          step.gemm_rows = s_.rows[later];
        }
        fused_steps.push_back(step);
        continue;
      }
      if (continuing_rows.rows > 0) Backend::backward(continuing_rows);
      if (starting_rows.rows > 0) Backend::backward(starting_rows);
      recurrent_(step_grad_h_state, grad_gates_.narrow(0, local, rows), /*accumulate=*/false);
    }
    if (fused_.active()) {
      // The chunk's steps, then dL/dh of its last step processed carried into the next chunk
      // (or into h0): a step of the fused kernel with no rows of its own.
      const int64_t last = step_at(s_, begin, reverse_);
      const PointwiseBackwardArgs no_rows{input_.scalar_type(), 0, H_};
      fused_steps.push_back(RecurrentBackwardStep{
          grad_gates_base + (s_.row_offset[last] - row_lo) * G_ * elem_, s_.rows[last],
          grad_h_state_.data_ptr(), no_rows, no_rows});
      fused_.backward_steps(fused_steps.data(), static_cast<int64_t>(fused_steps.size()));
    }
  }

  // The pointwise backward of step t in two row ranges: rows whose c_{t-1} is the previous
  // step's saved c, and rows that start here from c0 (all of them at the first step; packed
  // rows joining in reverse).
  std::pair<PointwiseBackwardArgs, PointwiseBackwardArgs> pointwise_rows(
      int64_t t, int64_t local, const void* grad_h, const void* grad_h_extra,
      char* grad_gates_base) {
    const PreviousStep previous = previous_step(s_, t, reverse_);
    const int64_t continuing = previous.continuing;
    const int64_t grad_h_stride = has_proj_ ? H_ : P_;
    const char* gates_base = static_cast<const char*>(saved_gates_.const_data_ptr());
    const char* cells_base = static_cast<const char*>(saved_cells_.const_data_ptr());
    const char* c0_base = static_cast<const char*>(c_initial_.const_data_ptr());
    const auto rows_args = [&](int64_t first, int64_t count, const char* c_prev) {
      const char* grad_h_rows = static_cast<const char*>(grad_h) + first * grad_h_stride * elem_;
      const char* extra_rows = grad_h_extra ? static_cast<const char*>(grad_h_extra) +
                                                  first * P_ * grad_h_state_.element_size()
                                            : nullptr;
      char* grad_c_rows = static_cast<char*>(grad_c_state_.data_ptr()) + first * H_ * elem_;
      const int64_t row = s_.row_offset[t] + first;
      return PointwiseBackwardArgs{
          input_.scalar_type(), count, H_, grad_h_rows, grad_h_stride, extra_rows, P_,
          grad_c_rows, grad_c_rows, gates_base + row * G_ * elem_, cells_base + row * H_ * elem_,
          c_prev, grad_gates_base + (local + first) * G_ * elem_};
    };
    return {rows_args(0, continuing,
                      continuing ? cells_base + s_.row_offset[previous.prev] * H_ * elem_
                                 : nullptr),
            rows_args(continuing, s_.rows[t] - continuing, c0_base + continuing * H_ * elem_)};
  }

  // A finished chunk's contributions to the input and weight gradients, as large GEMMs.
  void chunk_gradients(const ChunkRows& rows_of_chunk) {
    const int64_t row_lo = rows_of_chunk.row_lo;
    const int64_t n = rows_of_chunk.row_hi - row_lo;
    const at::Tensor chunk_grad_gates = grad_gates_.narrow(0, 0, n);
    if (need_input_grad_) {
      grad_input_.narrow(0, row_lo, n).copy_(Backend::matmul(chunk_grad_gates, w_ih_));
    }
    if (!need_weight_grads_) return;
    grad_w_ih_.add(x_.narrow(0, row_lo, n), chunk_grad_gates);
    grad_w_hh_.add(previous_h_rows(s_, reverse_, out_rows_, h0_, rows_of_chunk),
                   chunk_grad_gates);
    accumulate<Backend>(grad_bias_, chunk_grad_gates.sum(0));
    if (has_proj_) {
      const at::Tensor m = saved_gates_.narrow(0, row_lo, n).narrow(1, 3 * H_, H_) *
                           at::tanh(saved_cells_.narrow(0, row_lo, n));
      accumulate<Backend>(grad_w_hr_, Backend::matmul_tn(grad_h_chunk_.narrow(0, 0, n), m));
    }
  }

  const at::Tensor& input_;
  const at::Tensor& h0_;
  const at::Tensor& w_ih_;
  const bool reverse_;
  const bool need_input_grad_;
  const bool need_weight_grads_;
  const StepSchedule s_;
  const WeightShapes shape_;
  const int64_t H_, P_, G_, N_;
  const bool has_proj_;
  const int64_t elem_;
  const bool checked_;  // check_saved ran, before any buffer is derived from the saved tensors
  const at::Tensor x_;
  const at::Tensor grad_out_;
  const at::Tensor saved_gates_;
  const at::Tensor saved_cells_;
  const at::Tensor c_initial_;
  const at::Tensor out_rows_;
  const int64_t chunk_;
  at::Tensor grad_gates_;
  at::Tensor grad_h_chunk_;
  const typename Backend::FusedBackward fused_;
  at::Tensor grad_h_state_;
  at::Tensor grad_c_state_;
  at::Tensor grad_m_step_;
  at::Tensor grad_input_;
  WeightGradSum<Backend> grad_w_ih_{input_.scalar_type()}, grad_w_hh_{input_.scalar_type()};
  at::Tensor grad_bias_, grad_w_hr_;
  const typename Backend::StepGemm recurrent_;
  const typename Backend::StepGemm projection_;
};

}  // namespace layer_detail

// Returns (grad_input, grad_h0, grad_c0, grad_w_ih, grad_w_hh, grad_bias, grad_w_hr). grad_bias
// serves b_ih and b_hh alike; grad_w_hr is empty without a projection; grad_input and the weight
// gradients are empty when not needed. Per step: one fused pointwise pass (dgates) and one GEMM
// (dh_{t-1}); the weight gradients are large GEMMs per chunk of steps, so the result is
// deterministic (no atomics, fixed reduction order).
template <class Backend>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
layer_backward_impl(const at::Tensor& grad_output, const at::Tensor& grad_h_n,
                    const at::Tensor& grad_c_n, const at::Tensor& input, const at::Tensor& h0,
                    const at::Tensor& c0, const at::Tensor& w_ih, const at::Tensor& w_hh,
                    const c10::optional<at::Tensor>& w_hr,
                    const c10::optional<at::Tensor>& batch_sizes, bool reverse,
                    const at::Tensor& output, const at::Tensor& gates, const at::Tensor& cells,
                    bool need_input_grad, bool need_weight_grads) {
  return layer_detail::LayerBackward<Backend>(grad_output, grad_h_n, grad_c_n, input, h0, c0,
                                              w_ih, w_hh, w_hr, batch_sizes, reverse, output,
                                              gates, cells, need_input_grad, need_weight_grads)
      .run();
}

}  // namespace fusedlstm

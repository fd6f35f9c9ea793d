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
#include <fusedlstm/switches.h>

#include <algorithm>
#include <cstdlib>
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

// The step processed just before step t, and how many of step t's rows (the first ones) carry
// on from it; the others start from the initial state. prev is -1 when there is none.
struct PreviousStep {
  int64_t prev;
  int64_t continuing;
};

inline PreviousStep previous_step(const StepSchedule& s, int64_t t, bool reverse) {
  const int64_t prev = reverse ? t + 1 : t - 1;
  if (prev < 0 || prev >= s.steps) return {-1, 0};
  return {prev, std::min(s.rows[t], s.rows[prev])};
}

inline int64_t step_at(const StepSchedule& s, int64_t i, bool reverse) {
  return reverse ? s.steps - 1 - i : i;
}

// A chunk of consecutive steps, processing indices [first, last] in either direction: its steps
// t_lo..t_hi in time order and the rows [row_lo, row_hi) they occupy in the flat buffers.
struct ChunkRows {
  int64_t t_lo, t_hi, row_lo, row_hi;
};

inline ChunkRows chunk_rows(const StepSchedule& s, int64_t first, int64_t last, bool reverse) {
  const int64_t t_a = step_at(s, first, reverse);
  const int64_t t_b = step_at(s, last, reverse);
  const int64_t t_lo = std::min(t_a, t_b);
  const int64_t t_hi = std::max(t_a, t_b);
  return {t_lo, t_hi, s.row_offset[t_lo], s.row_offset[t_hi] + s.rows[t_hi]};
}

// h_{t-1} of a chunk's rows, for dL/dW_hh: each row's previous step's output row, or its h0 row
// where it started at its step. Padded input (and any run of steps where every row continues)
// is a shifted view of `output`; otherwise it is gathered.
inline at::Tensor previous_h_rows(const StepSchedule& s, bool reverse, const at::Tensor& output,
                                  const at::Tensor& h0, const ChunkRows& c) {
  bool shifted = true;
  int64_t delta = 0;
  for (int64_t t = c.t_lo; t <= c.t_hi && shifted; ++t) {
    const PreviousStep p = previous_step(s, t, reverse);
    const int64_t d = p.prev < 0 ? 0 : s.row_offset[p.prev] - s.row_offset[t];
    shifted = p.prev >= 0 && p.continuing == s.rows[t] && (delta == 0 || d == delta);
    delta = d;
  }
  const int64_t n = c.row_hi - c.row_lo;
  if (shifted) return output.narrow(0, c.row_lo + delta, n);
  at::Tensor rows = at::empty({n, output.size(1)}, output.options());
  for (int64_t t = c.t_lo; t <= c.t_hi; ++t) {
    const PreviousStep p = previous_step(s, t, reverse);
    const int64_t at = s.row_offset[t] - c.row_lo;
    if (p.continuing > 0) {
      rows.narrow(0, at, p.continuing).copy_(output.narrow(0, s.row_offset[p.prev], p.continuing));
    }
    if (s.rows[t] > p.continuing) {
      rows.narrow(0, at + p.continuing, s.rows[t] - p.continuing)
          .copy_(h0.narrow(0, p.continuing, s.rows[t] - p.continuing));
    }
  }
  return rows;
}

// Adds `part` into the running sum `total` (defined by the first part). Reduced-precision sums
// are kept in float32 and rounded once at the end (see finish_sum).
inline void accumulate(at::Tensor& total, const at::Tensor& part) {
  if (!total.defined()) {
    total = at::isReducedFloatingType(part.scalar_type()) ? part.to(at::kFloat) : part;
  } else {
    total.add_(part);
  }
}

inline at::Tensor finish_sum(const at::Tensor& total, at::ScalarType dtype) {
  return total.scalar_type() == dtype ? total : total.to(dtype);
}

// Steps per backward chunk: the gate gradients of a chunk (and the weight-gradient GEMMs on
// them) are kept ~8 MiB, so the backward never holds a (T*B, 4H) gradient buffer.
// The switch backward_chunk_steps = k forces k (for tests: small shapes fit in one chunk).
inline int64_t backward_chunk_steps(const StepSchedule& s, int64_t gates_per_row, size_t elem) {
  const int64_t forced = switch_value(Switch::kBackwardChunkSteps);
  if (forced > 0) return std::min(forced, s.steps);
  constexpr int64_t kChunkBytes = int64_t{8} << 20;
  const int64_t per_step =
      std::max<int64_t>(1, s.batch) * gates_per_row * static_cast<int64_t>(elem);
  return std::clamp<int64_t>(kChunkBytes / per_step, 1, s.steps);
}

// Steps per input-projection chunk in inference: enough rows for an efficient GEMM (256), or as
// many as fit in ~2 MiB of gates (a core's L2 here), whichever is more.
inline int64_t inference_chunk_steps(const StepSchedule& s, int64_t gates_per_row, size_t elem) {
  constexpr int64_t kMinRows = 256;
  constexpr int64_t kChunkBytes = int64_t{2} << 20;
  const int64_t batch = std::max<int64_t>(1, s.batch);
  const int64_t for_rows = (kMinRows + batch - 1) / batch;
  const int64_t for_bytes = kChunkBytes / (batch * gates_per_row * static_cast<int64_t>(elem));
  return std::clamp<int64_t>(std::max(for_rows, for_bytes), 1, s.steps);
}

}  // namespace layer_detail

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
    // (training) or one step (inference: every step writes the same rows).
    const int64_t chunk =
        train_ || input_fused_ ? s_.steps : inference_chunk_steps(s_, G_, elem_);
    // One product per chunk with the same W_ih: worth packing W_ih once when there are several.
    const int64_t chunk_count = (s_.steps + chunk - 1) / chunk;
    const typename Backend::StepGemm input_projection(
        w_ih_, /*transpose=*/true, chunk_count == 1 ? s_.total_rows : chunk * s_.batch,
        input_fused_ ? 0 : chunk_count);
    at::Tensor previous_gates;
    for (int64_t first = 0; first < s_.steps; first += chunk) {
      run_chunk(first, std::min(first + chunk, s_.steps) - 1, input_projection, previous_gates);
    }
    if (fused_.active() && !has_proj_) gather_h_n();
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

  // h_n: each row's h after the last step it took part in. Rows of step t absent from the step
  // processed after it have just finished (the last step, or packed rows leaving).
  void gather_h_n() {
    for (int64_t i = 0; i < s_.steps; ++i) {
      const int64_t t = step_at(s_, i, reverse_);
      const int64_t next_rows = i + 1 < s_.steps ? s_.rows[step_at(s_, i + 1, reverse_)] : 0;
      const int64_t from = std::min(next_rows, s_.rows[t]);
      if (from < s_.rows[t]) {
        h_state_.narrow(0, from, s_.rows[t] - from)
            .copy_(output_.narrow(0, s_.row_offset[t] + from, s_.rows[t] - from));
      }
    }
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
            finish_sum(grad_w_ih_t_.t().contiguous(), dtype),
            finish_sum(grad_w_hh_t_.t().contiguous(), dtype),
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
    // dW^T = rows^T dgates per chunk (the layer input / h_{t-1} rows are the smaller operand,
    // see matmul_tn), transposed once after the last chunk.
    accumulate(grad_w_ih_t_, Backend::matmul_tn(x_.narrow(0, row_lo, n), chunk_grad_gates));
    accumulate(grad_w_hh_t_,
               Backend::matmul_tn(previous_h_rows(s_, reverse_, out_rows_, h0_, rows_of_chunk),
                                  chunk_grad_gates));
    accumulate(grad_bias_, chunk_grad_gates.sum(0));
    if (has_proj_) {
      const at::Tensor m = saved_gates_.narrow(0, row_lo, n).narrow(1, 3 * H_, H_) *
                           at::tanh(saved_cells_.narrow(0, row_lo, n));
      accumulate(grad_w_hr_, Backend::matmul_tn(grad_h_chunk_.narrow(0, 0, n), m));
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
  at::Tensor grad_w_ih_t_, grad_w_hh_t_, grad_bias_, grad_w_hr_;
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

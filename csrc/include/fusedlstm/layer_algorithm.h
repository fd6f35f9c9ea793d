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

// Returns (grad_input, grad_h0, grad_c0, grad_w_ih, grad_w_hh, grad_bias, grad_w_hr). grad_bias
// serves b_ih and b_hh alike; grad_w_hr is empty without a projection; grad_input and the weight
// gradients are empty when not needed. Per step: one fused
// pointwise pass (dgates) and one GEMM (dh_{t-1}); the weight gradients are single large GEMMs
// after the loop, so the result is deterministic (no atomics, fixed reduction order).
template <class Backend>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
layer_backward_impl(const at::Tensor& grad_output, const at::Tensor& grad_h_n,
                    const at::Tensor& grad_c_n, const at::Tensor& input, const at::Tensor& h0,
                    const at::Tensor& c0, const at::Tensor& w_ih, const at::Tensor& w_hh,
                    const c10::optional<at::Tensor>& w_hr,
                    const c10::optional<at::Tensor>& batch_sizes, bool reverse,
                    const at::Tensor& output, const at::Tensor& gates, const at::Tensor& cells,
                    bool need_input_grad, bool need_weight_grads) {
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
  const at::Tensor grad_out = grad_output.reshape({N, P});  // may be expanded (stride 0)
  const at::Tensor saved_gates = gates.reshape({N, G}).contiguous();
  const at::Tensor saved_cells = cells.reshape({N, H}).contiguous();
  const at::Tensor c_initial = c0.contiguous();
  const at::Tensor out_rows = output.reshape({N, P});

  // The steps run in chunks (in processing order) of ~8 MiB of gate gradients. After a chunk,
  // its rows' contributions to the input and weight gradients are taken as a few large GEMMs
  // and the chunk's buffers are reused: no (T*B, 4H) buffer, and the weight gradients are sums
  // over chunks in a fixed order (deterministic).
  const int64_t chunk = layer_detail::backward_chunk_steps(s, G, input.element_size());
  const int64_t max_chunk_rows = std::min(N, chunk * s.batch);
  at::Tensor grad_gates = Backend::empty({max_chunk_rows, G}, options);
  at::Tensor grad_h_chunk =
      has_proj ? Backend::empty({max_chunk_rows, P}, options) : at::Tensor();
  // The fused backward (where the back-end has one) runs a chunk's steps in one call, and
  // carries dL/dh across chunk boundaries (and into h0) itself, once per chunk.
  const typename Backend::FusedBackward fused(w_hh, s.batch, has_proj ? 0 : s.steps);
  // dL/dh between steps: float32 for a bfloat16 fused step (grad_h_dtype)
  at::Tensor grad_h_state =
      grad_h_n.contiguous().to(fused.grad_h_dtype(input.scalar_type())).clone();
  at::Tensor grad_c_state = grad_c_n.contiguous().clone();
  at::Tensor grad_m_step = has_proj ? at::empty({s.batch, H}, options) : at::Tensor();
  const auto skipped = [&] { return at::empty({0}, options); };
  at::Tensor grad_input =
      need_input_grad ? Backend::empty({N, shape.input_size}, options) : skipped();
  at::Tensor grad_w_ih_t, grad_w_hh_t, grad_bias, grad_w_hr;

  const typename Backend::StepGemm recurrent(w_hh, /*transpose=*/false, s.batch,
                                             fused.active() ? 0 : s.steps);
  const typename Backend::StepGemm projection(has_proj ? *w_hr : w_hh, /*transpose=*/false,
                                              s.batch, has_proj ? s.steps : 0);
  const size_t elem = input.element_size();
  const char* gates_base = static_cast<const char*>(saved_gates.const_data_ptr());
  const char* cells_base = static_cast<const char*>(saved_cells.const_data_ptr());
  const char* c0_base = static_cast<const char*>(c_initial.const_data_ptr());
  std::vector<RecurrentBackwardStep> fused_steps;

  for (int64_t end = s.steps; end > 0; end -= chunk) {
    const int64_t begin = std::max<int64_t>(0, end - chunk);
    const layer_detail::ChunkRows rows_of_chunk =
        layer_detail::chunk_rows(s, begin, end - 1, reverse);
    const int64_t row_lo = rows_of_chunk.row_lo;
    const int64_t n = rows_of_chunk.row_hi - row_lo;
    const at::Tensor chunk_grad_out = grad_out.narrow(0, row_lo, n).contiguous();
    const char* grad_out_base = static_cast<const char*>(chunk_grad_out.const_data_ptr());
    char* grad_gates_base = static_cast<char*>(grad_gates.data_ptr());
    fused_steps.clear();

    for (int64_t i = end - 1; i >= begin; --i) {
      const int64_t t = layer_detail::step_at(s, i, reverse);
      const int64_t rows = s.rows[t];
      const int64_t offset = s.row_offset[t];
      const int64_t local = offset - row_lo;  // the step's first row in the chunk buffers
      at::Tensor step_grad_h_state = grad_h_state.narrow(0, 0, rows);
      const void* grad_h = grad_out_base + local * P * elem;
      const void* grad_h_extra = step_grad_h_state.const_data_ptr();
      if (has_proj) {
        at::Tensor step_grad_h = grad_h_chunk.narrow(0, local, rows);
        at::add_out(step_grad_h, chunk_grad_out.narrow(0, local, rows), step_grad_h_state);
        at::Tensor step_grad_m = grad_m_step.narrow(0, 0, rows);
        projection(step_grad_m, step_grad_h, /*accumulate=*/false);
        grad_h = grad_m_step.const_data_ptr();
        grad_h_extra = nullptr;
      }
      // c_{t-1} of the rows that continue from the previous step is that step's saved c; rows
      // that start here (all of them at the first step; packed rows joining in reverse) use c0.
      const layer_detail::PreviousStep previous = layer_detail::previous_step(s, t, reverse);
      const int64_t continuing = previous.continuing;
      const int64_t grad_h_stride = has_proj ? H : P;
      auto rows_args = [&](int64_t first, int64_t count, const char* c_prev) {
        const char* grad_h_rows = static_cast<const char*>(grad_h) + first * grad_h_stride * elem;
        const char* extra_rows = grad_h_extra ? static_cast<const char*>(grad_h_extra) +
                                                    first * P * grad_h_state.element_size()
                                              : nullptr;
        char* grad_c_rows = static_cast<char*>(grad_c_state.data_ptr()) + first * H * elem;
        const int64_t row = offset + first;
        return PointwiseBackwardArgs{
            input.scalar_type(), count, H, grad_h_rows, grad_h_stride, extra_rows, P,
            grad_c_rows, grad_c_rows, gates_base + row * G * elem, cells_base + row * H * elem,
            c_prev, grad_gates_base + (local + first) * G * elem};
      };
      const PointwiseBackwardArgs continuing_rows = rows_args(
          0, continuing,
          continuing ? cells_base + s.row_offset[previous.prev] * H * elem : nullptr);
      const PointwiseBackwardArgs starting_rows =
          rows_args(continuing, rows - continuing, c0_base + continuing * H * elem);
      if (fused.active()) {
        // dL/dh_t of this step's rows comes from the step processed just before (t + 1 going
        // forward in time): its gate gradients times W_hh, inside the fused step; at a chunk's
        // first step it is already in grad_h_state (carried below).
        RecurrentBackwardStep step{nullptr, 0, grad_h_state.data_ptr(), continuing_rows,
                                   starting_rows};
        if (i + 1 < end) {
          const int64_t later = layer_detail::step_at(s, i + 1, reverse);
          step.grad_gates_next = grad_gates_base + (s.row_offset[later] - row_lo) * G * elem;
          step.gemm_rows = s.rows[later];
        }
        fused_steps.push_back(step);
        continue;
      }
      if (continuing_rows.rows > 0) Backend::backward(continuing_rows);
      if (starting_rows.rows > 0) Backend::backward(starting_rows);
      recurrent(step_grad_h_state, grad_gates.narrow(0, local, rows), /*accumulate=*/false);
    }
    if (fused.active()) {
      // The chunk's steps, then dL/dh of its last step processed carried into the next chunk
      // (or into h0): a step of the fused kernel with no rows of its own.
      const int64_t last = layer_detail::step_at(s, begin, reverse);
      const PointwiseBackwardArgs no_rows{input.scalar_type(), 0, H};
      fused_steps.push_back(RecurrentBackwardStep{
          grad_gates_base + (s.row_offset[last] - row_lo) * G * elem, s.rows[last],
          grad_h_state.data_ptr(), no_rows, no_rows});
      fused.backward_steps(fused_steps.data(), static_cast<int64_t>(fused_steps.size()));
    }

    const at::Tensor chunk_grad_gates = grad_gates.narrow(0, 0, n);
    if (need_input_grad) {
      grad_input.narrow(0, row_lo, n).copy_(Backend::matmul(chunk_grad_gates, w_ih));
    }
    if (need_weight_grads) {
      // dW^T = rows^T dgates per chunk (the layer input / h_{t-1} rows are the smaller operand,
      // see matmul_tn), transposed once after the last chunk.
      layer_detail::accumulate(grad_w_ih_t,
                               Backend::matmul_tn(x.narrow(0, row_lo, n), chunk_grad_gates));
      layer_detail::accumulate(
          grad_w_hh_t,
          Backend::matmul_tn(
              layer_detail::previous_h_rows(s, reverse, out_rows, h0, rows_of_chunk),
              chunk_grad_gates));
      layer_detail::accumulate(grad_bias, chunk_grad_gates.sum(0));
      if (has_proj) {
        const at::Tensor m = saved_gates.narrow(0, row_lo, n).narrow(1, 3 * H, H) *
                             at::tanh(saved_cells.narrow(0, row_lo, n));
        layer_detail::accumulate(grad_w_hr, Backend::matmul_tn(grad_h_chunk.narrow(0, 0, n), m));
      }
    }
  }

  if (need_input_grad) {
    std::vector<int64_t> input_shape(input.sizes().begin(), input.sizes().end());
    grad_input = grad_input.view(input_shape);
  }
  const at::ScalarType dtype = input.scalar_type();
  const at::Tensor grad_h0 = layer_detail::finish_sum(grad_h_state, dtype);
  // Outputs must not alias one another, so each skipped gradient is its own empty tensor.
  if (!need_weight_grads) {
    return {grad_input, grad_h0, grad_c_state, skipped(), skipped(), skipped(), skipped()};
  }
  return {grad_input,
          grad_h0,
          grad_c_state,
          layer_detail::finish_sum(grad_w_ih_t.t().contiguous(), dtype),
          layer_detail::finish_sum(grad_w_hh_t.t().contiguous(), dtype),
          layer_detail::finish_sum(grad_bias, dtype),
          has_proj ? layer_detail::finish_sum(grad_w_hr, dtype) : skipped()};
}

}  // namespace fusedlstm

// The pieces the layer forward and backward share (layer_forward.h, layer_backward.h): argument
// checks, which step comes before which and how many rows carry on, the rows of a chunk of steps,
// chunk sizes, and float32 sums of reduced-precision gradients.
#pragma once

#include <ATen/ATen.h>

#include <fusedlstm/checks.h>
#include <fusedlstm/pointwise.h>
#include <fusedlstm/gemm.h>
#include <fusedlstm/step_schedule.h>
#include <fusedlstm/switches.h>

#include <algorithm>
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

// The final state of each row from the output rows (N, width) into state (B, width): each row's
// output after the last step it took part in. For loops that read h_{t-1} from the output rows
// and leave the carried state alone (the fused steps). Rows of step t absent from the step
// processed after it have just finished (the last step, or packed rows leaving).
inline void gather_final_state(const StepSchedule& s, bool reverse, const at::Tensor& output,
                               at::Tensor& state) {
  for (int64_t i = 0; i < s.steps; ++i) {
    const int64_t t = step_at(s, i, reverse);
    const int64_t next_rows = i + 1 < s.steps ? s.rows[step_at(s, i + 1, reverse)] : 0;
    const int64_t from = std::min(next_rows, s.rows[t]);
    if (from < s.rows[t]) {
      state.narrow(0, from, s.rows[t] - from)
          .copy_(output.narrow(0, s.row_offset[t] + from, s.rows[t] - from));
    }
  }
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
  // Rows from `output` are copied in runs: a step whose previous rows follow the run's in both
  // `rows` and `output` extends it. Padded input whose chunk holds the step from h0 takes two
  // copies instead of one per step (a copy op per step was ~5% of a small layer's training).
  int64_t run_at = 0, run_from = 0, run_count = 0;
  const auto copy_run = [&] {
    if (run_count > 0) {
      rows.narrow(0, run_at, run_count).copy_(output.narrow(0, run_from, run_count));
    }
    run_count = 0;
  };
  for (int64_t t = c.t_lo; t <= c.t_hi; ++t) {
    const PreviousStep p = previous_step(s, t, reverse);
    const int64_t at = s.row_offset[t] - c.row_lo;
    if (p.continuing > 0) {
      const int64_t from = s.row_offset[p.prev];
      if (run_count == 0 || run_at + run_count != at || run_from + run_count != from) {
        copy_run();
        run_at = at;
        run_from = from;
      }
      run_count += p.continuing;
    }
    if (s.rows[t] > p.continuing) {
      rows.narrow(0, at + p.continuing, s.rows[t] - p.continuing)
          .copy_(h0.narrow(0, p.continuing, s.rows[t] - p.continuing));
    }
  }
  copy_run();
  return rows;
}

// Adds `part` into the running sum `total` (defined by the first part). Reduced-precision sums
// are kept in float32, in a back-end buffer (the CPU's pool: a fresh mapping faults per page),
// and rounded once at the end (see finish_sum).
template <class Backend>
void accumulate(at::Tensor& total, const at::Tensor& part) {
  if (total.defined()) {
    total.add_(part);
  } else if (at::isReducedFloatingType(part.scalar_type())) {
    total = Backend::empty(part.sizes(), part.options().dtype(at::kFloat)).copy_(part);
  } else {
    total = part;
  }
}

inline at::Tensor finish_sum(const at::Tensor& total, at::ScalarType dtype) {
  return total.scalar_type() == dtype ? total : total.to(dtype);
}

// A weight gradient dW = grad^T rows summed over the backward's chunks (grad: a chunk's gate
// gradients (N, G); rows: its layer input or h_{t-1} rows (N, K)), in the orientation the
// back-end's product wants (gemm.h, weight_grads_transposed): dW^T = rows^T grad per chunk and
// one transpose after the last, or dW directly.
template <class Backend>
class WeightGradSum {
 public:
  explicit WeightGradSum(at::ScalarType dtype)
      : transposed_(Backend::weight_grads_transposed(dtype)) {}

  void add(const at::Tensor& rows, const at::Tensor& grad) {
    accumulate<Backend>(total_, transposed_ ? Backend::matmul_tn(rows, grad)
                                            : Backend::matmul_tn(grad, rows));
  }

  at::Tensor finish(at::ScalarType dtype) const {
    return finish_sum(transposed_ ? Backend::transposed(total_) : total_, dtype);
  }

 private:
  bool transposed_;
  at::Tensor total_;
};

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

// Steps per chunk of the GRU / RNN backward (state_layer.h): as backward_chunk_steps, and at most
// a quarter of the sequence while that leaves 64 rows or more. Their saved state is small beside
// the LSTM's, so one chunk of gate gradients for the whole sequence was most of a small layer's
// training peak (above nn.GRU's and nn.RNN's), and chunks of 8 to 32 steps ran as fast as one
// (docs/performance.md, "GRU and RNN training memory").
inline int64_t state_backward_chunk_steps(const StepSchedule& s, int64_t gates_per_row,
                                          size_t elem) {
  const int64_t steps = backward_chunk_steps(s, gates_per_row, elem);
  if (switch_value(Switch::kBackwardChunkSteps) > 0) return steps;
  constexpr int64_t kMinRows = 64;
  const int64_t batch = std::max<int64_t>(1, s.batch);
  const int64_t quarter = (s.steps + 3) / 4;
  return std::min(steps, std::max(quarter, (kMinRows + batch - 1) / batch));
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

}  // namespace fusedlstm

#include "fused_state_step.h"

#include <algorithm>

#include "fused_step.h"
#include "sliced_steps.h"
#include "weight_packing.h"

namespace fusedlstm::cpu {

namespace {

at::Tensor float_bias(const c10::optional<at::Tensor>& b) {
  return b.has_value() ? b->to(at::kFloat).contiguous() : at::Tensor();
}

const float* data_or_null(const at::Tensor& t) {
  return t.defined() ? t.const_data_ptr<float>() : nullptr;
}

}  // namespace

FusedStateStep::FusedStateStep(StateCell cell, const at::Tensor& w_hh, int64_t max_rows,
                               int64_t calls, const at::Tensor& w_ih,
                               const c10::optional<at::Tensor>& b_ih,
                               const c10::optional<at::Tensor>& b_hh, bool inference)
    : cell_(cell) {
  const FusedForwardChoice choice = choose_fused_forward(w_ih, w_hh, max_rows, calls, inference,
                                                         state_tile_vectors(cell));
  if (!choice.applies) return;
  dtype_ = choice.dtype;
  const int64_t width = choice.width;
  kernel_ = dtype_ == at::kBFloat16 ? selected_bf16_fused_kernels()->state_forward
                                    : selected_row_kernels().fused_state_forward;
  hidden_ = w_hh.size(1);
  const TileColumns columns = state_tile_columns(cell, hidden_, width);
  const int vectors = state_tile_vectors(cell);
  blocks_ = (hidden_ + columns.block_units - 1) / columns.block_units;
  packed_ = pack_forward_weight(w_hh, blocks_, width, vectors, columns);
  bias_hh_ = float_bias(b_hh);
  if (choice.fuse_input) {
    input_inner_ = w_ih.size(1);
    packed_input_ = pack_forward_weight(w_ih, blocks_, width, vectors, columns);
    bias_ih_ = float_bias(b_ih);
  }
}

void FusedStateStep::forward_steps(const StateRecurrentStep* steps, int64_t count) const {
  int64_t max_rows = 0;
  for (int64_t i = 0; i < count; ++i) {
    const StateForwardArgs& state = steps[i].state;
    // (an empty batch has no input rows to point at)
    const bool input_as_fused =
        fuses_input() ? steps[i].x != nullptr || state.rows == 0 : steps[i].x == nullptr;
    TORCH_CHECK(state.cell == cell_ && state.dtype == dtype_ && state.hidden == hidden_ &&
                    state.bias_hh == nullptr && state.h_state == nullptr && input_as_fused,
                "FusedStateStep: bad arguments");
    max_rows = std::max(max_rows, state.rows);
  }
  const FusedStateBlocksFn kernel = kernel_;
  const void* packed = packed_.const_data_ptr();
  const void* packed_input = fuses_input() ? packed_input_.const_data_ptr() : nullptr;
  const float* bias_ih = data_or_null(bias_ih_);
  const float* bias_hh = data_or_null(bias_hh_);
  const int64_t H = hidden_;
  const at::ScalarType preact = preact_dtype(dtype_);
  const int64_t elem = static_cast<int64_t>(c10::elementSize(dtype_));
  // Rows [lo, hi) of `work`'s share of a step, whose h_{t-1} rows start at h (numbered as the
  // step's rows).
  const auto run_rows = [&](const StateRecurrentStep& step, const SliceWork& work, int64_t lo,
                            int64_t hi, const void* h, int parts) {
    const int64_t first = std::max(lo, work.row_begin);
    const int64_t last = std::min(hi, work.row_end);
    if (first >= last) return;
    StateForwardArgs state = step.state;
    state.h_prev = h;
    const char* x = static_cast<const char*>(step.x);
    kernel(FusedStateStepArgs{rows_of(state, first, last - first, preact), packed,
                              x == nullptr ? nullptr : x + first * step.x_stride * elem,
                              step.x_stride,
                              input_inner_, packed_input, bias_ih, bias_hh, parts},
           work.block_begin, work.block_end);
  };
  const auto run_parts = [&](int64_t i, const SliceWork& work, int parts) {
    const StateRecurrentStep& step = steps[i];
    const int64_t rows = step.state.rows;
    const int64_t continuing = std::min(step.continuing, rows);
    run_rows(step, work, 0, continuing, step.h_prev, parts);
    run_rows(step, work, continuing, rows, step.h_start, parts);
  };
  const int64_t G = state_cell_gates(cell_) * H;
  const int64_t macs_per_step = max_rows * (H + input_inner_) * G;
  run_fused_forward(count, blocks_, max_rows, slices_for(macs_per_step, blocks_), fuses_input(),
                    run_parts);
}

FusedStateBackward::FusedStateBackward(StateCell cell, const at::Tensor& w_hh, int64_t max_rows,
                                       int64_t calls)
    : cell_(cell) {
  if (!fused_step_applies(w_hh, max_rows, calls)) return;  // float32 only
  const RowKernels& kernels = selected_row_kernels();
  kernel_ = kernels.fused_state_backward;
  hidden_ = w_hh.size(1);
  const int gates = static_cast<int>(state_cell_gates(cell));
  TORCH_CHECK(w_hh.size(0) == gates * hidden_, "FusedStateBackward: W_hh must be (", gates,
              "H, H)");
  blocks_ = (hidden_ + kernels.block_width - 1) / kernels.block_width;
  packed_ = pack_backward_weight(w_hh, blocks_, kernels.block_width, gates);
}

void FusedStateBackward::backward_steps(const StateRecurrentBackwardStep* steps,
                                        int64_t count) const {
  int64_t max_rows = 0;
  for (int64_t i = 0; i < count; ++i) {
    const StateBackwardArgs& state = steps[i].state;
    TORCH_CHECK(state.rows == 0 || (state.cell == cell_ && state.dtype == at::kFloat &&
                                    state.hidden == hidden_),
                "FusedStateBackward: bad arguments");
    max_rows = std::max({max_rows, steps[i].gemm_rows, state.rows});
  }
  const FusedStateBackwardBlocksFn kernel = kernel_;
  const void* packed = packed_.const_data_ptr();
  const auto run_step = [&](int64_t i, const SliceWork& work) {  // whole blocks: row_groups 1
    kernel(FusedStateBackwardArgs{steps[i], cell_, hidden_, packed}, work.block_begin,
           work.block_end);
  };
  const int64_t macs_per_step = max_rows * hidden_ * state_cell_gates(cell_) * hidden_;
  run_sliced(count, blocks_, slices_for(macs_per_step, blocks_), run_step);
}

}  // namespace fusedlstm::cpu

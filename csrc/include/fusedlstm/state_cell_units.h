// The fused pointwise passes of the single-state cells (GRU, Elman RNN): their arguments
// (framework-free, as pointwise.h is for the LSTM) and the per-unit body shared by the CPU
// kernels and the CUDA kernels: load one unit (or one vector of units) of one row, run
// state_cell_math.h, store. Lane policies as in pointwise_units.h.
//
// Buffers are row-major. Pre-activation buffers have G = kGates * H columns, gate k's units at
// columns [k * H, (k + 1) * H).
#pragma once

#include <c10/core/ScalarType.h>
#include <c10/macros/Macros.h>

#include <fusedlstm/pointwise_units.h>
#include <fusedlstm/state_cell_math.h>

#include <cstdint>
#include <type_traits>

namespace fusedlstm {

struct StateForwardArgs {
  StateCell cell;
  c10::ScalarType dtype;
  int64_t rows;
  int64_t hidden;
  const void* x_part;    // (rows, G): x W_ih^T + b_ih
  const void* h_part;    // (rows, G): h_{t-1} W_hh^T, without b_hh
  const void* bias_hh;   // (G) or nullptr
  const void* h_prev;    // (rows, H)
  void* h_out;           // (rows, H): the layer output rows
  void* h_state;         // (rows, H) or nullptr: a second copy of h_t (the carried state); may
                         // alias h_prev (each unit reads before it writes)
  void* saved;           // (rows, kSaved * H) or nullptr (inference; cells that save nothing)
};

struct StateBackwardArgs {
  StateCell cell;
  c10::ScalarType dtype;
  int64_t rows;
  int64_t hidden;
  const void* grad_h;        // (rows, H): dL/dh_t from the output
  const void* grad_h_extra;  // (rows, H) or nullptr: dL/dh_t from later steps, added
  const void* saved;         // (rows, kSaved * H): what the forward saved
  const void* h_out;         // (rows, H): h_t
  const void* h_prev;        // (rows, H): h_{t-1}
  void* grad_input_side;     // (rows, G)
  void* grad_recurrent_side; // (rows, G); may be grad_input_side when the sides agree
  void* grad_h_prev;         // (rows, H) or nullptr: the direct part of dL/dh_{t-1}; may alias
                             // grad_h_extra (each unit reads before it writes)
};

// The same step restricted to rows [first, first + count); x_part and h_part of element type
// `preact` (a CPU fused bfloat16 step's are float32).
inline StateForwardArgs rows_of(const StateForwardArgs& a, int64_t first, int64_t count,
                                c10::ScalarType preact) {
  const int64_t G = state_cell_gates(a.cell) * a.hidden;
  const int64_t elem = static_cast<int64_t>(c10::elementSize(a.dtype));
  const int64_t preact_elem = static_cast<int64_t>(c10::elementSize(preact));
  const auto at_row = [&](auto* p, int64_t row_bytes) {
    using Byte = std::conditional_t<std::is_const_v<std::remove_pointer_t<decltype(p)>>,
                                    const char, char>;
    if (p == nullptr) return p;
    return static_cast<decltype(p)>(static_cast<Byte*>(p) + first * row_bytes);
  };
  StateForwardArgs out = a;
  out.rows = count;
  out.x_part = at_row(a.x_part, G * preact_elem);
  out.h_part = at_row(a.h_part, G * preact_elem);
  out.h_prev = at_row(a.h_prev, a.hidden * elem);
  out.h_out = at_row(a.h_out, a.hidden * elem);
  out.h_state = at_row(a.h_state, a.hidden * elem);
  out.saved = at_row(a.saved, state_cell_saved(a.cell) * a.hidden * elem);
  return out;
}

inline StateForwardArgs rows_of(const StateForwardArgs& a, int64_t first, int64_t count) {
  return rows_of(a, first, count, a.dtype);
}

// One step of a back-end's fused GRU / RNN step (its FusedStateStep, see gemm.h): the pointwise
// step `state` (its h_prev unused) and where its h_{t-1} rows are (row stride H): rows
// [0, continuing) carry on from the step before (h_prev), rows [continuing, rows) start here
// (h_start, same row numbering). With input fusion, x holds the step's input rows and
// state.x_part is where the step writes b_ih + x_t W_ih^T; state.h_part is where it writes
// b_hh + h_{t-1} W_hh^T.
struct StateRecurrentStep {
  StateForwardArgs state;
  const void* h_prev;
  int64_t continuing;
  const void* h_start;
  const void* x = nullptr;  // (rows, x_stride)
  int64_t x_stride = 0;
};

// One step of a back-end's fused GRU / RNN backward (its FusedStateBackward, see gemm.h), in the
// order they run (latest first): first dL/dh_t of rows [0, gemm_rows) in grad_h_state gets
// grad_recurrent_next W_hh (the step after's recurrent-side pre-activation gradients, (gemm_rows,
// G)), added to the direct part already there for the GRU, in place of it for the RNN; then the
// pointwise backward `state` (its grad_h_extra and grad_h_prev: grad_h_state). A chunk's last
// step has state.rows = 0: it only carries dL/dh on.
struct StateRecurrentBackwardStep {
  const void* grad_recurrent_next;
  int64_t gemm_rows;
  void* grad_h_state;  // (B, H)
  StateBackwardArgs state;
};

// The cell and its stores for units [j, j + L::width) of one row, from the step's recurrent
// sums h_sums[k] (h_{t-1} W_hh^T + b_hh of gate k) and h_{t-1} itself: the pointwise pass's tail
// below, and a persistent kernel's, which keeps the sums in registers. preact_t: the type of
// x_part and h_part, scalar_t or float where a CPU fused step keeps a bfloat16 step's sums in
// float32.
template <class Math, typename scalar_t, typename L, typename preact_t = scalar_t>
C10_HOST_DEVICE inline void state_forward_from_sums(const StateForwardArgs& a, int64_t row,
                                                    int64_t j, const typename L::Compute* h_sums,
                                                    typename L::Compute h_prev) {
  using C = typename L::Compute;
  const int64_t H = a.hidden;
  const int64_t G = Math::kGates * H;
  const preact_t* x_part = static_cast<const preact_t*>(a.x_part) + row * G + j;
  C x[Math::kGates];
  for (int k = 0; k < Math::kGates; ++k) x[k] = L::load(x_part + k * H, G);
  const int64_t unit = row * H + j;
  const auto out = Math::template forward<C>(x, h_sums, h_prev);
  L::store(static_cast<scalar_t*>(a.h_out) + unit, H, out.h);
  if (a.h_state) L::store(static_cast<scalar_t*>(a.h_state) + unit, H, out.h);
  if constexpr (Math::kSaved > 0) {
    if (a.saved) {
      scalar_t* saved = static_cast<scalar_t*>(a.saved) + row * Math::kSaved * H + j;
      for (int k = 0; k < Math::kSaved; ++k) {
        L::store(saved + k * H, Math::kSaved * H, out.saved[k]);
      }
    }
  }
}

// Forward of units [j, j + L::width) of one row.
template <class Math, typename scalar_t, typename L, typename preact_t = scalar_t>
C10_HOST_DEVICE inline void state_forward_units(const StateForwardArgs& a, int64_t row,
                                                int64_t j) {
  using C = typename L::Compute;
  const int64_t H = a.hidden;
  const int64_t G = Math::kGates * H;
  const preact_t* h_part = static_cast<const preact_t*>(a.h_part) + row * G + j;
  const scalar_t* bias = static_cast<const scalar_t*>(a.bias_hh);
  C h[Math::kGates];
  for (int k = 0; k < Math::kGates; ++k) {
    h[k] = L::load(h_part + k * H, G);
    if (bias) h[k] = h[k] + L::load(bias + k * H + j, 0);
  }
  state_forward_from_sums<Math, scalar_t, L, preact_t>(
      a, row, j, h, L::load(static_cast<const scalar_t*>(a.h_prev) + row * H + j, H));
}

// Backward of units [j, j + L::width) of one row.
template <class Math, typename scalar_t, typename L>
C10_HOST_DEVICE inline void state_backward_units(const StateBackwardArgs& a, int64_t row,
                                                 int64_t j) {
  using C = typename L::Compute;
  const int64_t H = a.hidden;
  const int64_t G = Math::kGates * H;
  const int64_t unit = row * H + j;
  C grad_h = L::load(static_cast<const scalar_t*>(a.grad_h) + unit, H);
  if (a.grad_h_extra) grad_h = grad_h + L::load(static_cast<const scalar_t*>(a.grad_h_extra) + unit, H);
  C saved[Math::kSaved > 0 ? Math::kSaved : 1];
  if constexpr (Math::kSaved > 0) {
    const scalar_t* from = static_cast<const scalar_t*>(a.saved) + row * Math::kSaved * H + j;
    for (int k = 0; k < Math::kSaved; ++k) saved[k] = L::load(from + k * H, Math::kSaved * H);
  }
  const C h_out = L::load(static_cast<const scalar_t*>(a.h_out) + unit, H);
  const C h_prev = Math::kDirectHPath
                       ? L::load(static_cast<const scalar_t*>(a.h_prev) + unit, H)
                       : h_out;
  const auto out = Math::template backward<C>(grad_h, saved, h_out, h_prev);
  scalar_t* input_side = static_cast<scalar_t*>(a.grad_input_side) + row * G + j;
  scalar_t* recurrent_side = static_cast<scalar_t*>(a.grad_recurrent_side) + row * G + j;
  for (int k = 0; k < Math::kGates; ++k) {
    L::store(input_side + k * H, G, out.grad_input_side[k]);
    if constexpr (Math::kSidesDiffer) {
      L::store(recurrent_side + k * H, G, out.grad_recurrent_side[k]);
    }
  }
  if constexpr (Math::kDirectHPath) {
    L::store(static_cast<scalar_t*>(a.grad_h_prev) + unit, H, out.grad_h_prev_direct);
  }
}

}  // namespace fusedlstm

// The per-unit body of the fused pointwise passes, shared by the CPU kernels and the CUDA kernels:
// address one hidden unit (or one vector of units) of one row, load the gates and state, run
// cell_math.h, store the results. A back-end only decides which (row, j) to visit and with which
// lane policy: ScalarLanes here (CUDA threads, CPU tails) or a CPU vector policy.
//
// A lane policy L gives the compute type (L::Compute), the units per call (L::width) and
// L::load(p, row_stride) / L::store(p, row_stride, v). row_stride is the element distance from
// a row to the next in that buffer; only policies that compute several rows at once (the CPU's
// fused-step tiles) read it.
#pragma once

#include <ATen/OpMathType.h>
#include <c10/macros/Macros.h>

#include <fusedlstm/cell_math.h>
#include <fusedlstm/pointwise.h>

#include <cstdint>

namespace fusedlstm {

// One unit at a time in the op-math type (float for bfloat16/float16, as ATen accumulates).
template <typename scalar_t>
struct ScalarLanes {
  using Compute = at::opmath_type<scalar_t>;
  static constexpr int64_t width = 1;
  // Any element type: a bfloat16 step's float32 pre-activations are read with the same policy.
  template <typename T>
  static C10_HOST_DEVICE inline Compute load(const T* p, int64_t /*row_stride*/) {
    return static_cast<Compute>(*p);
  }
  static C10_HOST_DEVICE inline void store(scalar_t* p, int64_t /*row_stride*/, Compute v) {
    *p = static_cast<scalar_t>(v);
  }
};

// Pre-activation of gate k (0..3 = i, f, g, o) of the units at `offset` of a row. preact_t is
// the type of preact and preact_addend: scalar_t, or float where a CPU fused step accumulates a
// reduced-precision step's pre-activations in float32.
template <typename preact_t, typename L>
C10_HOST_DEVICE inline typename L::Compute load_preact(const PointwiseForwardArgs& a,
                                                       int64_t offset, int64_t k) {
  const int64_t at = offset + k * a.hidden;
  const int64_t G = 4 * a.hidden;
  const auto pre = L::load(static_cast<const preact_t*>(a.preact) + at, G);
  if (!a.preact_addend) return pre;
  return pre + L::load(static_cast<const preact_t*>(a.preact_addend) + at, G);
}

// Stores the forward results of units [j, j + L::width) of one row: the activated gates (when
// kept), c_t (and its saved copy) and h_t (and its copy).
template <typename scalar_t, typename L>
C10_HOST_DEVICE inline void store_forward_units(const PointwiseForwardArgs& a, int64_t row,
                                                int64_t j,
                                                const CellForward<typename L::Compute>& out) {
  const int64_t H = a.hidden;
  const int64_t gate_offset = row * 4 * H + j;
  const int64_t unit = row * H + j;
  if (a.gates_out) {
    scalar_t* gates = static_cast<scalar_t*>(a.gates_out) + gate_offset;
    L::store(gates, 4 * H, out.input_gate);
    L::store(gates + H, 4 * H, out.forget_gate);
    L::store(gates + 2 * H, 4 * H, out.cell_gate);
    L::store(gates + 3 * H, 4 * H, out.output_gate);
  }
  L::store(static_cast<scalar_t*>(a.c_out) + unit, H, out.c);
  if (a.c_saved) L::store(static_cast<scalar_t*>(a.c_saved) + unit, H, out.c);
  L::store(static_cast<scalar_t*>(a.h_out) + row * a.h_out_stride + j, a.h_out_stride, out.h);
  if (a.h_copy) {
    L::store(static_cast<scalar_t*>(a.h_copy) + row * a.h_copy_stride + j, a.h_copy_stride,
             out.h);
  }
}

// Forward of units [j, j + L::width) of one row, adding `recurrent[k]` (a fused step's
// h_{t-1} W_hh^T, computed in registers) to the pre-activation of gate k.
template <typename scalar_t, typename L, typename preact_t = scalar_t>
C10_HOST_DEVICE inline void forward_units_adding(const PointwiseForwardArgs& a, int64_t row,
                                                 int64_t j,
                                                 const typename L::Compute* recurrent) {
  const int64_t gate_offset = row * 4 * a.hidden + j;
  const auto out = cell_forward<typename L::Compute>(
      load_preact<preact_t, L>(a, gate_offset, 0) + recurrent[0],
      load_preact<preact_t, L>(a, gate_offset, 1) + recurrent[1],
      load_preact<preact_t, L>(a, gate_offset, 2) + recurrent[2],
      load_preact<preact_t, L>(a, gate_offset, 3) + recurrent[3],
      L::load(static_cast<const scalar_t*>(a.c_prev) + row * a.hidden + j, a.hidden));
  store_forward_units<scalar_t, L>(a, row, j, out);
}

// Forward of units [j, j + L::width) of one row. Offsets are 64-bit: row * 4H passes 2^31 for
// large B * H.
template <typename scalar_t, typename L, typename preact_t = scalar_t>
C10_HOST_DEVICE inline void forward_units(const PointwiseForwardArgs& a, int64_t row, int64_t j) {
  const int64_t H = a.hidden;
  const int64_t gate_offset = row * 4 * H + j;
  const auto out = cell_forward<typename L::Compute>(
      load_preact<preact_t, L>(a, gate_offset, 0), load_preact<preact_t, L>(a, gate_offset, 1),
      load_preact<preact_t, L>(a, gate_offset, 2), load_preact<preact_t, L>(a, gate_offset, 3),
      L::load(static_cast<const scalar_t*>(a.c_prev) + row * H + j, H));
  store_forward_units<scalar_t, L>(a, row, j, out);
}

// Backward of units [j, j + L::width) of one row. extra_t is the type of grad_h_extra: scalar_t,
// or float where a CPU fused step keeps a reduced-precision step's dL/dh in float32.
template <typename scalar_t, typename L, typename extra_t = scalar_t>
C10_HOST_DEVICE inline void backward_units(const PointwiseBackwardArgs& a, int64_t row,
                                           int64_t j) {
  using C = typename L::Compute;
  const int64_t H = a.hidden;
  const scalar_t* gates = static_cast<const scalar_t*>(a.gates) + row * 4 * H + j;
  const int64_t unit = row * H + j;
  const int64_t G = 4 * H;
  C grad_h = L::load(static_cast<const scalar_t*>(a.grad_h) + row * a.grad_h_stride + j,
                     a.grad_h_stride);
  if (a.grad_h_extra) {
    grad_h = grad_h + L::load(static_cast<const extra_t*>(a.grad_h_extra) +
                                  row * a.grad_h_extra_stride + j,
                              a.grad_h_extra_stride);
  }
  const auto out = cell_backward<C>(
      grad_h, L::load(static_cast<const scalar_t*>(a.grad_c) + unit, H), L::load(gates, G),
      L::load(gates + H, G), L::load(gates + 2 * H, G), L::load(gates + 3 * H, G),
      L::load(static_cast<const scalar_t*>(a.c) + unit, H),
      L::load(static_cast<const scalar_t*>(a.c_prev) + unit, H));
  scalar_t* grad_gates = static_cast<scalar_t*>(a.grad_gates) + row * G + j;
  L::store(grad_gates, G, out.grad_pre_i);
  L::store(grad_gates + H, G, out.grad_pre_f);
  L::store(grad_gates + 2 * H, G, out.grad_pre_g);
  L::store(grad_gates + 3 * H, G, out.grad_pre_o);
  L::store(static_cast<scalar_t*>(a.grad_c_prev) + unit, H, out.grad_c_prev);
}

}  // namespace fusedlstm

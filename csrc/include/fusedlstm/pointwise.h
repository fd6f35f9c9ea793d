// The contract between the device-agnostic time loop and a device's fused pointwise pass.
//
// Framework-free on purpose: raw pointers, sizes and row strides, so a back-end (the CPU loop or a
// CUDA launcher) needs no tensor machinery. Every buffer is row-major; `rows` is the number of
// active batch rows of the step and `hidden` is H. Gate buffers have 4H columns in the order
// i, f, g, o. Element counts can pass 2^31, so every offset is int64_t.
#pragma once

#include <c10/core/ScalarType.h>

#include <cstdint>
#include <type_traits>

namespace fusedlstm {

struct PointwiseForwardArgs {
  c10::ScalarType dtype;
  int64_t rows;
  int64_t hidden;
  const void* preact;         // (rows, 4H): gate pre-activations
  const void* preact_addend;  // (rows, 4H) or nullptr: a GEMM product still to be added to preact
  void* gates_out;            // (rows, 4H) or nullptr: activated gates for the backward; may alias
                              // preact (each unit reads before it writes)
  const void* c_prev;    // (rows, H)
  void* c_out;           // (rows, H); may alias c_prev (each unit reads before it writes)
  void* c_saved;         // (rows, H) or nullptr: a second copy of c_t kept for the backward
  void* h_out;           // (rows, h_out_stride)
  int64_t h_out_stride;
  void* h_copy;          // (rows, h_copy_stride) or nullptr: a second copy of h_t
  int64_t h_copy_stride;
};

// The same step restricted to rows [first, first + count).
inline PointwiseForwardArgs rows_of(const PointwiseForwardArgs& a, int64_t first, int64_t count) {
  const int64_t elem = static_cast<int64_t>(c10::elementSize(a.dtype));
  const auto at_row = [&](auto* p, int64_t stride) {
    using Byte = std::conditional_t<std::is_const_v<std::remove_pointer_t<decltype(p)>>,
                                    const char, char>;
    if (p == nullptr) return p;
    return static_cast<decltype(p)>(static_cast<Byte*>(p) + first * stride * elem);
  };
  PointwiseForwardArgs out = a;
  out.rows = count;
  out.preact = at_row(a.preact, 4 * a.hidden);
  out.preact_addend = at_row(a.preact_addend, 4 * a.hidden);
  out.gates_out = at_row(a.gates_out, 4 * a.hidden);
  out.c_prev = at_row(a.c_prev, a.hidden);
  out.c_out = at_row(a.c_out, a.hidden);
  out.c_saved = at_row(a.c_saved, a.hidden);
  out.h_out = at_row(a.h_out, a.h_out_stride);
  out.h_copy = at_row(a.h_copy, a.h_copy_stride);
  return out;
}

// One step of a fused recurrent step (a back-end's FusedStep, see gemm.h): the pointwise step
// `pointwise`, whose preact still lacks h_{t-1} W_hh^T, and where h_{t-1} is. Rows
// [0, continuing) carry on from the previous step (h_prev); rows [continuing, rows) start here
// from the initial state (h_start, same row numbering). Where the FusedStep fuses the input
// projection (its fuses_input()), x holds the step's input rows and preact is only where the
// pre-activations go: the fused step computes bias + x_t W_ih^T + h_{t-1} W_hh^T itself.
struct RecurrentStep {
  PointwiseForwardArgs pointwise;
  const void* h_prev;
  int64_t h_prev_stride;
  int64_t continuing;
  const void* h_start;
  int64_t h_start_stride;
  const void* x = nullptr;  // (rows, x_stride)
  int64_t x_stride = 0;
};

struct PointwiseBackwardArgs {
  c10::ScalarType dtype;
  int64_t rows;
  int64_t hidden;
  const void* grad_h;        // (rows, grad_h_stride): dL/dh_t
  int64_t grad_h_stride;
  const void* grad_h_extra;  // (rows, grad_h_extra_stride) or nullptr: added to grad_h
  int64_t grad_h_extra_stride;
  const void* grad_c;        // (rows, H): dL/dc_t from later steps
  void* grad_c_prev;         // (rows, H): dL/dc_{t-1}; may alias grad_c
  const void* gates;         // (rows, 4H): activated gates saved by the forward
  const void* c;             // (rows, H): c_t
  const void* c_prev;        // (rows, H): c_{t-1}
  void* grad_gates;          // (rows, 4H): dL/d(gate pre-activations)
};

// One step of a fused recurrent backward step (a back-end's FusedBackward, see gemm.h), no
// projection (P = H). First dL/dh_t from the later step: rows [0, gemm_rows) of grad_h_state
// become grad_gates_next W_hh (grad_gates_next: the (gemm_rows, 4H) gate gradients of the step
// processed before this one; gemm_rows = 0 for the first step processed). Then the pointwise
// backward of the step, whose grad_h_extra is grad_h_state, in two row ranges: rows whose c_{t-1}
// is the previous step's c (`continuing`) and rows that started at this step from c0
// (`starting`); either may have 0 rows.
struct RecurrentBackwardStep {
  const void* grad_gates_next;
  int64_t gemm_rows;
  void* grad_h_state;  // (rows, H)
  PointwiseBackwardArgs continuing;
  PointwiseBackwardArgs starting;
};

}  // namespace fusedlstm

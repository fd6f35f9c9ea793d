// Per-unit LSTM gate math, forward and backward: the single source of truth.
//
// Every function here is __host__ __device__ and templated on the compute type, so the CPU path
// (scalar and at::vec::Vectorized instantiations) and the CUDA kernels run the same lines. Gate
// order is PyTorch's: i, f, g, o. Reduced-precision callers pass float (at::opmath_type).
#pragma once

#include <c10/macros/Macros.h>

#include <cmath>

namespace fusedlstm {

// Activations are a class template so that the CPU vector back-end can specialise them for
// at::vec::Vectorized<float> while the arithmetic below stays shared.
template <typename T>
struct Activations {
  static C10_HOST_DEVICE inline T sigmoid(T x) { return T(1) / (T(1) + ::exp(-x)); }
  static C10_HOST_DEVICE inline T tanh(T x) { return ::tanh(x); }
};

template <>
struct Activations<float> {
  static C10_HOST_DEVICE inline float sigmoid(float x) { return 1.0f / (1.0f + ::expf(-x)); }
  static C10_HOST_DEVICE inline float tanh(float x) { return ::tanhf(x); }
};

// The activated gates and new state of one hidden unit.
template <typename T>
struct CellForward {
  T input_gate;
  T forget_gate;
  T cell_gate;
  T output_gate;
  T c;
  T h;
};

// Forward of one unit from the gate pre-activations (x W_ih^T + h W_hh^T + b) and c_{t-1}.
template <typename T, typename Act = Activations<T>>
C10_HOST_DEVICE inline CellForward<T> cell_forward(T pre_i, T pre_f, T pre_g, T pre_o, T c_prev) {
  CellForward<T> out;
  out.input_gate = Act::sigmoid(pre_i);
  out.forget_gate = Act::sigmoid(pre_f);
  out.cell_gate = Act::tanh(pre_g);
  out.output_gate = Act::sigmoid(pre_o);
  out.c = out.forget_gate * c_prev + out.input_gate * out.cell_gate;
  out.h = out.output_gate * Act::tanh(out.c);
  return out;
}

// Gradients of one unit with respect to the gate pre-activations and c_{t-1}.
template <typename T>
struct CellBackward {
  T grad_pre_i;
  T grad_pre_f;
  T grad_pre_g;
  T grad_pre_o;
  T grad_c_prev;
};

// Backward of one unit. grad_h is dL/dh_t (from the output and the next step), grad_c is dL/dc_t
// from the next step; the activated gates are the ones saved by cell_forward. tanh(c_t) is
// recomputed rather than saved: one transcendental per unit is cheaper than another buffer of
// T*B*H values written forward and read backward.
template <typename T, typename Act = Activations<T>>
C10_HOST_DEVICE inline CellBackward<T> cell_backward(T grad_h, T grad_c, T input_gate,
                                                     T forget_gate, T cell_gate, T output_gate,
                                                     T c, T c_prev) {
  const T one(1);
  const T tanh_c = Act::tanh(c);
  const T grad_c_total = grad_c + grad_h * output_gate * (one - tanh_c * tanh_c);
  CellBackward<T> out;
  out.grad_pre_o = grad_h * tanh_c * output_gate * (one - output_gate);
  out.grad_pre_i = grad_c_total * cell_gate * input_gate * (one - input_gate);
  out.grad_pre_g = grad_c_total * input_gate * (one - cell_gate * cell_gate);
  out.grad_pre_f = grad_c_total * c_prev * forget_gate * (one - forget_gate);
  out.grad_c_prev = grad_c_total * forget_gate;
  return out;
}

}  // namespace fusedlstm

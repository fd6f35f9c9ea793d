// Per-unit math of the cells whose only state is h: GRU and the Elman RNN (tanh or ReLU), the
// single source of truth for their forward and backward on every device (the LSTM's is
// cell_math.h). __host__ __device__ and templated on the compute type like cell_math.h; gate
// order is PyTorch's: GRU r, z, n; RNN one pre-activation.
//
// Each cell has G = kGates * H pre-activation columns from the input (x W_ih^T + b_ih) and as
// many from h_{t-1} (h W_hh^T + b_hh), kept apart because GRU's candidate gate multiplies only
// the recurrent part by r: n = tanh(x_n + r * (W_hn h + b_hn)).
#pragma once

#include <c10/macros/Macros.h>

#include <fusedlstm/cell_math.h>

#include <cstdint>

namespace fusedlstm {

// Which single-state cell a layer or step runs (the ops' cell argument).
enum class StateCell : int32_t { kGru = 0, kRnnTanh = 1, kRnnRelu = 2 };

// The values a backward needs of one unit's forward, kSaved per unit (GRU: r, z, n and the
// recurrent candidate part hn; the RNN keeps none: its h_t is the layer output).
template <typename T>
struct StateForward {
  T h;
  T saved[4];
};

// The pre-activation gradients of one unit: from the input side (dL/d(x W_ih^T + b_ih)) and the
// recurrent side (dL/d(h W_hh^T + b_hh)), which differ for GRU's candidate row; and the part of
// dL/dh_{t-1} that does not go through W_hh (GRU: dh * z).
template <typename T>
struct StateBackward {
  T grad_input_side[3];
  T grad_recurrent_side[3];
  T grad_h_prev_direct;
};

struct GruMath {
  static constexpr int kGates = 3;
  static constexpr int kSaved = 4;
  static constexpr bool kSidesDiffer = true;    // grad_recurrent_side != grad_input_side
  static constexpr bool kDirectHPath = true;    // h_t depends on h_{t-1} outside W_hh

  template <typename T, typename Act = Activations<T>>
  static C10_HOST_DEVICE inline StateForward<T> forward(const T* x_part, const T* h_part,
                                                        T h_prev) {
    StateForward<T> out;
    const T r = Act::sigmoid(x_part[0] + h_part[0]);
    const T z = Act::sigmoid(x_part[1] + h_part[1]);
    const T n = Act::tanh(x_part[2] + r * h_part[2]);
    out.h = n + z * (h_prev - n);  // (1 - z) n + z h_{t-1}
    out.saved[0] = r;
    out.saved[1] = z;
    out.saved[2] = n;
    out.saved[3] = h_part[2];
    return out;
  }

  // saved: r, z, n, hn as forward stored them; h_out is unused (GRU keeps what it needs).
  template <typename T>
  static C10_HOST_DEVICE inline StateBackward<T> backward(T grad_h, const T* saved, T /*h_out*/,
                                                          T h_prev) {
    const T one(1);
    const T r = saved[0], z = saved[1], n = saved[2], hn = saved[3];
    const T grad_pre_n = grad_h * (one - z) * (one - n * n);
    const T grad_pre_z = grad_h * (h_prev - n) * z * (one - z);
    const T grad_pre_r = grad_pre_n * hn * r * (one - r);
    StateBackward<T> out;
    out.grad_input_side[0] = grad_pre_r;
    out.grad_input_side[1] = grad_pre_z;
    out.grad_input_side[2] = grad_pre_n;
    out.grad_recurrent_side[0] = grad_pre_r;
    out.grad_recurrent_side[1] = grad_pre_z;
    out.grad_recurrent_side[2] = grad_pre_n * r;
    out.grad_h_prev_direct = grad_h * z;
    return out;
  }
};

// ReLU and its derivative from the output, as a policy the CPU vectors specialise (the scalar
// comparison does not exist for at::vec types). NaN passes through, as torch.relu's (and
// at::vec::maximum's) does.
template <typename T>
struct Rectifier {
  static C10_HOST_DEVICE inline T relu(T x) { return x < T(0) ? T(0) : x; }
  static C10_HOST_DEVICE inline T grad(T grad_out, T out) { return out > T(0) ? grad_out : T(0); }
};

template <bool Relu>
struct RnnMath {
  static constexpr int kGates = 1;
  static constexpr int kSaved = 0;
  static constexpr bool kSidesDiffer = false;
  static constexpr bool kDirectHPath = false;

  template <typename T, typename Act = Activations<T>>
  static C10_HOST_DEVICE inline StateForward<T> forward(const T* x_part, const T* h_part,
                                                        T /*h_prev*/) {
    StateForward<T> out;
    const T pre = x_part[0] + h_part[0];
    if constexpr (Relu) {
      out.h = Rectifier<T>::relu(pre);
    } else {
      out.h = Act::tanh(pre);
    }
    return out;
  }

  // h_out: the unit's h_t (the layer output), from which the activation's derivative follows.
  template <typename T>
  static C10_HOST_DEVICE inline StateBackward<T> backward(T grad_h, const T* /*saved*/, T h_out,
                                                          T /*h_prev*/) {
    StateBackward<T> out;
    if constexpr (Relu) {
      out.grad_input_side[0] = Rectifier<T>::grad(grad_h, h_out);
    } else {
      out.grad_input_side[0] = grad_h * (T(1) - h_out * h_out);
    }
    out.grad_recurrent_side[0] = out.grad_input_side[0];
    out.grad_h_prev_direct = T(0);
    return out;
  }
};

using RnnTanhMath = RnnMath<false>;
using RnnReluMath = RnnMath<true>;

// Calls f(Math{}) with the math of `cell`.
template <typename F>
inline decltype(auto) with_state_cell(StateCell cell, F&& f) {
  switch (cell) {
    case StateCell::kGru:
      return f(GruMath{});
    case StateCell::kRnnTanh:
      return f(RnnTanhMath{});
    case StateCell::kRnnRelu:
    default:
      return f(RnnReluMath{});
  }
}

inline int64_t state_cell_gates(StateCell cell) { return cell == StateCell::kGru ? 3 : 1; }
inline int64_t state_cell_saved(StateCell cell) { return cell == StateCell::kGru ? 4 : 0; }

}  // namespace fusedlstm

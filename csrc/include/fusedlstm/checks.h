// Argument checks shared by the CPU and CUDA implementations of every op. Each message names the
// argument and shows the expected and the actual value, so a user can act on it.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <c10/util/Optional.h>

#include <string>

namespace fusedlstm {

inline void check_dim(const at::Tensor& t, int64_t dim, const char* op, const char* name) {
  TORCH_CHECK(t.dim() == dim, op, ": expected ", name, " to be ", dim, "-D, got ", t.dim(),
              "-D with shape ", t.sizes());
}

inline void check_size(const at::Tensor& t, int64_t dim, int64_t expected, const char* op,
                       const char* name, const char* what) {
  TORCH_CHECK(t.size(dim) == expected, op, ": ", name, " ", what, " (dim ", dim, ") is ",
              t.size(dim), ", expected ", expected, " (", name, " shape ", t.sizes(), ")");
}

inline void check_like(const at::Tensor& t, const at::Tensor& ref, const char* op,
                       const char* name, const char* ref_name) {
  TORCH_CHECK(t.scalar_type() == ref.scalar_type(), op, ": ", name, " has dtype ",
              t.scalar_type(), " but ", ref_name, " has dtype ", ref.scalar_type(),
              "; all tensors must share one dtype");
  TORCH_CHECK(t.device() == ref.device(), op, ": ", name, " is on ", t.device(), " but ",
              ref_name, " is on ", ref.device(), "; all tensors must be on one device");
}

inline void check_floating(const at::Tensor& t, const char* op, const char* name) {
  const auto dtype = t.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble || dtype == at::kBFloat16 ||
                  dtype == at::kHalf,
              op, ": ", name, " has dtype ", dtype,
              ", expected one of float32, float64, bfloat16, float16");
}

// The weights of one LSTM cell or layer direction. G = 4H gates, P = projection size (H if none).
struct WeightShapes {
  int64_t input_size;
  int64_t hidden;
  int64_t proj;
};

inline WeightShapes check_weights(const at::Tensor& w_ih, const at::Tensor& w_hh,
                                  const c10::optional<at::Tensor>& b_ih,
                                  const c10::optional<at::Tensor>& b_hh,
                                  const c10::optional<at::Tensor>& w_hr, const char* op) {
  check_floating(w_ih, op, "w_ih");
  check_dim(w_ih, 2, op, "w_ih");
  check_dim(w_hh, 2, op, "w_hh");
  check_like(w_hh, w_ih, op, "w_hh", "w_ih");
  TORCH_CHECK(w_ih.size(0) % 4 == 0 && w_ih.size(0) > 0, op,
              ": w_ih must have 4*hidden_size rows, got ", w_ih.size(0));
  WeightShapes s{w_ih.size(1), w_ih.size(0) / 4, w_ih.size(0) / 4};
  if (w_hr.has_value()) {
    check_dim(*w_hr, 2, op, "w_hr");
    check_like(*w_hr, w_ih, op, "w_hr", "w_ih");
    check_size(*w_hr, 1, s.hidden, op, "w_hr", "column count (hidden_size)");
    s.proj = w_hr->size(0);
  }
  check_size(w_hh, 0, 4 * s.hidden, op, "w_hh", "row count (4*hidden_size)");
  check_size(w_hh, 1, s.proj, op, "w_hh", "column count (proj_size or hidden_size)");
  for (const auto* b : {&b_ih, &b_hh}) {
    if (!b->has_value()) continue;
    const char* name = b == &b_ih ? "b_ih" : "b_hh";
    check_dim(**b, 1, op, name);
    check_like(**b, w_ih, op, name, "w_ih");
    check_size(**b, 0, 4 * s.hidden, op, name, "size (4*hidden_size)");
  }
  return s;
}

// A state tensor (h or c) of shape (batch, features).
inline void check_state(const at::Tensor& t, int64_t batch, int64_t features,
                        const at::Tensor& ref, const char* op, const char* name) {
  check_dim(t, 2, op, name);
  check_like(t, ref, op, name, "input");
  check_size(t, 0, batch, op, name, "batch size");
  check_size(t, 1, features, op, name, "feature size");
}

// The inputs of one cell step: input (B, I), hx and cx (B, H), and the weights. Returns the
// weight shapes; B is input.size(0).
inline WeightShapes check_cell(const at::Tensor& input, const at::Tensor& hx,
                               const at::Tensor& cx, const at::Tensor& w_ih,
                               const at::Tensor& w_hh, const c10::optional<at::Tensor>& b_ih,
                               const c10::optional<at::Tensor>& b_hh, const char* op) {
  const WeightShapes shape = check_weights(w_ih, w_hh, b_ih, b_hh, c10::nullopt, op);
  check_dim(input, 2, op, "input");
  check_like(input, w_ih, op, "input", "w_ih");
  check_size(input, 1, shape.input_size, op, "input", "feature size (input_size)");
  check_state(hx, input.size(0), shape.hidden, input, op, "hx");
  check_state(cx, input.size(0), shape.hidden, input, op, "cx");
  return shape;
}

}  // namespace fusedlstm

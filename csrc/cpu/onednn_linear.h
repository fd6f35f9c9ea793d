// oneDNN's inner product (float32 / bfloat16), reached through `mkldnn::_linear_pointwise`, the op
// torch registers for Inductor's CPU backend. On AMD CPUs it runs the large LSTM GEMMs about twice
// as fast as at::mm (MKL; docs/performance.md). It is an internal torch op:
// everything here checks that it exists and callers fall back to ATen when it does not.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

namespace fusedlstm::cpu {

// Whether oneDNN linear can run x (rows, in) against a weight (out, in) of this dtype.
bool onednn_linear_available(at::ScalarType dtype);

// x w^T (+ bias). `w` is (out, in), dense (any strides) or packed by onednn_pack_weight.
at::Tensor onednn_linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias);

// w (out, in) re-laid out for oneDNN, for calls with about `rows_hint` rows of x.
at::Tensor onednn_pack_weight(const at::Tensor& w, int64_t rows_hint);

}  // namespace fusedlstm::cpu

// MKL's packed SGEMM: op(W) re-laid out once, then multiplied by many small `in` matrices.
//
// The recurrent weight is the same for every step of a call, so packing it once and calling
// cblas_sgemm_compute per step skips the re-layout MKL does inside every at::mm (faster per step
// at small batch: docs/performance.md).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

namespace fusedlstm::cpu {

class MklPackedWeight {
 public:
  // Whether this process can pack (torch built with MKL and exporting the packed API).
  static bool available();

  // Packs op(W) = W^T (transpose) or W of a float32 CPU weight. Leaves the object empty (see
  // packed()) when the sizes do not fit MKL's 32-bit integers.
  MklPackedWeight(const at::Tensor& weight, bool transpose);

  bool packed() const { return packed_.defined(); }

  // Whether multiply() can take these operands (float32, unit column stride, 32-bit sizes).
  bool accepts(const at::Tensor& out, const at::Tensor& in) const;

  // out = in op(W) (+ out when accumulate).
  void multiply(at::Tensor& out, const at::Tensor& in, bool accumulate) const;

 private:
  at::Tensor packed_;
  int64_t n_ = 0;  // columns of op(W)
  int64_t k_ = 0;  // rows of op(W)
};

}  // namespace fusedlstm::cpu

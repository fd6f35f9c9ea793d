// The CPU back-end's GEMMs (the interface is gemm.h's): oneDNN for large float32/bfloat16
// products, MKL's packed SGEMM for small per-step ones, ATen (MKL / MKL-DNN) otherwise; bfloat16
// and float16 products in float32 where oneDNN has no kernels for them (computed_in_float).
#pragma once

#include <ATen/ATen.h>

#include <fusedlstm/gemm.h>

#include <cstdint>
#include <optional>

#include "mkl_packed_gemm.h"

namespace fusedlstm::cpu {

// Multiply-accumulates above which oneDNN's fixed per-call cost (~10 us here) is repaid by its
// faster kernels; below it, MKL packed (per step) or at::mm is faster. Set from the measurements
// in docs/performance.md.
constexpr int64_t kOneDnnMinMacs = int64_t{1} << 22;
// The same for one product with an unpacked weight (linear, matmul, matmul_tn, a step GEMM
// called once: oneDNN reorders the weight at every call) with the AVX2 kernels: on an AMD Zen 3,
// MKL's at::addmm was as fast or faster up to ~32M multiply-adds (32 x 128 x 1024: oneDNN 1.19x
// its time, 64 x 512 x 512 1.00-1.14x; 32 x 512 x 2048 1.00, 3200 x 512 x 2048 0.96;
// docs/performance-by-machine.md).
constexpr int64_t kOneDnnUnpackedMinMacsAvx2 = int64_t{1} << 25;

// Rows from which a repeated step GEMM packs its weight for MKL. MKL's packed B takes a buffer
// sized for its own blocking (5.6 MiB for a 128 x 128 weight) and a call touches ~0.3 MiB of it
// per weight. On an AMD EPYC (Zen 5 class), GRU / RNN layers at batch 1, 8 and 20 ran as fast
// or faster without the pack and took 25-30% less training memory (docs/performance.md, "GRU and
// RNN training memory"); from 32 rows it is kept (not re-measured here).
constexpr int64_t kMklPackMinRows = 32;

// The switch cpu.gemm = aten: the CPU uses exactly the GEMM classes of the CUDA back-end
// (AtenGemm, AtenStepGemm) and no fused step, so the CPU tests can run the CUDA build's host path.
bool aten_gemms_only();

// Whether products of this dtype are taken in float32 and rounded once to it: bfloat16 / float16
// where oneDNN has no kernels for the type (AVX2 CPUs). ATen's own GEMMs for them run at 0.2-0.7
// GMAC/s there, float32's at 20-40 (docs/performance.md); a float32 product rounded once gives
// the numbers of a reduced-precision GEMM with float32 accumulation.
bool computed_in_float(at::ScalarType dtype);

// Whether float32 weight gradients (matmul_tn) take MKL's SGEMM rather than oneDNN: on Intel
// CPUs. MKL reads the transposed operand in place and, on an Intel Xeon, took 0.75-0.85x the time
// of oneDNN's inner product with its transposed copy, at every weight-gradient shape measured
// (docs/performance.md); on AMD CPUs MKL runs generic kernels and oneDNN is 2x faster.
bool mkl_weight_grads(at::ScalarType dtype);

// The CPU's vendor (x86; kOther elsewhere): rules measured on one vendor's CPUs only.
enum class CpuVendor { kIntel, kAmd, kOther };
CpuVendor cpu_vendor();

struct CpuGemm {
  static at::Tensor linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias);
  static at::Tensor matmul(const at::Tensor& a, const at::Tensor& b);
  static at::Tensor matmul_tn(const at::Tensor& a, const at::Tensor& b);
  // (gemm.h) oneDNN copies its first operand transposed: the layers pass the smaller first.
  static bool weight_grads_transposed(at::ScalarType dtype) {
    return !aten_gemms_only() && !mkl_weight_grads(dtype);
  }
  static at::Tensor transposed(const at::Tensor& t);
};

class CpuStepGemm {
 public:
  CpuStepGemm(const at::Tensor& weight, bool transpose, int64_t max_rows, int64_t calls);
  void operator()(at::Tensor& out, const at::Tensor& in, bool accumulate) const;
  at::Tensor add_to(at::Tensor& out, const at::Tensor& in) const;  // as AtenStepGemm::add_to
  at::Tensor product(const at::Tensor& in, const at::Tensor& bias) const;  // as AtenStepGemm

 private:
  // The product into a float32 `out` from float32 `in` when widen_, else in the weight's dtype.
  void multiply(at::Tensor& out, const at::Tensor& in, bool accumulate) const;

  at::ScalarType dtype_;                // the weight's, and that of every in and out
  bool widen_;                          // computed_in_float(dtype_): the weights below are float32
  AtenStepGemm aten_;
  at::Tensor onednn_weight_;            // op(W)^T for oneDNN (packed when called repeatedly)
  std::optional<MklPackedWeight> mkl_;  // when chosen
};

}  // namespace fusedlstm::cpu

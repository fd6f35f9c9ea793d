#include "cpu_gemm.h"

#include <ATen/Parallel.h>

#include <algorithm>

#include <fusedlstm/switches.h>

#include "buffer_pool.h"
#include "onednn_linear.h"
#include "pointwise_cpu.h"

namespace fusedlstm::cpu {

bool aten_gemms_only() { return switch_value(Switch::kCpuGemm) == kCpuGemmAten; }

namespace {

// packed: oneDNN gets the weight reordered once (a repeated step GEMM), not at every call.
bool worth_onednn(at::ScalarType dtype, int64_t rows, int64_t cols, int64_t inner, bool packed) {
  const int64_t min_macs =
      packed || !avx2_row_kernels() ? kOneDnnMinMacs : kOneDnnUnpackedMinMacsAvx2;
  return rows * cols * inner >= min_macs && onednn_linear_available(dtype);
}

at::Tensor widened(const at::Tensor& t) { return t.defined() ? t.to(at::kFloat) : t; }
}  // namespace

CpuVendor cpu_vendor() {
#if defined(FUSEDLSTM_X86_KERNELS)
  static const CpuVendor vendor = [] {
    __builtin_cpu_init();
    if (__builtin_cpu_is("intel")) return CpuVendor::kIntel;
    if (__builtin_cpu_is("amd")) return CpuVendor::kAmd;
    return CpuVendor::kOther;
  }();
  return vendor;
#else
  return CpuVendor::kOther;
#endif
}

bool mkl_weight_grads(at::ScalarType dtype) {
  return cpu_vendor() == CpuVendor::kIntel && dtype == at::kFloat;
}

bool computed_in_float(at::ScalarType dtype) {
  return (dtype == at::kBFloat16 || dtype == at::kHalf) && !aten_gemms_only() &&
         !onednn_linear_available(dtype);
}

at::Tensor CpuGemm::linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias) {
  if (computed_in_float(x.scalar_type())) {
    return linear(widened(x), widened(w), widened(bias)).to(x.scalar_type());
  }
  if (!aten_gemms_only() &&
      worth_onednn(x.scalar_type(), x.size(0), w.size(0), x.size(1), /*packed=*/false)) {
    return onednn_linear(x, w, bias);
  }
  return AtenGemm::linear(x, w, bias);
}

at::Tensor CpuGemm::matmul(const at::Tensor& a, const at::Tensor& b) {
  if (computed_in_float(a.scalar_type())) {
    return matmul(widened(a), widened(b)).to(a.scalar_type());
  }
  if (!aten_gemms_only() && a.is_contiguous() &&
      worth_onednn(a.scalar_type(), a.size(0), b.size(1), a.size(1), /*packed=*/false)) {
    return onednn_linear(a, b.t(), at::Tensor());
  }
  return at::mm(a, b);
}

at::Tensor CpuGemm::matmul_tn(const at::Tensor& a, const at::Tensor& b) {
  if (computed_in_float(a.scalar_type())) {
    return matmul_tn(widened(a), widened(b)).to(a.scalar_type());
  }
  if (aten_gemms_only() || mkl_weight_grads(a.scalar_type()) ||
      !worth_onednn(a.scalar_type(), a.size(1), b.size(1), a.size(0), /*packed=*/false)) {
    return at::mm(a.t(), b);
  }
  // oneDNN wants its activation operand row-major, so one operand is copied transposed: the
  // smaller. a^T b = linear(a^T, b^T); or (b^T a)^T, reading a^T in place as the strided
  // "weight" and transposing the (M, K) result. Both beat at::mm(a^T, b) (MKL) on the layer's
  // weight-gradient shapes (docs/performance.md). Callers that can use (b^T a) directly pass
  // the smaller operand first (the layer backward does).
  if (a.numel() <= b.numel()) return onednn_linear(transposed(a), b.t(), at::Tensor());
  return transposed(onednn_linear(transposed(b), a.t(), at::Tensor()));
}

// ATen's transposed copy runs on one thread at ~2 GB/s (an AMD Zen 5: 300 us for an 800 x 200
// float32 weight gradient, 11% of lm-2layer training); float32 takes the row kernels' register
// transposes, bands of rows in parallel, into a pooled buffer (buffer_pool.h).
at::Tensor CpuGemm::transposed(const at::Tensor& t) {
  if (t.scalar_type() != at::kFloat || t.dim() != 2 || !t.is_contiguous()) {
    return t.t().contiguous();
  }
  const int64_t rows = t.size(0);
  const int64_t cols = t.size(1);
  at::Tensor out = pooled_empty({cols, rows}, t.options());
  const float* src = t.const_data_ptr<float>();
  float* dst = out.data_ptr<float>();
  const TransposeFn transpose = selected_row_kernels().transpose;
  constexpr int64_t kBandRows = 64;
  constexpr int64_t kMinParallelElements = int64_t{1} << 16;
  const int64_t bands = (rows + kBandRows - 1) / kBandRows;
  const int64_t grain = std::max<int64_t>(1, kMinParallelElements / (kBandRows * cols + 1));
  at::parallel_for(0, bands, grain, [&](int64_t begin, int64_t end) {
    for (int64_t band = begin; band < end; ++band) {
      const int64_t row0 = band * kBandRows;
      const int64_t count = std::min(kBandRows, rows - row0);
      transpose(src + row0 * cols, cols, dst + row0, rows, count, cols);
    }
  });
  return out;
}

CpuStepGemm::CpuStepGemm(const at::Tensor& weight, bool transpose, int64_t max_rows,
                         int64_t calls)
    : dtype_(weight.scalar_type()),
      widen_(computed_in_float(dtype_)),
      aten_(widen_ ? widened(weight) : weight, transpose, max_rows, calls) {
  if (max_rows == 0 || calls == 0 || aten_gemms_only()) return;
  const at::Tensor weight_used = widen_ ? widened(weight) : weight;
  // oneDNN computes x w^T with w (out, in); op(W) = W^T means w = W, op(W) = W means w = W^T.
  const at::Tensor w = transpose ? weight_used : weight_used.t();
  const bool repeated = calls > 1;  // packing costs about one multiply: worth it only then
  if (worth_onednn(weight_used.scalar_type(), max_rows, w.size(0), w.size(1), repeated)) {
    onednn_weight_ = repeated ? onednn_pack_weight(w, max_rows) : w;
  } else if (repeated && max_rows >= kMklPackMinRows && weight_used.scalar_type() == at::kFloat &&
             MklPackedWeight::available()) {
    mkl_.emplace(weight_used, transpose);
  }
}

void CpuStepGemm::multiply(at::Tensor& out, const at::Tensor& in, bool accumulate) const {
  if (onednn_weight_.defined()) {
    const at::Tensor product = onednn_linear(in, onednn_weight_, at::Tensor());
    if (accumulate) {
      out.add_(product);
    } else {
      out.copy_(product);
    }
  } else if (mkl_ && mkl_->accepts(out, in)) {
    mkl_->multiply(out, in, accumulate);
  } else {
    aten_(out, in, accumulate);
  }
}

void CpuStepGemm::operator()(at::Tensor& out, const at::Tensor& in, bool accumulate) const {
  if (!widen_) {
    multiply(out, in, accumulate);
    return;
  }
  // out + in op(W) summed in float32, then rounded once.
  at::Tensor wide_out = accumulate ? widened(out)
                                   : at::empty(out.sizes(), out.options().dtype(at::kFloat));
  multiply(wide_out, widened(in), accumulate);
  out.copy_(wide_out);
}

at::Tensor CpuStepGemm::add_to(at::Tensor& out, const at::Tensor& in) const {
  if (widen_) return product(in, at::Tensor());  // the pointwise pass adds it, in float32
  if (onednn_weight_.defined()) return onednn_linear(in, onednn_weight_, at::Tensor());
  (*this)(out, in, /*accumulate=*/true);
  return at::Tensor();
}

at::Tensor CpuStepGemm::product(const at::Tensor& in, const at::Tensor& bias) const {
  if (widen_) {
    const at::Tensor wide_in = widened(in);
    const at::Tensor wide_bias = widened(bias);
    const at::Tensor wide = onednn_weight_.defined()
                                ? onednn_linear(wide_in, onednn_weight_, wide_bias)
                                : aten_.product(wide_in, wide_bias);
    return wide.to(dtype_);
  }
  if (onednn_weight_.defined()) return onednn_linear(in, onednn_weight_, bias);
  return aten_.product(in, bias);
}

}  // namespace fusedlstm::cpu

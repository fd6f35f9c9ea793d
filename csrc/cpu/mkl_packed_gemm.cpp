#include "mkl_packed_gemm.h"

#include <ATen/Config.h>

#include <climits>

// MKL's packed-GEMM entry points, exported by torch's x86-64 libtorch_cpu. Declared weak so the
// extension still loads under a torch without MKL; available() checks they resolved. The enum
// parameters of the real prototypes are ints in the C ABI; sizes are MKL's LP64 `int`.
extern "C" {
__attribute__((weak)) size_t cblas_sgemm_pack_get_size(int identifier, int m, int n, int k);
__attribute__((weak)) void cblas_sgemm_pack(int layout, int identifier, int trans, int m, int n,
                                            int k, float alpha, const float* src, int ld,
                                            float* dest);
__attribute__((weak)) void cblas_sgemm_compute(int layout, int transa, int transb, int m, int n,
                                               int k, const float* a, int lda, const float* b,
                                               int ldb, float beta, float* c, int ldc);
}

namespace fusedlstm::cpu {

namespace {
constexpr int kRowMajor = 101;  // CblasRowMajor
constexpr int kNoTrans = 111;   // CblasNoTrans
constexpr int kTrans = 112;     // CblasTrans
constexpr int kPacked = 151;    // CblasPacked
constexpr int kBMatrix = 162;   // CblasBMatrix

bool fits_int(int64_t v) { return v >= 0 && v <= INT_MAX; }
}  // namespace

bool MklPackedWeight::available() {
#if AT_MKL_ENABLED()
  return cblas_sgemm_pack_get_size != nullptr && cblas_sgemm_pack != nullptr &&
         cblas_sgemm_compute != nullptr;
#else
  return false;
#endif
}

MklPackedWeight::MklPackedWeight(const at::Tensor& weight, bool transpose) {
  TORCH_CHECK(available() && weight.scalar_type() == at::kFloat && weight.device().is_cpu(),
              "MklPackedWeight: needs MKL and a float32 CPU weight");
  const at::Tensor w = weight.contiguous();
  n_ = transpose ? w.size(0) : w.size(1);
  k_ = transpose ? w.size(1) : w.size(0);
  if (!fits_int(n_) || !fits_int(k_) || n_ == 0 || k_ == 0) return;
  // The packed layout of B depends on n and k only; m is any valid row count.
  const int m = 1;
  const size_t bytes = cblas_sgemm_pack_get_size(kBMatrix, m, static_cast<int>(n_),
                                                 static_cast<int>(k_));
  packed_ = at::empty({static_cast<int64_t>((bytes + sizeof(float) - 1) / sizeof(float))},
                      w.options());
  cblas_sgemm_pack(kRowMajor, kBMatrix, transpose ? kTrans : kNoTrans, m, static_cast<int>(n_),
                   static_cast<int>(k_), 1.0f, w.const_data_ptr<float>(),
                   static_cast<int>(w.size(1)), packed_.data_ptr<float>());
}

bool MklPackedWeight::accepts(const at::Tensor& out, const at::Tensor& in) const {
  return packed() && in.scalar_type() == at::kFloat && out.scalar_type() == at::kFloat &&
         in.stride(1) == 1 && out.stride(1) == 1 && fits_int(in.size(0)) &&
         fits_int(in.stride(0)) && fits_int(out.stride(0)) && in.size(1) == k_ &&
         out.size(1) == n_;
}

void MklPackedWeight::multiply(at::Tensor& out, const at::Tensor& in, bool accumulate) const {
  const int64_t rows = in.size(0);
  if (rows == 0) return;
  cblas_sgemm_compute(kRowMajor, kNoTrans, kPacked, static_cast<int>(rows), static_cast<int>(n_),
                      static_cast<int>(k_), in.const_data_ptr<float>(),
                      static_cast<int>(in.stride(0)), packed_.const_data_ptr<float>(),
                      static_cast<int>(n_), accumulate ? 1.0f : 0.0f, out.data_ptr<float>(),
                      static_cast<int>(out.stride(0)));
}

}  // namespace fusedlstm::cpu

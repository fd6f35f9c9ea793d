// The CPU pointwise kernels, compiled once per vector capability (see pointwise_cpu_*.cpp): the
// including file defines CPU_CAPABILITY (DEFAULT, AVX2, AVX512) and the matching target, so
// at::vec::Vectorized<float> is the native vector and everything here lives in a namespace of
// that name. The math itself is cell_math.h, instantiated for Vectorized<float> and for scalars.
#pragma once

#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <fusedlstm/cell_math.h>
#include <fusedlstm/pointwise_units.h>

#include "pointwise_cpu.h"

namespace fusedlstm {

// exp for the activations. AVX-512: inline, e^x = 2^n e^r with n = round(x / ln 2), r = x - n ln 2
// in two parts (Cody-Waite), e^r by its degree-7 Taylor polynomial (|r| <= ln2 / 2: truncation
// 5e-9 relative), 2^n applied by scalef (overflow to inf, underflow through subnormals to 0, as
// exp does); within 1-2 ulp. Sleef's exp is an out-of-line call, which forces the live vectors
// of the pointwise code to be spilled around it: inline, the recurrent steps ran 8-13% faster.
// Other builds: at::vec's exp (Sleef / std::exp).
inline at::vec::Vectorized<float> exp(at::vec::Vectorized<float> x) {
#if defined(CPU_CAPABILITY_AVX512)
  // Clamped so that n and r stay finite (e^-104 is 0 in float32, e^89 is inf); min/max return
  // their second operand for a NaN, so NaN propagates.
  __m512 v = _mm512_max_ps(_mm512_set1_ps(-104.0f), _mm512_min_ps(_mm512_set1_ps(89.0f), x));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(v, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  v = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), v);
  v = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187045e-06f), v);
  __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
  p = _mm512_fmadd_ps(p, v, _mm512_set1_ps(1.0f / 720.0f));
  p = _mm512_fmadd_ps(p, v, _mm512_set1_ps(1.0f / 120.0f));
  p = _mm512_fmadd_ps(p, v, _mm512_set1_ps(1.0f / 24.0f));
  p = _mm512_fmadd_ps(p, v, _mm512_set1_ps(1.0f / 6.0f));
  p = _mm512_fmadd_ps(p, v, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, v, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, v, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
#else
  return x.exp();
#endif
}

// 1 / d for finite d >= 1 (the activations' denominators). AVX-512: rcp14 (2^-14 relative) and
// one Newton step (2^-28, then rounding: within 1 ulp), cheaper than a vector division; the
// callers keep d finite (rcp14(inf) = 0 would turn the Newton step into 0 * inf). Elsewhere a
// division.
inline at::vec::Vectorized<float> reciprocal(at::vec::Vectorized<float> d) {
#if defined(CPU_CAPABILITY_AVX512)
  const __m512 y = _mm512_rcp14_ps(d);
  return _mm512_fmadd_ps(_mm512_fnmadd_ps(d, y, _mm512_set1_ps(1.0f)), y, y);
#else
  return at::vec::Vectorized<float>(1.0f) / d;
#endif
}

// Vector activations. sigmoid: 1 / (1 + exp(-x)) with the exp and reciprocal above. tanh: built
// on the same exp rather than Sleef's tanh, which cost 3.4x an exp here and was 15% of a small
// layer's time. |x| < 0.625: odd polynomial x + x^3 P(x^2), a relative-error least-squares fit
// (0.8 ulp in float32); above: 1 - 2 / (exp(2|x|) + 1), where 2 / (...) <= 0.46 so the
// subtraction loses nothing (2 ulp with a 1-ulp exp); the sign is put back last. Both are checked
// against float64 (<= 3 ulp) over 5M float32 inputs, every binade from 2^-24 to 2^5, by
// tests/test_activations.py.
template <>
struct Activations<at::vec::Vectorized<float>> {
  using Vec = at::vec::Vectorized<float>;
  // exp(-x) capped at e^87 keeps 1 + e^-x finite for reciprocal(); sigmoid(x) for x < -87 is
  // then 1.6e-38 instead of a smaller or subnormal value.
  static inline Vec sigmoid(Vec x) {
    return reciprocal(Vec(1.0f) + exp(at::vec::minimum(Vec(87.0f), x.neg())));
  }
  static inline Vec tanh(Vec x) {
    const Vec a = x.abs();
    const Vec s = x * x;
    Vec p(0.0021780701354146004f);
    p = at::vec::fmadd(p, s, Vec(-0.008215019479393959f));
    p = at::vec::fmadd(p, s, Vec(0.021715570241212845f));
    p = at::vec::fmadd(p, s, Vec(-0.053949400782585144f));
    p = at::vec::fmadd(p, s, Vec(0.1333322674036026f));
    p = at::vec::fmadd(p, s, Vec(-0.3333333134651184f));
    const Vec small = at::vec::fmadd(x * s, p, x);
    // (2|x| capped at 87: tanh is 1.0 in float32 from |x| = 9 on)
    const Vec large_abs =
        Vec(1.0f) - Vec(2.0f) * reciprocal(exp(at::vec::minimum(Vec(87.0f), a + a)) + Vec(1.0f));
    const Vec large = Vec::blendv(large_abs, large_abs.neg(), x < Vec(0.0f));
    return Vec::blendv(large, small, a < Vec(0.625f));
  }
};

namespace cpu {
inline namespace CPU_CAPABILITY {

// The native float vector as a lane policy for pointwise_units.h.
struct FloatVectorLanes {
  using Compute = at::vec::Vectorized<float>;
  static constexpr int64_t width = Compute::size();
  static Compute load(const float* p) { return Compute::loadu(p); }
  static void store(float* p, Compute v) { v.store(p); }
};

// bfloat16 / float16 buffers, computed on the native float vector (float32 accumulation).
template <typename scalar_t>
struct ReducedVectorLanes {
  using Compute = at::vec::Vectorized<float>;
  static constexpr int64_t width = Compute::size();
  static Compute load(const scalar_t* p) {
    Compute out;
    at::vec::load_to_float<scalar_t>(p, out);
    return out;
  }
  static void store(scalar_t* p, Compute v) {
    at::vec::convert_from_float<scalar_t>(v, v).store(p, width);
  }
};

template <typename scalar_t>
struct VectorLanesFor {
  using type = ScalarLanes<scalar_t>;  // double: scalar (its tolerance is 1e-10, not speed)
};
template <>
struct VectorLanesFor<float> {
  using type = FloatVectorLanes;
};
template <>
struct VectorLanesFor<c10::BFloat16> {
  using type = ReducedVectorLanes<c10::BFloat16>;
};
template <>
struct VectorLanesFor<c10::Half> {
  using type = ReducedVectorLanes<c10::Half>;
};

// Runs `units(args, row, j)` over every unit of the rows: whole vectors first, then a scalar tail
// for H not a multiple of the vector width.
template <typename scalar_t, template <typename, typename> class Units, typename Args>
inline void for_each_unit(const Args& a, int64_t row_begin, int64_t row_end) {
  using Scalar = ScalarLanes<scalar_t>;
  using Vector = typename VectorLanesFor<scalar_t>::type;
  for (int64_t row = row_begin; row < row_end; ++row) {
    int64_t j = 0;
    if constexpr (Vector::width > 1) {
      for (; j + Vector::width <= a.hidden; j += Vector::width) {
        Units<scalar_t, Vector>::run(a, row, j);
      }
    }
    for (; j < a.hidden; ++j) Units<scalar_t, Scalar>::run(a, row, j);
  }
}

template <typename scalar_t, typename L>
struct ForwardUnits {
  static void run(const PointwiseForwardArgs& a, int64_t row, int64_t j) {
    forward_units<scalar_t, L>(a, row, j);
  }
};

template <typename scalar_t, typename L>
struct BackwardUnits {
  static void run(const PointwiseBackwardArgs& a, int64_t row, int64_t j) {
    backward_units<scalar_t, L>(a, row, j);
  }
};

template <template <typename, typename> class Units, typename Args>
void dispatch_rows(const Args& a, int64_t row_begin, int64_t row_end) {
  switch (a.dtype) {
    case c10::ScalarType::Float:
      return for_each_unit<float, Units>(a, row_begin, row_end);
    case c10::ScalarType::Double:
      return for_each_unit<double, Units>(a, row_begin, row_end);
    case c10::ScalarType::BFloat16:
      return for_each_unit<c10::BFloat16, Units>(a, row_begin, row_end);
    case c10::ScalarType::Half:
      return for_each_unit<c10::Half, Units>(a, row_begin, row_end);
    default:
      TORCH_CHECK(false, "fusedlstm: no CPU pointwise kernel for dtype ", a.dtype);
  }
}

inline void forward_rows(const PointwiseForwardArgs& a, int64_t row_begin, int64_t row_end) {
  dispatch_rows<ForwardUnits>(a, row_begin, row_end);
}

inline void backward_rows(const PointwiseBackwardArgs& a, int64_t row_begin, int64_t row_end) {
  dispatch_rows<BackwardUnits>(a, row_begin, row_end);
}

}  // namespace CPU_CAPABILITY
}  // namespace cpu
}  // namespace fusedlstm

#include "fused_step_kernel.h"

namespace fusedlstm::cpu {
inline namespace CPU_CAPABILITY {

inline RowKernels row_kernels_here(const char* name) {
  return {&forward_rows,         &backward_rows,      &fused_forward_blocks,
          &fused_backward_blocks, fused_block_width(), name};
}

}  // namespace CPU_CAPABILITY
}  // namespace fusedlstm::cpu

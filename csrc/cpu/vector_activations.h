// The CPU's vector activations (sigmoid, tanh) for cell_math.h, compiled per vector capability,
// and VecPack<N>: N float vectors computed in lockstep, so the shared cell math runs on several
// rows (or unit vectors) at once.
//
// Why lockstep: one vector's activation is a chain of ~20 dependent instructions (exp, then a
// reciprocal and its Newton step), and a cell needs two such chains in a row (the gates, then
// tanh(c)). Issued one vector after the other, the core waited on latency: the gate math took
// ~20% of a fused recurrent step. Every activation here is written as a sequence of steps, each
// step issued for all N vectors before the next one, so N independent chains are interleaved in
// program order. The arithmetic per element is the same for every N (N = 1 is the single-vector
// activation), so results do not depend on how many vectors were computed together.
#pragma once

#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <fusedlstm/cell_math.h>
#include <fusedlstm/state_cell_math.h>

#include <utility>

namespace fusedlstm {
namespace cpu {
inline namespace CPU_CAPABILITY {

using FloatVec = at::vec::Vectorized<float>;

// Runs f(i) for i = 0..N-1, unrolled at compile time (constant indices keep the arrays in
// registers).
template <int N, class F>
inline void each(const F& f) {
  [&]<int... I>(std::integer_sequence<int, I...>) {
    (f(I), ...);
  }(std::make_integer_sequence<int, N>{});
}

// e^x in place. AVX-512: e^x = 2^n e^r with n = round(x / ln 2), r = x - n ln 2 in two parts
// (Cody-Waite), e^r by its degree-7 Taylor polynomial (|r| <= ln2 / 2: truncation 5e-9
// relative), 2^n applied by scalef (overflow to inf, underflow through subnormals to 0, as exp
// does); within 1-2 ulp. Inline on purpose: Sleef's exp is an out-of-line call, which forces the
// live vectors of the pointwise code to be spilled around it. Other builds: at::vec's exp
// (Sleef / std::exp).
template <int N>
inline void exp_n(FloatVec (&x)[N]) {
#if defined(CPU_CAPABILITY_AVX512)
  __m512 v[N], n[N], p[N];
  // Clamped so that n and r stay finite (e^-104 is 0 in float32, e^89 is inf); min/max return
  // their second operand for a NaN, so NaN propagates.
  each<N>([&](int i) {
    v[i] = _mm512_max_ps(_mm512_set1_ps(-104.0f), _mm512_min_ps(_mm512_set1_ps(89.0f), x[i]));
  });
  each<N>([&](int i) {
    n[i] = _mm512_roundscale_ps(_mm512_mul_ps(v[i], _mm512_set1_ps(1.44269504088896341f)),
                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  });
  each<N>([&](int i) { v[i] = _mm512_fnmadd_ps(n[i], _mm512_set1_ps(0.693145751953125f), v[i]); });
  each<N>([&](int i) {
    v[i] = _mm512_fnmadd_ps(n[i], _mm512_set1_ps(1.428606765330187045e-06f), v[i]);
  });
  each<N>([&](int i) {
    p[i] = _mm512_fmadd_ps(_mm512_set1_ps(1.0f / 5040.0f), v[i], _mm512_set1_ps(1.0f / 720.0f));
  });
  for (const float c : {1.0f / 120.0f, 1.0f / 24.0f, 1.0f / 6.0f, 0.5f, 1.0f, 1.0f}) {
    each<N>([&](int i) { p[i] = _mm512_fmadd_ps(p[i], v[i], _mm512_set1_ps(c)); });
  }
  each<N>([&](int i) { x[i] = _mm512_scalef_ps(p[i], n[i]); });
#else
  each<N>([&](int i) { x[i] = x[i].exp(); });
#endif
}

// 1 / d in place, for finite d >= 1 (the activations' denominators). AVX-512: rcp14 (2^-14
// relative) and one Newton step (2^-28, then rounding: within 1 ulp), cheaper than a vector
// division; the callers keep d finite (rcp14(inf) = 0 would turn the Newton step into 0 * inf).
// Elsewhere a division.
template <int N>
inline void reciprocal_n(FloatVec (&d)[N]) {
#if defined(CPU_CAPABILITY_AVX512)
  __m512 y[N];
  each<N>([&](int i) { y[i] = _mm512_rcp14_ps(d[i]); });
  each<N>([&](int i) {
    d[i] = _mm512_fmadd_ps(_mm512_fnmadd_ps(d[i], y[i], _mm512_set1_ps(1.0f)), y[i], y[i]);
  });
#else
  each<N>([&](int i) { d[i] = FloatVec(1.0f) / d[i]; });
#endif
}

// sigmoid: 1 / (1 + exp(-x)). exp(-x) capped at e^87 keeps 1 + e^-x finite for reciprocal_n;
// sigmoid(x) for x < -87 is then 1.6e-38 instead of a smaller or subnormal value.
template <int N>
inline void sigmoid_n(FloatVec (&x)[N]) {
  each<N>([&](int i) { x[i] = at::vec::minimum(FloatVec(87.0f), x[i].neg()); });
  exp_n<N>(x);
  each<N>([&](int i) { x[i] = FloatVec(1.0f) + x[i]; });
  reciprocal_n<N>(x);
}

// tanh, built on the same exp rather than Sleef's tanh, which cost several exps here (a large
// part of a small layer's time). |x| < 0.625: odd polynomial x + x^3 P(x^2), a relative-error
// least-squares fit (0.8 ulp in float32); above: 1 - 2 / (exp(2|x|) + 1), where 2 / (...) <= 0.46
// so the subtraction loses nothing (2 ulp with a 1-ulp exp); the sign is put back last. Both are
// checked against float64 (<= 3 ulp) over 5M float32 inputs, every binade from 2^-24 to 2^5, by
// tests/test_activations.py.
template <int N>
inline void tanh_n(FloatVec (&x)[N]) {
  FloatVec a[N], s[N], p[N], e[N];
  each<N>([&](int i) { a[i] = x[i].abs(); });
  // (2|x| capped at 87: tanh is 1.0 in float32 from |x| = 9 on)
  each<N>([&](int i) { e[i] = at::vec::minimum(FloatVec(87.0f), a[i] + a[i]); });
  exp_n<N>(e);
  each<N>([&](int i) { e[i] = e[i] + FloatVec(1.0f); });
  reciprocal_n<N>(e);
  each<N>([&](int i) { s[i] = x[i] * x[i]; });
  each<N>([&](int i) {
    p[i] = at::vec::fmadd(FloatVec(0.0021780701354146004f), s[i], FloatVec(-0.008215019479393959f));
  });
  for (const float c : {0.021715570241212845f, -0.053949400782585144f, 0.1333322674036026f,
                        -0.3333333134651184f}) {
    each<N>([&](int i) { p[i] = at::vec::fmadd(p[i], s[i], FloatVec(c)); });
  }
  each<N>([&](int i) {
    const FloatVec small = at::vec::fmadd(x[i] * s[i], p[i], x[i]);
    const FloatVec large_abs = FloatVec(1.0f) - FloatVec(2.0f) * e[i];
    const FloatVec large = FloatVec::blendv(large_abs, large_abs.neg(), x[i] < FloatVec(0.0f));
    x[i] = FloatVec::blendv(large, small, a[i] < FloatVec(0.625f));
  });
}

// Vectors the CPU kernels compute in lockstep (rows of a fused-step tile, or unit vectors of a
// row): enough independent chains to keep the core busy, few enough for a pack's live values to
// stay in 32 registers (2 measured slower, docs/performance.md).
constexpr int kLockstep = 4;

// N float vectors that the cell math treats as one value: every operation is applied to each
// vector, one operation for all of them before the next (see the top of this file).
template <int N>
struct VecPack {
  FloatVec v[N];
  VecPack() = default;
  explicit VecPack(float value) {
    each<N>([&](int i) { v[i] = FloatVec(value); });
  }
};

template <int N>
inline VecPack<N> operator+(const VecPack<N>& a, const VecPack<N>& b) {
  VecPack<N> out;
  each<N>([&](int i) { out.v[i] = a.v[i] + b.v[i]; });
  return out;
}

template <int N>
inline VecPack<N> operator-(const VecPack<N>& a, const VecPack<N>& b) {
  VecPack<N> out;
  each<N>([&](int i) { out.v[i] = a.v[i] - b.v[i]; });
  return out;
}

template <int N>
inline VecPack<N> operator*(const VecPack<N>& a, const VecPack<N>& b) {
  VecPack<N> out;
  each<N>([&](int i) { out.v[i] = a.v[i] * b.v[i]; });
  return out;
}

}  // namespace CPU_CAPABILITY
}  // namespace cpu

template <>
struct Activations<cpu::FloatVec> {
  using Vec = cpu::FloatVec;
  static inline Vec sigmoid(Vec x) {
    Vec v[1] = {x};
    cpu::sigmoid_n<1>(v);
    return v[0];
  }
  static inline Vec tanh(Vec x) {
    Vec v[1] = {x};
    cpu::tanh_n<1>(v);
    return v[0];
  }
};

// float64 vectors: ATen's own vector exp and tanh (Sleef, 1 ulp), the functions its float64
// sigmoid and tanh kernels use, so the 1e-9 parity with nn.LSTM holds.
template <>
struct Activations<at::vec::Vectorized<double>> {
  using Vec = at::vec::Vectorized<double>;
  static inline Vec sigmoid(Vec x) { return (Vec(1.0) + x.neg().exp()).reciprocal(); }
  static inline Vec tanh(Vec x) { return x.tanh(); }
};

template <int N>
struct Activations<cpu::VecPack<N>> {
  using Pack = cpu::VecPack<N>;
  static inline Pack sigmoid(Pack x) {
    cpu::sigmoid_n<N>(x.v);
    return x;
  }
  static inline Pack tanh(Pack x) {
    cpu::tanh_n<N>(x.v);
    return x;
  }
};

// ReLU for the Elman RNN (state_cell_math.h) on the vector types: max(x, 0), and the gradient
// passed where the output is positive.
template <typename Vec>
struct VectorRectifier {
  static inline Vec relu(Vec x) { return at::vec::maximum(x, Vec(0)); }
  static inline Vec grad(Vec grad_out, Vec out) {
    return Vec::blendv(Vec(0), grad_out, out > Vec(0));
  }
};
template <>
struct Rectifier<cpu::FloatVec> : VectorRectifier<cpu::FloatVec> {};
template <>
struct Rectifier<at::vec::Vectorized<double>> : VectorRectifier<at::vec::Vectorized<double>> {};
template <int N>
struct Rectifier<cpu::VecPack<N>> {
  using Pack = cpu::VecPack<N>;
  static inline Pack relu(Pack x) {
    cpu::each<N>([&](int i) { x.v[i] = Rectifier<cpu::FloatVec>::relu(x.v[i]); });
    return x;
  }
  static inline Pack grad(Pack grad_out, const Pack& out) {
    cpu::each<N>([&](int i) {
      grad_out.v[i] = Rectifier<cpu::FloatVec>::grad(grad_out.v[i], out.v[i]);
    });
    return grad_out;
  }
};

}  // namespace fusedlstm

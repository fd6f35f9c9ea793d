// The CPU pointwise kernels, compiled once per vector capability (see pointwise_cpu_*.cpp): the
// including file defines CPU_CAPABILITY (DEFAULT, AVX2, AVX512) and the matching target, so
// at::vec::Vectorized<float> is the native vector and everything here lives in a namespace of
// that name. The math itself is cell_math.h, instantiated for scalars, for Vectorized<float> and for
// packs of float vectors computed in lockstep (vector_activations.h).
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <fusedlstm/cell_math.h>
#include <fusedlstm/pointwise_units.h>

#include "pointwise_cpu.h"
#include "vector_activations.h"

#include <algorithm>
#include <type_traits>

namespace fusedlstm {
namespace cpu {
inline namespace CPU_CAPABILITY {

// The native float vector as a lane policy for pointwise_units.h.
struct FloatVectorLanes {
  using Compute = FloatVec;
  static constexpr int64_t width = Compute::size();
  static Compute load(const float* p, int64_t /*row_stride*/) { return Compute::loadu(p); }
  static void store(float* p, int64_t /*row_stride*/, Compute v) { v.store(p); }
};

// N consecutive float vectors of one row (N * width units), computed in lockstep.
template <int N>
struct UnitPackLanes {
  using Compute = VecPack<N>;
  static constexpr int64_t width = N * FloatVec::size();
  static Compute load(const float* p, int64_t /*row_stride*/) {
    Compute out;
    each<N>([&](int i) { out.v[i] = FloatVec::loadu(p + i * FloatVec::size()); });
    return out;
  }
  static void store(float* p, int64_t /*row_stride*/, const Compute& v) {
    each<N>([&](int i) { v.v[i].store(p + i * FloatVec::size()); });
  }
};

// One float vector of units in each of N consecutive rows, computed in lockstep (the fused step's
// row tiles).
template <int N>
struct RowPackLanes {
  using Compute = VecPack<N>;
  static constexpr int64_t width = FloatVec::size();
  static Compute load(const float* p, int64_t row_stride) {
    Compute out;
    each<N>([&](int i) { out.v[i] = FloatVec::loadu(p + i * row_stride); });
    return out;
  }
  static void store(float* p, int64_t row_stride, const Compute& v) {
    each<N>([&](int i) { v.v[i].store(p + i * row_stride); });
  }
};

// bfloat16 / float16 buffers, computed on the native float vector (float32 accumulation).
template <typename scalar_t>
struct ReducedVectorLanes {
  using Compute = FloatVec;
  static constexpr int64_t width = Compute::size();
  static Compute load(const scalar_t* p, int64_t /*row_stride*/) {
    Compute out;
    at::vec::load_to_float<scalar_t>(p, out);
    return out;
  }
  static void store(scalar_t* p, int64_t /*row_stride*/, Compute v) {
    at::vec::convert_from_float<scalar_t>(v, v).store(p, width);
  }
};

// The native double vector (float64 layers and cells).
struct DoubleVectorLanes {
  using Compute = at::vec::Vectorized<double>;
  static constexpr int64_t width = Compute::size();
  static Compute load(const double* p, int64_t /*row_stride*/) { return Compute::loadu(p); }
  static void store(double* p, int64_t /*row_stride*/, Compute v) { v.store(p); }
};

// The last H % width units of a row as one partial vector: `count` lanes loaded and stored, the
// rest zero and discarded. The count is per call (set by for_each_unit just before), so it lives
// in a thread-local rather than in the static lane-policy interface.
template <typename Lanes>
struct PartialLanes {
  using Compute = typename Lanes::Compute;
  using Element = typename Compute::value_type;
  static inline thread_local int64_t count = 0;
  static Compute load(const Element* p, int64_t /*row_stride*/) { return Compute::loadu(p, count); }
  static void store(Element* p, int64_t /*row_stride*/, Compute v) { v.store(p, count); }
};

// The same on bfloat16 / float16 buffers, through a zeroed vector of scalar_t (a lane at a time
// through libm cost a bfloat16 step with H = 200 8% of its time); float32 buffers (a reduced
// step's pre-activations) as PartialLanes.
template <typename scalar_t>
struct PartialLanes<ReducedVectorLanes<scalar_t>> {
  using Compute = FloatVec;
  static constexpr int64_t width = Compute::size();
  static inline thread_local int64_t count = 0;
  static Compute load(const float* p, int64_t /*row_stride*/) { return Compute::loadu(p, count); }
  static Compute load(const scalar_t* p, int64_t /*row_stride*/) {
    scalar_t lanes[width] = {};
    std::copy_n(p, count, lanes);
    Compute out;
    at::vec::load_to_float<scalar_t>(lanes, out);
    return out;
  }
  static void store(float* p, int64_t /*row_stride*/, Compute v) { v.store(p, count); }
  static void store(scalar_t* p, int64_t /*row_stride*/, Compute v) {
    scalar_t lanes[width];
    at::vec::convert_from_float<scalar_t>(v, v).store(lanes, width);
    std::copy_n(lanes, count, p);
  }
};

template <typename scalar_t>
struct VectorLanesFor {
  using type = ScalarLanes<scalar_t>;
};
template <>
struct VectorLanesFor<double> {
  using type = DoubleVectorLanes;
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

// Runs `units(args, row, j)` over every unit of the rows: packs of vectors first (float32),
// then whole vectors, then the tail for H not a multiple of the vector width: one partial vector
// (a unit at a time through libm costs several times a vector's work).
template <typename scalar_t, template <typename, typename> class Units, typename Args>
inline void for_each_unit(const Args& a, int64_t row_begin, int64_t row_end) {
  using Vector = typename VectorLanesFor<scalar_t>::type;
  for (int64_t row = row_begin; row < row_end; ++row) {
    int64_t j = 0;
    if constexpr (std::is_same_v<scalar_t, float>) {
      // four vectors at a time first: their activations interleave (vector_activations.h)
      using Pack = UnitPackLanes<kLockstep>;
      for (; j + Pack::width <= a.hidden; j += Pack::width) Units<float, Pack>::run(a, row, j);
    }
    if constexpr (Vector::width > 1) {
      for (; j + Vector::width <= a.hidden; j += Vector::width) {
        Units<scalar_t, Vector>::run(a, row, j);
      }
    }
    if constexpr (Vector::width > 1) {
      if (j < a.hidden) {
        PartialLanes<Vector>::count = a.hidden - j;
        Units<scalar_t, PartialLanes<Vector>>::run(a, row, j);
      }
    } else {
      for (; j < a.hidden; ++j) Units<scalar_t, Vector>::run(a, row, j);
    }
  }
}

// The per-unit code with everything it calls inlined (flatten): left to itself, GCC calls the
// cell math of a VecPack out of line and passes each pack through memory, which costs more than
// the lockstep saves.
#if defined(__GNUC__)
#define FUSEDLSTM_FLATTEN __attribute__((flatten))
#else
#define FUSEDLSTM_FLATTEN
#endif

template <typename scalar_t, typename L>
struct ForwardUnits {
  FUSEDLSTM_FLATTEN static void run(const PointwiseForwardArgs& a, int64_t row, int64_t j) {
    forward_units<scalar_t, L>(a, row, j);
  }
};

template <typename scalar_t, typename L>
struct BackwardUnits {
  FUSEDLSTM_FLATTEN static void run(const PointwiseBackwardArgs& a, int64_t row, int64_t j) {
    backward_units<scalar_t, L>(a, row, j);
  }
};

template <template <typename, typename> class Units, typename Args>
void dispatch_rows(const Args& a, int64_t row_begin, int64_t row_end) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.dtype, "fusedlstm CPU pointwise",
                                  [&] { for_each_unit<scalar_t, Units>(a, row_begin, row_end); });
}

inline void forward_rows(const PointwiseForwardArgs& a, int64_t row_begin, int64_t row_end) {
  dispatch_rows<ForwardUnits>(a, row_begin, row_end);
}

inline void backward_rows(const PointwiseBackwardArgs& a, int64_t row_begin, int64_t row_end) {
  dispatch_rows<BackwardUnits>(a, row_begin, row_end);
}

// The single-state cells' passes (state_cell_units.h), the cell's math bound first.
template <class Math>
struct StateUnits {
  template <typename scalar_t, typename L>
  struct Forward {
    FUSEDLSTM_FLATTEN static void run(const StateForwardArgs& a, int64_t row, int64_t j) {
      state_forward_units<Math, scalar_t, L>(a, row, j);
    }
  };
  template <typename scalar_t, typename L>
  struct Backward {
    FUSEDLSTM_FLATTEN static void run(const StateBackwardArgs& a, int64_t row, int64_t j) {
      state_backward_units<Math, scalar_t, L>(a, row, j);
    }
  };
};

inline void state_forward_rows(const StateForwardArgs& a, int64_t row_begin, int64_t row_end) {
  with_state_cell(a.cell, [&](auto math) {
    dispatch_rows<StateUnits<decltype(math)>::template Forward>(a, row_begin, row_end);
  });
}

inline void state_backward_rows(const StateBackwardArgs& a, int64_t row_begin, int64_t row_end) {
  with_state_cell(a.cell, [&](auto math) {
    dispatch_rows<StateUnits<decltype(math)>::template Backward>(a, row_begin, row_end);
  });
}

}  // namespace CPU_CAPABILITY
}  // namespace cpu
}  // namespace fusedlstm

#include "fused_step_kernel.h"
#include "fused_state_kernel.h"

namespace fusedlstm::cpu {
inline namespace CPU_CAPABILITY {

// ATen's transpose: 16 x 16 tiles in registers on AVX-512 (a scalar loop elsewhere). Packing a
// weight element by element was a tenth of a small layer's inference (docs/performance.md).
inline void transpose_floats(const float* src, int64_t ld_src, float* dst, int64_t ld_dst,
                             int64_t rows, int64_t cols) {
  at::vec::transpose_mxn<float>(src, ld_src, dst, ld_dst, static_cast<int>(rows),
                                static_cast<int>(cols));
}

inline RowKernels row_kernels_here(const char* name) {
  return {&forward_rows,          &backward_rows,       &fused_forward_blocks,
          &fused_backward_blocks, fused_block_width(),  name,
          &state_forward_rows,    &state_backward_rows, &fused_state_forward_blocks,
          &fused_state_backward_blocks, &transpose_floats};
}

}  // namespace CPU_CAPABILITY
}  // namespace fusedlstm::cpu

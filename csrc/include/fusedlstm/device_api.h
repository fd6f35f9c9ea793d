// What a kernel source includes for the device API: CUDA's own under nvcc, the SIMT emulation
// (simt/simt.h, simt/wmma.h) when the same source is compiled as host C++ for the CPU tests.
#pragma once

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#if defined(__CUDACC__)
#include <cooperative_groups.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <mma.h>

// The block's dynamic shared memory as `type* name` (the size is the launch's). The only kind
// of shared memory the emulation models, so kernels use no static __shared__ arrays.
#define FUSEDLSTM_DYNAMIC_SHARED(type, name)                                          \
  extern __shared__ __align__(16) unsigned char fusedlstm_dynamic_shared_memory[]; \
  type* name = reinterpret_cast<type*>(fusedlstm_dynamic_shared_memory)
#else
#include <fusedlstm/simt/simt.h>
#include <fusedlstm/simt/wmma.h>

#define FUSEDLSTM_DYNAMIC_SHARED(type, name) \
  type* name = reinterpret_cast<type*>(::fusedlstm::simt::dynamic_shared_memory())
#endif

namespace fusedlstm {

// The element type nvcuda::wmma takes for a half-precision scalar_t (the same bits):
// CUDA's __half / __nv_bfloat16, or the c10 type itself on the emulation.
template <typename scalar_t>
struct WmmaElement;
#if defined(__CUDACC__)
template <>
struct WmmaElement<c10::Half> {
  using type = __half;
};
template <>
struct WmmaElement<c10::BFloat16> {
  using type = __nv_bfloat16;
};
#else
template <>
struct WmmaElement<c10::Half> {
  using type = c10::Half;
};
template <>
struct WmmaElement<c10::BFloat16> {
  using type = c10::BFloat16;
};
#endif

}  // namespace fusedlstm

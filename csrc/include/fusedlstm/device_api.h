// What a kernel source includes for the device API: CUDA's own under nvcc, the SIMT emulation
// (simt/simt.h) when the same source is compiled as host C++ for the CPU tests.
#pragma once

#if defined(__CUDACC__)
#include <cooperative_groups.h>

// The block's dynamic shared memory as `type* name` (the size is the launch's). The only kind
// of shared memory the emulation models, so kernels use no static __shared__ arrays.
#define FUSEDLSTM_DYNAMIC_SHARED(type, name)                                          \
  extern __shared__ __align__(16) unsigned char fusedlstm_dynamic_shared_memory[]; \
  type* name = reinterpret_cast<type*>(fusedlstm_dynamic_shared_memory)
#else
#include <fusedlstm/simt/simt.h>

#define FUSEDLSTM_DYNAMIC_SHARED(type, name) \
  type* name = reinterpret_cast<type*>(::fusedlstm::simt::dynamic_shared_memory())
#endif

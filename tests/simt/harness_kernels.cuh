// Kernels that exercise each part of the SIMT emulation (block barrier, shared memory, warp
// shuffles and votes, atomics, the cooperative grid barrier). FUSEDLSTM_SIMT_PLANT names one
// barrier to leave out: `block` or `grid` (selftest.cpp's planted-bug builds, which
// ThreadSanitizer must fail).
#pragma once

#include <fusedlstm/device_api.h>

#ifndef FUSEDLSTM_SIMT_PLANT
#define FUSEDLSTM_SIMT_PLANT 0
#endif

namespace simt_harness {

// Per block: the sum of in[block's slice] by a shared-memory tree (blockDim.x a power of two).
__global__ void block_sum_kernel(const float* in, float* block_sums) {
  FUSEDLSTM_DYNAMIC_SHARED(float, partial);
  const unsigned t = threadIdx.x;
  partial[t] = in[blockIdx.x * blockDim.x + t];
  for (unsigned half = blockDim.x / 2; half > 0; half /= 2) {
#if FUSEDLSTM_SIMT_PLANT != 1
    __syncthreads();
#endif
    if (t < half) partial[t] += partial[t + half];
  }
  if (t == 0) block_sums[blockIdx.x] = partial[0];
}

// Per warp: the sum by __shfl_down_sync, the max lane by __shfl_xor_sync, and which lanes hold a
// positive value by __ballot_sync. out: 3 values per warp.
__global__ void warp_kernel(const float* in, float* out) {
  const unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
  const unsigned warp = i / warpSize;
  float sum = in[i];
  for (int offset = warpSize / 2; offset > 0; offset /= 2) {
    sum += __shfl_down_sync(0xffffffffu, sum, offset);
  }
  float biggest = in[i];
  for (int mask = 1; mask < warpSize; mask *= 2) {
    const float other = __shfl_xor_sync(0xffffffffu, biggest, mask);
    biggest = other > biggest ? other : biggest;
  }
  const unsigned positive = __ballot_sync(0xffffffffu, in[i] > 0.0f);
  const float from_lane_3 = __shfl_sync(0xffffffffu, in[i], 3);
  if (i % warpSize == 0) {
    out[4 * warp] = sum;
    out[4 * warp + 1] = biggest;
    out[4 * warp + 2] = static_cast<float>(__popc(positive));
    out[4 * warp + 3] = from_lane_3;
  }
}

// A shuffle whose mask leaves out a live lane: the emulation must refuse it.
__global__ void bad_mask_kernel(float* out) {
  out[threadIdx.x] = __shfl_down_sync(0x0000ffffu, 1.0f, 1);
}

__global__ void atomic_count_kernel(int* counter, float* total) {
  atomicAdd(counter, 1);
  atomicAdd(total, 0.5f);
}

// Cooperative: each block publishes its sum, waits at the grid barrier, then every block reads
// all of them (the pattern of a persistent kernel's step). out[block] = sum of all block sums.
__global__ void grid_exchange_kernel(const float* in, float* block_sums, float* out) {
  const unsigned t = threadIdx.x;
  if (t == 0) {
    float sum = 0.0f;
    for (unsigned k = 0; k < blockDim.x; ++k) sum += in[blockIdx.x * blockDim.x + k];
    block_sums[blockIdx.x] = sum;
  }
#if FUSEDLSTM_SIMT_PLANT != 2
  cooperative_groups::this_grid().sync();
#endif
  if (t == 0) {
    float total = 0.0f;
    for (unsigned b = 0; b < gridDim.x; ++b) total += block_sums[b];
    out[blockIdx.x] = total;
  }
}

// Reads shared memory nobody wrote: real shared memory starts with garbage, the emulation's is
// NaN, so such a read shows up in the result.
__global__ void uninitialised_shared_kernel(float* out) {
  FUSEDLSTM_DYNAMIC_SHARED(float, scratch);
  out[threadIdx.x] = scratch[threadIdx.x];
}

__global__ void grid_sync_without_cooperative_launch_kernel() {
  cooperative_groups::this_grid().sync();
}

}  // namespace simt_harness

// The CPU layer ops' large buffers (outputs, saved gates, gradient chunks) come from a small cache
// of blocks instead of straight from malloc.
//
// Why: glibc gives freed memory back to the OS when the top of its heap holds more than twice the
// largest buffer it has unmapped so far, and maps buffers above a threshold afresh on every call;
// a layer called again and again then pays a page fault per 4 KiB of its buffers on every call
// (docs/performance.md). A freed block stays here, resident, for the next call of about the same
// size.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

namespace fusedlstm::cpu {

// Buffers below this come from torch's CPU allocator as usual (glibc reuses small chunks fine).
constexpr int64_t kPooledMinBytes = int64_t{256} << 10;
// Blocks are sized in steps of this, so nearly equal requests share blocks.
constexpr int64_t kPooledGranule = int64_t{64} << 10;
// At most this many bytes of free blocks are kept; a block freed beyond it goes back to malloc.
constexpr int64_t kPooledCacheBytes = int64_t{64} << 20;

// at::empty for CPU tensors, large ones backed by the pool. (Under AddressSanitizer: plain
// at::empty, so that every buffer keeps its exact bounds.)
at::Tensor pooled_empty(at::IntArrayRef sizes, const at::TensorOptions& options);

// Whether pooled_empty uses the pool (not under AddressSanitizer).
bool pool_enabled();

// Bytes of free blocks the pool holds.
int64_t pooled_cached_bytes();

// Gives every free block back to malloc; returns how many bytes that was.
int64_t release_pooled_buffers();

}  // namespace fusedlstm::cpu

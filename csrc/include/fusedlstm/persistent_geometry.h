// What the host needs of the persistent kernels (cuda/persistent_kernels.cuh): how a launch
// deals hidden units to blocks, and the kernels' parameters. Plain C++, no device code.
#pragma once

#include <fusedlstm/pointwise.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>

namespace fusedlstm::kernels {

constexpr int kPersistentMaxThreads = 256;

// How the hidden units are dealt to the blocks of a persistent launch.
struct PersistentGeometry {
  int64_t units_per_block = 0;  // U
  int blocks = 0;
  int threads = 0;
  size_t shared_bytes = 0;  // the block's slice of W_hh: 4 U K elements
};

// One block per resident slot (`resident_blocks`, the device's co-residency for one block per
// multiprocessor) with ceil(H / slots) units each; threads cover max_rows x U pairs, up to 256.
inline PersistentGeometry persistent_geometry(int64_t hidden, int64_t columns, int64_t max_rows,
                                              int64_t resident_blocks, size_t element_size) {
  PersistentGeometry g;
  g.units_per_block = (hidden + resident_blocks - 1) / std::max<int64_t>(1, resident_blocks);
  g.blocks = static_cast<int>((hidden + g.units_per_block - 1) / g.units_per_block);
  const int64_t pairs = std::max<int64_t>(1, max_rows) * g.units_per_block;
  g.threads = static_cast<int>(std::clamp<int64_t>((pairs + 31) / 32 * 32, 32,
                                                   kPersistentMaxThreads));
  g.shared_bytes = static_cast<size_t>(4 * g.units_per_block * columns) * element_size;
  return g;
}

struct PersistentForwardParams {
  const RecurrentStep* steps;  // `count` steps, in the order they run
  int64_t count;
  const void* w_hh;  // (4H, K) row-major, K = P with a projection, else H
  int64_t hidden;
  int64_t columns;
  int64_t units_per_block;
};

struct PersistentBackwardParams {
  const RecurrentBackwardStep* steps;
  int64_t count;
  const void* w_hh;  // (4H, H) row-major (no projection)
  int64_t hidden;
  int64_t units_per_block;
};

}  // namespace fusedlstm::kernels

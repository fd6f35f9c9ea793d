// What the host needs of the persistent kernels (cuda/persistent_kernels.cuh): how a launch
// deals hidden units to blocks, and the kernels' parameters. Plain C++, no device code.
#pragma once

#include <c10/macros/Macros.h>

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
  size_t shared_bytes = 0;
  bool tensor_cores = false;  // the float16 / bfloat16 kernels on nvcuda::wmma tiles
};

constexpr int64_t kTile = 16;             // wmma m16n16k16
constexpr int64_t kBackwardChunk = 256;   // gate columns of dL/dgates staged per pass

C10_HOST_DEVICE constexpr int64_t round_up(int64_t n, int64_t multiple) {
  return (n + multiple - 1) / multiple * multiple;
}

// One block per resident slot (`resident_blocks`: one per multiprocessor) with ceil(H / slots)
// units each; threads cover max_rows x U pairs, up to 256, at least a warp.
inline PersistentGeometry deal_units(int64_t hidden, int64_t max_rows, int64_t resident_blocks) {
  PersistentGeometry g;
  g.units_per_block = (hidden + resident_blocks - 1) / std::max<int64_t>(1, resident_blocks);
  g.blocks = static_cast<int>((hidden + g.units_per_block - 1) / g.units_per_block);
  const int64_t pairs = std::max<int64_t>(1, max_rows) * g.units_per_block;
  g.threads = static_cast<int>(std::clamp<int64_t>((pairs + 31) / 32 * 32, 32,
                                                   kPersistentMaxThreads));
  return g;
}

// The tensor-core kernels' shared memory: float tiles of the products (M x N), the weight
// operand (N x K) and the staged rows (M x staged_K), 16-bit elements.
inline size_t tile_shared_bytes(int64_t M, int64_t N, int64_t K, int64_t staged_K,
                                size_t element_size) {
  return static_cast<size_t>(4 * M * N) + static_cast<size_t>(N * K + M * staged_K) * element_size;
}

// The forward's shared memory, for a cell of `gates` gates (the LSTM's 4, the GRU's 3, the RNN's
// 1). FMA kernel: the block's slice of W_hh, gates U K elements. Tensor cores: float tiles of the
// recurrent products (M x N), the slice (N x K) and the step's h_{t-1} rows (M x K), every side
// padded to 16 (M rows, N = gates U gate rows, K columns).
inline PersistentGeometry persistent_forward_geometry(int64_t gates, int64_t hidden,
                                                      int64_t columns, int64_t max_rows,
                                                      int64_t resident_blocks,
                                                      size_t element_size, bool tensor_cores) {
  PersistentGeometry g = deal_units(hidden, max_rows, resident_blocks);
  g.tensor_cores = tensor_cores;
  const int64_t U = g.units_per_block;
  if (!tensor_cores) {
    g.shared_bytes = static_cast<size_t>(gates * U * columns) * element_size;
    return g;
  }
  const int64_t M = round_up(max_rows, kTile), N = round_up(gates * U, kTile);
  const int64_t K = round_up(columns, kTile);
  g.shared_bytes = tile_shared_bytes(M, N, K, K, element_size);
  return g;
}

// The backward's. FMA kernel: W_hh's columns of the slice, gates H U elements. Tensor cores:
// float tiles of dL/dh (M x N, N = U padded), the columns (N x gates H) and a chunk of the later
// step's gate gradients (M x kBackwardChunk).
inline PersistentGeometry persistent_backward_geometry(int64_t gates, int64_t hidden,
                                                       int64_t max_rows, int64_t resident_blocks,
                                                       size_t element_size, bool tensor_cores) {
  PersistentGeometry g = deal_units(hidden, max_rows, resident_blocks);
  g.tensor_cores = tensor_cores;
  const int64_t U = g.units_per_block;
  if (!tensor_cores) {
    g.shared_bytes = static_cast<size_t>(gates * hidden * U) * element_size;
    return g;
  }
  const int64_t M = round_up(max_rows, kTile), N = round_up(U, kTile);
  const int64_t K = round_up(gates * hidden, kTile);
  g.shared_bytes = tile_shared_bytes(M, N, K, std::min(K, kBackwardChunk), element_size);
  return g;
}

struct PersistentForwardParams {
  const RecurrentStep* steps;  // `count` steps, in the order they run
  int64_t count;
  const void* w_hh;  // (4H, K) row-major, K = P with a projection, else H
  int64_t hidden;
  int64_t columns;
  int64_t units_per_block;
  int64_t max_rows;  // the most rows of any step (the tensor-core tiles' M)
};

struct PersistentBackwardParams {
  const RecurrentBackwardStep* steps;
  int64_t count;
  const void* w_hh;  // (4H, H) row-major (no projection)
  int64_t hidden;
  int64_t units_per_block;
  int64_t max_rows;
};

}  // namespace fusedlstm::kernels

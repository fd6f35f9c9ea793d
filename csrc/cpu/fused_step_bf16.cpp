// The bfloat16 fused recurrent steps (the LSTM's forward and backward, the GRU's and RNN's
// forward), AVX-512 with the BF16 dot product.
// setup.py compiles this file alone with the AVX-512 flags plus -mavx512bf16,
// CPU_CAPABILITY=AVX512_BF16 (its own namespace: the inline functions it shares with the AVX-512
// kernels may use BF16 instructions here and must not be merged with theirs) and
// CPU_CAPABILITY_AVX512 (at::vec's 512-bit vectors); fused_step.cpp calls it only where the CPU
// reports avx512_bf16.
//
// The tile is the float32 one's (fused_step_kernel.h: 4 rows x 4 gates of 16 units in 16
// accumulators), with vdpbf16ps in place of the FMA: each instruction multiplies 16 lanes by a
// pair of k (two bfloat16 weights per lane against one broadcast pair of h or x) and adds both
// products to float32 accumulators, so a k pair costs what one k costs in float32, from half the
// weight bytes. The sums go to a float32 pre-activation buffer and the gate math reads them from
// there in float32 (one rounding, to bfloat16, of h_t and c_t at the end, as nn.LSTM's).
#include "pointwise_cpu_kernel.h"

#include <immintrin.h>

#include <cstring>

namespace fusedlstm::cpu {
inline namespace CPU_CAPABILITY {
namespace {

using Bf16 = c10::BFloat16;
constexpr int64_t V = kBf16BlockWidth;
static_assert(V == FusedVec::size(), "the bfloat16 tile uses 512-bit vectors");

// One float vector of units in each of N rows of bfloat16 buffers (float32 pre-activations),
// computed in lockstep: RowPackLanes with a conversion on every load and store.
template <int N>
struct Bf16RowPackLanes {
  using Compute = VecPack<N>;
  static constexpr int64_t width = V;
  static Compute load(const float* p, int64_t row_stride) {
    return RowPackLanes<N>::load(p, row_stride);
  }
  static Compute load(const Bf16* p, int64_t row_stride) {
    Compute out;
    each<N>([&](int i) { at::vec::load_to_float<Bf16>(p + i * row_stride, out.v[i]); });
    return out;
  }
  // vcvtneps2bf16: one instruction for at::vec's eight-instruction rounding (both round to
  // nearest even; it treats float32 subnormals as zero, which are far below bfloat16's
  // resolution of the values here).
  static void store(Bf16* p, int64_t row_stride, const Compute& v) {
    each<N>([&](int i) {
      const __m256bh packed = _mm512_cvtneps_pbh(v.v[i]);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(p + i * row_stride),
                          reinterpret_cast<const __m256i&>(packed));
    });
  }
};

// The forward units of a bfloat16 step whose pre-activations are float32.
template <typename scalar_t, typename L>
struct ForwardUnitsFloatPreact {
  FUSEDLSTM_FLATTEN static void run(const PointwiseForwardArgs& a, int64_t row, int64_t j) {
    forward_units<scalar_t, L, float>(a, row, j);
  }
};

// `rows` (bfloat16 bits) times a weight packed as [block][k / 2][gate][lane][k % 2].
using Bf16Operand = Operand<uint16_t>;

// Elements k and k + 1 of a row as one 32-bit pair in every lane (k + 1 past the row's end: 0,
// and not read).
inline __m512bh broadcast_pair(const uint16_t* row, int64_t k, bool full) {
  uint32_t bits = row[k];
  if (full) std::memcpy(&bits, row + k, sizeof(bits));
  return reinterpret_cast<__m512bh>(_mm512_set1_epi32(static_cast<int>(bits)));
}

// Adds the k in [k0, k1) part (k0 even) of op.rows op.W^T for R rows x the C vectors of one
// block (the LSTM's 4 gates, the GRU's 3, the RNN's 4 vectors of units) into the float32
// pre-activations of the target (see TileTarget for `init`).
// Flattened: where GCC leaves one of the lambdas below out of line, the accumulators' address
// escapes and it stores all of them to the stack on every k pair (docs/performance.md). Not
// inlined: inside the pass loop of its caller GCC kept the GRU's 4 x 3 accumulators on the stack
// (bfloat16 GRU inference T=100 B=64 H=512 26 -> 58 ms).
template <int R, int C>
__attribute__((noinline)) FUSEDLSTM_FLATTEN inline void bf16_accumulate(
    const TileTarget& t, const Bf16Operand& op, int64_t row0, int64_t block, int64_t k0,
    int64_t k1, const WeightPrefetch& prefetch) {
  const int64_t K = op.inner;
  const int64_t pairs = (K + 1) / 2;
  const uint16_t* w = op.packed + block * pairs * C * V * 2;
  const uint16_t* rows[R];
  each<R>([&](int r) { rows[r] = op.rows + (row0 + r) * op.stride; });
  __m512 acc[R][C];
  each<R>([&](int r) { each<C>([&](int c) { acc[r][c] = _mm512_setzero_ps(); }); });
  const auto pair_step = [&](int64_t k, bool full) {
    const uint16_t* wk = w + (k / 2) * C * V * 2;
    prefetch.at((k - k0) / 2);
    __m512bh wv[C];
    each<C>([&](int c) {
      wv[c] = reinterpret_cast<__m512bh>(_mm512_loadu_si512(wk + c * V * 2));
    });
    each<R>([&](int r) {
      const __m512bh x = broadcast_pair(rows[r], k, full);
      each<C>([&](int c) { acc[r][c] = _mm512_dpbf16_ps(acc[r][c], wv[c], x); });
    });
  };
  const int64_t full_end = std::min(k1, K & ~int64_t{1});
  int64_t k = k0;
  for (; k < full_end; k += 2) pair_step(k, /*full=*/true);
  if (k < k1) pair_step(k, /*full=*/false);  // odd K: the last k alone
  add_tile_sums<R, C>(t, row0, block, acc);
}

// The weights a k pass [k0, k1) (k0 even) of a bfloat16 tile of C vectors reads for one block.
template <int C>
inline WeightRange bf16_pass_weights(const Bf16Operand& op, int64_t block, int64_t k0,
                                     int64_t k1) {
  const int64_t pairs = (op.inner + 1) / 2;
  const uint16_t* w = op.packed + (block * pairs + k0 / 2) * C * V * 2;
  return {reinterpret_cast<const char*>(w), ((k1 + 1) / 2 - k0 / 2) * C * V * 2 * 2};
}

// The bfloat16 tiles' k per pass over the row tiles: 512 k (256 pairs), 64 KiB of a block's
// weights as in a float32 pass of 256 k. On an AMD Zen 5 (L1d 48 KiB, L2 1 MiB) with the six-row
// tile, 512 ran fastrnns and sentiment 4-6% faster than 256 (docs/performance-by-machine.md).
constexpr int64_t kBf16InnerChunk = 512;

// The LSTM's bfloat16 tile: 4 rows, or 6 where the rows fill whole tiles (24 accumulators, 4
// weight vectors and a broadcast of the 32 zmm), as the float32 tile.
struct Bf16Tile {
  static constexpr int kRows = fused_rows<4>();
  static constexpr int kWideRows = 6;
  static constexpr int64_t kInnerChunk = kBf16InnerChunk;
  static int64_t rows(const FusedStepArgs& a) { return a.pointwise.rows; }
  static TilePart<Bf16Operand> input(const FusedStepArgs& a) {
    return {input_operand<uint16_t>(a), lstm_target(a, /*init=*/true)};
  }
  static TilePart<Bf16Operand> recurrent(const FusedStepArgs& a) {
    return {recurrent_operand<uint16_t>(a), lstm_target(a, /*init=*/false)};
  }
  template <int R>
  static void accumulate(const TileTarget& t, const Bf16Operand& op, int64_t row0,
                         int64_t block, int64_t k0, int64_t k1, const WeightPrefetch& prefetch) {
    bf16_accumulate<R, 4>(t, op, row0, block, k0, k1, prefetch);
  }
  static WeightRange pass_weights(const Bf16Operand& op, int64_t block, int64_t k0, int64_t k1) {
    return bf16_pass_weights<4>(op, block, k0, k1);
  }
  static void gate_math(const FusedStepArgs& a, int64_t row0, int64_t rows, int64_t block) {
    block_units<ForwardUnitsFloatPreact, Bf16, Bf16RowPackLanes>(a.pointwise, row0, rows, block);
  }
};

// The GRU's / RNN's forward units of a bfloat16 step whose x_part and h_part are float32.
template <class Math>
struct StateForwardFloatPreact {
  template <typename scalar_t, typename L>
  struct Units {
    FUSEDLSTM_FLATTEN static void run(const StateForwardArgs& a, int64_t row, int64_t j) {
      state_forward_units<Math, scalar_t, L, float>(a, row, j);
    }
  };
};

// The GRU's and RNN's bfloat16 tile: the float32 one's columns and parts (fused_state_kernel.h)
// on bfloat16 operands, the k pairs of bf16_accumulate, the cell on bfloat16 h with float32
// sums.
template <class Math>
struct Bf16StateTile : StateTile<Math, uint16_t> {
  using Base = StateTile<Math, uint16_t>;
  static constexpr int64_t kInnerChunk = kBf16InnerChunk;
  template <int R>
  static void accumulate(const TileTarget& t, const Bf16Operand& op, int64_t row0,
                         int64_t block, int64_t k0, int64_t k1, const WeightPrefetch& prefetch) {
    bf16_accumulate<R, Base::kVectors>(t, op, row0, block, k0, k1, prefetch);
  }
  static WeightRange pass_weights(const Bf16Operand& op, int64_t block, int64_t k0, int64_t k1) {
    return bf16_pass_weights<Base::kVectors>(op, block, k0, k1);
  }
  static void gate_math(const FusedStateStepArgs& a, int64_t row0, int64_t rows, int64_t block) {
    Base::template units_of_block<StateForwardFloatPreact<Math>::template Units, Bf16,
                                  Bf16RowPackLanes>(a, row0, rows, block);
  }
};

// The backward units of a bfloat16 step whose dL/dh from the later step (grad_h_extra) is
// float32.
template <typename scalar_t, typename L>
struct BackwardUnitsFloatExtra {
  FUSEDLSTM_FLATTEN static void run(const PointwiseBackwardArgs& a, int64_t row, int64_t j) {
    backward_units<scalar_t, L, float>(a, row, j);
  }
};

// The backward's recurrent GEMM for R rows and NB blocks of V output units j, as the float32
// fused_backward_gemm: grad_h_state[row][j] (float32) = sum over (gate g, unit u) of
// grad_gates_next[row][g * H + u] (bfloat16) * W_hh[g * H + u][j], u in pairs (adjacent in a
// row of gate gradients, so one 32-bit broadcast each).
// (flattened as bf16_accumulate)
template <int R, int NB>
FUSEDLSTM_FLATTEN inline void bf16_backward_gemm(const FusedBackwardArgs& a, int64_t row0,
                                                  int64_t block0) {
  const int64_t H = a.hidden;
  const int64_t pairs = (H + 1) / 2;
  const int64_t block_stride = pairs * 4 * V * 2;
  const uint16_t* w = static_cast<const uint16_t*>(a.packed_weight) + block0 * block_stride;
  const uint16_t* dg = static_cast<const uint16_t*>(a.step.grad_gates_next) + row0 * 4 * H;
  __m512 acc[R][NB];
  each<R>([&](int r) { each<NB>([&](int b) { acc[r][b] = _mm512_setzero_ps(); }); });
  const auto pair_step = [&](int64_t u, bool full) {
    each<4>([&](int g) {
      const uint16_t* wk = w + ((u / 2) * 4 + g) * V * 2;
      __m512bh wv[NB];
      each<NB>([&](int b) {
        wv[b] = reinterpret_cast<__m512bh>(_mm512_loadu_si512(wk + b * block_stride));
      });
      each<R>([&](int r) {
        const __m512bh d = broadcast_pair(dg + r * 4 * H + g * H, u, full);
        each<NB>([&](int b) { acc[r][b] = _mm512_dpbf16_ps(acc[r][b], wv[b], d); });
      });
    });
  };
  int64_t u = 0;
  for (; u + 1 < H; u += 2) pair_step(u, /*full=*/true);
  if (u < H) pair_step(u, /*full=*/false);  // odd H: the last unit alone
  float* out = static_cast<float*>(a.step.grad_h_state) + row0 * H;
  each<R>([&](int r) {
    each<NB>([&](int b) {
      const int64_t j0 = (block0 + b) * V;
      const int64_t lanes = std::min<int64_t>(V, H - j0);
      const __mmask16 mask = static_cast<__mmask16>((1u << lanes) - 1u);
      _mm512_mask_storeu_ps(out + r * H + j0, mask, acc[r][b]);
    });
  });
}

struct Bf16BackwardTile {
  static constexpr int kRows = fused_rows<kBackwardBlocks>();
  template <int R, int NB>
  static void gemm(const FusedBackwardArgs& a, int64_t row0, int64_t block0) {
    bf16_backward_gemm<R, NB>(a, row0, block0);
  }
  static void gate_math(const PointwiseBackwardArgs& a, int64_t block) {
    block_units<BackwardUnitsFloatExtra, Bf16, Bf16RowPackLanes>(a, 0, a.rows, block);
  }
};

void forward_blocks(const FusedStepArgs& a, int64_t block_begin, int64_t block_end) {
  fused_forward_blocks_with<Bf16Tile>(a, block_begin, block_end);
}

void backward_blocks(const FusedBackwardArgs& a, int64_t block_begin, int64_t block_end) {
  fused_backward_blocks_with<Bf16BackwardTile>(a, block_begin, block_end);
}

void state_forward_blocks(const FusedStateStepArgs& a, int64_t block_begin, int64_t block_end) {
  with_state_cell(a.state.cell, [&](auto math) {
    fused_forward_blocks_with<Bf16StateTile<decltype(math)>>(a, block_begin, block_end);
  });
}

}  // namespace
}  // namespace CPU_CAPABILITY

Bf16FusedKernels bf16_fused_kernels() {
  return {&CPU_CAPABILITY::forward_blocks, &CPU_CAPABILITY::backward_blocks,
          &CPU_CAPABILITY::state_forward_blocks};
}

}  // namespace fusedlstm::cpu

// An emulation of CUDA's warp matrix functions (nvcuda::wmma, the m16n16k16 shape with float
// accumulators) for the SIMT emulation. CUDA leaves the fragment layout unspecified, so a kernel
// that only fills, loads, multiplies and stores fragments cannot tell how it is held: here every
// lane holds the whole 16x16 tile. Loads are plain reads by every lane; a store is made by lane 0
// between two warp meetings, as a warp-collective operation (so a lane reading the stored tile
// without a barrier after it is a race ThreadSanitizer reports). mma_sync sums over k in
// increasing order in float; a tensor core's order and rounding differ, so tests compare with
// tolerances, not bits.
#pragma once

#if defined(__CUDACC__)
#error "fusedlstm/simt/wmma.h emulates CUDA on the host; nvcc builds use <mma.h>"
#endif

namespace nvcuda::wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

// x[r * 16 + c] holds element (r, c) of the tile: (i, k) for matrix_a, (k, j) for matrix_b,
// (i, j) for the accumulator.
template <class Use, int M, int N, int K, class T, class Layout = void>
struct fragment {
  static_assert(M == 16 && N == 16 && K == 16, "the emulation models m16n16k16 only");
  static constexpr int num_elements = 256;
  T x[num_elements];
};

template <class Use, class T, class Layout>
inline void load_matrix_sync(fragment<Use, 16, 16, 16, T, Layout>& f, const T* p, unsigned ldm) {
  constexpr bool row_major_tile = std::is_same_v<Layout, row_major>;
  for (int r = 0; r < 16; ++r) {
    for (int c = 0; c < 16; ++c) {
      // matrix_a row_major: (i, k) at p[i * ldm + k]; matrix_b row_major: (k, j) at p[k * ldm + j]
      f.x[r * 16 + c] = row_major_tile ? p[r * ldm + c] : p[c * ldm + r];
    }
  }
}

inline void load_matrix_sync(fragment<accumulator, 16, 16, 16, float>& f, const float* p,
                             unsigned ldm, layout_t layout) {
  for (int r = 0; r < 16; ++r) {
    for (int c = 0; c < 16; ++c) {
      f.x[r * 16 + c] = layout == mem_row_major ? p[r * ldm + c] : p[c * ldm + r];
    }
  }
}

template <class Use, class T, class Layout>
inline void fill_fragment(fragment<Use, 16, 16, 16, T, Layout>& f, T value) {
  for (T& element : f.x) element = value;
}

template <class T, class LayoutA, class LayoutB>
inline void mma_sync(fragment<accumulator, 16, 16, 16, float>& d,
                     const fragment<matrix_a, 16, 16, 16, T, LayoutA>& a,
                     const fragment<matrix_b, 16, 16, 16, T, LayoutB>& b,
                     const fragment<accumulator, 16, 16, 16, float>& c) {
  fragment<accumulator, 16, 16, 16, float> sum;
  for (int i = 0; i < 16; ++i) {
    for (int j = 0; j < 16; ++j) {
      float total = c.x[i * 16 + j];
      for (int k = 0; k < 16; ++k) {
        total += static_cast<float>(a.x[i * 16 + k]) * static_cast<float>(b.x[k * 16 + j]);
      }
      sum.x[i * 16 + j] = total;
    }
  }
  d = sum;
}

inline void store_matrix_sync(float* p, const fragment<accumulator, 16, 16, 16, float>& f,
                              unsigned ldm, layout_t layout) {
  __syncwarp();
  if (threadIdx.x % warpSize == 0) {
    for (int r = 0; r < 16; ++r) {
      for (int c = 0; c < 16; ++c) {
        (layout == mem_row_major ? p[r * ldm + c] : p[c * ldm + r]) = f.x[r * 16 + c];
      }
    }
  }
  __syncwarp();
}

}  // namespace nvcuda::wmma

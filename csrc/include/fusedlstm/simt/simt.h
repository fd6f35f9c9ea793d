// A SIMT emulation of the CUDA device API, for running the project's own kernel sources as host
// C++ on CPU threads (tests, ThreadSanitizer). Each emulated CUDA thread is an OS thread, so a
// missing __syncthreads() or grid barrier is a real data race that ThreadSanitizer reports.
//
// Modelled: threadIdx / blockIdx / blockDim / gridDim, __syncthreads(), dynamic shared memory per
// block (FUSEDLSTM_DYNAMIC_SHARED in device_api.h; filled with 0xFF bytes, NaN as floats, because
// real shared memory starts uninitialised), warp shuffles / votes / __syncwarp over warps of 32
// (the mask must name exactly the warp's live lanes), atomics, __threadfence(), and
// cooperative_groups::this_grid().sync() for cooperative launches (every block resident at once).
// Not modelled, and so a compile error here: static __shared__ arrays, inline PTX (it does not
// assemble as host code), and anything not declared below.
#pragma once

#if defined(__CUDACC__)
#error "fusedlstm/simt/simt.h emulates CUDA on the host; nvcc builds use the real device API"
#endif

#include <array>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <type_traits>

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
using uint3 = dim3;

// The emulated thread's coordinates: OS-thread-local, set before the kernel body runs.
inline thread_local uint3 threadIdx;
inline thread_local uint3 blockIdx;
inline thread_local dim3 blockDim;
inline thread_local dim3 gridDim;
constexpr int warpSize = 32;

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define C10_LAUNCH_BOUNDS_1(max_threads)
#define C10_LAUNCH_BOUNDS_2(max_threads, min_blocks)
#define __shared__ \
  _Pragma("GCC error \"static __shared__ is not emulated: use FUSEDLSTM_DYNAMIC_SHARED\"")

namespace fusedlstm::simt {

// Fails the current launch with `message` (the launch reports it to its caller as an
// exception); the calling emulated thread stops as if it had returned.
[[noreturn]] void kernel_error(const char* message);

void sync_block();
void sync_grid();
unsigned char* dynamic_shared_memory();

// One round of the calling warp: every live lane publishes `value` and receives what each lane
// published. `mask` must name exactly the warp's live lanes, and all of them must take part.
std::array<uint64_t, 32> warp_round(unsigned mask, uint64_t value, const char* what);

// The shuffles' common body: lane `self` receives the value of lane source(self).
template <typename T, typename Source>
T shuffle(unsigned mask, T value, Source source, const char* what);

// The calling thread's linear index in its block: warps are its consecutive runs of 32.
inline int linear_thread() {
  return static_cast<int>(threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z));
}

// Lane `lane` (mod width) of the width-sized segment that holds the calling lane.
inline int in_segment(int self, int lane, int width) { return (self / width) * width + lane % width; }

template <typename T, typename Source>
T shuffle(unsigned mask, T value, Source source, const char* what) {
  static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= sizeof(uint64_t),
                "the emulated warp shuffles move values of at most 8 bytes");
  uint64_t bits = 0;
  std::memcpy(&bits, &value, sizeof(T));
  const auto published = warp_round(mask, bits, what);
  T out;
  std::memcpy(&out, &published[source(linear_thread() % warpSize)], sizeof(T));
  return out;
}

inline unsigned warp_ballot(unsigned mask, bool predicate) {
  const auto published = warp_round(mask, predicate ? 1 : 0, "__ballot_sync");
  unsigned bits = 0;
  for (int lane = 0; lane < warpSize; ++lane) {
    if ((mask >> lane) & 1u) bits |= static_cast<unsigned>(published[lane]) << lane;
  }
  return bits;
}

// Launches `body` on grid x block emulated threads and waits for all of them. Blocks of a
// non-cooperative launch run a few at a time; a cooperative launch runs every block at once and
// is refused, as cudaLaunchCooperativeKernel refuses a grid that cannot be resident, when it
// has more than max_cooperative_threads(). Throws std::runtime_error for a refused or invalid
// launch and with the kernel's message when a thread called kernel_error().
// Returns false only for a refused cooperative launch.
bool launch_body(dim3 grid, dim3 block, size_t shared_bytes, bool cooperative,
                 const std::function<void()>& body);

// The most threads a cooperative launch may have: the emulation's "every block resident" limit.
int64_t max_cooperative_threads();
// The dynamic shared memory one block may have (an sm_90 block's opt-in maximum).
constexpr size_t kMaxDynamicSharedBytes = 227 * 1024;
constexpr unsigned kMaxThreadsPerBlock = 1024;
// Launches so far in this process: tests check the emulation really ran.
int64_t launch_count();

template <typename... Params, typename... Args>
void launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared_bytes,
            const Args&... args) {
  launch_body(grid, block, shared_bytes, /*cooperative=*/false, [&] { kernel(args...); });
}

// cudaLaunchCooperativeKernel: false (nothing ran) when the grid cannot be resident at once.
template <typename... Params, typename... Args>
[[nodiscard]] bool launch_cooperative(void (*kernel)(Params...), dim3 grid, dim3 block,
                                      size_t shared_bytes, const Args&... args) {
  return launch_body(grid, block, shared_bytes, /*cooperative=*/true, [&] { kernel(args...); });
}

template <typename T>
constexpr bool kAtomicType = std::is_same_v<T, int> || std::is_same_v<T, unsigned> ||
                             std::is_same_v<T, unsigned long long> ||
                             std::is_same_v<T, long long> || std::is_same_v<T, float> ||
                             std::is_same_v<T, double>;

}  // namespace fusedlstm::simt

inline void __syncthreads() { ::fusedlstm::simt::sync_block(); }
inline void __syncwarp(unsigned mask = 0xffffffffu) {
  ::fusedlstm::simt::warp_round(mask, 0, "__syncwarp");
}
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __threadfence_block() { std::atomic_thread_fence(std::memory_order_seq_cst); }

template <typename T>
T __shfl_sync(unsigned mask, T value, int src_lane, int width = warpSize) {
  return ::fusedlstm::simt::shuffle(
      mask, value,
      [src_lane, width](int self) { return ::fusedlstm::simt::in_segment(self, src_lane, width); },
      "__shfl_sync");
}

template <typename T>
T __shfl_down_sync(unsigned mask, T value, unsigned delta, int width = warpSize) {
  return ::fusedlstm::simt::shuffle(
      mask, value,
      [delta, width](int self) {
        const int lane = self % width + static_cast<int>(delta);
        return lane < width ? self + static_cast<int>(delta) : self;
      },
      "__shfl_down_sync");
}

template <typename T>
T __shfl_up_sync(unsigned mask, T value, unsigned delta, int width = warpSize) {
  return ::fusedlstm::simt::shuffle(
      mask, value,
      [delta, width](int self) {
        const int lane = self % width - static_cast<int>(delta);
        return lane >= 0 ? self - static_cast<int>(delta) : self;
      },
      "__shfl_up_sync");
}

template <typename T>
T __shfl_xor_sync(unsigned mask, T value, int lane_mask, int width = warpSize) {
  return ::fusedlstm::simt::shuffle(
      mask, value,
      [lane_mask, width](int self) {
        const int lane = (self % width) ^ lane_mask;
        return lane < width ? (self / width) * width + lane : self;
      },
      "__shfl_xor_sync");
}

inline unsigned __ballot_sync(unsigned mask, int predicate) {
  return ::fusedlstm::simt::warp_ballot(mask, predicate != 0);
}
inline int __any_sync(unsigned mask, int predicate) {
  return ::fusedlstm::simt::warp_ballot(mask, predicate != 0) != 0;
}
inline int __all_sync(unsigned mask, int predicate) {
  return ::fusedlstm::simt::warp_ballot(mask, predicate != 0) == mask;
}

template <typename T, typename = std::enable_if_t<::fusedlstm::simt::kAtomicType<T>>>
T atomicAdd(T* address, T value) {
  return std::atomic_ref<T>(*address).fetch_add(value);
}
template <typename T, typename = std::enable_if_t<::fusedlstm::simt::kAtomicType<T>>>
T atomicSub(T* address, T value) {
  return std::atomic_ref<T>(*address).fetch_sub(value);
}
template <typename T, typename = std::enable_if_t<::fusedlstm::simt::kAtomicType<T>>>
T atomicExch(T* address, T value) {
  return std::atomic_ref<T>(*address).exchange(value);
}
template <typename T, typename = std::enable_if_t<std::is_integral_v<T>>>
T atomicCAS(T* address, T compare, T value) {
  std::atomic_ref<T>(*address).compare_exchange_strong(compare, value);
  return compare;
}
template <typename T, typename = std::enable_if_t<std::is_integral_v<T>>>
T atomicMax(T* address, T value) {
  std::atomic_ref<T> ref(*address);
  T old = ref.load();
  while (old < value && !ref.compare_exchange_weak(old, value)) {
  }
  return old;
}
template <typename T, typename = std::enable_if_t<std::is_integral_v<T>>>
T atomicMin(T* address, T value) {
  std::atomic_ref<T> ref(*address);
  T old = ref.load();
  while (value < old && !ref.compare_exchange_weak(old, value)) {
  }
  return old;
}

template <typename T>
T __ldg(const T* address) {
  return *address;
}
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline float __expf(float x) { return ::expf(x); }
inline float __fdividef(float a, float b) { return a / b; }

namespace cooperative_groups {

struct thread_block {
  void sync() const { ::fusedlstm::simt::sync_block(); }
};
inline thread_block this_thread_block() { return {}; }

struct grid_group {
  void sync() const { ::fusedlstm::simt::sync_grid(); }
};
inline grid_group this_grid() { return {}; }

}  // namespace cooperative_groups

// The emulated launcher of the persistent kernels: the same kernel source as the GPU build
// (cuda/persistent_kernels.cuh), compiled as host C++ and launched cooperatively on the SIMT
// emulation, which refuses a launch whose blocks could not all be resident, as a GPU does.
#include <fusedlstm/simt/simt.h>

#include <c10/util/Exception.h>

#include <atomic>
#include <stdexcept>

#include "../cuda/persistent_kernels.cuh"
#include "../cuda/persistent_state_kernels.cuh"
#include "cuda_simt.h"

namespace fusedlstm::simt {
namespace {

// A few multiprocessors, so that the tests' small layers split into several blocks and the
// grid barrier between steps matters.
constexpr int64_t kEmulatedMultiprocessors = 8;
// An sm_90 block's opt-in shared memory maximum.
constexpr size_t kEmulatedSharedBytes = 227 * 1024;

std::atomic<int64_t> cooperative_launches{0};
std::atomic<int64_t> tensor_core_launches{0};

struct EmulatedCooperativeLaunch {
  template <typename Params>
  bool operator()(void (*kernel)(Params), const kernels::PersistentGeometry& geometry,
                  const Params& params) const {
    bool launched = false;
    try {
      launched = launch_cooperative(kernel, dim3(geometry.blocks), dim3(geometry.threads),
                                    geometry.shared_bytes, params);
    } catch (const std::exception& error) {
      TORCH_CHECK(false, error.what());
    }
    if (launched) cooperative_launches.fetch_add(1, std::memory_order_relaxed);
    if (launched && geometry.tensor_cores) {
      tensor_core_launches.fetch_add(1, std::memory_order_relaxed);
    }
    return launched;
  }
};

}  // namespace

int64_t SimtKernels::multiprocessors(c10::Device /*device*/) { return kEmulatedMultiprocessors; }

bool SimtKernels::has_tensor_cores(c10::Device /*device*/) { return true; }

int64_t SimtKernels::resident_blocks(c10::ScalarType /*dtype*/, bool /*backward*/,
                                     bool /*tensor_cores*/, int threads, size_t shared_bytes) {
  if (shared_bytes > kEmulatedSharedBytes) return 0;
  return max_cooperative_threads() / threads;
}

bool SimtKernels::can_launch_persistent(c10::Device /*device*/) { return true; }

bool SimtKernels::launch(const kernels::PersistentForwardParams& params, c10::ScalarType dtype,
                         const kernels::PersistentGeometry& geometry) {
  return kernels::launch_persistent(params, dtype, geometry, EmulatedCooperativeLaunch{});
}

bool SimtKernels::launch(const kernels::PersistentBackwardParams& params, c10::ScalarType dtype,
                         const kernels::PersistentGeometry& geometry) {
  return kernels::launch_persistent(params, dtype, geometry, EmulatedCooperativeLaunch{});
}

int64_t SimtKernels::resident_state_blocks(StateCell /*cell*/, c10::ScalarType dtype,
                                           bool backward, bool tensor_cores, int threads,
                                           size_t shared_bytes) {
  return resident_blocks(dtype, backward, tensor_cores, threads, shared_bytes);
}

bool SimtKernels::launch(const kernels::PersistentStateForwardParams& params,
                         c10::ScalarType dtype, const kernels::PersistentGeometry& geometry) {
  return kernels::launch_persistent_state(params, dtype, geometry, EmulatedCooperativeLaunch{});
}

bool SimtKernels::launch(const kernels::PersistentStateBackwardParams& params,
                         c10::ScalarType dtype, const kernels::PersistentGeometry& geometry) {
  return kernels::launch_persistent_state(params, dtype, geometry, EmulatedCooperativeLaunch{});
}

int64_t emulated_cooperative_launches() {
  return cooperative_launches.load(std::memory_order_relaxed);
}

int64_t emulated_tensor_core_launches() {
  return tensor_core_launches.load(std::memory_order_relaxed);
}

}  // namespace fusedlstm::simt

// The emulated launcher of the CUDA pointwise kernels: the same kernel source as the GPU build
// (cuda/pointwise_kernels.cuh), compiled as host C++ and launched on the SIMT emulation.
#include <fusedlstm/simt/simt.h>

#include <c10/util/Exception.h>

#include <stdexcept>

#include "../cuda/pointwise_kernels.cuh"
#include "cuda_simt.h"

namespace fusedlstm::simt {
namespace {

struct EmulatedLaunch {
  template <typename Args>
  void operator()(void (*kernel)(Args), int blocks, int threads, const Args& args) const {
    try {
      launch(kernel, dim3(blocks), dim3(threads), 0, args);
    } catch (const std::exception& error) {
      TORCH_CHECK(false, error.what());
    }
  }
};

}  // namespace

void SimtKernels::forward(const PointwiseForwardArgs& args) {
  kernels::launch_pointwise(args, EmulatedLaunch{});
}

void SimtKernels::backward(const PointwiseBackwardArgs& args) {
  kernels::launch_pointwise(args, EmulatedLaunch{});
}

void SimtKernels::state_forward(const StateForwardArgs& args) {
  kernels::launch_state_pointwise(args, EmulatedLaunch{});
}

void SimtKernels::state_backward(const StateBackwardArgs& args) {
  kernels::launch_state_pointwise(args, EmulatedLaunch{});
}

int64_t emulated_launches() { return launch_count(); }

}  // namespace fusedlstm::simt

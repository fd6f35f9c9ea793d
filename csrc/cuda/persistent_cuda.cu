// The GPU launcher of the persistent kernels (persistent_kernels.cuh): an occupancy query that
// says whether every block can be resident, and cudaLaunchCooperativeKernel on PyTorch's current
// stream, whose refusal is reported (never a grid barrier waited on by blocks that cannot run).
// The emulated twin is simt/persistent_simt.cpp.
#include "pointwise_cuda.h"

#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGraphsC10Utils.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAStream.h>

#include <cstring>

#include "persistent_kernels.cuh"
#include "persistent_state_kernels.cuh"

namespace fusedlstm::cuda {
namespace {

constexpr size_t kDefaultSharedBytes = 48 * 1024;  // above it a kernel must opt in

template <typename Params>
void allow_shared_bytes(void (*kernel)(Params), size_t shared_bytes) {
  if (shared_bytes <= kDefaultSharedBytes) return;
  C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                      static_cast<int>(shared_bytes)));
}

// The steps in device memory: a pinned host copy, copied on the current stream (the caching
// host allocator keeps the host block until the copy has run).
template <typename Step>
const Step* on_device(const Step* steps, int64_t count, at::Tensor& holder) {
  const int64_t bytes = count * static_cast<int64_t>(sizeof(Step));
  at::Tensor host = at::empty({bytes}, at::TensorOptions().dtype(at::kByte).pinned_memory(true));
  std::memcpy(host.data_ptr(), steps, static_cast<size_t>(bytes));
  holder = host.to(at::Device(at::kCUDA, c10::cuda::current_device()), /*non_blocking=*/true);
  return static_cast<const Step*>(holder.const_data_ptr());
}

struct GpuCooperativeLaunch {
  template <typename Params>
  bool operator()(void (*kernel)(Params), const kernels::PersistentGeometry& geometry,
                  const Params& params) const {
    allow_shared_bytes(kernel, geometry.shared_bytes);
    at::Tensor steps_holder;  // freed after the launch: the allocator orders reuse on the stream
    Params device_params = params;
    device_params.steps = on_device(params.steps, params.count, steps_holder);
    void* arguments[] = {&device_params};
    const cudaError_t status = cudaLaunchCooperativeKernel(
        reinterpret_cast<const void*>(kernel), dim3(geometry.blocks), dim3(geometry.threads),
        arguments, geometry.shared_bytes, c10::cuda::getCurrentCUDAStream());
    if (status == cudaErrorCooperativeLaunchTooLarge) {
      (void)cudaGetLastError();  // clear it: the caller runs the steps one at a time
      return false;
    }
    C10_CUDA_CHECK(status);
    return true;
  }
};

}  // namespace

int64_t CudaKernels::multiprocessors(c10::Device /*device*/) {
  return at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
}

bool CudaKernels::has_tensor_cores(c10::Device /*device*/) {
  return at::cuda::getCurrentDeviceProperties()->major >= 8;  // wmma on bfloat16: sm_80
}

int64_t CudaKernels::resident_blocks(c10::ScalarType dtype, bool backward, bool tensor_cores,
                                     int threads, size_t shared_bytes) {
  const cudaDeviceProp* props = at::cuda::getCurrentDeviceProperties();
  if (!props->cooperativeLaunch || shared_bytes > props->sharedMemPerBlockOptin) return 0;
  int per_multiprocessor = 0;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, "fusedlstm occupancy", [&] {
    const auto query = [&](auto kernel) {
      allow_shared_bytes(kernel, shared_bytes);
      C10_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(
          &per_multiprocessor, kernel, threads, shared_bytes));
    };
    if (backward) {
      query(kernels::persistent_kernel_for<scalar_t>(kernels::PersistentBackwardParams{},
                                                     tensor_cores));
    } else {
      query(kernels::persistent_kernel_for<scalar_t>(kernels::PersistentForwardParams{},
                                                     tensor_cores));
    }
  });
  return static_cast<int64_t>(per_multiprocessor) * props->multiProcessorCount;
}

int64_t CudaKernels::resident_state_blocks(StateCell cell, c10::ScalarType dtype, bool backward,
                                           bool tensor_cores, int threads, size_t shared_bytes) {
  const cudaDeviceProp* props = at::cuda::getCurrentDeviceProperties();
  if (!props->cooperativeLaunch || shared_bytes > props->sharedMemPerBlockOptin) return 0;
  int per_multiprocessor = 0;
  const auto query = [&](auto kernel) {
    allow_shared_bytes(kernel, shared_bytes);
    C10_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_multiprocessor, kernel,
                                                                 threads, shared_bytes));
  };
  if (backward) {
    kernels::with_persistent_state_kernel<kernels::PersistentStateBackwardParams>(
        cell, dtype, tensor_cores, query);
  } else {
    kernels::with_persistent_state_kernel<kernels::PersistentStateForwardParams>(
        cell, dtype, tensor_cores, query);
  }
  return static_cast<int64_t>(per_multiprocessor) * props->multiProcessorCount;
}

bool CudaKernels::can_launch_persistent(c10::Device /*device*/) {
  // The steps are copied from host memory at each launch, which a captured graph would replay
  // from a host buffer long freed.
  return c10::cuda::currentStreamCaptureStatusMayInitCtx() == c10::cuda::CaptureStatus::None;
}

bool CudaKernels::launch(const kernels::PersistentForwardParams& params, c10::ScalarType dtype,
                         const kernels::PersistentGeometry& geometry) {
  return kernels::launch_persistent(params, dtype, geometry, GpuCooperativeLaunch{});
}

bool CudaKernels::launch(const kernels::PersistentBackwardParams& params, c10::ScalarType dtype,
                         const kernels::PersistentGeometry& geometry) {
  return kernels::launch_persistent(params, dtype, geometry, GpuCooperativeLaunch{});
}

bool CudaKernels::launch(const kernels::PersistentStateForwardParams& params,
                         c10::ScalarType dtype, const kernels::PersistentGeometry& geometry) {
  return kernels::launch_persistent_state(params, dtype, geometry, GpuCooperativeLaunch{});
}

bool CudaKernels::launch(const kernels::PersistentStateBackwardParams& params,
                         c10::ScalarType dtype, const kernels::PersistentGeometry& geometry) {
  return kernels::launch_persistent_state(params, dtype, geometry, GpuCooperativeLaunch{});
}

}  // namespace fusedlstm::cuda

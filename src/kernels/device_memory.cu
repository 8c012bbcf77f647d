// Device memory and the device's name: thin wrappers over the CUDA runtime
// that throw attend::Error on failure. Under the emulator the same calls
// reach its stand-ins (host memory, NaN-filled when fresh). Chapter 11
// (docs/11-cuda.md); declared in attend/gpu_kernels.hpp.
#include "attend/cuda_or_emulator.hpp"
#include "attend/gpu_kernels.hpp"

namespace attend::kernels {

bool running_on_gpu() {
#ifdef __CUDACC__
  return true;
#else
  return false;
#endif
}

std::string device_name() {
  cudaDeviceProp properties{};
  check_cuda(cudaGetDeviceProperties(&properties, 0), "cudaGetDeviceProperties");
  return properties.name;
}

std::string gpu_unavailable_reason() {
#ifdef __CUDACC__
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) return cudaGetErrorString(status);
  return count == 0 ? "the CUDA runtime sees no device" : "";
#else
  return "";  // the emulator is always there
#endif
}

void* device_allocate(size_t bytes) {
  void* pointer = nullptr;
  if (bytes == 0) return nullptr;
  const cudaError_t status = cudaMalloc(&pointer, bytes);
  if (status != cudaSuccess) {
    throw Error("device_allocate: cannot allocate " + std::to_string(bytes) +
                " bytes of device memory: " + cudaGetErrorString(status));
  }
  return pointer;
}

void device_free(void* device_pointer) {
  if (device_pointer != nullptr) (void)cudaFree(device_pointer);  // in destructors: never throws
}

void copy_to_device(void* device_destination, const void* host_source, size_t bytes) {
  if (bytes == 0) return;
  check_cuda(cudaMemcpy(device_destination, host_source, bytes, cudaMemcpyHostToDevice),
             "copy_to_device");
}

void copy_to_host(void* host_destination, const void* device_source, size_t bytes) {
  if (bytes == 0) return;
  check_cuda(cudaMemcpy(host_destination, device_source, bytes, cudaMemcpyDeviceToHost),
             "copy_to_host");
}

void device_synchronize() { check_cuda(cudaDeviceSynchronize(), "device_synchronize"); }

}  // namespace attend::kernels

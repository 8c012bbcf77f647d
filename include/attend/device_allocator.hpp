// The caching allocator of device memory (chapter 11, docs/11-cuda.md,
// "Tensors on the device"). cudaMalloc and cudaFree are slow (they may
// synchronize the whole GPU), and a training step frees and allocates the
// same sizes every time; so a freed block is kept, by size, and handed out
// again: after the first step a step allocates nothing new. On top of
// device_allocate / device_free (attend/gpu_kernels.hpp).
#pragma once

#include <cstddef>
#include <cstdint>

namespace attend::kernels {

// A block of device memory of at least `bytes`, owned: it goes back to the
// cache (not to the device) when the DeviceBlock dies. A tensor storage on
// the device holds one.
class DeviceBlock {
 public:
  DeviceBlock() = default;
  explicit DeviceBlock(size_t bytes);  // from the cache, else device_allocate
  ~DeviceBlock();
  DeviceBlock(DeviceBlock&& other) noexcept;
  DeviceBlock& operator=(DeviceBlock&& other) noexcept;
  DeviceBlock(const DeviceBlock&) = delete;
  DeviceBlock& operator=(const DeviceBlock&) = delete;

  void* get() const { return pointer_; }  // device memory: for kernels and copies only
  size_t bytes() const { return bytes_; }  // as asked for

 private:
  void* pointer_ = nullptr;
  size_t bytes_ = 0;
};

// What the allocator holds. Sizes are rounded up to kDeviceBlockRounding.
struct DeviceMemoryStats {
  size_t bytes_in_use = 0;       // in live DeviceBlocks
  size_t peak_bytes_in_use = 0;  // the most in use at once (since the last reset)
  size_t bytes_cached = 0;       // freed blocks kept for reuse
  int64_t device_allocations = 0;  // device_allocate calls so far: constant once a step repeats
  int64_t reuses = 0;              // blocks handed out again from the cache
};

// Every block is a multiple of this many bytes (as PyTorch's allocator
// does), so that sizes that differ by a few elements share cached blocks.
constexpr size_t kDeviceBlockRounding = 512;

DeviceMemoryStats device_memory_stats();
void reset_peak_device_memory();  // peak = what is in use now
void empty_device_cache();        // gives every cached block back to the device

}  // namespace attend::kernels

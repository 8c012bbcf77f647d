// The CUDA emulator: g++ or clang++ build and run a .cu kernel unchanged, each
// CUDA thread a fiber (ucontext) so that __syncthreads is a real barrier. It
// also checks: a barrier not reached by every thread is reported, and shared
// memory is NaN at each block's start. Chapter 11 (docs/11-cuda.md). Only
// attend/cuda_or_emulator.hpp includes this header.
#pragma once

#include <math.h>  // expf, fmaxf, ... in the global namespace, as CUDA has them
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#include "attend/error.hpp"

#if defined(__SANITIZE_ADDRESS__)
#define ATTEND_EMULATOR_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ATTEND_EMULATOR_ASAN 1
#endif
#endif
#ifdef ATTEND_EMULATOR_ASAN
#include <sanitizer/common_interface_defs.h>
#endif

// --- the CUDA keywords ----------------------------------------------------------

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
// A __shared__ variable is one per block, seen by all its threads. Here it is
// a static variable (blocks run one at a time) in the linker section
// "attend_shared", which the emulator fills with NaN before each block.
#define __shared__ [[gnu::section("attend_shared"), gnu::aligned(16)]] static

// The start and end of that section, made by the linker (null when no kernel
// declares a __shared__ variable).
extern "C" {
extern unsigned char __start_attend_shared[] __attribute__((weak));
extern unsigned char __stop_attend_shared[] __attribute__((weak));
}

// --- the index variables ---------------------------------------------------------

struct uint3 {
  unsigned int x, y, z;
};

struct dim3 {
  unsigned int x, y, z;
  constexpr dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1)
      : x(x_), y(y_), z(z_) {}
};

// Where the running thread is, written by the emulator before it resumes a
// thread: plain globals, so that gdb can read them (`print threadIdx`) and
// test them in a breakpoint's condition. Kernels only read them (nvcc, in
// the CUDA=1 build that CI compiles, rejects a kernel that writes one).
inline uint3 threadIdx{0, 0, 0};
inline uint3 blockIdx{0, 0, 0};
inline dim3 blockDim{1, 1, 1};
inline dim3 gridDim{1, 1, 1};

// --- the part of the CUDA runtime API that Attend uses -----------------------------
// "Device memory" is host memory; a fresh allocation is filled with NaN
// (all bits set), so an output a kernel forgot to write shows.

enum cudaError_t { cudaSuccess = 0, cudaErrorInvalidValue = 1, cudaErrorMemoryAllocation = 2 };
enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4
};
struct cudaDeviceProp {
  char name[256];
};

inline const char* cudaGetErrorString(cudaError_t error) {
  switch (error) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
  }
  return "unknown error";
}
inline cudaError_t cudaMalloc(void** pointer, size_t bytes) {
  if (pointer == nullptr) return cudaErrorInvalidValue;
  *pointer = bytes == 0 ? nullptr : ::operator new(bytes, std::nothrow);
  if (bytes != 0 && *pointer == nullptr) return cudaErrorMemoryAllocation;
  if (bytes != 0) std::memset(*pointer, 0xFF, bytes);  // every float NaN
  return cudaSuccess;
}
inline cudaError_t cudaFree(void* pointer) {
  ::operator delete(pointer);
  return cudaSuccess;
}
inline cudaError_t cudaMemcpy(void* destination, const void* source, size_t bytes, cudaMemcpyKind) {
  if (bytes != 0) std::memcpy(destination, source, bytes);
  return cudaSuccess;
}
inline cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }  // launches finish before returning
inline cudaError_t cudaGetLastError() { return cudaSuccess; }        // launch errors throw at once
inline cudaError_t cudaGetDeviceProperties(cudaDeviceProp* properties, int /*device*/) {
  std::strncpy(properties->name, "CUDA emulator (fibers on the host CPU)", sizeof properties->name);
  return cudaSuccess;
}

// --- the emulator ------------------------------------------------------------------

namespace attend::cuda_emulator {

// CUDA's limits (compute capability 9.0) for a launch without special opt-ins.
constexpr unsigned kMaxThreadsPerBlock = 1024;
constexpr unsigned kMaxBlockDimZ = 64;
constexpr unsigned kMaxGridDimYZ = 65535;
constexpr size_t kMaxDynamicSharedBytes = 48 * 1024;

namespace detail {

#ifdef ATTEND_EMULATOR_ASAN
constexpr size_t kStackBytes = 256 * 1024;  // AddressSanitizer's reports run on the fiber's stack
#else
constexpr size_t kStackBytes = 64 * 1024;  // a kernel's frame is small
#endif

enum class FiberState { runnable, at_barrier, finished };

// One CUDA thread: its saved registers, its stack, where it waits.
struct Fiber {
  ucontext_t context;
  unsigned char* mapping = nullptr;  // guard page + stack
  FiberState state = FiberState::finished;
  const char* barrier_file = "";
  int barrier_line = 0;
  void* asan_fake_stack = nullptr;
  unsigned char* stack() const { return mapping + page_bytes(); }
  static size_t page_bytes() { return static_cast<size_t>(sysconf(_SC_PAGESIZE)); }
};

struct Emulator {
  std::mutex launch_mutex;                    // one launch at a time (blocks share the statics)
  std::vector<std::unique_ptr<Fiber>> fibers;  // as many as the largest block so far; stacks kept
  ucontext_t scheduler;                       // where a fiber returns to
  size_t current = 0;                         // the fiber running now
  bool running = false;
  void (*body)(void*) = nullptr;  // calls the kernel with its arguments
  void* body_argument = nullptr;
  std::exception_ptr error;
  std::unique_ptr<unsigned char[]> dynamic_shared;  // exactly the launch's bytes
  size_t dynamic_shared_bytes = 0;
  void* scheduler_fake_stack = nullptr;  // AddressSanitizer's bookkeeping of the switches
  const void* scheduler_stack_bottom = nullptr;
  size_t scheduler_stack_size = 0;

  ~Emulator() {
    for (auto& fiber : fibers) munmap(fiber->mapping, Fiber::page_bytes() + kStackBytes);
  }
};

inline Emulator& emulator() {
  static Emulator instance;
  return instance;
}

// AddressSanitizer must be told when the stack changes (no-ops without it).
inline void asan_start_switch(void** fake_stack_save, const void* bottom, size_t size) {
#ifdef ATTEND_EMULATOR_ASAN
  __sanitizer_start_switch_fiber(fake_stack_save, bottom, size);
#else
  (void)fake_stack_save, (void)bottom, (void)size;
#endif
}
inline void asan_finish_switch(void* fake_stack_save, const void** bottom_old, size_t* size_old) {
#ifdef ATTEND_EMULATOR_ASAN
  __sanitizer_finish_switch_fiber(fake_stack_save, bottom_old, size_old);
#else
  (void)fake_stack_save, (void)bottom_old, (void)size_old;
#endif
}

inline std::string coordinates(unsigned x, unsigned y, unsigned z) {
  return "(" + std::to_string(x) + ", " + std::to_string(y) + ", " + std::to_string(z) + ")";
}

inline uint3 thread_of(size_t t) {
  const auto i = static_cast<unsigned>(t);
  return {i % ::blockDim.x, i / ::blockDim.x % ::blockDim.y, i / (::blockDim.x * ::blockDim.y)};
}

// Where every fiber starts: run the kernel once, as thread `current`.
inline void fiber_main() {
  Emulator& e = emulator();
  asan_finish_switch(nullptr, &e.scheduler_stack_bottom, &e.scheduler_stack_size);
  try {
    e.body(e.body_argument);
  } catch (...) {
    if (!e.error) e.error = std::current_exception();
  }
  e.fibers[e.current]->state = FiberState::finished;
  asan_start_switch(nullptr, e.scheduler_stack_bottom, e.scheduler_stack_size);
  // Returning resumes uc_link, the scheduler.
}

// __syncthreads: mark this thread as waiting and hand over to the scheduler,
// which resumes it once every thread of the block waits at the same barrier.
inline void wait_at_barrier(const char* file, int line) {
  Emulator& e = emulator();
  if (!e.running) throw Error("__syncthreads at " + std::string(file) + ":" + std::to_string(line) + " called outside a kernel");
  Fiber& self = *e.fibers[e.current];
  self.state = FiberState::at_barrier;
  self.barrier_file = file;
  self.barrier_line = line;
  asan_start_switch(&self.asan_fake_stack, e.scheduler_stack_bottom, e.scheduler_stack_size);
  swapcontext(&self.context, &e.scheduler);
  asan_finish_switch(self.asan_fake_stack, &e.scheduler_stack_bottom, &e.scheduler_stack_size);
}

// After a round in which every thread ran until it waited or returned: throws
// unless all the waiting threads wait at one barrier and none returned.
inline void check_barrier(const char* kernel_name, size_t threads) {
  Emulator& e = emulator();
  const Fiber* first_waiting = nullptr;
  size_t waiting = 0, first_waiting_thread = 0, first_returned = threads, first_elsewhere = threads;
  for (size_t t = 0; t < threads; ++t) {
    const Fiber& f = *e.fibers[t];
    if (f.state == FiberState::finished) {
      if (first_returned == threads) first_returned = t;
      continue;
    }
    ++waiting;
    if (first_waiting == nullptr) {
      first_waiting = &f;
      first_waiting_thread = t;
    } else if ((f.barrier_line != first_waiting->barrier_line ||
                std::strcmp(f.barrier_file, first_waiting->barrier_file) != 0) &&
               first_elsewhere == threads) {
      first_elsewhere = t;
    }
  }
  if (waiting == 0 || (first_returned == threads && first_elsewhere == threads)) return;
  const std::string where = std::string(kernel_name) + ", block " +
                            coordinates(::blockIdx.x, ::blockIdx.y, ::blockIdx.z) + ": ";
  const std::string barrier = "__syncthreads at " + std::string(first_waiting->barrier_file) + ":" +
                              std::to_string(first_waiting->barrier_line);
  const auto thread_name = [](size_t t) {
    const uint3 i = thread_of(t);
    return "thread " + coordinates(i.x, i.y, i.z);
  };
  if (first_returned != threads) {
    throw Error(where + barrier + " was reached by " + std::to_string(waiting) + " of " +
                std::to_string(threads) + " threads; the others (the first: " +
                thread_name(first_returned) +
                ") returned without reaching it. Every thread of a block must reach every "
                "__syncthreads (on a GPU this hangs or computes garbage)");
  }
  const Fiber& other = *e.fibers[first_elsewhere];
  throw Error(where + "the threads wait at different barriers: " + thread_name(first_waiting_thread) +
              " at " + barrier + " and " +
              thread_name(first_elsewhere) + " at __syncthreads at " + other.barrier_file + ":" +
              std::to_string(other.barrier_line) +
              ". Every thread of a block must reach the same __syncthreads");
}

inline void poison_shared_memory() {
  Emulator& e = emulator();
  if (__start_attend_shared != nullptr && __stop_attend_shared != nullptr) {
    std::memset(__start_attend_shared, 0xFF,
                static_cast<size_t>(__stop_attend_shared - __start_attend_shared));
  }
  if (e.dynamic_shared_bytes != 0) std::memset(e.dynamic_shared.get(), 0xFF, e.dynamic_shared_bytes);
}

// Runs one block: each round resumes every runnable thread in order until it
// waits at a barrier or returns; then the barrier opens for all of them.
inline void run_block(const char* kernel_name, size_t threads) {
  Emulator& e = emulator();
  poison_shared_memory();
  for (size_t t = 0; t < threads; ++t) {
    Fiber& f = *e.fibers[t];
    f.context.uc_stack.ss_sp = f.stack();
    f.context.uc_stack.ss_size = kStackBytes;
    f.context.uc_link = &e.scheduler;
    makecontext(&f.context, fiber_main, 0);
    f.state = FiberState::runnable;
    f.asan_fake_stack = nullptr;
  }
  for (;;) {
    for (size_t t = 0; t < threads; ++t) {
      Fiber& f = *e.fibers[t];
      if (f.state != FiberState::runnable) continue;
      e.current = t;
      ::threadIdx = thread_of(t);
      asan_start_switch(&e.scheduler_fake_stack, f.stack(), kStackBytes);
      swapcontext(&e.scheduler, &f.context);
      asan_finish_switch(e.scheduler_fake_stack, nullptr, nullptr);
      // The stack is set up: resuming needs only the saved registers. (An
      // empty uc_stack also spares AddressSanitizer from clearing the
      // shadow of the whole stack at every switch into the fiber.)
      f.context.uc_stack.ss_size = 0;
    }
    if (e.error) std::rethrow_exception(e.error);
    check_barrier(kernel_name, threads);
    bool any_waiting = false;
    for (size_t t = 0; t < threads; ++t) {
      Fiber& f = *e.fibers[t];
      if (f.state == FiberState::at_barrier) {
        f.state = FiberState::runnable;
        any_waiting = true;
      }
    }
    if (!any_waiting) return;
  }
}

inline void check_configuration(const char* kernel_name, dim3 grid, dim3 block, size_t shared_bytes) {
  const std::string launch = std::string("launch of ") + kernel_name + " with grid " +
                             coordinates(grid.x, grid.y, grid.z) + " and block " +
                             coordinates(block.x, block.y, block.z) + ": ";
  const uint64_t threads = uint64_t{block.x} * block.y * block.z;
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || threads == 0) {
    throw Error(launch + "every size must be at least 1");
  }
  if (grid.y > kMaxGridDimYZ || grid.z > kMaxGridDimYZ || grid.x > 0x7fffffffu) {
    throw Error(launch + "the grid is too large (x < 2^31, y and z at most 65535)");
  }
  if (threads > kMaxThreadsPerBlock || block.z > kMaxBlockDimZ) {
    throw Error(launch + "a block has " + std::to_string(threads) + " threads; at most " +
                std::to_string(kMaxThreadsPerBlock) + " (and z at most 64)");
  }
  if (shared_bytes > kMaxDynamicSharedBytes) {
    throw Error(launch + std::to_string(shared_bytes) + " bytes of dynamic shared memory; at most " +
                std::to_string(kMaxDynamicSharedBytes));
  }
}

// Runs every block of the grid in order (x fastest), on the calling thread.
inline void run_grid(const char* kernel_name, dim3 grid, dim3 block, size_t shared_bytes,
                     void (*body)(void*), void* body_argument) {
  check_configuration(kernel_name, grid, block, shared_bytes);
  Emulator& e = emulator();
  std::lock_guard<std::mutex> lock(e.launch_mutex);
  const size_t threads = size_t{block.x} * block.y * block.z;
  while (e.fibers.size() < threads) {
    auto fiber = std::make_unique<Fiber>();
    void* mapping = mmap(nullptr, Fiber::page_bytes() + kStackBytes, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mapping == MAP_FAILED) throw Error(std::string(kernel_name) + ": cannot map a fiber's stack");
    fiber->mapping = static_cast<unsigned char*>(mapping);
    getcontext(&fiber->context);  // once; run_block only re-aims it with makecontext
    mprotect(fiber->mapping, Fiber::page_bytes(), PROT_NONE);  // a stack overflow faults here
    e.fibers.push_back(std::move(fiber));
  }
  e.dynamic_shared.reset(shared_bytes == 0 ? nullptr : new unsigned char[shared_bytes]);
  e.dynamic_shared_bytes = shared_bytes;
  e.body = body;
  e.body_argument = body_argument;
  e.error = nullptr;
  ::gridDim = grid;
  ::blockDim = block;
  struct Running {  // cleared however the launch ends
    Emulator& e;
    explicit Running(Emulator& emulator) : e(emulator) { e.running = true; }
    ~Running() {
      e.running = false;
      e.dynamic_shared.reset();
      e.dynamic_shared_bytes = 0;
    }
  } running(e);
  for (unsigned z = 0; z < grid.z; ++z) {
    for (unsigned y = 0; y < grid.y; ++y) {
      for (unsigned x = 0; x < grid.x; ++x) {
        ::blockIdx = {x, y, z};
        run_block(kernel_name, threads);
      }
    }
  }
}

}  // namespace detail

// kernel<<<grid, block, shared_bytes>>>(args...): the arguments are converted
// to the kernel's parameter types once, as CUDA copies them at the launch;
// returns when every block has run. Errors throw attend::Error naming the kernel.
template <typename... Params, typename... Args>
void launch(const char* kernel_name, void (*kernel)(Params...), dim3 grid, dim3 block,
            size_t shared_bytes, Args&&... args) {
  static_assert(sizeof...(Params) == sizeof...(Args), "a kernel launch with the wrong number of arguments");
  std::tuple<std::remove_cvref_t<Params>...> parameters(std::forward<Args>(args)...);
  auto call = [&parameters, kernel] { std::apply(kernel, parameters); };
  using Call = decltype(call);
  detail::run_grid(kernel_name, grid, block, shared_bytes,
                   [](void* f) { (*static_cast<Call*>(f))(); }, &call);
}

// The block's dynamic shared memory (the launch's third argument), NaN at
// each block's start. See ATTEND_DYNAMIC_SHARED in attend/cuda_or_emulator.hpp.
template <typename T>
T* dynamic_shared() {
  return reinterpret_cast<T*>(detail::emulator().dynamic_shared.get());
}

}  // namespace attend::cuda_emulator

// A barrier for the threads of a block: none goes on until all have arrived.
// The default arguments record where it was called, for the error messages.
inline void __syncthreads(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  attend::cuda_emulator::detail::wait_at_barrier(file, line);
}

// One thread at a time runs, so a plain add is atomic here.
inline float atomicAdd(float* address, float value) {
  const float old = *address;
  *address = old + value;
  return old;
}

// Tutorial 11: chapter 11's CUDA kernels. Runs each SGEMM of the ladder and
// the row softmax (on the GPU when built with `make CUDA=1`, on the emulator
// otherwise), checks each against its CPU reference, and with --bench prints
// GFLOP/s beside cuBLAS (CUDA build only) and chapter 10's CPU kernel.
// Chapter 11 (docs/11-cuda.md). Build and run:
//   make tutorials && build/tutorials/11-cuda
//   build/tutorials/11-cuda --bench [--repeats 5] [--shape 832x128x512 --shape 256x15x32x15]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "attend/attend.hpp"
#include "attend/gpu_kernels.hpp"

#ifdef ATTEND_CUDA
#include <cublas_v2.h>  // the benchmark's yardstick only; the library never uses cuBLAS
#endif

namespace kernels = attend::kernels;
using kernels::DeviceArray;
using kernels::StridedMatrices;
using Floats = std::vector<float>;
using Clock = std::chrono::steady_clock;

namespace {

Floats random_floats(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  Floats v(static_cast<size_t>(n));
  for (float& x : v) x = dist(rng);
  return v;
}

// `batch` products (M, K) @ (K, N), all contiguous, in host and device memory.
struct Problem {
  std::string name;
  int64_t batch, M, K, N;
  Floats a, b;
  std::vector<int64_t> a_offsets, b_offsets;
  DeviceArray<float> a_device, b_device, c_device;
  DeviceArray<int64_t> a_offsets_device, b_offsets_device;

  Problem(std::string name_, int64_t batch_, int64_t M_, int64_t K_, int64_t N_)
      : name(std::move(name_)), batch(batch_), M(M_), K(K_), N(N_),
        a(random_floats(batch * M * K, 1)), b(random_floats(batch * K * N, 2)),
        a_offsets(offsets(batch, M * K)), b_offsets(offsets(batch, K * N)), a_device(a),
        b_device(b), c_device(batch * M * N), a_offsets_device(a_offsets),
        b_offsets_device(b_offsets) {}

  static std::vector<int64_t> offsets(int64_t batch, int64_t size) {
    std::vector<int64_t> v;
    for (int64_t p = 0; p < batch; ++p) v.push_back(p * size);
    return v;
  }
  StridedMatrices a_view() const { return {a_device.data(), a_offsets_device.data(), K, 1}; }
  StridedMatrices b_view() const { return {b_device.data(), b_offsets_device.data(), N, 1}; }
  double flops() const { return 2.0 * static_cast<double>(batch * M * K * N); }

  // c on the CPU with chapter 10's kernel (itself tested against the reference).
  Floats cpu_product(const Floats& a_values, const Floats& b_values) const {
    Floats c(static_cast<size_t>(batch * M * N));
    kernels::matmul_strided({a_values.data(), a_offsets.data(), K, 1},
                            {b_values.data(), b_offsets.data(), N, 1}, c.data(), batch, M, K, N);
    return c;
  }
};

// The largest |got - expected| / allowed, where allowed is float rounding
// for a sum of K products: 2 (K + 2) eps sum_k |a_ik b_kj|. At most 1 is right.
double worst_error_ratio(const Problem& p, const Floats& got, const Floats& expected) {
  Floats abs_a(p.a.size()), abs_b(p.b.size());
  for (size_t i = 0; i < abs_a.size(); ++i) abs_a[i] = std::fabs(p.a[i]);
  for (size_t i = 0; i < abs_b.size(); ++i) abs_b[i] = std::fabs(p.b[i]);
  const Floats magnitude = p.cpu_product(abs_a, abs_b);
  double worst = 0.0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double allowed = 2.0 * static_cast<double>(p.K + 2) * 1.1920929e-7 * magnitude[i] + 1e-30;
    const double ratio = std::fabs(static_cast<double>(got[i]) - expected[i]) / allowed;
    worst = std::isnan(ratio) ? INFINITY : std::max(worst, ratio);
  }
  return worst;
}

void print_matrix(const char* name, const Floats& v, int64_t rows, int64_t cols) {
  std::printf("  %s =", name);
  for (int64_t r = 0; r < rows; ++r) {
    if (r == 0) {
      std::printf(" [");
    } else {
      std::printf("%*s[", static_cast<int>(std::strlen(name)) + 5, "");
    }
    for (int64_t c = 0; c < cols; ++c) std::printf(" %7.4g", v[static_cast<size_t>(r * cols + c)]);
    std::printf(" ]\n");
  }
}

// --- the default run: each kernel on small cases, checked --------------------------

void show_kernels() {
  std::printf("Running on: %s\n\n", kernels::device_name().c_str());

  std::printf("== A worked example: c (2, 2) = a (2, 3) @ b (3, 2) with every kernel\n\n");
  const Floats a_values{1, 2, 3, 4, 5, 6}, b_values{7, 8, 9, 10, 11, 12};
  print_matrix("a", a_values, 2, 3);
  print_matrix("b", b_values, 3, 2);
  const DeviceArray<float> a(a_values), b(b_values);
  const DeviceArray<int64_t> zero(std::vector<int64_t>{0});
  DeviceArray<float> c(4);
  for (const kernels::SgemmVersion& v : kernels::sgemm_ladder()) {
    v.run({a.data(), zero.data(), 3, 1}, {b.data(), zero.data(), 2, 1}, c.data(), 1, 2, 3, 2);
    const Floats result = c.to_host();
    std::printf("  %-24s c = [[%g, %g], [%g, %g]]\n", v.name, result[0], result[1], result[2],
                result[3]);
  }
  std::printf("  (58 = 1*7 + 2*9 + 3*11)\n\n");

  std::printf("== How the threads cover c (40, 100)\n\n");
  std::printf("  1, 2, 3: blocks of 32 x 32 threads, one element of c each: a grid of %d x %d blocks,\n"
              "           %d threads for 4000 elements (those off the edge store nothing)\n",
              4, 2, 4 * 2 * 1024);
  std::printf("  4:       blocks of 256 threads, 8 x 8 elements each (a 128 x 128 tile): 1 block,\n"
              "           3/4 of it off the edge: big tiles pay off only on big matrices\n\n");

  std::printf("== Each kernel against the CPU on awkward sizes (error / allowed rounding; <= 1 is right)\n\n");
  std::printf("  %-24s %18s %20s %18s\n", "kernel", "(65,33)@(33,127)", "2 x (7,65)@(65,129)",
              "a as a^T view");
  const Problem square("square", 1, 65, 33, 127), batched("batched", 2, 7, 65, 129);
  const Floats square_expected = square.cpu_product(square.a, square.b);
  const Floats batched_expected = batched.cpu_product(batched.a, batched.b);
  // a (65, 33) stored transposed, (33, 65) row-major, read as the view with strides (1, 65).
  Floats a_t(square.a.size());
  for (int64_t r = 0; r < 65; ++r) {
    for (int64_t k = 0; k < 33; ++k) a_t[static_cast<size_t>(k * 65 + r)] = square.a[static_cast<size_t>(r * 33 + k)];
  }
  const DeviceArray<float> a_t_device(a_t);
  for (const kernels::SgemmVersion& v : kernels::sgemm_ladder()) {
    v.run(square.a_view(), square.b_view(), square.c_device.data(), 1, 65, 33, 127);
    const double e1 = worst_error_ratio(square, square.c_device.to_host(), square_expected);
    v.run(batched.a_view(), batched.b_view(), batched.c_device.data(), 2, 7, 65, 129);
    const double e2 = worst_error_ratio(batched, batched.c_device.to_host(), batched_expected);
    v.run({a_t_device.data(), square.a_offsets_device.data(), 1, 65}, square.b_view(),
          square.c_device.data(), 1, 65, 33, 127);
    const double e3 = worst_error_ratio(square, square.c_device.to_host(), square_expected);
    std::printf("  %-24s %18.3f %20.3f %18.3f  %s\n", v.name, e1, e2, e3,
                e1 <= 1 && e2 <= 1 && e3 <= 1 ? "ok" : "WRONG");
  }

  std::printf("\n== The row softmax: one block per row, a shared-memory max and sum\n\n");
  const Floats x_values{1.0f, 2.0f, 3.0f, -INFINITY, 1000.0f, 1001.0f, 999.0f, 1000.0f};
  print_matrix("x", x_values, 2, 4);
  const DeviceArray<float> x(x_values);
  DeviceArray<float> y(8);
  kernels::softmax_rows_device(x.data(), y.data(), 2, 4);
  print_matrix("y", y.to_host(), 2, 4);
  Floats y_reference(8);
  kernels::softmax_rows_reference(x_values.data(), y_reference.data(), 2, 4);
  print_matrix("y on the CPU", y_reference, 2, 4);
  std::printf("  (-inf, a masked position, gets 0; 1000 does not overflow: the row's max is subtracted first)\n");

  std::printf("\n== Tensors on the device: one step of y = relu(x @ w + b) there, forward and backward\n\n");
  using attend::Device;
  const attend::Tensor x_host = attend::from_vector({1, 2, 3, 4, 5, 6}, {2, 3});
  const attend::Tensor x_on_gpu = x_host.to(Device::cuda);  // the one copy to the device
  attend::Tensor w = attend::from_vector({0.5f, -1, 0.25f, 1, -0.5f, 0.5f}, {3, 2}, Device::cuda);
  attend::Tensor bias = attend::from_vector({-1, 0}, {2}, Device::cuda);
  w.set_requires_grad();
  bias.set_requires_grad();
  const attend::Tensor y_on_gpu = attend::relu(attend::matmul(x_on_gpu, w) + bias);
  attend::sum(y_on_gpu).backward();  // the seed, the sums of broadcasting: all on the device
  std::printf("  x = [[1, 2, 3], [4, 5, 6]] (moved there), w = [[0.5, -1], [0.25, 1], [-0.5, 0.5]], bias = [-1, 0]\n");
  std::printf("y =\n%s\n", y_on_gpu.to_string().c_str());
  std::printf("dloss/dw (loss = sum(y)) =\n%s\n", w.grad().to_string().c_str());
  std::printf("dloss/dbias =\n%s\n", bias.grad().to_string().c_str());
  std::printf("  (relu zeroes column 0, so only column 1 gets a gradient: the sums of x's columns, 5 7 9)\n");
  try {
    (void)y_on_gpu.item();
  } catch (const attend::Error& e) {
    std::printf("  y.item(): %s\n", e.what());
  }
  const kernels::DeviceMemoryStats memory = kernels::device_memory_stats();
  std::printf("  device memory: %zu bytes in use, peak %zu, %zu cached, %lld blocks from the device, %lld reused\n",
              memory.bytes_in_use, memory.peak_bytes_in_use, memory.bytes_cached,
              static_cast<long long>(memory.device_allocations), static_cast<long long>(memory.reuses));
}

// --- --bench: GFLOP/s --------------------------------------------------------------

struct BenchOptions {
  int repeats = 5;
  std::vector<Problem*> problems;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Seconds per call of run: one warm-up call, then `repeats` rounds, each
// repeating the call for at least 20 ms and ending with a device
// synchronise (a launch only queues work); the median round.
double seconds_per_call(const std::function<void()>& run, int repeats) {
  run();
  kernels::device_synchronize();
  std::vector<double> rounds;
  for (int r = 0; r < repeats; ++r) {
    int64_t calls = 0;
    const Clock::time_point start = Clock::now();
    double elapsed = 0.0;
    do {
      run();
      ++calls;
      kernels::device_synchronize();
      elapsed = std::chrono::duration<double>(Clock::now() - start).count();
    } while (elapsed < 0.02);
    rounds.push_back(elapsed / static_cast<double>(calls));
  }
  return median(rounds);
}

#ifdef ATTEND_CUDA
// cuBLAS FP32 (CUBLAS_DEFAULT_MATH: no TF32 tensor cores). cuBLAS is
// column-major: row-major c = a @ b is column-major c^T = b^T @ a^T.
struct Cublas {
  cublasHandle_t handle{};
  Cublas() {
    if (cublasCreate(&handle) != CUBLAS_STATUS_SUCCESS) throw attend::Error("cublasCreate failed");
    cublasSetMathMode(handle, CUBLAS_DEFAULT_MATH);
  }
  ~Cublas() { cublasDestroy(handle); }
  void run(const Problem& p) const {
    const float one = 1.0f, zero = 0.0f;
    const auto m = static_cast<int>(p.N), n = static_cast<int>(p.M), k = static_cast<int>(p.K);
    cublasSgemmStridedBatched(handle, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &one, p.b_device.data(), m,
                              p.K * p.N, p.a_device.data(), k, p.M * p.K, &zero,
                              p.c_device.data(), m, p.M * p.N, static_cast<int>(p.batch));
  }
};
#endif

void bench(const BenchOptions& options, bool gpu_columns) {
  std::printf("Running on: %s\n", kernels::device_name().c_str());
  std::printf("GFLOP/s = 2 * batch * M * K * N / seconds; median of %d rounds after a warm-up.\n",
              options.repeats);
  std::printf("'4+copy' adds copying a and b to the device and c back, as a CPU caller would pay.\n");
  std::printf("Every GPU kernel is checked against the CPU before it is timed.\n\n");
  std::printf("%-34s", "shape (batch x M x K x N)");
  if (gpu_columns) {
    for (const kernels::SgemmVersion& v : kernels::sgemm_ladder()) std::printf(" %9d", v.number);
    std::printf(" %9s", "4+copy");
#ifdef ATTEND_CUDA
    std::printf(" %9s %9s", "cuBLAS", "4/cuBLAS");
#endif
  }
  std::printf(" %9s\n", "CPU");
#ifdef ATTEND_CUDA
  const Cublas cublas;
#endif
  for (Problem* p : options.problems) {
    std::printf("%-34s", p->name.c_str());
    std::fflush(stdout);
    const Floats expected = p->cpu_product(p->a, p->b);
    double register_tiles = 0.0;
    if (gpu_columns) {
      for (const kernels::SgemmVersion& v : kernels::sgemm_ladder()) {
        const auto run = [&] { v.run(p->a_view(), p->b_view(), p->c_device.data(), p->batch, p->M, p->K, p->N); };
        run();
        if (worst_error_ratio(*p, p->c_device.to_host(), expected) > 1.0) {
          std::printf(" %9s", "WRONG");
          continue;
        }
        const double gflops = p->flops() / seconds_per_call(run, options.repeats) / 1e9;
        if (v.number == 4) register_tiles = gflops;
        std::printf(" %9.1f", gflops);
        std::fflush(stdout);
      }
      const auto with_copies = [&] {
        kernels::copy_to_device(p->a_device.data(), p->a.data(), p->a.size() * sizeof(float));
        kernels::copy_to_device(p->b_device.data(), p->b.data(), p->b.size() * sizeof(float));
        kernels::sgemm_4_register_tiles(p->a_view(), p->b_view(), p->c_device.data(), p->batch, p->M, p->K, p->N);
        Floats c = p->c_device.to_host();
      };
      std::printf(" %9.1f", p->flops() / seconds_per_call(with_copies, options.repeats) / 1e9);
#ifdef ATTEND_CUDA
      const auto run_cublas = [&] { cublas.run(*p); };
      run_cublas();
      if (worst_error_ratio(*p, p->c_device.to_host(), expected) > 1.0) {
        std::printf(" %9s %9s", "WRONG", "");
      } else {
        const double gflops = p->flops() / seconds_per_call(run_cublas, options.repeats) / 1e9;
        std::printf(" %9.1f %8.0f%%", gflops, 100.0 * register_tiles / gflops);
      }
#endif
    }
    Floats c(expected.size());
    const auto run_cpu = [&] {
      kernels::matmul_strided({p->a.data(), p->a_offsets.data(), p->K, 1},
                              {p->b.data(), p->b_offsets.data(), p->N, 1}, c.data(), p->batch, p->M,
                              p->K, p->N);
    };
    std::printf(" %9.1f\n", p->flops() / seconds_per_call(run_cpu, options.repeats) / 1e9);
    (void)register_tiles;  // read only beside cuBLAS
  }
}

}  // namespace

int main(int argc, char** argv) {
  try {
    bool bench_mode = false;
    BenchOptions options;
    std::vector<std::unique_ptr<Problem>> problems;
    for (int i = 1; i < argc; ++i) {
      const std::string arg = argv[i];
      if (arg == "--bench") {
        bench_mode = true;
      } else if (arg == "--repeats" && i + 1 < argc) {
        options.repeats = std::max(1, std::atoi(argv[++i]));
      } else if (arg == "--shape" && i + 1 < argc) {
        // MxKxN or BxMxKxN
        std::vector<int64_t> sizes;
        for (const char* s = argv[++i]; *s != '\0';) {
          char* end = nullptr;
          sizes.push_back(std::strtoll(s, &end, 10));
          s = *end == 'x' ? end + 1 : end;
          if (*end != 'x' && *end != '\0') throw attend::Error("--shape: expected MxKxN or BxMxKxN, got " + std::string(argv[i]));
        }
        if (sizes.size() == 3) sizes.insert(sizes.begin(), 1);
        if (sizes.size() != 4) throw attend::Error("--shape: expected MxKxN or BxMxKxN, got " + std::string(argv[i]));
        problems.push_back(std::make_unique<Problem>(argv[i], sizes[0], sizes[1], sizes[2], sizes[3]));
      } else {
        std::fprintf(stderr, "usage: %s [--bench [--repeats N] [--shape MxKxN | BxMxKxN]...]\n", argv[0]);
        return 2;
      }
    }
    if (!bench_mode) {
      show_kernels();
      return 0;
    }
    // Under the emulator the GPU columns measure the host CPU stepping
    // through fibers, not a GPU: only on shapes asked for explicitly.
    const bool gpu_columns = kernels::running_on_gpu() || !problems.empty();
    if (problems.empty()) {
      for (int64_t n : {1024, 2048, 4096}) {
        problems.push_back(std::make_unique<Problem>(std::to_string(n) + "^3", 1, n, n, n));
      }
      // The toy Transformer (d_model 128, 4 heads, feed-forward 512) on a
      // batch of 64 sentences of 13 tokens: 832 rows.
      problems.push_back(std::make_unique<Problem>("832x128x128 (q, k, v, out proj.)", 1, 832, 128, 128));
      problems.push_back(std::make_unique<Problem>("832x128x512 (feed-forward up)", 1, 832, 128, 512));
      problems.push_back(std::make_unique<Problem>("832x512x128 (feed-forward down)", 1, 832, 512, 128));
      problems.push_back(std::make_unique<Problem>("256x15x32x15 (attention scores)", 256, 15, 32, 15));
      problems.push_back(std::make_unique<Problem>("256x15x15x32 (attention mix)", 256, 15, 15, 32));
      if (!kernels::running_on_gpu()) {
        std::printf("This is the emulator build: GPU columns would time the emulator, not a GPU, so\n"
                    "only the CPU column is measured. Build with `make CUDA=1` on a machine with an\n"
                    "NVIDIA GPU for the table (or pass --shape to time the emulator anyway).\n\n");
      }
    }
    for (auto& p : problems) options.problems.push_back(p.get());
    bench(options, gpu_columns);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "11-cuda: %s\n", e.what());
    return 1;
  }
}

// Tutorial 10: how fast is each matmul kernel? Times the reference triple
// loop, chapter 3's simple blocked kernel and chapter 10's packed kernel
// (the fastest micro-kernel this CPU runs, then forced onto AVX2 and onto
// plain C++) side by side, with 1 and 2 threads, in GFLOP/s.
// Chapter 10 (docs/10-speed.md). Build and run:
//   make tutorials && build/tutorials/10-speed [--quick] [--threads 1,2,4]
//   build/tutorials/10-speed --once new 256 256 256    (one call, for valgrind)
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "attend/attend.hpp"

namespace kernels = attend::kernels;
using Clock = std::chrono::steady_clock;

namespace {

// One product to time: `batch` matrices (M, K) @ (K, N).
struct Shape {
  std::string name;
  int64_t batch, M, K, N;
  double flops() const { return 2.0 * static_cast<double>(batch * M * K * N); }
};

struct Options {
  int repeats = 5;            // timed rounds; the median is reported
  double min_seconds = 0.05;  // each round repeats a kernel at least this long
  std::vector<int> threads{1, 2};
};

void set_threads(int n) {
#ifdef _OPENMP
  omp_set_num_threads(n);
#else
  (void)n;
#endif
}

// Seconds per call of f: calls it until min_seconds have passed (at least
// once) and divides. A short warm-up call first brings code and data into
// the caches and lets the packing buffers grow to size.
double seconds_per_call(const std::function<void()>& f, double min_seconds) {
  f();
  int64_t calls = 0;
  const Clock::time_point start = Clock::now();
  double elapsed = 0.0;
  do {
    f();
    ++calls;
    elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  } while (elapsed < min_seconds);
  return elapsed / static_cast<double>(calls);
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

std::vector<float> random_floats(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = dist(rng);
  return v;
}

// A kernel as the table sees it: a column name and how to run one product.
struct Contender {
  std::string name;
  bool threaded;  // the reference loop has no threads: timed once
  std::function<void(const Shape&, const float*, const int64_t*, const float*, const int64_t*,
                     float*)>
      run;
};

void print_rule(size_t columns) {
  std::printf("%s\n", std::string(40 + 10 * columns + 10, '-').c_str());
}

void time_table(const std::vector<Shape>& shapes, const std::vector<Contender>& contenders,
                const Options& opt) {
  std::printf(
      "== matmul kernels in GFLOP/s (2 * batch * M * K * N / seconds; median of %d rounds)\n\n",
      opt.repeats);
  std::printf("%-32s %4s  ", "shape", "thr");
  for (const Contender& c : contenders) std::printf("%9s ", c.name.c_str());
  std::printf("%9s\n", "new/old");
  print_rule(contenders.size());
  for (const Shape& s : shapes) {
    const std::vector<float> a = random_floats(s.batch * s.M * s.K, 1);
    const std::vector<float> b = random_floats(s.batch * s.K * s.N, 2);
    std::vector<float> c(static_cast<size_t>(s.batch * s.M * s.N));
    std::vector<int64_t> a_offsets, b_offsets;
    for (int64_t p = 0; p < s.batch; ++p) {
      a_offsets.push_back(p * s.M * s.K);
      b_offsets.push_back(p * s.K * s.N);
    }
    // The reference loop needs about a second for one 1024^3 product: give
    // it one call there instead of a minimum time.
    const bool slow_reference = s.flops() > 1e9;
    for (int threads : opt.threads) {
      set_threads(threads);
      // per_contender[j]: seconds per call of contender j, one per round.
      // Every round runs all contenders one after another, so a burst of
      // load from elsewhere on the machine hits them all alike.
      std::vector<std::vector<double>> per_contender(contenders.size());
      for (int r = 0; r < opt.repeats; ++r) {
        for (size_t j = 0; j < contenders.size(); ++j) {
          const Contender& k = contenders[j];
          if (!k.threaded && threads != opt.threads.front()) continue;
          if (!k.threaded && slow_reference && r > 0) continue;
          auto call = [&] {
            k.run(s, a.data(), a_offsets.data(), b.data(), b_offsets.data(), c.data());
          };
          per_contender[j].push_back(
              seconds_per_call(call, slow_reference && !k.threaded ? 0.0 : opt.min_seconds));
        }
      }
      std::printf("%-32s %4d  ", s.name.c_str(), threads);
      std::vector<double> gflops(contenders.size(), 0.0);
      for (size_t j = 0; j < contenders.size(); ++j) {
        if (per_contender[j].empty()) {
          std::printf("%9s ", "");
          continue;
        }
        gflops[j] = s.flops() / median(per_contender[j]) / 1e9;
        std::printf("%9.2f ", gflops[j]);
      }
      // contenders[1] is the simple blocked kernel, [2] the new one.
      std::printf("%8.1fx\n", gflops[2] / gflops[1]);
      std::fflush(stdout);
    }
  }
}

// The transposed operands of the backward pass, through attend::matmul: the
// kernel reads a transposed view through its strides; the alternative (what
// attend::matmul did before chapter 10) copies it to a contiguous tensor first.
void time_transposes(const Options& opt) {
  std::printf("\n== attend::matmul on transposed views: read through strides vs copy first\n\n");
  std::printf("%-34s %4s  %9s %9s %9s\n", "product", "thr", "strided", "copy", "ratio");
  print_rule(3);
  attend::Generator gen(5);
  const attend::Tensor x = attend::randn({832, 128}, gen);  // activations (B*T, d)
  const attend::Tensor w = attend::randn({512, 128}, gen);  // Linear weight (out, in)
  const attend::Tensor g = attend::randn({832, 512}, gen);  // gradient of the output
  struct Case {
    std::string name;
    attend::Tensor left, right;
  };
  const std::vector<Case> cases{
      {"x @ w^T       (832x128)(128x512)", x, w.t()},  // Linear forward
      {"x^T @ g       (128x832)(832x512)", x.t(), g},  // Linear backward: dW^T
      {"g @ w         (832x512)(512x128)", g, w},      // Linear backward: dX
  };
  for (const Case& cs : cases) {
    const double flops =
        2.0 * static_cast<double>(cs.left.size(0) * cs.left.size(1) * cs.right.size(1));
    for (int threads : opt.threads) {
      set_threads(threads);
      std::vector<double> strided, copied;
      for (int r = 0; r < opt.repeats; ++r) {
        strided.push_back(
            seconds_per_call([&] { (void)attend::matmul(cs.left, cs.right); }, opt.min_seconds));
        copied.push_back(seconds_per_call(
            [&] { (void)attend::matmul(cs.left.contiguous(), cs.right.contiguous()); },
            opt.min_seconds));
      }
      const double s = flops / median(strided) / 1e9, c = flops / median(copied) / 1e9;
      std::printf("%-34s %4d  %9.2f %9.2f %8.2fx\n", cs.name.c_str(), threads, s, c, s / c);
      std::fflush(stdout);
    }
  }
}

// The 1-minute load average (Linux's /proc/loadavg), or -1 where there is none.
double load_average() {
  std::FILE* f = std::fopen("/proc/loadavg", "r");
  if (f == nullptr) return -1.0;
  double load = -1.0;
  if (std::fscanf(f, "%lf", &load) != 1) load = -1.0;
  std::fclose(f);
  return load;
}

// What one (almost) empty `#pragma omp parallel` region costs: waking the other
// threads and waiting for all of them at the closing barrier. A kernel that
// splits less work than this among threads gets slower, not faster.
void time_thread_start(const Options& opt) {
  std::printf("== starting threads: one (almost) empty OpenMP parallel region\n\n");
  // An empty region can look cheap on a loaded machine while real kernel calls
  // wait milliseconds for a thread the system has put aside (seen: 4 us per
  // empty region, 8 ms per product), so look at the load as well.
  const double load = load_average();
  const int cores = omp_get_num_procs();
  if (load > 0.75 * cores) {
    std::printf("load average %.2f on %d cores: other programs are running, and the threaded\n"
                "numbers below will say more about them than about the kernels\n\n",
                load, cores);
  }
  for (int threads : opt.threads) {
    if (threads < 2) continue;
    set_threads(threads);
    std::vector<double> rounds;
    std::atomic<int> arrivals{0};  // every thread checks in, so the region is not optimized away
    for (int r = 0; r < opt.repeats; ++r) {
      rounds.push_back(seconds_per_call(
          [&] {
#pragma omp parallel
            arrivals.fetch_add(1, std::memory_order_relaxed);
          },
          opt.min_seconds));
    }
    const double us = median(rounds) * 1e6;
    // The same wake-up as a loop of parallel_for_ranges (one piece per
    // thread): alone it opens a region; inside a thread team (as in a
    // training step) its pieces go to threads already up.
    const auto empty_loop = [&] {
      attend::parallel_for_ranges(threads, threads, [&](int64_t, int64_t) {
        arrivals.fetch_add(1, std::memory_order_relaxed);
      });
    };
    std::vector<double> alone, in_team;
    for (int r = 0; r < opt.repeats; ++r) alone.push_back(seconds_per_call(empty_loop, opt.min_seconds));
    attend::run_as_thread_team([&] {
      for (int r = 0; r < opt.repeats; ++r) in_team.push_back(seconds_per_call(empty_loop, opt.min_seconds));
    });
    std::printf("%d threads: %.1f microseconds per region; an empty parallel_for_ranges: %.1f alone, "
                "%.1f in a thread team\n",
                threads, us, median(alone) * 1e6, median(in_team) * 1e6);
    if (us > 200.0) {
      std::printf(
          "   (that is slow: the machine is busy and OpenMP's waiting threads spin,\n"
          "    stealing the time slices the others need; try OMP_WAIT_POLICY=passive)\n");
    }
  }
  std::printf("\n");
}

std::vector<int> parse_list(const char* text) {
  std::vector<int> out;
  for (const char* p = text; *p != '\0';) {
    out.push_back(std::atoi(p));
    while (*p != '\0' && *p != ',') ++p;
    if (*p == ',') ++p;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<Contender> contenders{
      {"reference", false,
       [](const Shape& s, const float* a, const int64_t* ao, const float* b, const int64_t* bo,
          float* c) {
         for (int64_t p = 0; p < s.batch; ++p) {
           kernels::matmul_reference(a + ao[p], b + bo[p], c + p * s.M * s.N, s.M, s.K, s.N);
         }
       }},
      {"old", true,
       [](const Shape& s, const float* a, const int64_t* ao, const float* b, const int64_t* bo,
          float* c) { kernels::matmul_blocked_simple(a, ao, b, bo, c, s.batch, s.M, s.K, s.N); }},
      {"new", true,
       [](const Shape& s, const float* a, const int64_t* ao, const float* b, const int64_t* bo,
          float* c) { kernels::matmul_batched(a, ao, b, bo, c, s.batch, s.M, s.K, s.N); }},
      {"avx2", true,  // where the CPU has no AVX2, the default kernel runs
       [](const Shape& s, const float* a, const int64_t* ao, const float* b, const int64_t* bo,
          float* c) {
         kernels::matmul_use_kernel("avx2+fma");
         kernels::matmul_batched(a, ao, b, bo, c, s.batch, s.M, s.K, s.N);
         kernels::matmul_use_kernel("");
       }},
      {"portable", true,
       [](const Shape& s, const float* a, const int64_t* ao, const float* b, const int64_t* bo,
          float* c) {
         kernels::matmul_use_kernel("portable");
         kernels::matmul_batched(a, ao, b, bo, c, s.batch, s.M, s.K, s.N);
         kernels::matmul_use_kernel("");
       }},
  };

  Options opt;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) {
      opt.repeats = 3;
      opt.min_seconds = 0.02;
    } else if (std::strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
      opt.threads = parse_list(argv[++i]);
    } else if (std::strcmp(argv[i], "--once") == 0 && i + 4 < argc) {
      // One call of one kernel, e.g. to count its instructions with valgrind
      // (the name "none" only makes the inputs: subtract its count).
      const std::string name = argv[i + 1];
      const Shape s{name, 1, std::atoll(argv[i + 2]), std::atoll(argv[i + 3]),
                    std::atoll(argv[i + 4])};
      const std::vector<float> a = random_floats(s.M * s.K, 1), b = random_floats(s.K * s.N, 2);
      std::vector<float> c(static_cast<size_t>(s.M * s.N));
      const int64_t zero = 0;
      bool known = name == "none";
      for (const Contender& k : contenders) {
        if (k.name != name) continue;
        k.run(s, a.data(), &zero, b.data(), &zero, c.data());
        known = true;
      }
      if (!known) std::fprintf(stderr, "--once: no kernel named '%s'\n", name.c_str());
      return known ? 0 : 2;
    } else {
      std::fprintf(stderr,
                   "usage: %s [--quick] [--threads 1,2,4]\n"
                   "       %s --once reference|old|new|avx2|portable|none M K N\n",
                   argv[0], argv[0]);
      return 2;
    }
  }

  std::printf("The fast kernel runs the '%s' micro-kernel on this CPU.\n\n",
              kernels::matmul_kernel_name());
  time_thread_start(opt);

  // Squares, then the toy Transformer's products (batch 64 x 13 tokens = 832
  // rows, d_model 128, feed-forward 512, 4 heads of 32, 15 positions), then
  // those of the larger model of docs/10 (d_model 256, 4 heads of 64).
  const std::vector<Shape> shapes{
      {"64^3", 1, 64, 64, 64},
      {"128^3", 1, 128, 128, 128},
      {"256^3", 1, 256, 256, 256},
      {"512^3", 1, 512, 512, 512},
      {"1024^3", 1, 1024, 1024, 1024},
      {"ffn up (832x128)(128x512)", 1, 832, 128, 512},
      {"ffn down (832x512)(512x128)", 1, 832, 512, 128},
      {"proj (832x128)(128x128)", 1, 832, 128, 128},
      {"scores 256x(15x32)(32x15)", 256, 15, 32, 15},
      {"mix 256x(15x15)(15x32)", 256, 15, 15, 32},
      {"d256 proj (832x256)(256x256)", 1, 832, 256, 256},
      {"d256 ffn up (832x256)(256x512)", 1, 832, 256, 512},
      {"d256 ffn down (832x512)(512x256)", 1, 832, 512, 256},
      {"d256 scores 256x(15x64)(64x15)", 256, 15, 64, 15},
  };
  time_table(shapes, contenders, opt);
  time_transposes(opt);
  std::printf("\n(ratios matter more than absolute numbers on a busy machine; run it twice)\n");
  return 0;
}

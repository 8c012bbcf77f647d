// Tutorial 10: how fast is each matmul kernel? Times the reference triple
// loop, chapter 3's simple blocked kernel and chapter 10's packed kernel
// (the fastest micro-kernel this CPU runs, then forced onto AVX2 and onto
// plain C++) side by side, with 1 and 2 threads, in GFLOP/s.
// Chapter 10 (docs/10-speed.md). Build and run:
//   make tutorials && build/tutorials/10-speed [--quick] [--threads 1,2,4]
//   build/tutorials/10-speed --once new 256 256 256    (one call, for valgrind)
//   build/tutorials/10-speed --training-steps 2 400 5  (training steps, 1 against 2 threads)
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <sched.h>  // sched_getcpu (Linux)

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

// How long a cache line takes to go from one thread of an OpenMP region to
// the other and back, in ns (the median of 5 rounds of 2000 round trips), or
// 0 where it cannot tell: the region does not get 2 threads, or a round
// takes longer than 50 ms (the two threads share one CPU, and each answer
// waits for a time slice). On a virtual machine the round trip changes
// while a program runs: it depends on where the host runs the machine's two
// CPUs at that moment (docs/10-speed.md, "Measuring 1 against 2 threads").
double cache_line_round_trip_ns() {
  alignas(64) static std::atomic<int> ball{0};  // odd: thread 0 served; even: thread 1 answered; -1: stop
  constexpr int kTrips = 2000;
  constexpr auto kGiveUp = std::chrono::milliseconds(50);
  std::vector<double> rounds;
  for (int round = 0; round < 5; ++round) {
    ball.store(0);
    double ns = 0.0;
#pragma omp parallel num_threads(2)
    {
      if (omp_get_num_threads() == 2 && omp_get_thread_num() == 0) {
        const Clock::time_point start = Clock::now();
        bool late = false;
        for (int i = 0; i < kTrips && !late; ++i) {
          ball.store(2 * i + 1, std::memory_order_release);
          for (int spins = 1; ball.load(std::memory_order_acquire) != 2 * i + 2 && !late; ++spins) {
            late = spins % 1024 == 0 && Clock::now() - start > kGiveUp;
          }
        }
        if (!late) ns = std::chrono::duration<double, std::nano>(Clock::now() - start).count() / kTrips;
        ball.store(-1, std::memory_order_release);
      } else if (omp_get_num_threads() == 2) {
        for (int i = 0; i < kTrips; ++i) {
          int seen = ball.load(std::memory_order_acquire);
          while (seen != 2 * i + 1 && seen != -1) seen = ball.load(std::memory_order_acquire);
          // Answer unless thread 0 stopped meanwhile (then the exchange fails).
          if (seen == -1 || !ball.compare_exchange_strong(seen, 2 * i + 2, std::memory_order_acq_rel)) break;
        }
      }
    }
    if (ns == 0.0) return 0.0;
    rounds.push_back(ns);
  }
  return median(rounds);
}

// How many times longer the slower of the two CPUs takes for the same
// products, two threads running at once, each computing 3 rounds of 250
// products (128, 128) @ (128, 128) (~10 ms a round here); each round's time
// is added to the CPU its thread ran on (sched_getcpu), and the slower
// CPU's total is divided by the faster one's. Or 0 where the region does
// not get 2 threads on 2 CPUs. 1.00: the two CPUs are as fast as each
// other. On a virtual machine they need not be, and not for good: for
// minutes the host may give one of them less of a real core (the machine's
// /proc/stat shows no steal time here), in slices too long for a few
// products to notice, hence rounds of ~10 ms (docs/10-speed.md, "Measuring
// 1 against 2 threads"). A loop cut in two equal pieces waits for the slower.
double core_speed_ratio() {
  constexpr int64_t kSide = 128, kProducts = 250;
  std::map<int, double> seconds_on_cpu;
  for (int round = 0; round < 3; ++round) {
    double seconds[2] = {0.0, 0.0};
    int cpu[2] = {-1, -1};
#pragma omp parallel num_threads(2)
    {
      const int me = omp_get_thread_num();
      if (omp_get_num_threads() == 2) {
        std::vector<float> a(kSide * kSide, 0.5f), b(kSide * kSide, 0.25f), c(kSide * kSide);
        const int64_t offset = 0;
#pragma omp barrier
        const Clock::time_point start = Clock::now();
        for (int64_t i = 0; i < kProducts; ++i) {  // inside a region: each call runs on this thread alone
          kernels::matmul_batched(a.data(), &offset, b.data(), &offset, c.data(), 1, kSide, kSide, kSide);
        }
        seconds[me] = std::chrono::duration<double>(Clock::now() - start).count();
        cpu[me] = sched_getcpu();
      }
    }
    if (cpu[0] < 0 || cpu[1] < 0 || cpu[0] == cpu[1]) return 0.0;
    seconds_on_cpu[cpu[0]] += seconds[0];
    seconds_on_cpu[cpu[1]] += seconds[1];
  }
  if (seconds_on_cpu.size() != 2) return 0.0;  // the threads moved to other CPUs between rounds
  const double first = seconds_on_cpu.begin()->second, second = seconds_on_cpu.rbegin()->second;
  return std::max(first, second) / std::min(first, second);
}

// Training steps of the default toy-French model on 1 thread and on
// `threads`, in alternate blocks of `block` steps within one run. Two runs
// a few minutes apart compare the machine's moods as much as the thread
// counts (this virtual machine's speed drifts by 10% to 25%); blocks of a
// few steps, one after the other, meet the same machine. The figure is
// throughput, as training sees it: the timed steps' time over their tokens
// (batches differ in length: a block of short sentences takes less time).
// Beside it, the median of the steps' microseconds per token, which counts
// a batch of 5-token sentences as much as one of 20 (short batches share
// less work among the threads; so this median says less for 2 threads).
// The first step of each block is not timed (after a block on one thread,
// the other core's caches hold nothing of the model), nor are the first 20
// (buffers grow). Before each block on `threads` threads: the cache-line
// round trip between two threads and the two CPUs' speeds.
int time_training_steps(int threads, int64_t steps, int64_t block) {
  namespace train = attend::train;
  train::TrainOptions o;  // the default model and task, as `make train` trains them
  o.train_size = 20000;   // generating 200,000 pairs takes longer than the steps
  o.steps = steps;
  o.eval_every = 0;
  o.checkpoint_every = 0;
  o.out = (std::filesystem::temp_directory_path() /
           ("attend-tutorial-10-" + std::to_string(Clock::now().time_since_epoch().count()) + ".safetensors"))
              .string();
  struct Steps {                      // timed steps: their microseconds and tokens
    std::vector<double> us_per_token;  // one per step
    double us = 0;
    int64_t tokens = 0;
    void add(double step_us, int64_t step_tokens) {
      us_per_token.push_back(step_us / static_cast<double>(step_tokens));
      us += step_us;
      tokens += step_tokens;
    }
    void add(const Steps& other) {
      us_per_token.insert(us_per_token.end(), other.us_per_token.begin(), other.us_per_token.end());
      us += other.us;
      tokens += other.tokens;
    }
    double us_a_token() const { return us / static_cast<double>(tokens); }
  };
  struct Block {          // blocks 0, 2, 4 ... on 1 thread; 1, 3, 5 ... on `threads`
    double round_trip_ns;  // before a block on `threads` threads, else 0
    double speed_ratio;    // likewise: core_speed_ratio()
    Steps timed;           // (not the last step of the run)
  };
  std::vector<Block> blocks;
  Clock::time_point step_started;
  int64_t timed_tokens = 0;  // tokens of the step that started at step_started, or 0: not timed
  o.before_step = [&](int64_t step, const attend::data::Batch& batch) {
    const Clock::time_point now = Clock::now();
    if (timed_tokens > 0) {
      blocks.back().timed.add(std::chrono::duration<double, std::micro>(now - step_started).count(), timed_tokens);
    }
    if ((step - 1) % block == 0) {  // blocks 0, 1, 2 ...: 1 thread, `threads`, 1 thread ...
      const int n = (step - 1) / block % 2 == 0 ? 1 : threads;
      blocks.push_back({n > 1 ? cache_line_round_trip_ns() : 0.0, n > 1 ? core_speed_ratio() : 0.0, {}});
      set_threads(n);
    }
    const bool timed = (step - 1) % block != 0 && step > 20;
    timed_tokens = timed ? batch.source_tokens + batch.target_tokens : 0;
    step_started = Clock::now();  // (after the round trip and the speeds were measured)
  };
  std::printf("== training steps of the default toy-French model: blocks of %lld steps on 1 and %d threads, "
              "alternated, %lld steps\n\n",
              static_cast<long long>(block), threads, static_cast<long long>(steps));
  std::ostringstream log;  // the trainer's progress lines, not shown
  train::train(o, log);
  std::filesystem::remove(o.out);
  // Each block on `threads` threads against the 1-thread block before it:
  // microseconds per token (the block's time over its tokens), their ratio,
  // and the round trip measured between them.
  Steps one, many;
  std::vector<double> ratios, round_trips, speed_ratios;
  std::printf("%8s %14s %14s %8s %15s %12s\n", "blocks", "1 thread us/tok", "N threads", "ratio", "round trip ns",
              "CPU speeds");
  for (size_t i = 1; i < blocks.size(); i += 2) {
    const Block &a = blocks[i - 1], &b = blocks[i];
    if (a.timed.tokens == 0 || b.timed.tokens == 0) continue;
    const double ua = a.timed.us_a_token(), ub = b.timed.us_a_token();
    one.add(a.timed);
    many.add(b.timed);
    ratios.push_back(ua / ub);
    const std::string round_trip = b.round_trip_ns > 0 ? std::to_string(std::lround(b.round_trip_ns)) : "?";
    char speeds[32] = "?";
    if (b.speed_ratio > 0) std::snprintf(speeds, sizeof speeds, "1 : %.2f", b.speed_ratio);
    std::printf("%3zu, %3zu %14.2f %14.2f %7.2fx %15s %12s\n", i - 1, i, ua, ub, ua / ub, round_trip.c_str(), speeds);
    if (b.round_trip_ns > 0) round_trips.push_back(b.round_trip_ns);
    if (b.speed_ratio > 0) speed_ratios.push_back(b.speed_ratio);
  }
  if (ratios.empty()) {
    std::printf("too few steps to time: give more steps\n");
    return 1;
  }
  const double median_one = median(one.us_per_token), median_many = median(many.us_per_token);
  std::printf("\nall timed steps: 1 thread %.2f us a token, %d threads %.2f: %.2fx (pairs of blocks: median %.2fx; "
              "medians of the steps' us a token: %.2f, %.2f: %.2fx); ",
              one.us_a_token(), threads, many.us_a_token(), one.us_a_token() / many.us_a_token(), median(ratios),
              median_one, median_many, median_one / median_many);
  if (round_trips.empty()) {
    std::printf("round trip not measured (? above: the two threads did not run side by side)");
  } else {
    std::printf("round trip %.0f ns (%.0f to %.0f)", median(round_trips),
                *std::min_element(round_trips.begin(), round_trips.end()),
                *std::max_element(round_trips.begin(), round_trips.end()));
  }
  if (speed_ratios.empty()) {  // (the threads shared one CPU, or moved between CPUs)
    std::printf("; CPU speeds not measured\n");
  } else {
    std::printf("; CPU speeds 1 : %.2f (1 : %.2f to 1 : %.2f)\n", median(speed_ratios),
                *std::min_element(speed_ratios.begin(), speed_ratios.end()),
                *std::max_element(speed_ratios.begin(), speed_ratios.end()));
  }
  return 0;
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
    } else if (std::strcmp(argv[i], "--training-steps") == 0) {
      // --training-steps [THREADS [STEPS [BLOCK]]]: 2, 400, 5 by default
      int threads = 2;
      int64_t steps = 400, block = 5;
      if (i + 1 < argc) threads = std::atoi(argv[i + 1]);
      if (i + 2 < argc) steps = std::atoll(argv[i + 2]);
      if (i + 3 < argc) block = std::atoll(argv[i + 3]);
      if (threads < 2 || steps < 1 || block < 2) {
        std::fprintf(stderr, "--training-steps THREADS STEPS BLOCK: THREADS >= 2, STEPS >= 1, BLOCK >= 2\n");
        return 2;
      }
      return time_training_steps(threads, steps, block);
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
                   "       %s --once reference|old|new|avx2|portable|none M K N\n"
                   "       %s --training-steps [THREADS [STEPS [BLOCK]]]   (2 400 5)\n",
                   argv[0], argv[0], argv[0]);
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

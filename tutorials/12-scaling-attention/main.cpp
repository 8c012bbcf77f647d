// Tutorial 12: attention's quadratic cost, measured, and taken away by tiling.
// Chapter 12 (docs/12-scaling-attention.md).
//
// 1. The online softmax, step by step, on one row of 7 scores in blocks of 3.
// 2. Time and peak extra memory of chapter 5's reference attention, the tiled
//    attention and a sliding window (W = 256), one head, against T, for head
//    sizes 64 and 32 (the toy model's), forward and forward + backward.
// 3. A log-log picture of the times with the slopes of T and T^2:
//    12-scaling-attention.svg.
//
//   build/tutorials/12-scaling-attention            T = 128 ... 1024 (seconds)
//   build/tutorials/12-scaling-attention --full     T = 128 ... 8192 (minutes, ~2 GB at the top)
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "attend/attention.hpp"
#include "attend/autograd.hpp"
#include "attend/ops.hpp"
#include "attend/svg.hpp"
#include "attend/tensor.hpp"
#include "attend/tiled_attention.hpp"

using attend::Tensor;
namespace nn = attend::nn;
namespace svg = attend::io::svg;

namespace {

// --- 1. the online softmax on a tiny example ---------------------------------

void online_softmax_by_hand() {
  const std::vector<float> s = {0.5f, 2.0f, -1.0f, 3.0f, 1.0f, 0.0f, 2.5f};  // one query's scores
  const std::vector<float> v = {1, 2, 3, 4, 5, 6, 7};                        // one number per key
  const int64_t block = 3;
  std::printf("1. The online softmax: one row of scores s, read in blocks of %lld keys\n", static_cast<long long>(block));
  std::printf("   s = ");
  for (float x : s) std::printf("%5.2f ", static_cast<double>(x));
  std::printf("\n   v = ");
  for (float x : v) std::printf("%5.2f ", static_cast<double>(x));
  std::printf("\n\n   block  keys   block max  running max m  rescale exp(m_old - m)  running sum l  running sum of exp(s - m) v\n");
  float m = -INFINITY, l = 0.0f, acc = 0.0f;
  for (int64_t j0 = 0; j0 < static_cast<int64_t>(s.size()); j0 += block) {
    const int64_t j1 = std::min<int64_t>(j0 + block, static_cast<int64_t>(s.size()));
    float block_max = -INFINITY;
    for (int64_t j = j0; j < j1; ++j) block_max = std::max(block_max, s[j]);
    const float new_m = std::max(m, block_max);
    const float rescale = std::exp(m - new_m);  // what was summed against the old max
    l *= rescale;
    acc *= rescale;
    for (int64_t j = j0; j < j1; ++j) {
      l += std::exp(s[j] - new_m);
      acc += std::exp(s[j] - new_m) * v[j];
    }
    m = new_m;
    std::printf("   %5lld  %lld..%lld  %9.4f  %13.4f  %22.4f  %13.4f  %26.4f\n", static_cast<long long>(j0 / block),
                static_cast<long long>(j0), static_cast<long long>(j1 - 1), static_cast<double>(block_max),
                static_cast<double>(m), static_cast<double>(rescale), static_cast<double>(l), static_cast<double>(acc));
  }
  std::printf("\n   weights exp(s - m) / l: ");
  for (float x : s) std::printf("%.4f ", static_cast<double>(std::exp(x - m) / l));
  const Tensor reference = attend::softmax(attend::from_vector(s, {7}), 0);
  std::printf("\n   softmax(s) (chapter 3): ");
  for (float x : reference.to_vector()) std::printf("%.4f ", static_cast<double>(x));
  std::printf("\n   output acc / l = %.4f, log-sum-exp m + log l = %.4f\n", static_cast<double>(acc / l),
              static_cast<double>(m + std::log(l)));
  // The kernel does the same: D = 1, q = 1, k_j = s_j gives the scores s (scale 1/sqrt(1) = 1).
  nn::TiledAttentionOptions options;
  options.tiles.query_block = 1;
  options.tiles.key_block = block;
  Tensor lse;
  const Tensor out = nn::tiled_attention(attend::ones({1, 1, 1, 1}), attend::from_vector(s, {1, 1, 7, 1}),
                                         attend::from_vector(v, {1, 1, 7, 1}), nn::AttentionMask(), options, &lse);
  std::printf("   nn::tiled_attention, key blocks of 3: output %.4f, log-sum-exp %.4f\n\n", static_cast<double>(out.item()),
              static_cast<double>(lse.item()));
}

// --- 2. measuring ------------------------------------------------------------

struct Measurement {
  double ms = 0.0;          // median of the repetitions
  double extra_mib = 0.0;   // peak storage beyond the inputs, MiB
};

double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Runs `work` after `prepare` (not measured) at least 5 times, and again
// until 300 ms of work have passed (at most 25 times): the median time and
// the peak extra storage. A median of several runs, not the best of a few:
// one lucky or unlucky run (a page fault storm, another program) moves it little.
Measurement measure(const std::function<void()>& prepare, const std::function<void()>& work) {
  Measurement m;
  std::vector<double> times;
  double spent = 0.0;
  while (times.size() < 5 || (spent < 300.0 && times.size() < 25)) {
    prepare();
    const int64_t before = attend::storage_bytes_in_use();
    attend::reset_storage_peak();
    const double start = now_ms();
    work();
    times.push_back(now_ms() - start);
    spent += times.back();
    m.extra_mib = static_cast<double>(attend::storage_peak_bytes() - before) / (1024.0 * 1024.0);
  }
  std::sort(times.begin(), times.end());
  m.ms = times[times.size() / 2];
  return m;
}

enum Kind { kReference, kTiled, kWindow };
const char* const kKindNames[] = {"reference", "tiled", "window 256"};
constexpr int64_t kWindowSize = 256;

// One head (1, 1, T, d): the forward alone (no graph), or forward + backward.
Measurement run(Kind kind, int64_t T, int64_t d, bool backward) {
  attend::Generator gen(static_cast<uint64_t>(T * 100 + d));
  Tensor q = attend::randn({1, 1, T, d}, gen), k = attend::randn({1, 1, T, d}, gen), v = attend::randn({1, 1, T, d}, gen);
  const Tensor w = attend::randn({1, 1, T, d}, gen);  // the output gradient
  auto attention = [&]() -> Tensor {
    if (kind == kReference) return nn::scaled_dot_product_attention(q, k, v);
    nn::AttentionMask mask;
    if (kind == kWindow) {  // the decoder's window: the W keys before and itself
      mask.causal = true;
      mask.window = kWindowSize;
    }
    return nn::tiled_attention(q, k, v, mask);
  };
  if (!backward) {
    attend::NoGradGuard no_grad;
    return measure([] {}, [&] { attention(); });
  }
  q.set_requires_grad();
  k.set_requires_grad();
  v.set_requires_grad();
  return measure(
      [&] {  // the gradients of the last run are freed before measuring
        q.zero_grad();
        k.zero_grad();
        v.zero_grad();
      },
      [&] { attend::sum(attention() * w).backward(); });
}

}  // namespace

int main(int argc, char** argv) {
  const bool full = argc > 1 && std::strcmp(argv[1], "--full") == 0;
  if (argc > 1 && !full) {
    std::fprintf(stderr, "usage: %s [--full]\n", argv[0]);
    return 2;
  }
  online_softmax_by_hand();

  std::vector<int64_t> lengths = {128, 256, 512, 1024};
  if (full) lengths.insert(lengths.end(), {2048, 4096, 8192});
  std::printf("2. One head, batch 1: time (ms, median of 5 to 25 runs) and peak extra tensor memory (MiB)\n");
  std::printf("   reference = chapter 5 (no mask); tiled = nn::tiled_attention (no mask);\n");
  std::printf("   window 256 = tiled, causal, each query sees the 256 keys before it and itself.\n");
  std::printf("   Times on a busy machine are only indicative.\n\n");
  std::printf("   %5s %3s %-8s | %10s %10s %10s | %10s %10s %10s\n", "T", "d", "pass", "ref ms", "tiled ms", "window ms",
              "ref MiB", "tiled MiB", "window MiB");
  // times[d index][pass][kind] -> one value per T
  std::vector<double> plot_times[2][2][3];
  const int64_t head_sizes[2] = {64, 32};
  for (int64_t T : lengths) {
    for (int di = 0; di < 2; ++di) {
      for (int pass = 0; pass < 2; ++pass) {
        Measurement m[3];
        for (int kind = 0; kind < 3; ++kind) m[kind] = run(static_cast<Kind>(kind), T, head_sizes[di], pass == 1);
        std::printf("   %5lld %3lld %-8s | %10.2f %10.2f %10.2f | %10.2f %10.3f %10.3f\n", static_cast<long long>(T),
                    static_cast<long long>(head_sizes[di]), pass == 0 ? "forward" : "fwd+bwd", m[0].ms, m[1].ms, m[2].ms,
                    m[0].extra_mib, m[1].extra_mib, m[2].extra_mib);
        for (int kind = 0; kind < 3; ++kind) plot_times[di][pass][kind].push_back(m[kind].ms);
      }
    }
  }
  std::printf("\n   Kernel scratch not counted above: per thread a few (64, 64) tiles, about 64 KiB.\n");

  // 3. The picture: log2 T across, log10 ms up; a straight line's slope is the power of T.
  svg::LinePlot plot{"Attention time against T (one head, d = 64): log-log", "log2 T", "log10 milliseconds", {}, 720.0,
                     440.0};
  std::vector<double> x;
  for (int64_t T : lengths) x.push_back(std::log2(static_cast<double>(T)));
  for (int pass = 0; pass < 2; ++pass) {
    for (int kind = 0; kind < 3; ++kind) {
      std::vector<double> y;
      for (double ms : plot_times[0][pass][kind]) y.push_back(std::log10(std::max(ms, 1e-3)));
      plot.series.push_back({std::string(kKindNames[kind]) + (pass == 0 ? ", forward" : ", fwd+bwd"), x, y, ""});
    }
  }
  // Reference slopes through the reference forward's first point: time ~ T and time ~ T^2.
  const double y0 = std::log10(std::max(plot_times[0][0][kReference].front(), 1e-3));
  std::vector<double> slope1, slope2;
  for (double xi : x) {
    slope1.push_back(y0 + (xi - x.front()) * std::log10(2.0));
    slope2.push_back(y0 + 2.0 * (xi - x.front()) * std::log10(2.0));
  }
  plot.series.push_back({"slope of T", x, slope1, "#999999"});
  plot.series.push_back({"slope of T^2", x, slope2, "#333333"});
  svg::draw_line_plot(plot).save("12-scaling-attention.svg");
  std::printf("\n3. wrote 12-scaling-attention.svg (log2 T against log10 ms, with the slopes of T and T^2)\n");
  return 0;
}

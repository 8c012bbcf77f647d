// Chapter 12 tests of the CUDA tiled attention forward (src/kernels/attention.cu)
// against its CPU twin attention_forward_tiled, on the emulator in the
// default build and on the GPU with make CUDA=1: sizes that are not multiples
// of the 32-query and 32-key tiles, every mask kind, a query that sees nothing.
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "attend/attention_kernels.hpp"
#include "attend/gpu_kernels.hpp"
#include "attend/random.hpp"
#include "catch_compat.hpp"

namespace kernels = attend::kernels;
using attend::kernels::DeviceArray;

namespace {

std::vector<float> normal_floats(int64_t n, attend::Generator& gen) {
  std::vector<float> x(static_cast<size_t>(n));
  for (float& v : x) v = gen.normal();
  return x;
}

// Contiguous (B, H, T, width) rows at `data`.
kernels::HeadRows rows_of(const float* data, int64_t heads, int64_t T, int64_t width) {
  return {data, heads * T * width, T * width, width};
}

// Runs both kernels on the same inputs; key_padding (B, Tk) may be empty.
void check_device_matches_cpu(kernels::AttentionSizes n, kernels::AttentionMasking m,
                              const std::vector<float>& key_padding) {
  attend::Generator gen(static_cast<uint64_t>(n.queries * 31 + n.keys));
  const std::vector<float> q = normal_floats(n.batch * n.heads * n.queries * n.head_dim, gen);
  const std::vector<float> k = normal_floats(n.batch * n.heads * n.keys * n.head_dim, gen);
  const std::vector<float> v = normal_floats(n.batch * n.heads * n.keys * n.value_dim, gen);
  const int64_t out_size = n.batch * n.heads * n.queries * n.value_dim, rows = n.batch * n.heads * n.queries;

  // The CPU twin, with small tiles so that its tiling differs from the GPU's.
  std::vector<float> cpu_out(static_cast<size_t>(out_size)), cpu_lse(static_cast<size_t>(rows));
  kernels::AttentionMasking cpu_mask = m;
  if (!key_padding.empty()) {
    cpu_mask.key_blocked = key_padding.data();
    cpu_mask.key_blocked_stride = n.keys;
  }
  kernels::attention_forward_tiled(rows_of(q.data(), n.heads, n.queries, n.head_dim),
                                   rows_of(k.data(), n.heads, n.keys, n.head_dim),
                                   rows_of(v.data(), n.heads, n.keys, n.value_dim), cpu_out.data(), cpu_lse.data(), n,
                                   cpu_mask, kernels::AttentionDropout(), kernels::AttentionTiles{8, 8});

  const DeviceArray<float> dq(q), dk(k), dv(v), dout(out_size), dlse(rows);
  const DeviceArray<float> dpad(key_padding.empty() ? std::vector<float>{0.0f} : key_padding);
  kernels::AttentionMasking device_mask = m;
  if (!key_padding.empty()) {
    device_mask.key_blocked = dpad.data();
    device_mask.key_blocked_stride = n.keys;
  }
  kernels::attention_forward_device(rows_of(dq.data(), n.heads, n.queries, n.head_dim),
                                    rows_of(dk.data(), n.heads, n.keys, n.head_dim),
                                    rows_of(dv.data(), n.heads, n.keys, n.value_dim), dout.data(), dlse.data(), n,
                                    device_mask);
  kernels::device_synchronize();
  const std::vector<float> out = dout.to_host(), lse = dlse.to_host();
  double worst = 0.0;
  for (size_t i = 0; i < out.size(); ++i) worst = std::max(worst, std::fabs(double(out[i]) - double(cpu_out[i])));
  for (size_t i = 0; i < lse.size(); ++i) {
    if (std::isinf(cpu_lse[i])) {
      CHECK(lse[i] == cpu_lse[i]);  // -inf: a query that sees no key
    } else {
      worst = std::max(worst, std::fabs(double(lse[i]) - double(cpu_lse[i])));
    }
  }
  INFO("largest |device - cpu| = " << worst);
  CHECK(worst <= 2e-5);
}

}  // namespace

TEST_CASE("attention_forward_device equals the CPU tiled kernel, every mask, T not a multiple of 32", "[ch12]") {
  kernels::AttentionSizes n{2, 2, 45, 45, 8, 5};  // B, H, Tq, Tk, D, Dv: 45 = 32 + 13
  std::vector<float> padding(2 * 45, 0.0f);
  for (int64_t j = 35; j < 45; ++j) padding[static_cast<size_t>(j)] = 1.0f;  // batch 0: the last 10 keys
  std::vector<float> all_padding(2 * 45, 0.0f);
  for (int64_t j = 45; j < 90; ++j) all_padding[static_cast<size_t>(j)] = 1.0f;  // batch 1: every key
  kernels::AttentionMasking none, causal, causal_window, symmetric_window;
  causal.causal = causal_window.causal = true;
  causal_window.window = 5;
  symmetric_window.window = 3;
  SECTION("no mask") { check_device_matches_cpu(n, none, {}); }
  SECTION("causal + padding") { check_device_matches_cpu(n, causal, padding); }
  SECTION("every key of a batch entry padded: zeros and -inf") { check_device_matches_cpu(n, none, all_padding); }
  SECTION("causal window of 5") { check_device_matches_cpu(n, causal_window, padding); }
  SECTION("symmetric window of 3") { check_device_matches_cpu(n, symmetric_window, {}); }
  SECTION("new queries after cached keys (Tq 7, Tk 70, query_offset 63), D = Dv = 64") {
    kernels::AttentionMasking offset = causal;
    offset.query_offset = 63;
    check_device_matches_cpu({1, 3, 7, 70, 64, 64}, offset, {});
  }
}

TEST_CASE("attention_forward_device: sizes it cannot run are errors naming them", "[ch12]") {
  const DeviceArray<float> x(4);
  const kernels::HeadRows rows{x.data(), 0, 0, 0};
  REQUIRE_THROWS_MENTIONING(kernels::attention_forward_device(rows, rows, rows, x.data(), x.data(),
                                                              {1, 1, 4, 4, 200, 8}, kernels::AttentionMasking()),
                            "attention_forward_device", "(1, 1, 4, 4, 200, 8)");
}

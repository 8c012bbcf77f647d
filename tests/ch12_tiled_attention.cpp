// Chapter 12 tests (docs/12-scaling-attention.md): tiled attention against
// chapter 5's reference (values and gradients, every mask kind, sizes that
// are not multiples of the tile), central differences, the error against a
// double-precision attention, sliding windows against the reference with the
// equivalent band mask, dropout drawn as chapter 3's, any thread count.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "attend/attention.hpp"
#include "attend/autograd.hpp"
#include "attend/gradcheck.hpp"
#include "attend/kernels.hpp"
#include "attend/ops.hpp"
#include "attend/softmax_exp.hpp"
#include "attend/tensor.hpp"
#include "attend/tiled_attention.hpp"
#include "catch_compat.hpp"
#include "test_tensors.hpp"
#include "test_threads.hpp"

using attend::Generator;
using attend::Shape;
using attend::Tensor;
using attend::nn::AttentionMask;
using attend::nn::TiledAttentionOptions;
using attend_test::leaf;

namespace {

using namespace attend;      // tensors and ops
using namespace attend::nn;  // chapter 5's attention and this chapter's

TiledAttentionOptions tiles(int64_t query_block, int64_t key_block) {
  TiledAttentionOptions o;
  o.tiles.query_block = query_block;
  o.tiles.key_block = key_block;
  return o;
}

// (B, T) padding flags with the last `padded[b]` keys of row b blocked, as (B, 1, 1, T).
Tensor padding_flags(int64_t T, const std::vector<int64_t>& padded) {
  std::vector<float> flags;
  for (int64_t p : padded) {
    for (int64_t t = 0; t < T; ++t) flags.push_back(t >= T - p ? 1.0f : 0.0f);
  }
  return from_vector(flags, {static_cast<int64_t>(padded.size()), 1, 1, T});
}

// The dense (Tq, Tk) mask of a rule written out by hand (independent of
// kernels::query_sees_key): 1 where query position offset + i may not see j.
Tensor band_mask(int64_t Tq, int64_t Tk, int64_t offset, bool causal, int64_t window) {
  Tensor m = zeros({Tq, Tk});
  for (int64_t i = 0; i < Tq; ++i) {
    for (int64_t j = 0; j < Tk; ++j) {
      const int64_t pos = offset + i;
      bool hidden = causal && j > pos;
      if (window >= 0) hidden = hidden || j < pos - window || (!causal && j > pos + window);
      if (hidden) m.set({i, j}, 1.0f);
    }
  }
  return m;
}

struct Grads {
  Tensor out, dq, dk, dv;
};

// Output and gradients of sum(out * w) for an attention function.
template <class F>
Grads run_with_grads(F attention, const Tensor& q0, const Tensor& k0, const Tensor& v0, const Tensor& w) {
  Tensor q = q0.detach().clone().set_requires_grad(), k = k0.detach().clone().set_requires_grad(),
         v = v0.detach().clone().set_requires_grad();
  const Tensor out = attention(q, k, v);
  sum(out * w).backward();
  return {out.detach(), q.grad(), k.grad(), v.grad()};
}

// Tiled (with `mask` and tile sizes) against the reference (with `dense`):
// values and all three gradients.
void check_against_reference(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionMask& mask,
                             const Tensor& dense, int64_t query_block, int64_t key_block, float tol = 2e-5f) {
  Generator gen(99);
  const Tensor w = randn({q.size(0), q.size(1), q.size(2), v.size(3)}, gen);
  const Grads tiled = run_with_grads(
      [&](const Tensor& a, const Tensor& b, const Tensor& c) {
        return tiled_attention(a, b, c, mask, tiles(query_block, key_block));
      },
      q, k, v, w);
  const Grads ref = run_with_grads(
      [&](const Tensor& a, const Tensor& b, const Tensor& c) { return scaled_dot_product_attention(a, b, c, dense); },
      q, k, v, w);
  CHECK(max_abs_diff(tiled.out, ref.out) <= tol);
  CHECK(max_abs_diff(tiled.dq, ref.dq) <= tol);
  CHECK(max_abs_diff(tiled.dk, ref.dk) <= tol);
  CHECK(max_abs_diff(tiled.dv, ref.dv) <= tol);
}

bool all_finite(const Tensor& t) {
  for (float x : t.to_vector()) {
    if (!std::isfinite(x)) return false;
  }
  return true;
}

}  // namespace

TEST_CASE("softmax_exp: within 2 units in the last place of exp on [-87, 0], 0 below, NaN kept", "[ch12]") {
  using attend::kernels::softmax_exp;
  // Distance in representable floats between a and the correctly rounded exp.
  auto ulps = [](float a, double exact) {
    const float e = static_cast<float>(exact);
    const auto bits = [](float f) { return static_cast<int64_t>(std::bit_cast<int32_t>(f)); };
    return std::llabs(bits(a) - bits(e));
  };
  int64_t worst = 0;
  float worst_at = 0.0f;
  for (int i = 0; i <= 2000000; ++i) {  // a dense grid, both ends included
    const float x = -87.0f + 87.0f * static_cast<float>(i) / 2000000.0f;
    const int64_t u = ulps(softmax_exp(x), std::exp(static_cast<double>(x)));
    if (u > worst) {
      worst = u;
      worst_at = x;
    }
  }
  INFO("worst error " << worst << " ulp at x = " << worst_at);
  CHECK(worst <= 2);
  CHECK(softmax_exp(0.0f) == 1.0f);
  CHECK(softmax_exp(-1.0f) == Approx(0.36787944f).epsilon(1e-7));
  CHECK(softmax_exp(-std::numeric_limits<float>::infinity()) == 0.0f);  // a hidden key
  CHECK(softmax_exp(-87.5f) == 0.0f);
  CHECK(softmax_exp(-1000.0f) == 0.0f);
  CHECK(std::isnan(softmax_exp(std::numeric_limits<float>::quiet_NaN())));
  CHECK(softmax_exp(10.0f) == Approx(22026.4658f).epsilon(1e-6));  // right above 0 too
}

TEST_CASE("softmax_exp_row: the portable build gives softmax_exp's bits, the AVX-512 one within an ulp; so do log_softmax's rows", "[ch12]") {
  using attend::kernels::softmax_exp;
  Generator gen(31);
  for (int64_t n : {0, 1, 15, 16, 17, 1001}) {
    std::vector<float> in(static_cast<size_t>(n));
    for (float& x : in) x = -100.0f + 105.0f * gen.uniform();  // below -87, around 0, above 0 after the shift
    if (n > 3) in[3] = -std::numeric_limits<float>::infinity();  // a masked logit
    const float shift = 4.5f;
    std::vector<float> one_by_one(in.size()), portable(in.size()), avx512(in.size());
    for (size_t i = 0; i < in.size(); ++i) one_by_one[i] = softmax_exp(in[i] - shift);
    attend::kernels::softmax_exp_row_portable(in.data(), shift, portable.data(), n);
    INFO("n = " << n);
    CHECK((n == 0 || std::memcmp(portable.data(), one_by_one.data(), in.size() * sizeof(float)) == 0));  // (memcmp of null: undefined)
    if (attend::kernels::dropout_forward_avx512_runs()) {  // (the same CPU features)
      // The compiler fuses a * b + c into one FMA where the target has it
      // (AVX-512 does, the baseline does not): one rounding fewer, so the
      // last bit may differ, never more.
      attend::kernels::softmax_exp_row_avx512(in.data(), shift, avx512.data(), n);
      int64_t worst_ulps = 0;
      for (size_t i = 0; i < in.size(); ++i) {
        const auto bits = [](float f) { return static_cast<int64_t>(std::bit_cast<int32_t>(f)); };
        worst_ulps = std::max<int64_t>(worst_ulps, std::llabs(bits(avx512[i]) - bits(one_by_one[i])));
      }
      CHECK(worst_ulps <= 1);
    }
  }
  // log_softmax over the last dim (unit-stride rows: softmax_exp_row) and
  // over dim 0 of the transposed copy (rows with a stride: softmax_exp one by
  // one): both within 1e-5 of exp and log in double (values down to -40,
  // where a float's spacing is 4e-6).
  const Tensor x = attend::randn({5, 1003}, gen) * 4.0f;
  const std::vector<float> rows = attend::log_softmax(x, -1).to_vector();
  const std::vector<float> strided =
      attend::log_softmax(x.transpose(0, 1).contiguous(), 0).transpose(0, 1).contiguous().to_vector();
  const std::vector<float> xs = x.to_vector();
  double worst = 0.0, worst_strided = 0.0;
  for (int64_t r = 0; r < 5; ++r) {
    double m = -INFINITY, total = 0.0;
    for (int64_t c = 0; c < 1003; ++c) m = std::max(m, static_cast<double>(xs[r * 1003 + c]));
    for (int64_t c = 0; c < 1003; ++c) total += std::exp(xs[r * 1003 + c] - m);
    for (int64_t c = 0; c < 1003; ++c) {
      const double exact = xs[r * 1003 + c] - m - std::log(total);
      worst = std::max(worst, std::abs(rows[r * 1003 + c] - exact));
      worst_strided = std::max(worst_strided, std::abs(strided[r * 1003 + c] - exact));
    }
  }
  CHECK(worst < 1e-5);
  CHECK(worst_strided < 1e-5);
}

TEST_CASE("tiled_attention equals the reference with every mask kind, T not a multiple of the tile", "[ch12]") {
  Generator gen(12);
  const int64_t B = 2, H = 3, T = 37, D = 5, Dv = 4;  // 37 = 4 tiles of 8 + 5; 37 = 3 tiles of 16 + 5
  const Tensor q = randn({B, H, T, D}, gen), k = randn({B, H, T, D}, gen), v = randn({B, H, T, Dv}, gen);
  const Tensor pad = padding_flags(T, {0, 11});
  for (auto [qb, kb] : std::vector<std::pair<int64_t, int64_t>>{{8, 8}, {16, 5}, {64, 64}, {1, 37}}) {
    INFO("tiles " << qb << " x " << kb);
    check_against_reference(q, k, v, AttentionMask(), Tensor(), qb, kb);  // no mask
    check_against_reference(q, k, v, AttentionMask::causal_with_padding(Tensor()), causal_mask(T), qb, kb);
    // Key padding, as a rule and as chapter 5's dense (B, 1, 1, T) mask.
    check_against_reference(q, k, v, AttentionMask::padding(pad), pad, qb, kb);
    check_against_reference(q, k, v, AttentionMask(pad), pad, qb, kb);
    // Causal + key padding: the decoder's self-attention.
    check_against_reference(q, k, v, AttentionMask::causal_with_padding(pad), combine_masks(causal_mask(T), pad), qb, kb);
  }
}

TEST_CASE("tiled_attention: cross-attention (Tq != Tk) and new queries after cached keys", "[ch12]") {
  Generator gen(13);
  const int64_t B = 2, H = 2, Tq = 11, Tk = 29, D = 6;
  const Tensor q = randn({B, H, Tq, D}, gen), k = randn({B, H, Tk, D}, gen), v = randn({B, H, Tk, D}, gen);
  const Tensor pad = padding_flags(Tk, {3, 0});
  SECTION("padding over a longer source") {
    check_against_reference(q, k, v, AttentionMask::padding(pad), pad, 4, 8);
  }
  SECTION("causal with query_offset: queries at positions 18..28 see keys up to their own") {
    check_against_reference(q, k, v, AttentionMask::causal_with_padding(Tensor(), 18), band_mask(Tq, Tk, 18, true, -1),
                            4, 8);
  }
}

TEST_CASE("tiled_attention: a query that sees no key gets zeros and zero gradients, never NaN", "[ch12]") {
  Generator gen(14);
  const int64_t T = 9;
  const Tensor q = randn({2, 1, T, 4}, gen), k = randn({2, 1, T, 4}, gen), v = randn({2, 1, T, 4}, gen);
  const Tensor pad = padding_flags(T, {0, T});  // batch row 1: every key is padding
  Tensor lse;
  const Tensor out = tiled_attention(q, k, v, AttentionMask::padding(pad), tiles(4, 4), &lse);
  CHECK(max_abs_diff(out.select(0, 1), zeros({1, T, 4})) == 0.0f);
  CHECK(lse.at({1, 0, 3}) == -std::numeric_limits<float>::infinity());
  CHECK(std::isfinite(lse.at({0, 0, 3})));
  check_against_reference(q, k, v, AttentionMask::padding(pad), pad, 4, 4);
  Grads g = run_with_grads(
      [&](const Tensor& a, const Tensor& b, const Tensor& c) {
        return tiled_attention(a, b, c, AttentionMask::padding(pad), tiles(4, 4));
      },
      q, k, v, ones({2, 1, T, 4}));
  CHECK(all_finite(g.dq));
  CHECK(max_abs_diff(g.dq.select(0, 1), zeros({1, T, 4})) == 0.0f);
}

TEST_CASE("tiled_attention: the log-sum-exp it saves is log sum_j exp(s_ij)", "[ch12]") {
  // One query (1, 0), keys (1, 0), (0, 1), (1, 1), D = 2: s = (1, 0, 1) / sqrt(2).
  const Tensor q = from_vector({1, 0}, {1, 1, 1, 2}), k = from_vector({1, 0, 0, 1, 1, 1}, {1, 1, 3, 2});
  Tensor lse;
  tiled_attention(q, k, k, AttentionMask(), tiles(1, 2), &lse);
  const double s = 1.0 / std::sqrt(2.0);
  CHECK_NEAR(lse.item(), std::log(2.0 * std::exp(s) + 1.0), 1e-6);
}

TEST_CASE("tiled_attention: gradients agree with central differences", "[ch12]") {
  Generator gen(15);
  const int64_t T = 7;
  const Tensor pad = padding_flags(T, {2});
  const Tensor q = leaf({1, 2, T, 3}, gen), k = leaf({1, 2, T, 3}, gen), v = leaf({1, 2, T, 2}, gen);
  for (const AttentionMask& mask : {AttentionMask(), AttentionMask::causal_with_padding(pad)}) {
    const auto f = [&](const std::vector<Tensor>& in) { return tiled_attention(in[0], in[1], in[2], mask, tiles(3, 2)); };
    const GradcheckResult r = gradcheck("tiled_attention", f, {q, k, v});
    INFO(r.message << " (worst error " << r.worst_error << ")");
    CHECK(r.ok);
    CHECK(r.checked == 2 * T * 3 * 2 + 2 * T * 2);
  }
}

TEST_CASE("tiled_attention: error against a double-precision attention is no worse than 2x the reference's", "[ch12]") {
  Generator gen(16);
  const int64_t H = 2, T = 300, D = 64;
  // Scores of size ~3 (scaled N(0, 1) times 3): a peaked softmax, where rounding matters.
  const Tensor q = randn({1, H, T, D}, gen) * 3.0f, k = randn({1, H, T, D}, gen), v = randn({1, H, T, D}, gen);
  const Tensor mask = causal_mask(T);
  const std::vector<float> qv = q.to_vector(), kv = k.to_vector(), vv = v.to_vector();
  // The exact answer, in double.
  std::vector<double> exact(static_cast<size_t>(H * T * D));
  for (int64_t h = 0; h < H; ++h) {
    for (int64_t i = 0; i < T; ++i) {
      std::vector<double> s(static_cast<size_t>(i + 1));
      double m = -1e300, total = 0.0;
      for (int64_t j = 0; j <= i; ++j) {
        double dot = 0.0;
        for (int64_t e = 0; e < D; ++e) dot += double(qv[(h * T + i) * D + e]) * double(kv[(h * T + j) * D + e]);
        s[j] = dot / std::sqrt(double(D));
        m = std::max(m, s[j]);
      }
      for (int64_t j = 0; j <= i; ++j) total += std::exp(s[j] - m);
      for (int64_t e = 0; e < D; ++e) {
        double o = 0.0;
        for (int64_t j = 0; j <= i; ++j) o += std::exp(s[j] - m) / total * double(vv[(h * T + j) * D + e]);
        exact[(h * T + i) * D + e] = o;
      }
    }
  }
  auto error = [&](const Tensor& out) {
    double worst = 0.0;
    const std::vector<float> o = out.to_vector();
    for (size_t n = 0; n < o.size(); ++n) worst = std::max(worst, std::fabs(double(o[n]) - exact[n]));
    return worst;
  };
  const double reference_error = error(scaled_dot_product_attention(q, k, v, mask));
  const double tiled_error = error(tiled_attention(q, k, v, AttentionMask::causal_with_padding(Tensor())));
  INFO("reference error " << reference_error << ", tiled error " << tiled_error);
  CHECK(reference_error > 0.0);  // float rounding is there to be measured
  CHECK(tiled_error <= 2.0 * reference_error);
}

TEST_CASE("sliding window: equals the reference with the equivalent band mask", "[ch12]") {
  Generator gen(17);
  const int64_t B = 2, H = 2, T = 45, D = 4;
  const Tensor q = randn({B, H, T, D}, gen), k = randn({B, H, T, D}, gen), v = randn({B, H, T, D}, gen);
  const Tensor pad = padding_flags(T, {0, 6});
  for (int64_t W : {0, 3, 10, 50}) {
    INFO("W = " << W);
    AttentionMask causal_window = AttentionMask::causal_with_padding(pad);
    causal_window.window = W;  // the W keys before each query, and itself
    check_against_reference(q, k, v, causal_window, combine_masks(band_mask(T, T, 0, true, W), pad), 8, 8);
    AttentionMask symmetric = AttentionMask::padding(pad);
    symmetric.window = W;  // W keys on each side (the encoder's variant)
    check_against_reference(q, k, v, symmetric, combine_masks(band_mask(T, T, 0, false, W), pad), 8, 8);
  }
  SECTION("to_dense gives the same band") {
    AttentionMask m;
    m.causal = true;
    m.window = 3;
    CHECK(max_abs_diff(m.to_dense(T, T), band_mask(T, T, 0, true, 3)) == 0.0f);
  }
  SECTION("to_dense on the device: the rules made there by a kernel, with the padding") {
    AttentionMask m = AttentionMask::causal_with_padding(pad.to(Device::cuda), 2);
    m.window = 3;
    const Tensor dense = m.to_dense(7, T);
    CHECK(dense.device() == Device::cuda);
    AttentionMask on_cpu = AttentionMask::causal_with_padding(pad, 2);
    on_cpu.window = 3;
    CHECK(max_abs_diff(dense.cpu(), on_cpu.to_dense(7, T)) == 0.0f);
  }
}

TEST_CASE("tiled_attention: the same bits on 1 and 2 threads, forward and backward", "[ch12]") {
  attend_test::KeepThreads keep;
  Generator gen(18);
  const Tensor q = randn({2, 2, 70, 8}, gen), k = randn({2, 2, 70, 8}, gen), v = randn({2, 2, 70, 8}, gen);
  const Tensor w = randn({2, 2, 70, 8}, gen);
  const AttentionMask mask = AttentionMask::causal_with_padding(padding_flags(70, {5, 0}));
  auto run = [&] {
    return run_with_grads(
        [&](const Tensor& a, const Tensor& b, const Tensor& c) { return tiled_attention(a, b, c, mask, tiles(16, 16)); },
        q, k, v, w);
  };
  attend_test::set_threads(1);
  const Grads one = run();
  attend_test::set_threads(2);
  const Grads two = run();
  CHECK(one.out.to_vector() == two.out.to_vector());
  CHECK(one.dq.to_vector() == two.dq.to_vector());
  CHECK(one.dk.to_vector() == two.dk.to_vector());
  CHECK(one.dv.to_vector() == two.dv.to_vector());
}

TEST_CASE("tiled_attention: dropout keeps the weights chapter 3's dropout keeps", "[ch12]") {
  Generator gen(19);
  const int64_t T = 21;
  const Tensor q = randn({2, 2, T, 4}, gen), k = randn({2, 2, T, 4}, gen), v = randn({2, 2, T, 4}, gen);
  const Tensor w = randn({2, 2, T, 4}, gen);
  const float p = 0.3f;
  Generator tiled_gen(7), reference_gen(7);
  TiledAttentionOptions options = tiles(8, 8);
  options.dropout = p;
  options.generator = &tiled_gen;
  const Grads tiled = run_with_grads(
      [&](const Tensor& a, const Tensor& b, const Tensor& c) {
        return tiled_attention(a, b, c, AttentionMask::causal_with_padding(Tensor()), options);
      },
      q, k, v, w);
  const Grads ref = run_with_grads(
      [&](const Tensor& a, const Tensor& b, const Tensor& c) {
        return matmul(dropout(attention_weights(a, b, causal_mask(T)), p, true, reference_gen), c);
      },
      q, k, v, w);
  CHECK(max_abs_diff(tiled.out, ref.out) <= 2e-5f);
  CHECK(max_abs_diff(tiled.dq, ref.dq) <= 2e-5f);
  CHECK(max_abs_diff(tiled.dk, ref.dk) <= 2e-5f);
  CHECK(max_abs_diff(tiled.dv, ref.dv) <= 2e-5f);
  CHECK(tiled_gen.state() == reference_gen.state());  // both drew one number per weight
  CHECK(max_abs_diff(tiled.out, tiled_attention(q, k, v, AttentionMask::causal_with_padding(Tensor()))) > 1e-2f);
}

TEST_CASE("tiled_attention: errors name the op and the shapes", "[ch12]") {
  const Tensor q = zeros({1, 2, 5, 4});
  REQUIRE_THROWS_MENTIONING(tiled_attention(q, zeros({1, 2, 6, 3}), zeros({1, 2, 6, 4})), "tiled_attention",
                            "(1, 2, 5, 4)", "(1, 2, 6, 3)");
  REQUIRE_THROWS_MENTIONING(tiled_attention(q, zeros({1, 2, 6, 4}), zeros({1, 2, 7, 4})), "tiled_attention",
                            "(1, 2, 7, 4)");
  REQUIRE_THROWS_MENTIONING(tiled_attention(zeros({5, 4}), zeros({5, 4}), zeros({5, 4})), "tiled_attention", "(5, 4)");
  REQUIRE_THROWS_MENTIONING(tiled_attention(q, q, q, AttentionMask(causal_mask(5))), "tiled_attention", "(5, 5)",
                            "dense mask");
  REQUIRE_THROWS_MENTIONING(tiled_attention(q, q, q, AttentionMask::padding(zeros({3, 1, 1, 5}))), "tiled_attention",
                            "(3, 1, 1, 5)", "(1, 2, 5, 4)");
  REQUIRE_THROWS_MENTIONING(tiled_attention(q, q, q, AttentionMask(), tiles(0, 4)), "tiled_attention", "tile");
  // No device kernel for its backward yet (chapter 11): it says so.
  const Tensor on_device = q.to(Device::cuda);
  REQUIRE_THROWS_MENTIONING(tiled_attention(on_device, on_device, on_device), "tiled_attention: runs on the CPU only so far",
                            "on cuda", "--attention reference");
}

TEST_CASE("AttentionKind: reference, tiled, window:W and back", "[ch12]") {
  for (const std::string text : {"reference", "tiled", "window:0", "window:256"}) {
    CHECK(AttentionKind::parse(text).to_string() == text);
  }
  CHECK(AttentionKind::parse("window:16").window == 16);
  CHECK(AttentionKind::parse("window:16").type == AttentionKind::Window);
  for (const std::string bad : {"flash", "window:", "window:-1", "window:x", "Tiled", ""}) {
    REQUIRE_THROWS_MENTIONING(AttentionKind::parse(bad), "attention kind", bad.c_str());
  }
}

TEST_CASE("tiled_attention: the portable and the AVX2 builds of the kernel both equal the reference", "[ch12]") {
  struct RestoreKernels {
    ~RestoreKernels() { attend::kernels::matmul_force_portable(false); }
  } restore;
  Generator gen(20);
  const int64_t T = 29;
  const Tensor q = randn({2, 2, T, 8}, gen), k = randn({2, 2, T, 8}, gen), v = randn({2, 2, T, 8}, gen);
  const Tensor pad = padding_flags(T, {4, 0});
  for (bool portable : {true, false}) {
    INFO((portable ? "portable" : "default (AVX2 + FMA where the CPU has them)"));
    attend::kernels::matmul_force_portable(portable);
    check_against_reference(q, k, v, AttentionMask::causal_with_padding(pad), combine_masks(causal_mask(T), pad), 8, 8);
  }
}

TEST_CASE("storage counter: bytes of float storage alive now and at the peak", "[ch12]") {
  const int64_t before = attend::storage_bytes_in_use();
  attend::reset_storage_peak();
  {
    const Tensor a = zeros({1000});
    CHECK(attend::storage_bytes_in_use() == before + 4000);
    { const Tensor b = zeros({250}); }
    CHECK(attend::storage_peak_bytes() == before + 5000);
  }
  CHECK(attend::storage_bytes_in_use() == before);
  CHECK(attend::storage_peak_bytes() == before + 5000);
}

TEST_CASE("tiled_attention needs 20x less memory than the reference at T = 1024 (10x with the backward)", "[ch12]") {
  // Memory is counted, not timed, so this is exact on any machine. One head,
  // d = 64. With the backward both keep the gradients of q, k and v (3 T d
  // floats), which caps the ratio at this size; it grows with T (tutorial 12
  // prints it up to T = 8192).
  Generator gen(21);
  const int64_t T = 1024, D = 64;
  const Tensor q = leaf({1, 1, T, D}, gen), k = leaf({1, 1, T, D}, gen), v = leaf({1, 1, T, D}, gen);
  const Tensor w = randn({1, 1, T, D}, gen);
  auto peak_extra = [&](const std::function<Tensor()>& attention, bool backward) {
    const int64_t before = attend::storage_bytes_in_use();
    attend::reset_storage_peak();
    if (backward) {
      sum(attention() * w).backward();
    } else {
      NoGradGuard no_grad;
      attention();
    }
    for (Tensor t : {q, k, v}) t.zero_grad();
    return attend::storage_peak_bytes() - before;
  };
  auto reference = [&] { return scaled_dot_product_attention(q, k, v); };
  auto tiled = [&] { return tiled_attention(q, k, v); };
  for (bool backward : {false, true}) {
    const int64_t r = peak_extra(reference, backward), t = peak_extra(tiled, backward);
    INFO((backward ? "forward + backward" : "forward") << ": reference " << r << " bytes, tiled " << t << " bytes");
    CHECK(r >= int64_t{4} * T * T);  // at least the (T, T) scores
    CHECK(t * (backward ? 10 : 20) <= r);
    CHECK(t <= int64_t{4} * 8 * T * D);  // O(T d): output, log-sum-exp, gradients
  }
}

// Chapter 6 tests (docs/06-multihead-attention.md): splitting and merging
// heads, MultiHeadAttention's parameters and errors, self- vs cross-attention,
// the layer recomputed by hand from its own parameters with chapter 5's
// attention, dropout on the weights, and a gradient check over every parameter.
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "attend/attention.hpp"
#include "attend/autograd.hpp"
#include "attend/gradcheck.hpp"
#include "attend/multihead_attention.hpp"
#include "attend/nn.hpp"
#include "attend/ops.hpp"
#include "attend/tensor.hpp"
#include "catch_compat.hpp"
#include "test_tensors.hpp"

using attend::Generator;
using attend::Shape;
using attend::Tensor;
namespace nn = attend::nn;
using attend_test::leaf;
using attend_test::names_of;

namespace {

// y = x W^T + b, written out with chapter 3's ops (what nn::Linear should do).
Tensor linear_by_hand(const Tensor& x, const nn::Linear& layer) {
  return attend::matmul(x, layer.weight.t()) + layer.bias;
}

// Multi-head attention recomputed from mha's own parameters without
// split_heads/merge_heads: head h is chapter 5's attention on channels
// [h*D, (h+1)*D) of the projections; the heads' outputs are concatenated.
Tensor mha_by_hand(const nn::MultiHeadAttention& mha, const Tensor& query, const Tensor& key,
                   const Tensor& value, const Tensor& mask = Tensor()) {
  const Tensor q = linear_by_hand(query, *mha.q_proj);  // (B, Tq, C)
  const Tensor k = linear_by_hand(key, *mha.k_proj);    // (B, Tk, C)
  const Tensor v = linear_by_hand(value, *mha.v_proj);  // (B, Tk, C)
  const int64_t D = mha.d_model / mha.heads;
  std::vector<Tensor> heads;
  for (int64_t h = 0; h < mha.heads; ++h) {
    // The mask is broadcastable to (B, H, Tq, Tk); without the head dim it is
    // (B, 1, Tq, Tk) -> take dim 1 away when it has 4 dims.
    const Tensor m = mask.defined() && mask.dim() == 4 ? mask.select(1, 0) : mask;
    heads.push_back(attend::nn::scaled_dot_product_attention(q.narrow(2, h * D, D), k.narrow(2, h * D, D),
                                                         v.narrow(2, h * D, D), m));
  }
  return linear_by_hand(attend::cat(heads, 2), *mha.out_proj);
}

}  // namespace

TEST_CASE("split_heads / merge_heads: shapes, exact round trip, head h holds channels [h*D, (h+1)*D)", "[ch06]") {
  Generator gen(1);
  const int64_t B = 2, T = 3, C = 8, H = 4, D = C / H;
  const Tensor x = attend::randn({B, T, C}, gen);
  const Tensor s = attend::nn::split_heads(x, H);
  CHECK(s.shape() == Shape{B, H, T, D});
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < H; ++h) {
      for (int64_t t = 0; t < T; ++t) {
        for (int64_t d = 0; d < D; ++d) CHECK(s.at({b, h, t, d}) == x.at({b, t, h * D + d}));
      }
    }
  }
  const Tensor m = attend::nn::merge_heads(s);
  CHECK(m.shape() == Shape{B, T, C});
  CHECK(m.to_vector() == x.to_vector());  // exactly: only data movement
  // One head is the whole width; as many heads as channels gives D = 1.
  CHECK(attend::nn::split_heads(x, 1).shape() == Shape{B, 1, T, C});
  CHECK(attend::nn::merge_heads(attend::nn::split_heads(x, 8)).to_vector() == x.to_vector());

  REQUIRE_THROWS_MENTIONING(attend::nn::split_heads(x, 3), "split_heads", "3 heads", "(2, 3, 8)");
  REQUIRE_THROWS_MENTIONING(attend::nn::split_heads(attend::zeros({3, 8}), 2), "split_heads", "(3, 8)");
  REQUIRE_THROWS_MENTIONING(attend::nn::merge_heads(x), "merge_heads", "(2, 3, 8)");
}

TEST_CASE("split_heads / merge_heads: gradients flow back to the right channels", "[ch06]") {
  Generator gen(2);
  const Tensor x = leaf({2, 2, 4}, gen);
  // A different factor per head, so a gradient sent to the wrong channel shows.
  const Tensor per_head = attend::from_vector({1.0f, -3.0f}, {1, 2, 1, 1});
  const auto f = [&](const std::vector<Tensor>& in) {
    return attend::nn::merge_heads(attend::nn::split_heads(in[0], 2) * per_head);
  };
  const attend::GradcheckResult r = attend::gradcheck("split/merge heads", f, {x});
  INFO(r.message);
  CHECK(r.ok);
  CHECK(r.checked == 16);
}

TEST_CASE("MultiHeadAttention: parameter names, shapes and count", "[ch06]") {
  Generator gen(3);
  nn::MultiHeadAttention mha(8, 2, 0.0f, gen);
  CHECK(mha.d_model == 8);
  CHECK(mha.heads == 2);
  const attend::NamedTensors params = mha.named_parameters();
  CHECK(names_of(params) == std::vector<std::string>{"q_proj.weight", "q_proj.bias", "k_proj.weight", "k_proj.bias",
                                                     "v_proj.weight", "v_proj.bias", "out_proj.weight",
                                                     "out_proj.bias"});
  for (const auto& [name, p] : params) {
    INFO(name);
    CHECK(p.shape() == (name.ends_with("weight") ? Shape{8, 8} : Shape{8}));
    CHECK(p.requires_grad());
  }
  // Four Linear(8, 8): 4 * (8*8 + 8) = 288. Dropout has no parameters.
  CHECK(mha.parameter_count() == 288);
}

TEST_CASE("MultiHeadAttention: errors for bad head counts and mismatched shapes", "[ch06]") {
  Generator gen(4);
  REQUIRE_THROWS_MENTIONING(nn::MultiHeadAttention(10, 4, 0.0f, gen), "MultiHeadAttention", "d_model 10",
                            "heads 4");
  REQUIRE_THROWS_MENTIONING(nn::MultiHeadAttention(8, 0, 0.0f, gen), "MultiHeadAttention", "heads 0");

  nn::MultiHeadAttention mha(8, 2, 0.0f, gen);
  const Tensor q = attend::zeros({2, 3, 8});
  // Keys and values of different lengths.
  REQUIRE_THROWS_MENTIONING(mha.forward(q, attend::zeros({2, 4, 8}), attend::zeros({2, 5, 8})),
                            "MultiHeadAttention", "(2, 3, 8)", "(2, 4, 8)", "(2, 5, 8)");
  // The wrong width.
  REQUIRE_THROWS_MENTIONING(mha.forward(attend::zeros({2, 3, 6}), q, q), "MultiHeadAttention", "(2, 3, 6)",
                            "(B, Tq, 8)");
  // Different batch sizes.
  const Tensor other_batch = attend::zeros({3, 4, 8});
  REQUIRE_THROWS_MENTIONING(mha.forward(q, other_batch, other_batch), "MultiHeadAttention", "(2, 3, 8)",
                            "(3, 4, 8)");
  // Not a batch of sequences.
  REQUIRE_THROWS_MENTIONING(mha.forward(attend::zeros({3, 8}), q, q), "MultiHeadAttention", "(3, 8)");
}

TEST_CASE("MultiHeadAttention: self-attention and cross-attention shapes", "[ch06]") {
  Generator gen(5);
  nn::MultiHeadAttention mha(8, 4, 0.0f, gen);
  const Tensor y = attend::randn({2, 3, 8}, gen);       // decoder side, Tq = 3
  const Tensor memory = attend::randn({2, 5, 8}, gen);  // encoder side, Tk = 5
  Tensor w;
  const Tensor self = mha.forward(y, y, y, Tensor(), &w);
  CHECK(self.shape() == Shape{2, 3, 8});
  CHECK(w.shape() == Shape{2, 4, 3, 3});  // (B, H, Tq, Tk)
  const Tensor cross = mha.forward(y, memory, memory, Tensor(), &w);
  CHECK(cross.shape() == Shape{2, 3, 8});  // one output per query
  CHECK(w.shape() == Shape{2, 4, 3, 5});
  for (float s : attend::sum(w, {-1}).to_vector()) CHECK(std::fabs(s - 1.0f) <= 1e-5f);
}

TEST_CASE("MultiHeadAttention: equals the projections around chapter 5's attention, by hand", "[ch06]") {
  Generator gen(6);
  SECTION("one head: out_proj(sdpa(q_proj x, k_proj x, v_proj x))") {
    nn::MultiHeadAttention mha(6, 1, 0.0f, gen);
    const Tensor x = attend::randn({2, 4, 6}, gen);
    const Tensor by_hand =
        linear_by_hand(attend::nn::scaled_dot_product_attention(linear_by_hand(x, *mha.q_proj), linear_by_hand(x, *mha.k_proj),
                                                            linear_by_hand(x, *mha.v_proj)),
                       *mha.out_proj);
    CHECK(attend::max_abs_diff(mha.forward(x, x, x), by_hand) <= 1e-6f);
  }
  SECTION("three heads, cross-attention with a padding mask") {
    nn::MultiHeadAttention mha(6, 3, 0.0f, gen);
    const Tensor y = attend::randn({2, 3, 6}, gen), memory = attend::randn({2, 4, 6}, gen);
    const Tensor mask = attend::nn::padding_mask(attend::from_indices({5, 5, 5, 0, 5, 5, 0, 0}, {2, 4}), 0);
    CHECK(attend::max_abs_diff(mha.forward(y, memory, memory, mask), mha_by_hand(mha, y, memory, memory, mask)) <=
          1e-6f);
  }
  SECTION("two heads, causal self-attention") {
    nn::MultiHeadAttention mha(4, 2, 0.0f, gen);
    const Tensor x = attend::randn({1, 5, 4}, gen);
    const Tensor mask = attend::nn::causal_mask(5);
    Tensor w;
    CHECK(attend::max_abs_diff(mha.forward(x, x, x, mask, &w), mha_by_hand(mha, x, x, x, mask)) <= 1e-6f);
    // Every head leaves the future alone.
    for (int64_t h = 0; h < 2; ++h) {
      for (int64_t i = 0; i < 5; ++i) {
        for (int64_t j = i + 1; j < 5; ++j) CHECK(w.at({0, h, i, j}) == 0.0f);
      }
    }
  }
}

TEST_CASE("MultiHeadAttention: masked memory positions cannot change the output", "[ch06]") {
  Generator gen(7);
  nn::MultiHeadAttention mha(8, 2, 0.0f, gen);
  const Tensor y = attend::randn({2, 3, 8}, gen);
  Tensor memory = attend::randn({2, 4, 8}, gen);
  // Batch 0: key 3 is padding; batch 1: keys 2 and 3.
  const Tensor mask = attend::nn::padding_mask(attend::from_indices({9, 9, 9, 0, 9, 9, 0, 0}, {2, 4}), 0);
  Tensor w;
  const Tensor before = mha.forward(y, memory, memory, mask, &w);
  for (int64_t h = 0; h < 2; ++h) {
    for (int64_t i = 0; i < 3; ++i) {
      CHECK(w.at({0, h, i, 3}) == 0.0f);
      CHECK(w.at({1, h, i, 2}) == 0.0f);
      CHECK(w.at({1, h, i, 3}) == 0.0f);
    }
  }
  Tensor changed = memory.clone();
  for (int64_t c = 0; c < 8; ++c) {
    changed.set({0, 3, c}, 50.0f);
    changed.set({1, 2, c}, -50.0f);
  }
  CHECK(attend::max_abs_diff(mha.forward(y, changed, changed, mask), before) == 0.0f);
}

TEST_CASE("MultiHeadAttention: dropout on the weights only while training, reproducible per seed", "[ch06]") {
  Generator data_gen(8);
  const Tensor x = attend::randn({2, 3, 8}, data_gen);
  Generator gen_a(42), gen_b(42);
  nn::MultiHeadAttention a(8, 2, 0.5f, gen_a), b(8, 2, 0.5f, gen_b);

  a.eval();
  Tensor w_eval;
  const Tensor eval1 = a.forward(x, x, x, Tensor(), &w_eval);
  const Tensor eval2 = a.forward(x, x, x);
  CHECK(eval1.to_vector() == eval2.to_vector());  // nothing random
  CHECK(attend::max_abs_diff(eval1, mha_by_hand(a, x, x, x)) <= 1e-6f);  // and no dropout at all

  a.train();
  Tensor w_a;
  const Tensor train_a = a.forward(x, x, x, Tensor(), &w_a);
  const Tensor train_b = b.forward(x, x, x);  // same seed, same first draw
  CHECK(train_a.to_vector() == train_b.to_vector());
  CHECK(attend::max_abs_diff(train_a, eval1) > 1e-3f);
  CHECK(attend::max_abs_diff(a.forward(x, x, x), train_a) > 1e-3f);  // the next draw differs

  // Each training weight is dropped (0) or kept and scaled by 1/(1 - 0.5) = 2.
  int64_t dropped = 0, kept = 0;
  const std::vector<float> wt = w_a.to_vector(), we = w_eval.to_vector();
  for (size_t i = 0; i < wt.size(); ++i) {
    if (wt[i] == 0.0f) {
      ++dropped;
    } else {
      ++kept;
      CHECK(std::fabs(wt[i] - 2.0f * we[i]) <= 1e-6f);
    }
  }
  CHECK(dropped > 0);  // 36 weights at p = 0.5: all kept has chance 2^-36
  CHECK(kept > 0);
}

// Tolerances: gradcheck's float32 defaults (eps 1e-3, atol 2e-3, rtol 2e-2;
// see gradcheck.hpp). The layer is smooth (no ReLU kinks; masked scores are
// -inf whichever way a parameter moves), so the truncation error is
// O(eps^2) ~ 1e-6. The rounding error of one difference quotient is about
// (float32 epsilon 6e-8) * |loss| / eps: the loss sums 24 outputs of size
// ~1, |loss| ~ 5, giving ~3e-4 (the measured worst error is below 1e-4),
// well inside atol. A wrong backward (a transposed projection, a head mixed
// up) is off by O(1).
TEST_CASE("MultiHeadAttention: gradients of every parameter and input agree with central differences", "[ch06]") {
  Generator gen(9);
  nn::MultiHeadAttention mha(4, 2, 0.0f, gen);
  const std::vector<Tensor> params = mha.parameters();
  REQUIRE(params.size() == 8);
  const int64_t param_scalars = mha.parameter_count();  // 4 * (16 + 4) = 80

  // The module's parameters are leaf tensors, so they are passed to gradcheck
  // as its inputs: gradcheck nudges their values in place and the module sees it.
  SECTION("self-attention, B 2, T 3") {
    std::vector<Tensor> inputs = params;
    inputs.push_back(leaf({2, 3, 4}, gen));
    const auto f = [&](const std::vector<Tensor>& in) { return mha.forward(in[8], in[8], in[8]); };
    const attend::GradcheckResult r = attend::gradcheck("mha self", f, inputs);
    INFO(r.message << " (worst error " << r.worst_error << ")");
    CHECK(r.ok);
    CHECK(r.checked == param_scalars + 24);
  }
  SECTION("cross-attention with a padding mask, Tq 2, Tk 3") {
    std::vector<Tensor> inputs = params;
    inputs.push_back(leaf({2, 2, 4}, gen));  // queries
    inputs.push_back(leaf({2, 3, 4}, gen));  // memory
    const Tensor mask = attend::nn::padding_mask(attend::from_indices({7, 7, 0, 7, 7, 7}, {2, 3}), 0);
    const auto f = [&](const std::vector<Tensor>& in) { return mha.forward(in[8], in[9], in[9], mask); };
    const attend::GradcheckResult r = attend::gradcheck("mha cross", f, inputs);
    INFO(r.message << " (worst error " << r.worst_error << ")");
    CHECK(r.ok);
    CHECK(r.checked == param_scalars + 16 + 24);
  }
}

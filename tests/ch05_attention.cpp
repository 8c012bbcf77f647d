// Chapter 5 tests (docs/05-attention.md): scaled dot-product attention
// checked against a tiny example worked by hand and a plain-loop reference,
// its gradients against central differences, the padding and causal masks
// (including a query that may see nothing), and the ASCII heatmap.
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "attend/attention.hpp"
#include "attend/autograd.hpp"
#include "attend/gradcheck.hpp"
#include "attend/heatmap.hpp"
#include "attend/ops.hpp"
#include "attend/tensor.hpp"
#include "catch_compat.hpp"
#include "test_tensors.hpp"

using attend::Generator;
using attend::Shape;
using attend::Tensor;
using attend_test::leaf;

namespace {

bool all_finite(const Tensor& t) {
  for (float v : t.to_vector()) {
    if (!std::isfinite(v)) return false;
  }
  return true;
}

// Runs gradcheck and reports its message when it fails.
void require_gradcheck(const std::string& name,
                       const std::function<Tensor(const std::vector<Tensor>&)>& f,
                       const std::vector<Tensor>& inputs, int64_t expected_checked) {
  const attend::GradcheckResult r = attend::gradcheck(name, f, inputs);
  INFO(r.message << " (worst error " << r.worst_error << ")");
  CHECK(r.ok);
  CHECK(r.checked == expected_checked);
}

}  // namespace

TEST_CASE("attention: output and weight shapes follow (..., Tq, D) x (..., Tk, D) x (..., Tk, Dv)", "[ch05]") {
  Generator gen(1);
  SECTION("plain matrices") {
    const Tensor q = attend::randn({4, 5}, gen), k = attend::randn({6, 5}, gen), v = attend::randn({6, 7}, gen);
    Tensor w;
    const Tensor out = attend::nn::scaled_dot_product_attention(q, k, v, Tensor(), &w);
    CHECK(out.shape() == Shape{4, 7});
    CHECK(w.shape() == Shape{4, 6});
  }
  SECTION("batch and head dims in front") {
    const Tensor q = attend::randn({2, 3, 4, 5}, gen), k = attend::randn({2, 3, 6, 5}, gen),
                 v = attend::randn({2, 3, 6, 7}, gen);
    Tensor w;
    const Tensor out = attend::nn::scaled_dot_product_attention(q, k, v, Tensor(), &w);
    CHECK(out.shape() == Shape{2, 3, 4, 7});
    CHECK(w.shape() == Shape{2, 3, 4, 6});
    CHECK(attend::nn::attention_weights(q, k).shape() == Shape{2, 3, 4, 6});
  }
  SECTION("keys and values shared by every batch entry broadcast (as in matmul)") {
    const Tensor q = attend::randn({2, 4, 5}, gen), k = attend::randn({6, 5}, gen), v = attend::randn({6, 3}, gen);
    const Tensor out = attend::nn::scaled_dot_product_attention(q, k, v);
    CHECK(out.shape() == Shape{2, 4, 3});
    // Batch entry 1 alone gives the same rows.
    CHECK(attend::max_abs_diff(out.select(0, 1), attend::nn::scaled_dot_product_attention(q.select(0, 1), k, v)) <= 1e-6f);
  }
}

TEST_CASE("attention: a tiny example worked by hand (2 queries, 3 keys, D = 2)", "[ch05]") {
  // q0 = (1, 0), q1 = (0, 2); k0 = (1, 0), k1 = (0, 1), k2 = (1, 1);
  // v0 = (1, 0), v1 = (0, 1), v2 = (2, 2). Scale 1/sqrt(2) = 0.70711.
  //
  // Query 0: scores q0.kj / sqrt(2) = (1, 0, 1) * 0.70711 = (0.70711, 0, 0.70711)
  //   exp: (2.02811, 1, 2.02811), total 5.05623
  //   weights (0.40111, 0.19778, 0.40111)
  //   output 0.40111 v0 + 0.19778 v1 + 0.40111 v2
  //        = (0.40111 + 0.80222, 0.19778 + 0.80222) = (1.20334, 1.00000)
  // Query 1: scores (0, 2, 2) * 0.70711 = (0, 1.41421, 1.41421)
  //   exp: (1, 4.11325, 4.11325), total 9.22650
  //   weights (0.10838, 0.44581, 0.44581)
  //   output (0.10838 + 2 * 0.44581, 0.44581 + 2 * 0.44581) = (1.00000, 1.33742)
  const Tensor q = attend::from_vector({1, 0, 0, 2}, {2, 2});
  const Tensor k = attend::from_vector({1, 0, 0, 1, 1, 1}, {3, 2});
  const Tensor v = attend::from_vector({1, 0, 0, 1, 2, 2}, {3, 2});
  Tensor w;
  const Tensor out = attend::nn::scaled_dot_product_attention(q, k, v, Tensor(), &w);
  REQUIRE(w.shape() == Shape{2, 3});
  REQUIRE(out.shape() == Shape{2, 2});
  const std::vector<float> expected_w = {0.40111f, 0.19778f, 0.40111f, 0.10838f, 0.44581f, 0.44581f};
  const std::vector<float> expected_out = {1.20334f, 1.00000f, 1.00000f, 1.33742f};
  const std::vector<float> got_w = w.to_vector(), got_out = out.to_vector();
  for (size_t i = 0; i < expected_w.size(); ++i) CHECK_NEAR(got_w[i], expected_w[i], 1e-5);
  for (size_t i = 0; i < expected_out.size(); ++i) CHECK_NEAR(got_out[i], expected_out[i], 1e-5);
}

TEST_CASE("attention: every row of weights is a distribution over the keys", "[ch05]") {
  Generator gen(2);
  // Large scores (x3) make the softmax peaked; the rows must still sum to 1.
  const Tensor q = attend::randn({2, 3, 5, 8}, gen) * 3.0f, k = attend::randn({2, 3, 7, 8}, gen) * 3.0f;
  const Tensor mask = attend::nn::causal_mask(7).narrow(0, 2, 5);  // (5, 7): query i sees keys 0..i+2
  for (const Tensor& m : {Tensor(), mask}) {
    const Tensor w = attend::nn::attention_weights(q, k, m);
    for (float v : w.to_vector()) {
      CHECK(v >= 0.0f);
      CHECK(v <= 1.0f);
    }
    for (float s : attend::sum(w, {-1}).to_vector()) CHECK_NEAR(s, 1.0, 1e-5);
  }
}

TEST_CASE("attention_weights: softmax(q k^T / sqrt(D)) matches a plain loop", "[ch05]") {
  // The simple reference: three nested loops in double precision.
  Generator gen(3);
  const int64_t Tq = 3, Tk = 5, D = 4;
  const Tensor q = attend::randn({Tq, D}, gen), k = attend::randn({Tk, D}, gen);
  const Tensor w = attend::nn::attention_weights(q, k);
  for (int64_t i = 0; i < Tq; ++i) {
    std::vector<double> e(Tk);
    double total = 0.0;
    for (int64_t j = 0; j < Tk; ++j) {
      double dot = 0.0;
      for (int64_t d = 0; d < D; ++d) dot += static_cast<double>(q.at({i, d})) * k.at({j, d});
      e[j] = std::exp(dot / std::sqrt(static_cast<double>(D)));  // sqrt(4) = 2
      total += e[j];
    }
    for (int64_t j = 0; j < Tk; ++j) CHECK_NEAR(w.at({i, j}), e[j] / total, 1e-6);
  }
  // The same with the ops of chapter 3; without the 1/sqrt(D) the weights differ.
  const Tensor scores = attend::matmul(q, k.t());
  CHECK(attend::max_abs_diff(w, attend::softmax(scores / 2.0f, -1)) <= 1e-6f);
  CHECK(attend::max_abs_diff(w, attend::softmax(scores, -1)) > 1e-3f);
}

TEST_CASE("attention: gradients of q, k and v agree with central differences", "[ch05]") {
  Generator gen(4);
  const auto sdpa = [](const Tensor& mask) {
    return [mask](const std::vector<Tensor>& in) {
      return attend::nn::scaled_dot_product_attention(in[0], in[1], in[2], mask);
    };
  };
  SECTION("no mask") {
    const Tensor q = leaf({3, 2}, gen), k = leaf({4, 2}, gen), v = leaf({4, 3}, gen);
    require_gradcheck("sdpa", sdpa(Tensor()), {q, k, v}, 6 + 8 + 12);
  }
  SECTION("causal mask") {
    const Tensor q = leaf({4, 2}, gen), k = leaf({4, 2}, gen), v = leaf({4, 3}, gen);
    require_gradcheck("sdpa causal", sdpa(attend::nn::causal_mask(4)), {q, k, v}, 8 + 8 + 12);
  }
  SECTION("batch and head dims with a padding + causal mask") {
    // (B, H, T, D) = (2, 2, 3, 2); batch 1's last key is padding.
    const Tensor q = leaf({2, 2, 3, 2}, gen), k = leaf({2, 2, 3, 2}, gen), v = leaf({2, 2, 3, 3}, gen);
    const Tensor ids = attend::from_indices({4, 5, 6, 4, 5, 0}, {2, 3});
    const Tensor mask = attend::nn::combine_masks(attend::nn::causal_mask(3), attend::nn::padding_mask(ids, 0));
    require_gradcheck("sdpa batched", sdpa(mask), {q, k, v}, 24 + 24 + 36);
  }
  SECTION("non-contiguous inputs (a transpose and a strided slice)") {
    Tensor q = attend::randn({2, 3}, gen).t();                  // (3, 2), strides (1, 3)
    Tensor k = attend::randn({4, 4}, gen).slice(1, 0, 4, 2);    // (4, 2), strides (4, 2)
    Tensor v = attend::randn({3, 4}, gen).t();                  // (4, 3), strides (1, 4)
    for (Tensor* t : {&q, &k, &v}) {
      REQUIRE_FALSE(t->is_contiguous());
      t->set_requires_grad(true);
    }
    require_gradcheck("sdpa strided", sdpa(Tensor()), {q, k, v}, 6 + 8 + 12);
  }
}

TEST_CASE("padding_mask: (B, T) ids -> (B, 1, 1, T), 1 at padding", "[ch05]") {
  const Tensor ids = attend::from_indices({5, 6, 0, 0, 7, 0, 8, 0}, {2, 4});
  const Tensor m = attend::nn::padding_mask(ids, 0);
  CHECK(m.shape() == Shape{2, 1, 1, 4});
  CHECK(m.dtype() == attend::DType::Float32);
  CHECK(m.to_vector() == std::vector<float>{0, 0, 1, 1, 0, 1, 0, 1});
  // Another pad id: only its own entries count.
  CHECK(attend::nn::padding_mask(ids, 7).to_vector() == std::vector<float>{0, 0, 0, 0, 1, 0, 0, 0});
  REQUIRE_THROWS_MENTIONING(attend::nn::padding_mask(attend::zeros({2, 4}), 0), "padding_mask", "(2, 4)");
  REQUIRE_THROWS_MENTIONING(attend::nn::padding_mask(attend::from_indices({1, 2, 3}, {3}), 0), "padding_mask",
                            "(3,)");
}

TEST_CASE("causal_mask: 1 above the diagonal", "[ch05]") {
  CHECK(attend::nn::causal_mask(1).to_vector() == std::vector<float>{0});
  const Tensor m = attend::nn::causal_mask(3);
  CHECK(m.shape() == Shape{3, 3});
  // Row t blocks the future t+1..2.
  CHECK(m.to_vector() == std::vector<float>{0, 1, 1,
                                            0, 0, 1,
                                            0, 0, 0});
}

TEST_CASE("combine_masks: the union, broadcast to the joint shape", "[ch05]") {
  const Tensor causal = attend::nn::causal_mask(3);                                     // (3, 3)
  const Tensor pad = attend::nn::padding_mask(attend::from_indices({4, 5, 0, 4, 5, 6}, {2, 3}), 0);  // (2, 1, 1, 3)
  const Tensor both = attend::nn::combine_masks(causal, pad);
  CHECK(both.shape() == Shape{2, 1, 3, 3});
  // Batch 0 also blocks key 2 (padding) for every query; batch 1 is just causal.
  // Where both block (query 0, key 2) the entry is 1, not 2.
  CHECK(both.to_vector() == std::vector<float>{0, 1, 1,
                                               0, 0, 1,
                                               0, 0, 1,
                                               0, 1, 1,
                                               0, 0, 1,
                                               0, 0, 0});
  // Either alone when the other is undefined.
  CHECK(attend::nn::combine_masks(causal, Tensor()).to_vector() == causal.to_vector());
  CHECK(attend::nn::combine_masks(Tensor(), pad).shape() == pad.shape());
  CHECK_FALSE(attend::nn::combine_masks(Tensor(), Tensor()).defined());
}

TEST_CASE("attention: a masked key gets exactly zero weight and cannot change the output", "[ch05]") {
  Generator gen(5);
  const Tensor q = attend::randn({3, 4}, gen), k = attend::randn({4, 4}, gen), v = attend::randn({4, 2}, gen);
  const Tensor mask = attend::from_vector({0, 0, 1, 0}, {1, 4});  // every query skips key 2
  Tensor w;
  const Tensor out = attend::nn::scaled_dot_product_attention(q, k, v, mask, &w);
  for (int64_t i = 0; i < 3; ++i) CHECK(w.at({i, 2}) == 0.0f);

  // Anything at key 2, even huge values, changes nothing at all.
  Tensor k2 = k.clone(), v2 = v.clone();
  for (int64_t d = 0; d < 4; ++d) k2.set({2, d}, 1000.0f);
  for (int64_t d = 0; d < 2; ++d) v2.set({2, d}, -1000.0f);
  CHECK(attend::max_abs_diff(attend::nn::scaled_dot_product_attention(q, k2, v2, mask), out) == 0.0f);

  // Masking a key is the same as leaving it out.
  const auto keep = attend::from_indices({0, 1, 3}, {3});
  const Tensor without = attend::nn::scaled_dot_product_attention(q, attend::index_select(k, 0, keep),
                                                              attend::index_select(v, 0, keep));
  CHECK(attend::max_abs_diff(out, without) <= 1e-6f);
}

TEST_CASE("attention: a query that may see no key gets zero weights and output, never NaN", "[ch05]") {
  Generator gen(6);
  Tensor q = leaf({3, 2}, gen), k = leaf({4, 2}, gen), v = leaf({4, 3}, gen);
  // Query 1 is blocked from every key; query 0 sees keys 0-1, query 2 sees all.
  const Tensor mask = attend::from_vector({0, 0, 1, 1,
                                           1, 1, 1, 1,
                                           0, 0, 0, 0}, {3, 4});
  Tensor w;
  const Tensor out = attend::nn::scaled_dot_product_attention(q, k, v, mask, &w);
  REQUIRE(all_finite(w));
  REQUIRE(all_finite(out));
  for (int64_t j = 0; j < 4; ++j) CHECK(w.at({1, j}) == 0.0f);
  for (int64_t c = 0; c < 3; ++c) CHECK(out.at({1, c}) == 0.0f);
  CHECK_NEAR(w.at({0, 0}) + w.at({0, 1}), 1.0, 1e-6);

  // The gradients are finite too, and the blind query gets none.
  attend::sum(out * out).backward();
  CHECK(all_finite(q.grad()));
  CHECK(all_finite(k.grad()));
  CHECK(all_finite(v.grad()));
  CHECK(q.grad().at({1, 0}) == 0.0f);
  CHECK(q.grad().at({1, 1}) == 0.0f);
  require_gradcheck("sdpa fully masked row",
                    [&](const std::vector<Tensor>& in) { return attend::nn::scaled_dot_product_attention(in[0], in[1], in[2], mask); },
                    {q, k, v}, 6 + 8 + 12);
}

TEST_CASE("attention: shape errors name the op and the shapes", "[ch05]") {
  const Tensor q = attend::zeros({3, 4}), k = attend::zeros({5, 4}), v = attend::zeros({5, 2});
  // D differs between q and k.
  REQUIRE_THROWS_MENTIONING(attend::nn::attention_weights(q, attend::zeros({5, 3})), "attention_weights", "(3, 4)",
                            "(5, 3)");
  REQUIRE_THROWS_MENTIONING(attend::nn::scaled_dot_product_attention(q, attend::zeros({5, 3}), v),
                            "attention_weights", "(3, 4)", "(5, 3)");
  // k and v have different numbers of keys.
  REQUIRE_THROWS_MENTIONING(attend::nn::scaled_dot_product_attention(q, k, attend::zeros({6, 2})),
                            "scaled_dot_product_attention", "(5, 4)", "(6, 2)");
  // A 1-D query is not a sequence.
  REQUIRE_THROWS_MENTIONING(attend::nn::attention_weights(attend::zeros({4}), k), "attention_weights", "(4,)");
  // Undefined inputs are reported, not dereferenced.
  REQUIRE_THROWS_MENTIONING(attend::nn::scaled_dot_product_attention(q, k, Tensor()), "scaled_dot_product_attention");
  // A mask that does not broadcast against the scores (3, 5).
  REQUIRE_THROWS_MENTIONING(attend::nn::scaled_dot_product_attention(q, k, v, attend::zeros({2, 5})), "mask", "(2, 5)",
                            "(3, 5)");
  // A padding mask (B, 1, 1, Tk) is made for scores (B, H, Tq, Tk); against
  // 3-D scores (B, Tq, Tk) it would broadcast to 4-D, and that is refused
  // rather than silently mixing batch entries.
  const Tensor ids = attend::from_indices({1, 1, 1, 1, 0, 1, 1, 1, 1, 0}, {2, 5});
  REQUIRE_THROWS_MENTIONING(attend::nn::scaled_dot_product_attention(attend::zeros({2, 3, 4}), attend::zeros({2, 5, 4}),
                                                                 attend::zeros({2, 5, 2}), attend::nn::padding_mask(ids, 0)),
                            "mask", "(2, 1, 1, 5)", "(2, 3, 5)");
}

TEST_CASE("ascii_heatmap: labels and one shaded cell per weight", "[ch05]") {
  // Weights (2, 3); the largest is 0.75. Shades " .:-=+*#%@" are indexed by
  // round(9 * w / 0.75): 0 -> ' ', 0.25 -> 3 '-', 0.5 -> 6 '*', 0.75 -> 9 '@'.
  const Tensor w = attend::from_vector({0.0f, 0.25f, 0.75f,
                                        0.5f, 0.5f, 0.0f}, {2, 3});
  const std::string got = attend::io::ascii_heatmap(w, {"a", "bb"}, {"x", "yz", "w"});
  // Row labels are right-aligned to the widest ("bb", 2 characters) and
  // followed by " |"; each cell is 3 characters wide. The column labels run
  // downwards above the cells, one character per line (the last character
  // of each 3-wide column), padded with spaces.
  const std::string expected =
      "      x  y  w\n"   // 4 spaces (label width + 2), then "  x", "  y", "  w"
      "         z   \n"   // only "yz" has a second character: 4 + 3 + 2 spaces, "z", 3 spaces
      " a |   ---@@@|\n"  // 0, 0.25, 0.75
      "bb |******   |\n"; // 0.5, 0.5, 0
  INFO("got:\n" << got);
  CHECK(got == expected);

  // Entries below zero (not weights, e.g. raw scores) are drawn blank, not dark.
  CHECK(attend::io::ascii_heatmap(attend::from_vector({1.0f, -1.0f}, {1, 2}), {"q"}, {"k", "l"}) ==
        "     k  l\nq |@@@   |\n");
  // All zeros (every key masked): blank cells, no division by zero.
  CHECK(attend::io::ascii_heatmap(attend::zeros({1, 2}), {"q"}, {"k", "l"}) == "     k  l\nq |      |\n");

  REQUIRE_THROWS_MENTIONING(attend::io::ascii_heatmap(w, {"a"}, {"x", "yz", "w"}), "ascii_heatmap", "1 row labels",
                            "(2, 3)");
  REQUIRE_THROWS_MENTIONING(attend::io::ascii_heatmap(w, {"a", "bb"}, {"x"}), "ascii_heatmap", "1 column labels",
                            "(2, 3)");
  REQUIRE_THROWS_MENTIONING(attend::io::ascii_heatmap(attend::zeros({2, 3, 1}), {"a", "bb"}, {"x", "yz", "w"}),
                            "ascii_heatmap", "2-D");
}

// Chapter 7 tests (docs/07-transformer.md): positional encoding values worked
// by hand, the feed-forward block, pre- and post-norm encoder and decoder
// layers (recomputed from their parts and gradient-checked), the whole
// Seq2SeqTransformer (parameter names, tied output, causality, padding,
// permutation equivariance, errors) and a tiny model that learns to copy.
#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "attend/attention.hpp"
#include "attend/autograd.hpp"
#include "attend/gradcheck.hpp"
#include "attend/multihead_attention.hpp"
#include "attend/nn.hpp"
#include "attend/ops.hpp"
#include "attend/optim.hpp"
#include "attend/tensor.hpp"
#include "attend/transformer.hpp"
#include "catch_compat.hpp"
#include "test_tensors.hpp"

using attend::Generator;
using attend::Shape;
using attend::Tensor;
namespace nn = attend::nn;
using attend_test::leaf;

namespace {

// A small model configuration: vocabularies 11 and 13, d_model 8, 2 heads,
// 2 + 2 layers, d_ff 16, no dropout.
nn::TransformerConfig tiny_config() {
  nn::TransformerConfig c{.src_vocab = 11, .tgt_vocab = 13, .d_model = 8, .heads = 2, .encoder_layers = 2,
      .decoder_layers = 2, .d_ff = 16, .dropout = 0.0f, .max_len = 16};
  return c;
}

// A layer-sized configuration for the gradient checks: d_model 4, 2 heads,
// d_ff 8, no dropout, GELU (smooth, so no ReLU kink can sit inside a
// finite-difference step and spoil the comparison).
nn::TransformerConfig layer_config(bool pre_norm) {
  nn::TransformerConfig c{.d_model = 4, .heads = 2, .d_ff = 8, .dropout = 0.0f, .pre_norm = pre_norm,
      .activation = nn::Activation::GELU};
  return c;
}

bool has_name(const attend::NamedTensors& named, const std::string& name) {
  for (const auto& [n, t] : named) {
    if (n == name) return true;
  }
  return false;
}

Tensor param(const attend::NamedTensors& named, const std::string& name) {
  for (const auto& [n, t] : named) {
    if (n == name) return t;
  }
  FAIL("no parameter named " << name);
  return Tensor();
}

// Rows of a (B, T) id tensor, each written out.
Tensor ids(const std::vector<std::vector<int64_t>>& rows) {
  std::vector<int64_t> flat;
  for (const auto& r : rows) flat.insert(flat.end(), r.begin(), r.end());
  return attend::from_indices(flat, {static_cast<int64_t>(rows.size()), static_cast<int64_t>(rows[0].size())});
}

// Every row of x (..., C) has mean 0 and variance 1 (what a fresh LayerNorm gives).
void check_normalised_rows(const Tensor& x) {
  const Tensor m = attend::mean(x, {-1});
  const Tensor var = attend::mean(attend::pow(x - attend::mean(x, {-1}, true), 2.0f), {-1});
  for (float v : m.to_vector()) CHECK_NEAR(v, 0.0, 1e-5);
  for (float v : var.to_vector()) CHECK_NEAR(v, 1.0, 1e-3);  // (var + 1e-5 eps) shrinks it by ~1e-5
}

}  // namespace

TEST_CASE("sinusoidal_positional_encoding: values worked by hand", "[ch07]") {
  const Tensor pe = attend::nn::sinusoidal_positional_encoding(4, 6);
  REQUIRE(pe.shape() == Shape{4, 6});
  // Position 0: every angle is 0, so sin 0 = 0 in even columns and cos 0 = 1 in odd ones.
  CHECK(pe.select(0, 0).to_vector() == std::vector<float>{0, 1, 0, 1, 0, 1});
  // Position 1, pair 0 (columns 0, 1): angle 1 / 10000^(0/6) = 1.
  CHECK_NEAR(pe.at({1, 0}), std::sin(1.0), 1e-6);  // 0.841471
  CHECK_NEAR(pe.at({1, 1}), std::cos(1.0), 1e-6);  // 0.540302
  // Position 1, pair 1 (columns 2, 3): angle 1 / 10000^(2/6) = 1 / 21.5443 = 0.0464159.
  CHECK_NEAR(pe.at({1, 2}), 0.0463992, 1e-6);  // sin(0.0464159)
  CHECK_NEAR(pe.at({1, 3}), 0.9989228, 1e-6);  // cos(0.0464159)
  // Position 3, pair 0: sin 3 = 0.141120, cos 3 = -0.989992.
  CHECK_NEAR(pe.at({3, 0}), 0.1411200, 1e-6);
  CHECK_NEAR(pe.at({3, 1}), -0.9899925, 1e-6);
  // Position 2, pair 2 (columns 4, 5): angle 2 / 10000^(4/6) = 2 / 464.159 = 0.00430887.
  CHECK_NEAR(pe.at({2, 4}), 0.0043088, 1e-6);
  CHECK_NEAR(pe.at({2, 5}), 0.9999907, 1e-6);
  // An odd width keeps the last sine column.
  const Tensor odd = attend::nn::sinusoidal_positional_encoding(2, 5);
  CHECK(odd.shape() == Shape{2, 5});
  CHECK_NEAR(odd.at({1, 4}), std::sin(1.0 / std::pow(10000.0, 4.0 / 5.0)), 1e-6);
  // The same table's first rows for a longer max_len.
  CHECK(attend::nn::sinusoidal_positional_encoding(10, 6).narrow(0, 0, 4).to_vector() == pe.to_vector());
}

TEST_CASE("FeedForward: linear2(activation(linear1(x))) with names linear1, linear2", "[ch07]") {
  Generator gen(1);
  nn::FeedForward ff(8, 16, 0.0f, nn::Activation::ReLU, gen);
  const attend::NamedTensors named = ff.named_parameters();
  REQUIRE(named.size() == 4);
  CHECK(named[0].first == "linear1.weight");
  CHECK(named[0].second.shape() == Shape{16, 8});
  CHECK(named[1].first == "linear1.bias");
  CHECK(named[2].first == "linear2.weight");
  CHECK(named[2].second.shape() == Shape{8, 16});
  CHECK(named[3].first == "linear2.bias");

  const Tensor x = attend::randn({2, 3, 8}, gen);
  const auto by_hand = [&](const Tensor& h) {
    return attend::matmul(h, ff.linear2->weight.t()) + ff.linear2->bias;
  };
  const Tensor pre = attend::matmul(x, ff.linear1->weight.t()) + ff.linear1->bias;  // (2, 3, 16)
  const Tensor y = ff.forward(x);
  CHECK(y.shape() == Shape{2, 3, 8});
  CHECK(attend::max_abs_diff(y, by_hand(attend::relu(pre))) <= 1e-6f);

  nn::FeedForward gelu_ff(8, 16, 0.0f, nn::Activation::GELU, gen);
  const Tensor pre_g = attend::matmul(x, gelu_ff.linear1->weight.t()) + gelu_ff.linear1->bias;
  const Tensor expected_g = attend::matmul(attend::gelu(pre_g), gelu_ff.linear2->weight.t()) + gelu_ff.linear2->bias;
  CHECK(attend::max_abs_diff(gelu_ff.forward(x), expected_g) <= 1e-6f);

  // Dropout (between the two linears) acts only in training.
  nn::FeedForward dropping(8, 16, 0.5f, nn::Activation::ReLU, gen);
  const Tensor train_out = dropping.forward(x);
  dropping.eval();
  const Tensor eval_out = dropping.forward(x);
  CHECK(attend::max_abs_diff(train_out, eval_out) > 1e-4f);
  CHECK(dropping.forward(x).to_vector() == eval_out.to_vector());
}

TEST_CASE("TransformerEncoderLayer: pre-norm and post-norm, recomputed from the layer's parts", "[ch07]") {
  Generator gen(2);
  nn::TransformerConfig c = tiny_config();
  const Tensor x = attend::randn({2, 5, 8}, gen);
  const Tensor mask = attend::nn::padding_mask(ids({{3, 4, 5, 6, 7}, {3, 4, 5, 0, 0}}), 0);

  SECTION("pre-norm: x + f(norm(x))") {
    c.pre_norm = true;
    nn::TransformerEncoderLayer layer(c, gen);
    const Tensor y = layer.forward(x, mask);
    CHECK(y.shape() == Shape{2, 5, 8});
    const Tensor h = layer.norm1->forward(x);
    const Tensor a = x + layer.self_attn->forward(h, h, h, mask);
    const Tensor expected = a + layer.feed_forward->forward(layer.norm2->forward(a));
    CHECK(attend::max_abs_diff(y, expected) <= 1e-6f);
  }
  SECTION("post-norm: norm(x + f(x)); the output rows are normalised") {
    c.pre_norm = false;
    nn::TransformerEncoderLayer layer(c, gen);
    const Tensor y = layer.forward(x, mask);
    CHECK(y.shape() == Shape{2, 5, 8});
    const Tensor a = layer.norm1->forward(x + layer.self_attn->forward(x, x, x, mask));
    const Tensor expected = layer.norm2->forward(a + layer.feed_forward->forward(a));
    CHECK(attend::max_abs_diff(y, expected) <= 1e-6f);
    check_normalised_rows(y);
  }
  SECTION("parameter names") {
    nn::TransformerEncoderLayer layer(c, gen);
    const attend::NamedTensors named = layer.named_parameters();
    for (const char* name : {"self_attn.q_proj.weight", "self_attn.out_proj.bias", "feed_forward.linear1.weight",
                             "feed_forward.linear2.bias", "norm1.weight", "norm2.bias"}) {
      INFO(name);
      CHECK(has_name(named, name));
    }
    // 4 (8*8 + 8) + (8*16 + 16 + 16*8 + 8) + 2 (8 + 8) = 288 + 280 + 32
    CHECK(layer.parameter_count() == 600);
  }
}

TEST_CASE("TransformerDecoderLayer: pre-norm and post-norm, recomputed from the layer's parts", "[ch07]") {
  Generator gen(3);
  nn::TransformerConfig c = tiny_config();
  const Tensor y = attend::randn({2, 4, 8}, gen);       // target side, T = 4
  const Tensor memory = attend::randn({2, 6, 8}, gen);  // source side, S = 6
  const Tensor self_mask = attend::nn::causal_mask(4);
  const Tensor memory_mask = attend::nn::padding_mask(ids({{3, 3, 3, 3, 3, 3}, {3, 3, 3, 0, 0, 0}}), 0);

  SECTION("pre-norm") {
    c.pre_norm = true;
    nn::TransformerDecoderLayer layer(c, gen);
    Tensor cross;
    const Tensor out = layer.forward(y, memory, self_mask, memory_mask, &cross);
    CHECK(out.shape() == Shape{2, 4, 8});
    CHECK(cross.shape() == Shape{2, 2, 4, 6});  // (B, H, T, S)
    for (int64_t h = 0; h < 2; ++h) {
      for (int64_t t = 0; t < 4; ++t) CHECK(cross.at({1, h, t, 4}) == 0.0f);  // source padding
    }
    const Tensor h1 = layer.norm1->forward(y);
    const Tensor a = y + layer.self_attn->forward(h1, h1, h1, self_mask);
    const Tensor h2 = layer.norm2->forward(a);
    const Tensor b = a + layer.multihead_attn->forward(h2, memory, memory, memory_mask);
    const Tensor expected = b + layer.feed_forward->forward(layer.norm3->forward(b));
    CHECK(attend::max_abs_diff(out, expected) <= 1e-6f);
  }
  SECTION("post-norm") {
    c.pre_norm = false;
    nn::TransformerDecoderLayer layer(c, gen);
    const Tensor out = layer.forward(y, memory, self_mask, memory_mask);
    CHECK(out.shape() == Shape{2, 4, 8});
    const Tensor a = layer.norm1->forward(y + layer.self_attn->forward(y, y, y, self_mask));
    const Tensor b = layer.norm2->forward(a + layer.multihead_attn->forward(a, memory, memory, memory_mask));
    const Tensor expected = layer.norm3->forward(b + layer.feed_forward->forward(b));
    CHECK(attend::max_abs_diff(out, expected) <= 1e-6f);
    check_normalised_rows(out);
  }
}

TEST_CASE("TransformerEncoder / TransformerDecoder stacks: shapes and the final norm of pre-norm", "[ch07]") {
  Generator gen(4);
  for (bool pre_norm : {true, false}) {
    nn::TransformerConfig c = tiny_config();
    c.pre_norm = pre_norm;
    nn::TransformerEncoder encoder(c, gen);
    nn::TransformerDecoder decoder(c, gen);
    CHECK(encoder.layers->size() == 2);
    CHECK(decoder.layers->size() == 2);
    // Pre-norm ends with a LayerNorm over the last residual sum; post-norm's
    // layers already end with one.
    CHECK(static_cast<bool>(encoder.norm) == pre_norm);
    CHECK(has_name(encoder.named_parameters(), "norm.weight") == pre_norm);
    CHECK(has_name(decoder.named_parameters(), "norm.bias") == pre_norm);
    CHECK(has_name(encoder.named_parameters(), "layers.1.norm2.weight"));
    CHECK(has_name(decoder.named_parameters(), "layers.1.norm3.weight"));

    const Tensor x = attend::randn({2, 5, 8}, gen), y = attend::randn({2, 3, 8}, gen);
    const Tensor memory = encoder.forward(x);
    CHECK(memory.shape() == Shape{2, 5, 8});
    const Tensor out = decoder.forward(y, memory, attend::nn::causal_mask(3), Tensor());
    CHECK(out.shape() == Shape{2, 3, 8});
    // Either way the stack's output is a LayerNorm's (fresh: weight 1, bias 0).
    check_normalised_rows(memory);
    check_normalised_rows(out);
  }
}

// Tolerances: gradcheck's float32 defaults (eps 1e-3, atol 2e-3, rtol 2e-2,
// see gradcheck.hpp). With GELU and dropout 0 the layers are smooth, so the
// truncation error is O(eps^2). The rounding error of a difference quotient
// is about float32 epsilon (6e-8) * |loss| / eps, with |loss| ~ a few (24
// outputs of size ~1 after layer norm): ~1e-4, which is what the checks
// measure (worst errors a few 1e-4). LayerNorm over only 4 channels divides
// by a standard deviation of order 1 here, so it does not amplify that much.
TEST_CASE("TransformerEncoderLayer: gradients of every parameter and the input", "[ch07]") {
  Generator gen(5);
  for (bool pre_norm : {true, false}) {
    INFO((pre_norm ? "pre-norm" : "post-norm"));
    nn::TransformerEncoderLayer layer(layer_config(pre_norm), gen);
    std::vector<Tensor> inputs = layer.parameters();
    const size_t n = inputs.size();
    REQUIRE(n == 8 + 4 + 4);  // attention 8, feed-forward 4, two norms 4
    inputs.push_back(leaf({2, 3, 4}, gen));
    const Tensor mask = attend::nn::padding_mask(ids({{3, 3, 3}, {3, 3, 0}}), 0);
    const auto f = [&](const std::vector<Tensor>& in) { return layer.forward(in[n], mask); };
    const attend::GradcheckResult r = attend::gradcheck("encoder layer", f, inputs);
    INFO(r.message << " (worst error " << r.worst_error << ")");
    CHECK(r.ok);
    // 80 (attention) + 76 (4*8 + 8 + 8*4 + 4) + 16 (norms) + 24 (x)
    CHECK(r.checked == 80 + 76 + 16 + 24);
  }
}

TEST_CASE("TransformerDecoderLayer: gradients of every parameter, the target and the memory", "[ch07]") {
  Generator gen(6);
  for (bool pre_norm : {true, false}) {
    INFO((pre_norm ? "pre-norm" : "post-norm"));
    nn::TransformerDecoderLayer layer(layer_config(pre_norm), gen);
    std::vector<Tensor> inputs = layer.parameters();
    const size_t n = inputs.size();
    REQUIRE(n == 16 + 4 + 6);
    inputs.push_back(leaf({2, 3, 4}, gen));  // y
    inputs.push_back(leaf({2, 2, 4}, gen));  // memory
    const Tensor self_mask = attend::nn::causal_mask(3);
    const Tensor memory_mask = attend::nn::padding_mask(ids({{3, 3}, {3, 0}}), 0);
    const auto f = [&](const std::vector<Tensor>& in) {
      return layer.forward(in[n], in[n + 1], self_mask, memory_mask);
    };
    const attend::GradcheckResult r = attend::gradcheck("decoder layer", f, inputs);
    INFO(r.message << " (worst error " << r.worst_error << ")");
    CHECK(r.ok);
    CHECK(r.checked == 160 + 76 + 24 + 24 + 16);
  }
}

TEST_CASE("Seq2SeqTransformer: logits (B, T_tgt, V_tgt) and PyTorch-style parameter names", "[ch07]") {
  Generator gen(7);
  nn::Seq2SeqTransformer model(tiny_config(), gen);
  const Tensor src = ids({{3, 4, 5, 6}, {7, 8, 0, 0}});           // (2, 4)
  const Tensor tgt = ids({{1, 3, 4, 5, 6}, {1, 9, 10, 0, 0}});    // (2, 5)
  const Tensor logits = model.forward(src, tgt);
  CHECK(logits.shape() == Shape{2, 5, 13});
  CHECK(model.encode(src).shape() == Shape{2, 4, 8});

  const attend::NamedTensors named = model.named_parameters();
  // PyTorch's nn.Transformer names where they exist (docs/07-transformer.md maps the rest).
  for (const char* name : {"src_embed.weight", "tgt_embed.weight", "encoder.layers.0.self_attn.q_proj.weight",
                           "encoder.layers.1.self_attn.v_proj.bias", "encoder.layers.0.feed_forward.linear1.weight",
                           "encoder.layers.1.norm2.bias", "encoder.norm.weight",
                           "decoder.layers.0.self_attn.k_proj.weight", "decoder.layers.0.multihead_attn.out_proj.bias",
                           "decoder.layers.1.multihead_attn.q_proj.weight", "decoder.layers.0.norm3.weight",
                           "decoder.norm.bias", "output_proj.weight", "output_proj.bias"}) {
    INFO(name);
    CHECK(has_name(named, name));
  }
  CHECK_FALSE(has_name(named, "encoder.layers.2.norm1.weight"));
  CHECK(param(named, "output_proj.weight").shape() == Shape{13, 8});
  CHECK(param(named, "src_embed.weight").shape() == Shape{11, 8});
  // Embeddings 11*8 + 13*8 = 192; encoder layers 2 * 600; decoder layers
  // 2 * (2*288 + 280 + 3*16) = 2 * 904; final norms 16 + 16; output 8*13 + 13 = 117.
  CHECK(model.parameter_count() == 192 + 1200 + 1808 + 32 + 117);
  // The sinusoidal table is not a parameter.
  CHECK_FALSE(has_name(named, "src_pos.weight"));

  nn::TransformerConfig learned = tiny_config();
  learned.learned_positions = true;
  nn::Seq2SeqTransformer with_learned(learned, gen);
  CHECK(param(with_learned.named_parameters(), "tgt_pos.weight").shape() == Shape{16, 8});
}

TEST_CASE("Seq2SeqTransformer: tie_output scores against tgt_embed.weight instead of an output_proj", "[ch07]") {
  nn::TransformerConfig c = tiny_config();
  c.tie_output = true;
  Generator gen(8);
  nn::Seq2SeqTransformer model(c, gen);
  CHECK(model.output_proj == nullptr);
  CHECK_FALSE(has_name(model.named_parameters(), "output_proj.weight"));
  CHECK(model.parameter_count() == 192 + 1200 + 1808 + 32);  // 117 fewer

  const Tensor src = ids({{3, 4, 5}}), tgt = ids({{1, 3, 4}});
  const Tensor logits = model.forward(src, tgt);
  CHECK(logits.shape() == Shape{1, 3, 13});
  // logits = decoder output @ tgt_embed.weight^T, recomputed from the parts.
  const Tensor memory = model.encode(src);
  const Tensor self_mask = attend::nn::combine_masks(attend::nn::causal_mask(3), attend::nn::padding_mask(tgt, 0));
  const Tensor h = model.decoder->forward(model.embed(*model.tgt_embed, tgt), memory, self_mask,
                                          attend::nn::padding_mask(src, 0));
  CHECK(attend::max_abs_diff(logits, attend::matmul(h, model.tgt_embed->weight.t())) <= 1e-5f);

  // Target token 7 is never an input, yet its embedding row learns: through the output.
  attend::cross_entropy(logits, ids({{3, 4, 7}})).backward();
  const Tensor g = model.tgt_embed->weight.grad();
  REQUIRE(g.defined());
  float row7 = 0.0f;
  for (int64_t d = 0; d < 8; ++d) row7 += std::fabs(g.at({7, d}));
  CHECK(row7 > 0.0f);
}

TEST_CASE("Seq2SeqTransformer: embeddings start with std 1/sqrt(d_model), padding row zero", "[ch07]") {
  nn::TransformerConfig c{.src_vocab = 300, .tgt_vocab = 300, .d_model = 64, .heads = 2, .encoder_layers = 1,
      .decoder_layers = 1, .d_ff = 8};
  for (float requested : {0.0f, 0.5f}) {
    c.embedding_std = requested;
    const double expected = requested > 0.0f ? requested : 1.0 / std::sqrt(64.0);  // 0.125
    Generator gen(9);
    nn::Seq2SeqTransformer model(c, gen);
    for (const Tensor& w : {model.src_embed->weight, model.tgt_embed->weight}) {
      // Rows 1..299: 299 * 64 = 19136 draws; the sample std is within
      // ~1/sqrt(2n) = 0.5% of the true one, so 5% is a wide margin.
      const std::vector<float> v = w.narrow(0, 1, 299).to_vector();
      double s = 0.0, s2 = 0.0;
      for (float x : v) {
        s += x;
        s2 += static_cast<double>(x) * x;
      }
      const double mean = s / static_cast<double>(v.size());
      const double std = std::sqrt(s2 / static_cast<double>(v.size()) - mean * mean);
      CHECK_NEAR(mean, 0.0, 0.05 * expected);
      CHECK_NEAR(std, expected, 0.05 * expected);
      for (float x : w.select(0, 0).to_vector()) CHECK(x == 0.0f);  // pad_id 0
    }
  }
}

TEST_CASE("Seq2SeqTransformer: causal: a target position never sees later tokens", "[ch07]") {
  Generator gen(10);
  nn::Seq2SeqTransformer model(tiny_config(), gen);
  model.eval();
  const Tensor src = ids({{3, 4, 5, 6, 7}, {8, 9, 10, 0, 0}});
  const Tensor tgt = ids({{1, 3, 4, 5, 6, 7}, {1, 8, 9, 10, 11, 12}});
  const Tensor logits = model.forward(src, tgt);
  const int64_t t = 2;

  // Change every token after position t: logits at 0..t stay (exactly: the
  // changed keys get weight exp(-inf) = 0).
  const Tensor later_changed = ids({{1, 3, 4, 12, 11, 10}, {1, 8, 9, 3, 3, 3}});
  const Tensor logits2 = model.forward(src, later_changed);
  CHECK(attend::max_abs_diff(logits.narrow(1, 0, t + 1), logits2.narrow(1, 0, t + 1)) <= 1e-6f);
  CHECK(attend::max_abs_diff(logits.narrow(1, t + 1, 3), logits2.narrow(1, t + 1, 3)) > 1e-4f);

  // Change the token at position 1 <= t: every later position changes, the earlier one does not.
  const Tensor early_changed = ids({{1, 12, 4, 5, 6, 7}, {1, 3, 9, 10, 11, 12}});
  const Tensor logits3 = model.forward(src, early_changed);
  CHECK(attend::max_abs_diff(logits.narrow(1, 0, 1), logits3.narrow(1, 0, 1)) <= 1e-6f);
  for (int64_t p = 1; p < 6; ++p) {
    INFO("position " << p);
    CHECK(attend::max_abs_diff(logits.narrow(1, p, 1), logits3.narrow(1, p, 1)) > 1e-4f);
  }

  // So decoding a prefix gives the prefix's logits (what greedy decoding relies on).
  const Tensor memory = model.encode(src);
  const Tensor prefix = model.decode(tgt.narrow(1, 0, t + 1).contiguous(), memory, src);
  CHECK(attend::max_abs_diff(prefix, logits.narrow(1, 0, t + 1)) <= 1e-5f);
}

TEST_CASE("Seq2SeqTransformer: source padding changes nothing at the real positions", "[ch07]") {
  Generator gen(11);
  nn::Seq2SeqTransformer model(tiny_config(), gen);
  model.eval();
  const Tensor tgt = ids({{1, 3, 4, 5}, {1, 6, 7, 8}});
  // Two sentences padded to a common length 7 (3 and 5 pads) against each alone.
  const Tensor padded = ids({{3, 4, 5, 6, 0, 0, 0}, {7, 8, 0, 0, 0, 0, 0}});
  const Tensor logits = model.forward(padded, tgt);
  const Tensor memory = model.encode(padded);
  const std::vector<Tensor> alone = {ids({{3, 4, 5, 6}}), ids({{7, 8}})};
  for (int64_t b = 0; b < 2; ++b) {
    INFO("batch entry " << b);
    const Tensor tgt_b = tgt.narrow(0, b, 1).contiguous();
    CHECK(attend::max_abs_diff(logits.narrow(0, b, 1), model.forward(alone[b], tgt_b)) <= 1e-5f);
    const int64_t S = alone[b].size(1);
    CHECK(attend::max_abs_diff(memory.narrow(0, b, 1).narrow(1, 0, S), model.encode(alone[b])) <= 1e-5f);
  }
}

TEST_CASE("Seq2SeqTransformer: without positions the encoder is permutation-equivariant", "[ch07]") {
  nn::TransformerConfig c = tiny_config();
  c.use_positions = false;
  Generator gen(12);
  nn::Seq2SeqTransformer model(c, gen);
  model.eval();
  const std::vector<int64_t> perm = {2, 0, 4, 1, 3};  // new row i is old row perm[i]
  const std::vector<std::vector<int64_t>> rows = {{3, 4, 5, 6, 7}, {8, 9, 10, 3, 0}};
  std::vector<std::vector<int64_t>> permuted = rows;
  for (size_t b = 0; b < rows.size(); ++b) {
    for (size_t i = 0; i < perm.size(); ++i) permuted[b][i] = rows[b][perm[i]];
  }
  const Tensor out = model.encode(ids(rows));
  const Tensor out_perm = model.encode(ids(permuted));
  const Tensor index = attend::from_indices(perm, {5});
  // Permuting the tokens permutes the output rows, nothing else (padding included).
  CHECK(attend::max_abs_diff(out_perm, attend::index_select(out, 1, index)) <= 1e-5f);

  // With positions (the default) the order matters.
  Generator gen2(12);
  nn::Seq2SeqTransformer positional(tiny_config(), gen2);
  positional.eval();
  CHECK(attend::max_abs_diff(positional.encode(ids(permuted)),
                             attend::index_select(positional.encode(ids(rows)), 1, index)) > 1e-3f);
}

TEST_CASE("Seq2SeqTransformer: errors name the problem", "[ch07]") {
  Generator gen(13);
  nn::TransformerConfig c = tiny_config();
  c.max_len = 8;
  nn::Seq2SeqTransformer model(c, gen);
  const Tensor nine = ids({{3, 3, 3, 3, 3, 3, 3, 3, 3}});
  REQUIRE_THROWS_MENTIONING(model.forward(nine, ids({{1, 3}})), "Seq2SeqTransformer", "length 9", "max_len 8");
  REQUIRE_THROWS_MENTIONING(model.forward(ids({{3, 4}}), nine), "Seq2SeqTransformer", "length 9", "max_len 8");
  // Exactly max_len is fine.
  CHECK(model.forward(ids({{3, 3, 3, 3, 3, 3, 3, 3}}), ids({{1, 3}})).shape() == Shape{1, 2, 13});

  REQUIRE_THROWS_MENTIONING(model.forward(ids({{3, 4, 5, 6, 7}, {3, 4, 5, 6, 7}}), ids({{1, 3, 4, 5}, {1, 3, 4, 5}, {1, 3, 4, 5}})),
                            "Seq2SeqTransformer", "(2, 5)", "(3, 4)");
  REQUIRE_THROWS_MENTIONING(model.forward(attend::from_indices({3, 4}, {2}), ids({{1, 3}})), "Seq2SeqTransformer",
                            "(2,)");

  nn::TransformerConfig bad = tiny_config();
  bad.d_model = 10;
  bad.heads = 4;
  REQUIRE_THROWS_MENTIONING(nn::Seq2SeqTransformer(bad, gen), "d_model 10", "heads 4");
  nn::TransformerConfig no_vocab = tiny_config();
  no_vocab.tgt_vocab = 0;
  REQUIRE_THROWS_MENTIONING(nn::Seq2SeqTransformer(no_vocab, gen), "Seq2SeqTransformer", "vocabulary");
  // A token id outside the vocabulary is caught by the embedding lookup.
  REQUIRE_THROWS_MENTIONING(model.forward(ids({{3, 11}}), ids({{1, 3}})), "embedding", "11");
}

// The copy task: the model reads digits and writes them back, then <eos>.
// Token ids: pad 0, bos 1, eos 2, digits 3..12.
//   src    = d1 .. d6            (B, 6)
//   tgt_in = bos d1 .. d6        (B, 7)  teacher forcing: the true previous token
//   tgt_out= d1 .. d6 eos        (B, 7)  what each position should predict
// A 1 + 1 layer model with d_model 16 learns it to 100% greedy exact match on
// sequences it never saw, in at most 600 Adam steps: about 240 with these
// seeds, and 196 to 260 with other model seeds (about 0.3 s of CPU time at -O2).
// Every op here is below the sizes at which the library starts threads, so
// the test stays quick even on a busy machine.
TEST_CASE("Seq2SeqTransformer: a tiny model learns to copy digit sequences", "[ch07]") {
  constexpr int64_t kPad = 0, kBos = 1, kEos = 2, kLength = 6, kBatch = 16, kMaxSteps = 600;
  nn::TransformerConfig c{.src_vocab = 13, .tgt_vocab = 13, .d_model = 16, .heads = 2, .encoder_layers = 1,
      .decoder_layers = 1, .d_ff = 32, .dropout = 0.0f, .max_len = kLength + 1, .pad_id = kPad};
  Generator gen(2024);
  nn::Seq2SeqTransformer model(c, gen);

  const auto random_digits = [&](Generator& g) {
    std::vector<int64_t> s(kLength);
    for (int64_t& d : s) d = 3 + g.randint(10);
    return s;
  };
  // 50 held-out sequences; training never draws one of them.
  Generator test_gen(77);
  std::set<std::vector<int64_t>> held_out;
  while (held_out.size() < 50) held_out.insert(random_digits(test_gen));

  attend::optim::Adam adam(model.named_parameters(), 5e-3f, 0.9f, 0.98f);
  Generator data_gen(5);
  const auto start = std::chrono::steady_clock::now();
  int64_t steps = 0, low_loss_run = 0;
  float loss_value = 0.0f;
  while (steps < kMaxSteps && low_loss_run < 20) {
    std::vector<int64_t> src, tgt_in, tgt_out;
    for (int64_t b = 0; b < kBatch; ++b) {
      std::vector<int64_t> s = random_digits(data_gen);
      while (held_out.count(s)) s = random_digits(data_gen);
      src.insert(src.end(), s.begin(), s.end());
      tgt_in.push_back(kBos);
      tgt_in.insert(tgt_in.end(), s.begin(), s.end());
      tgt_out.insert(tgt_out.end(), s.begin(), s.end());
      tgt_out.push_back(kEos);
    }
    const Tensor logits = model.forward(attend::from_indices(src, {kBatch, kLength}),
                                        attend::from_indices(tgt_in, {kBatch, kLength + 1}));
    const Tensor loss = attend::cross_entropy(logits, attend::from_indices(tgt_out, {kBatch, kLength + 1}), kPad);
    adam.zero_grad();
    loss.backward();
    adam.step();
    ++steps;
    loss_value = loss.item();
    // Stop once the loss has stayed small for 20 steps in a row (after 10, a
    // change in log_softmax's rounding left the model 2 of 50 sequences short).
    low_loss_run = loss_value < 0.01f ? low_loss_run + 1 : 0;
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  INFO("trained " << steps << " steps in " << seconds << " s, last loss " << loss_value);
  CHECK(loss_value < 0.05f);

  // Greedy decoding of all held-out sequences at once: start from <bos>, append
  // the most likely next token, kLength + 1 times.
  model.eval();
  attend::NoGradGuard no_grad;
  std::vector<int64_t> src;
  for (const auto& s : held_out) src.insert(src.end(), s.begin(), s.end());
  const int64_t N = static_cast<int64_t>(held_out.size());
  const Tensor src_ids = attend::from_indices(src, {N, kLength});
  const Tensor memory = model.encode(src_ids);
  std::vector<std::vector<int64_t>> out(N, std::vector<int64_t>{kBos});
  for (int64_t step = 0; step <= kLength; ++step) {
    std::vector<int64_t> flat;
    for (const auto& o : out) flat.insert(flat.end(), o.begin(), o.end());
    const int64_t T = static_cast<int64_t>(out[0].size());
    const Tensor logits = model.decode(attend::from_indices(flat, {N, T}), memory, src_ids);  // (N, T, V)
    const std::vector<int64_t> next = attend::argmax(logits.select(1, T - 1), -1).to_index_vector();
    for (int64_t i = 0; i < N; ++i) out[i].push_back(next[i]);
  }
  int64_t exact = 0;
  int64_t i = 0;
  for (const auto& s : held_out) {
    std::vector<int64_t> expected = {kBos};
    expected.insert(expected.end(), s.begin(), s.end());
    expected.push_back(kEos);
    if (out[i++] == expected) ++exact;
  }
  INFO(exact << " of " << N << " held-out sequences copied exactly");
  CHECK(exact == N);
}

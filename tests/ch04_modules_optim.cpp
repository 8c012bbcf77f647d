// Chapter 4 tests (docs/04-modules-and-optimizers.md): modules and their
// hierarchical parameter names, state dicts, train/eval, the basic layers and
// their initialisation; SGD, Adam and AdamW checked against updates worked out
// by hand; gradient clipping; learning-rate schedules; checkpoints.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "attend/autograd.hpp"
#include "attend/checkpoint.hpp"
#include "attend/nn.hpp"
#include "attend/ops.hpp"
#include "attend/optim.hpp"
#include "attend/optimizer_kernels.hpp"
#include "attend/safetensors.hpp"
#include "attend/tensor.hpp"
#include "catch_compat.hpp"
#include "test_files.hpp"
#include "test_tensors.hpp"

using attend::Generator;
using attend::Shape;
using attend::Tensor;
namespace nn = attend::nn;
namespace optim = attend::optim;
using attend_test::names_of;
using attend_test::TempDir;
using attend_test::write_file;

namespace {

// A copy of every parameter's values, to see later whether anything changed.
std::vector<std::vector<float>> snapshot(const nn::Module& m) {
  std::vector<std::vector<float>> out;
  for (const Tensor& p : m.parameters()) out.push_back(p.to_vector());
  return out;
}

// A leaf parameter holding `values`, as an optimizer test's model.
Tensor parameter(const std::vector<float>& values) {
  Tensor p = attend::from_vector(values, {static_cast<int64_t>(values.size())});
  p.set_requires_grad(true);
  return p;
}

// Makes p.grad() exactly c: the gradient of loss = sum(p * c) is c.
void give_grad(Tensor& p, const std::vector<float>& c) {
  p.zero_grad();
  attend::sum(p * attend::from_vector(c, p.shape())).backward();
}

// encoder: layers = ModuleList[Linear(3, 4), Linear(4, 2, no bias)], norm = LayerNorm(2)
class Encoder : public nn::Module {
 public:
  explicit Encoder(Generator& gen) {
    layers = register_module("layers", std::make_shared<nn::ModuleList>());
    layers->push_back(std::make_shared<nn::Linear>(3, 4, gen));
    layers->push_back(std::make_shared<nn::Linear>(4, 2, gen, /*bias=*/false));
    norm = register_module("norm", std::make_shared<nn::LayerNorm>(2));
  }
  Tensor forward(const Tensor& x) {
    Tensor h = attend::relu(layers->at<nn::Linear>(0)(x));
    return (*norm)(layers->at<nn::Linear>(1)(h));
  }
  std::shared_ptr<nn::ModuleList> layers;
  std::shared_ptr<nn::LayerNorm> norm;
};

// A small model with nested children, a ModuleList, a Sequential with a
// Dropout inside, and one parameter of its own registered last.
class TinyModel : public nn::Module {
 public:
  explicit TinyModel(Generator& gen) {
    encoder = register_module("encoder", std::make_shared<Encoder>(gen));
    dropout = std::make_shared<nn::Dropout>(0.5f, gen);
    head = register_module("head", std::make_shared<nn::Sequential>(std::vector<std::shared_ptr<nn::UnaryModule>>{
                                       dropout, std::make_shared<nn::Linear>(2, 1, gen)}));
    scale = register_parameter("scale", attend::full({1}, 2.0f));
  }
  Tensor forward(const Tensor& x) { return head->forward(encoder->forward(x)) * scale; }

  // Public doors to the protected registration calls, for the error tests.
  void add_parameter(const std::string& name) { register_parameter(name, attend::zeros({1})); }
  void add_child(const std::string& name) { register_module(name, std::make_shared<nn::ReLU>()); }

  std::shared_ptr<Encoder> encoder;
  std::shared_ptr<nn::Dropout> dropout;
  std::shared_ptr<nn::Sequential> head;
  Tensor scale;
};

}  // namespace

// ---------------------------------------------------------------------------
// Module bookkeeping
// ---------------------------------------------------------------------------

TEST_CASE("Module: hierarchical parameter names, depth first in registration order", "[ch04]") {
  Generator gen(1);
  TinyModel model(gen);
  // A module's own parameters come before its children's (as in PyTorch),
  // even though "scale" was registered after "encoder" and "head".
  const std::vector<std::string> expected = {
      "scale",                    // (1)
      "encoder.layers.0.weight",  // (4, 3)
      "encoder.layers.0.bias",    // (4)
      "encoder.layers.1.weight",  // (2, 4), no bias
      "encoder.norm.weight",      // (2)
      "encoder.norm.bias",        // (2)
      "head.1.weight",            // (1, 2); head.0 is the Dropout: no parameters
      "head.1.bias",              // (1)
  };
  const attend::NamedTensors named = model.named_parameters();
  CHECK(names_of(named) == expected);
  const std::vector<Shape> shapes = {{1}, {4, 3}, {4}, {2, 4}, {2}, {2}, {1, 2}, {1}};
  REQUIRE(named.size() == shapes.size());
  for (size_t i = 0; i < named.size(); ++i) {
    INFO(named[i].first);
    CHECK(named[i].second.shape() == shapes[i]);
    CHECK(named[i].second.requires_grad());  // registration turns requires_grad on
  }
  // 1 + 12 + 4 + 8 + 2 + 2 + 2 + 1 = 32 scalars
  CHECK(model.parameter_count() == 32);

  // parameters() is the same list without names, and the tensors are the
  // module's own (not copies): they share storage with the named ones.
  const std::vector<Tensor> plain = model.parameters();
  REQUIRE(plain.size() == named.size());
  for (size_t i = 0; i < plain.size(); ++i) CHECK(plain[i].impl() == named[i].second.impl());
  CHECK(plain[0].impl() == model.scale.impl());
  CHECK(plain[1].impl() == model.encoder->layers->at<nn::Linear>(0).weight.impl());

  // A child module sees names relative to itself.
  CHECK(names_of(model.encoder->named_parameters()) ==
        std::vector<std::string>{"layers.0.weight", "layers.0.bias", "layers.1.weight", "norm.weight",
                                 "norm.bias"});
  CHECK(model.encoder->parameter_count() == 28);  // 12 + 4 + 8 + 2 + 2

  // The Dropout's generator is named like a parameter, for checkpoints.
  const auto generators = model.named_generators();
  REQUIRE(generators.size() == 1);
  CHECK(generators[0].first == "head.0.generator");

  // Modules own their parameters: copying one would silently share or split them.
  STATIC_REQUIRE(!std::is_copy_constructible_v<nn::Linear>);
  STATIC_REQUIRE(!std::is_copy_assignable_v<TinyModel>);
}

TEST_CASE("Module: invalid and duplicate names are errors", "[ch04]") {
  Generator gen(1);
  TinyModel model(gen);
  REQUIRE_THROWS_MENTIONING(model.add_parameter(""), "invalid name");
  REQUIRE_THROWS_MENTIONING(model.add_parameter("a.b"), "invalid name", "'a.b'");
  REQUIRE_THROWS_MENTIONING(model.add_child("x.y"), "invalid name", "'x.y'");
  // Parameters and children share one namespace per module.
  REQUIRE_THROWS_MENTIONING(model.add_parameter("scale"), "'scale'", "already registered");
  REQUIRE_THROWS_MENTIONING(model.add_parameter("encoder"), "'encoder'", "already registered");
  REQUIRE_THROWS_MENTIONING(model.add_child("scale"), "'scale'", "already registered");
  REQUIRE_THROWS_MENTIONING(model.add_child("head"), "'head'", "already registered");
  // The failed registrations left nothing behind.
  CHECK(model.named_parameters().size() == 8);
  // A fresh valid name is fine, and lands after "scale".
  model.add_parameter("offset");
  CHECK(model.named_parameters()[1].first == "offset");
}

TEST_CASE("Module: state_dict and strict load_state_dict", "[ch04]") {
  Generator gen_a(1), gen_b(2);
  TinyModel a(gen_a), b(gen_b);

  SECTION("state_dict holds the parameters themselves, under their names") {
    const attend::NamedTensors state = a.state_dict();
    CHECK(names_of(state) == names_of(a.named_parameters()));
    // Writing through the state dict writes the parameter: no copies.
    attend::copy_into(state[0].second, attend::full({1}, 7.0f));
    CHECK(a.scale.item() == 7.0f);
  }

  SECTION("loading copies every value in place") {
    REQUIRE(snapshot(a) != snapshot(b));  // different seeds
    const float* weight_data = b.encoder->layers->at<nn::Linear>(0).weight.data();
    b.load_state_dict(a.state_dict());
    CHECK(snapshot(b) == snapshot(a));  // bit for bit
    // In place: the same storage, so an optimizer holding it keeps working.
    CHECK(b.encoder->layers->at<nn::Linear>(0).weight.data() == weight_data);
    // ... and a copy: changing a afterwards does not change b.
    attend::copy_into(a.scale, attend::full({1}, -1.0f));
    CHECK(b.scale.item() == 2.0f);
  }

  SECTION("a bad state dict is an error naming the entry and changes nothing") {
    const auto before = snapshot(b);
    attend::NamedTensors good = a.state_dict();  // a's values differ from b's everywhere

    attend::NamedTensors missing = good;
    missing.erase(missing.begin() + 5);  // "encoder.norm.bias"
    REQUIRE_THROWS_MENTIONING(b.load_state_dict(missing), "missing", "'encoder.norm.bias'");
    CHECK(snapshot(b) == before);

    attend::NamedTensors unexpected = good;
    unexpected.emplace_back("encoder.norm.gamma", attend::ones({2}));
    REQUIRE_THROWS_MENTIONING(b.load_state_dict(unexpected), "unexpected", "'encoder.norm.gamma'");
    CHECK(snapshot(b) == before);

    // The mis-shaped entry is the last one, after seven good ones.
    attend::NamedTensors misshaped = good;
    misshaped[3].second = attend::zeros({4, 2});  // "encoder.layers.1.weight" is (2, 4)
    std::rotate(misshaped.begin() + 3, misshaped.begin() + 4, misshaped.end());
    REQUIRE(misshaped.back().first == "encoder.layers.1.weight");
    REQUIRE_THROWS_MENTIONING(b.load_state_dict(misshaped), "'encoder.layers.1.weight'", "(4, 2)", "(2, 4)");
    CHECK(snapshot(b) == before);

    attend::NamedTensors twice = good;
    twice.push_back(good[0]);
    REQUIRE_THROWS_MENTIONING(b.load_state_dict(twice), "'scale'", "twice");
    CHECK(snapshot(b) == before);

    attend::NamedTensors wrong_dtype = good;
    wrong_dtype[0].second = attend::from_indices({3}, {1});  // right shape, Int64
    REQUIRE_THROWS_MENTIONING(b.load_state_dict(wrong_dtype), "'scale'");
    CHECK(snapshot(b) == before);

    // And the good one still loads.
    b.load_state_dict(good);
    CHECK(snapshot(b) == snapshot(a));
  }
}

TEST_CASE("Module: train() and eval() reach a Dropout deep inside", "[ch04]") {
  Generator gen(3);
  TinyModel model(gen);
  CHECK(model.is_training());  // modules start in training mode, as in PyTorch
  CHECK(model.dropout->is_training());

  model.eval();
  CHECK(!model.is_training());
  CHECK(!model.encoder->is_training());
  CHECK(!model.encoder->layers->at<nn::Linear>(1).is_training());
  CHECK(!model.encoder->norm->is_training());
  CHECK(!model.head->is_training());
  CHECK(!model.dropout->is_training());

  // In eval the Dropout is the identity and draws no random numbers.
  const uint64_t rng_before = model.named_generators()[0].second->state();
  Tensor x = attend::ones({1000});
  CHECK(model.dropout->forward(x).to_vector() == x.to_vector());
  Generator data_gen(4);
  Tensor batch = attend::randn({5, 3}, data_gen);
  CHECK(model.forward(batch).to_vector() == model.forward(batch).to_vector());
  CHECK(model.named_generators()[0].second->state() == rng_before);

  model.train();
  CHECK(model.is_training());
  CHECK(model.encoder->layers->at<nn::Linear>(0).is_training());
  CHECK(model.dropout->is_training());
  // p = 0.5: each element is dropped (0) or kept and scaled by 1/(1-0.5) = 2.
  const std::vector<float> y = model.dropout->forward(x).to_vector();
  const auto zeros = std::count(y.begin(), y.end(), 0.0f);
  const auto twos = std::count(y.begin(), y.end(), 2.0f);
  CHECK(zeros + twos == 1000);
  CHECK(zeros > 400);  // ~500 expected; the standard deviation is ~16
  CHECK(zeros < 600);
  CHECK(model.named_generators()[0].second->state() != rng_before);

  // train(false) is eval() too, and eval on a child only affects the child.
  model.train(false);
  CHECK(!model.dropout->is_training());
  model.train();
  model.head->eval();
  CHECK(model.is_training());
  CHECK(model.encoder->is_training());
  CHECK(!model.dropout->is_training());
}

TEST_CASE("Module: zero_grad forgets the gradient of every parameter", "[ch04]") {
  Generator gen(5);
  TinyModel model(gen);
  model.eval();
  Generator data_gen(6);
  attend::sum(model.forward(attend::randn({4, 3}, data_gen))).backward();
  for (const auto& [name, p] : model.named_parameters()) {
    INFO(name);
    CHECK(p.grad().defined());
  }
  model.zero_grad();
  for (const auto& [name, p] : model.named_parameters()) {
    INFO(name);
    CHECK(!p.grad().defined());  // like PyTorch's zero_grad(set_to_none=True)
  }
}

TEST_CASE("ModuleList: children are named by position", "[ch04]") {
  Generator gen(1);
  nn::ModuleList list;
  auto first = list.push_back(std::make_shared<nn::Linear>(2, 3, gen));
  list.push_back(std::make_shared<nn::ReLU>());
  list.push_back(std::make_shared<nn::Linear>(3, 1, gen, /*bias=*/false));
  CHECK(list.size() == 3);
  CHECK(names_of(list.named_parameters()) == std::vector<std::string>{"0.weight", "0.bias", "2.weight"});
  // push_back hands back the module itself; at<> and [] find it again.
  CHECK(&list.at<nn::Linear>(0) == first.get());
  CHECK(&list[0] == first.get());
  CHECK(list.at<nn::Linear>(2).out_features == 1);
  CHECK_THROWS(list[3]);                  // out of range
  CHECK_THROWS(list.at<nn::Linear>(1));   // a ReLU, not a Linear
}

// ---------------------------------------------------------------------------
// Layers
// ---------------------------------------------------------------------------

TEST_CASE("Linear: y = x W^T + b by hand, and the gradients", "[ch04]") {
  Generator gen(1);
  nn::Linear linear(2, 3, gen);
  CHECK(names_of(linear.named_parameters()) == std::vector<std::string>{"weight", "bias"});
  CHECK(linear.weight.shape() == Shape{3, 2});
  CHECK(linear.bias.shape() == Shape{3});
  CHECK(linear.parameter_count() == 9);
  attend::copy_into(linear.weight, attend::from_vector({1, 2, 3, 4, 5, 6}, {3, 2}));
  attend::copy_into(linear.bias, attend::from_vector({0.5f, -1, 2}, {3}));

  // x = (1, -1): W x = (1 - 2, 3 - 4, 5 - 6) = (-1, -1, -1); + b = (-0.5, -2, 1)
  Tensor y = linear(attend::from_vector({1, -1}, {2}));
  CHECK(y.shape() == Shape{3});
  CHECK(y.to_vector() == std::vector<float>{-0.5f, -2.0f, 1.0f});

  // Two rows: (1, -1) as above and (2, 0): (2, 6, 10) + b = (2.5, 5, 12).
  Tensor x = attend::from_vector({1, -1, 2, 0}, {2, 2});
  Tensor y2 = linear(x);
  CHECK(y2.shape() == Shape{2, 3});
  CHECK(y2.to_vector() == std::vector<float>{-0.5f, -2.0f, 1.0f, 2.5f, 5.0f, 12.0f});

  // loss = sum(y): dloss/dW[o][i] = sum over rows of x[n][i] = (1 + 2, -1 + 0) = (3, -1)
  // for every o, and dloss/db[o] = number of rows = 2.
  attend::sum(y2).backward();
  CHECK(linear.weight.grad().to_vector() == std::vector<float>{3, -1, 3, -1, 3, -1});
  CHECK(linear.bias.grad().to_vector() == std::vector<float>{2, 2, 2});
}

TEST_CASE("Linear: inputs of any rank (..., in) -> (..., out) match a plain loop", "[ch04]") {
  Generator gen(2);
  nn::Linear linear(4, 5, gen);
  const std::vector<float> W = linear.weight.to_vector(), b = linear.bias.to_vector();
  for (const Shape& shape : {Shape{4}, Shape{3, 4}, Shape{2, 3, 4}, Shape{2, 1, 3, 4}}) {
    INFO("input shape " << attend::to_string(shape));
    Tensor x = attend::randn(shape, gen);
    Tensor y = linear(x);
    Shape expected_shape = shape;
    expected_shape.back() = 5;
    REQUIRE(y.shape() == expected_shape);
    // y[n][o] = sum_i x[n][i] W[o][i] + b[o], with the leading dims flattened into n.
    const std::vector<float> xs = x.to_vector(), ys = y.to_vector();
    const size_t rows = xs.size() / 4;
    for (size_t n = 0; n < rows; ++n) {
      for (size_t o = 0; o < 5; ++o) {
        double expected = b[o];
        for (size_t i = 0; i < 4; ++i) expected += static_cast<double>(xs[n * 4 + i]) * W[o * 4 + i];
        CHECK_NEAR(ys[n * 5 + o], expected, 1e-5);
      }
    }
  }
  // The wrong last dim names both shapes.
  REQUIRE_THROWS_MENTIONING(linear(attend::zeros({2, 3})), "Linear", "(2, 3)", "in_features=4", "(5, 4)");
  REQUIRE_THROWS_MENTIONING(linear(attend::scalar_tensor(1.0f)), "Linear", "()");
  CHECK_THROWS_AS(nn::Linear(0, 3, gen), attend::Error);
}

TEST_CASE("Linear: bias = false", "[ch04]") {
  Generator gen(3);
  nn::Linear linear(2, 2, gen, /*bias=*/false);
  CHECK(!linear.bias.defined());
  CHECK(names_of(linear.named_parameters()) == std::vector<std::string>{"weight"});
  CHECK(linear.parameter_count() == 4);
  attend::copy_into(linear.weight, attend::from_vector({1, 2, 3, 4}, {2, 2}));
  // (1, 1) -> (1 + 2, 3 + 4) = (3, 7): nothing added
  CHECK(linear(attend::ones({2})).to_vector() == std::vector<float>{3, 7});
}

TEST_CASE("Embedding: lookup, and the padding row starts at zero and gets no gradient", "[ch04]") {
  Generator gen(4);
  nn::Embedding emb(5, 3, gen, /*padding_idx=*/0);
  CHECK(names_of(emb.named_parameters()) == std::vector<std::string>{"weight"});
  CHECK(emb.weight.shape() == Shape{5, 3});
  CHECK(emb.weight.select(0, 0).to_vector() == std::vector<float>{0, 0, 0});
  for (int64_t row = 1; row < 5; ++row) {
    const std::vector<float> r = emb.weight.select(0, row).to_vector();
    CHECK(std::any_of(r.begin(), r.end(), [](float v) { return v != 0.0f; }));
  }

  Tensor ids = attend::from_indices({1, 0, 3, 3, 0, 4}, {2, 3});
  Tensor out = emb(ids);
  REQUIRE(out.shape() == Shape{2, 3, 3});
  CHECK(out.select(0, 0).select(0, 0).to_vector() == emb.weight.select(0, 1).to_vector());
  CHECK(out.select(0, 0).select(0, 1).to_vector() == std::vector<float>{0, 0, 0});
  CHECK(out.select(0, 1).select(0, 2).to_vector() == emb.weight.select(0, 4).to_vector());

  // loss = sum(out): each row's gradient counts how often its id appears --
  // row 1 once, row 3 twice, row 4 once, row 2 never -- except the padding
  // row 0, which appears twice but gets nothing.
  attend::sum(out).backward();
  CHECK(emb.weight.grad().to_vector() ==
        std::vector<float>{0, 0, 0, 1, 1, 1, 0, 0, 0, 2, 2, 2, 1, 1, 1});
  // So training never moves it off zero.
  optim::SGD sgd(emb.named_parameters(), 0.1f);
  sgd.step();
  CHECK(emb.weight.select(0, 0).to_vector() == std::vector<float>{0, 0, 0});

  REQUIRE_THROWS_MENTIONING(nn::Embedding(5, 3, gen, 5), "padding_idx 5");
  // Without padding_idx no row is special.
  nn::Embedding plain(5, 3, gen);
  CHECK(plain.padding_idx == -1);
  const std::vector<float> row0 = plain.weight.select(0, 0).to_vector();
  CHECK(std::any_of(row0.begin(), row0.end(), [](float v) { return v != 0.0f; }));
}

TEST_CASE("LayerNorm: normalises the last dim, then weight * x_hat + bias", "[ch04]") {
  nn::LayerNorm norm(4);
  CHECK(names_of(norm.named_parameters()) == std::vector<std::string>{"weight", "bias"});
  CHECK(norm.weight.to_vector() == std::vector<float>{1, 1, 1, 1});
  CHECK(norm.bias.to_vector() == std::vector<float>{0, 0, 0, 0});
  CHECK(norm.eps == 1e-5f);

  // Row (1, 2, 3, 4): mean 2.5, var (2.25 + 0.25 + 0.25 + 2.25) / 4 = 1.25,
  // x_hat = (x - 2.5) / sqrt(1.25 + 1e-5) = (-1.341635, -0.447212, 0.447212, 1.341635).
  // Row (-1, -1, 1, 1): mean 0, var 1, x_hat = x / sqrt(1 + 1e-5) = +-0.999995.
  Tensor x = attend::from_vector({1, 2, 3, 4, -1, -1, 1, 1}, {2, 4});
  const std::vector<double> x_hat = {-1.3416354, -0.4472118, 0.4472118, 1.3416354,
                                     -0.999995, -0.999995, 0.999995, 0.999995};
  std::vector<float> y = norm(x).to_vector();
  for (size_t i = 0; i < 8; ++i) CHECK_NEAR(y[i], x_hat[i], 2e-6);

  // With weight (2, 2, 2, 2) and bias (1, 0, 0, -1): y = 2 x_hat + bias.
  attend::copy_into(norm.weight, attend::full({4}, 2.0f));
  attend::copy_into(norm.bias, attend::from_vector({1, 0, 0, -1}, {4}));
  y = norm(x).to_vector();
  const std::vector<float> bias = {1, 0, 0, -1};
  for (size_t i = 0; i < 8; ++i) CHECK_NEAR(y[i], 2 * x_hat[i] + bias[i % 4], 4e-6);
}

TEST_CASE("Dropout: seeded masks, scaling by 1/(1-p), identity in eval", "[ch04]") {
  Generator gen_a(3), gen_b(3), gen_c(4);
  nn::Dropout a(0.25f, gen_a), b(0.25f, gen_b), c(0.25f, gen_c);
  CHECK(a.parameter_count() == 0);
  CHECK(a.named_generators().size() == 1);
  CHECK(a.named_generators()[0].first == "generator");

  Tensor x = attend::ones({4000});
  const std::vector<float> ya = a(x).to_vector();
  // Kept elements are scaled by 1 / (1 - 0.25) = 4/3, so the mean stays 1.
  const float kept = 1.0f / 0.75f;
  const auto dropped = std::count(ya.begin(), ya.end(), 0.0f);
  CHECK(dropped + std::count(ya.begin(), ya.end(), kept) == 4000);
  // ~1000 dropped; the standard deviation is sqrt(4000 * 0.25 * 0.75) ~ 27.
  CHECK(dropped > 880);
  CHECK(dropped < 1120);
  // The same seed gives the same mask; another seed, or the next call, another.
  CHECK(b(x).to_vector() == ya);
  CHECK(c(x).to_vector() != ya);
  CHECK(a(x).to_vector() != ya);

  // The gradient passes through the mask: d(x * mask)/dx = mask.
  Tensor leaf = attend::ones({100});
  leaf.set_requires_grad(true);
  Tensor y = a(leaf);
  attend::sum(y).backward();
  CHECK(leaf.grad().to_vector() == y.to_vector());

  a.eval();
  Tensor z = attend::from_vector({1, -2, 3}, {3});
  CHECK(a(z).to_vector() == std::vector<float>{1, -2, 3});

  CHECK_THROWS_AS(nn::Dropout(1.5f, gen_a), attend::Error);
  CHECK_THROWS_AS(nn::Dropout(-0.1f, gen_a), attend::Error);
}

TEST_CASE("ReLU and GELU modules", "[ch04]") {
  nn::ReLU relu;
  nn::GELU gelu;
  CHECK(relu.parameter_count() == 0);
  CHECK(relu(attend::from_vector({-1, 0, 2}, {3})).to_vector() == std::vector<float>{0, 0, 2});
  // GELU, tanh form: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
  //   x = 1:  0.5 (1 + tanh(0.797885 * 1.044715)) = 0.5 (1 + tanh(0.833562)) = 0.841192
  //   x = -1: -0.5 (1 - tanh(0.833562)) = -0.158808
  //   x = 2:  0.5 * 2 (1 + tanh(0.797885 * 2.35772)) = 1.954598
  const std::vector<float> y = gelu(attend::from_vector({1, -1, 2, 0}, {4})).to_vector();
  CHECK_NEAR(y[0], 0.8411920, 1e-6);
  CHECK_NEAR(y[1], -0.1588080, 1e-6);
  CHECK_NEAR(y[2], 1.9545977, 2e-6);
  CHECK(y[3] == 0.0f);
}

TEST_CASE("Sequential: runs its modules in order, named 0, 1, ...", "[ch04]") {
  Generator gen(7);
  auto first = std::make_shared<nn::Linear>(2, 2, gen);
  auto second = std::make_shared<nn::Linear>(2, 1, gen);
  nn::Sequential seq({first, std::make_shared<nn::ReLU>(), second});
  CHECK(seq.size() == 3);
  CHECK(names_of(seq.named_parameters()) ==
        std::vector<std::string>{"0.weight", "0.bias", "2.weight", "2.bias"});
  attend::copy_into(first->weight, attend::from_vector({1, 0, 0, -1}, {2, 2}));
  attend::copy_into(first->bias, attend::zeros({2}));
  attend::copy_into(second->weight, attend::from_vector({3, 5}, {1, 2}));
  attend::copy_into(second->bias, attend::full({1}, 0.5f));
  // x = (2, 3): first -> (2, -3), relu -> (2, 0), second -> 3*2 + 5*0 + 0.5 = 6.5
  CHECK(seq(attend::from_vector({2, 3}, {2})).to_vector() == std::vector<float>{6.5f});
  // x = (-1, -4): first -> (-1, 4), relu -> (0, 4), second -> 20 + 0.5 = 20.5
  CHECK(seq(attend::from_vector({-1, -4}, {2})).to_vector() == std::vector<float>{20.5f});
  seq.push_back(std::make_shared<nn::ReLU>());
  CHECK(seq.size() == 4);
  // An empty Sequential is the identity.
  nn::Sequential empty;
  CHECK(empty(attend::from_vector({4, 5}, {2})).to_vector() == std::vector<float>{4, 5});
}

TEST_CASE("MLP: parameter names and the same computation as its layers by hand", "[ch04]") {
  SECTION("without dropout: Linear, act, Linear, act, Linear") {
    Generator gen(11);
    nn::MLP mlp({3, 5, 4, 2}, gen);
    CHECK(names_of(mlp.named_parameters()) ==
          std::vector<std::string>{"layers.0.weight", "layers.0.bias", "layers.2.weight", "layers.2.bias",
                                   "layers.4.weight", "layers.4.bias"});
    CHECK(mlp.parameter_count() == (3 * 5 + 5) + (5 * 4 + 4) + (4 * 2 + 2));  // 20 + 24 + 10 = 54
    CHECK(mlp.named_generators().empty());
  }
  SECTION("with dropout: Linear, act, Dropout, ... and no dropout after the last layer") {
    Generator gen(11);
    nn::MLP mlp({3, 5, 4, 2}, gen, nn::Activation::ReLU, 0.1f);
    CHECK(names_of(mlp.named_parameters()) ==
          std::vector<std::string>{"layers.0.weight", "layers.0.bias", "layers.3.weight", "layers.3.bias",
                                   "layers.6.weight", "layers.6.bias"});
    const auto generators = mlp.named_generators();
    REQUIRE(generators.size() == 2);
    CHECK(generators[0].first == "layers.2.generator");
    CHECK(generators[1].first == "layers.5.generator");
  }
  SECTION("forward equals the layers built by hand from the same seed") {
    for (nn::Activation act : {nn::Activation::ReLU, nn::Activation::GELU}) {
      Generator gen_mlp(12), gen_hand(12);
      nn::MLP mlp({3, 6, 2}, gen_mlp, act);
      nn::Linear l1(3, 6, gen_hand), l2(6, 2, gen_hand);  // drawn in the same order
      Generator data(13);
      Tensor x = attend::randn({4, 3}, data);
      Tensor h = l1(x);
      h = act == nn::Activation::ReLU ? attend::relu(h) : attend::gelu(h);
      CHECK(mlp(x).to_vector() == l2(h).to_vector());
    }
  }
  Generator gen(1);
  CHECK_THROWS_AS(nn::MLP({3}, gen), attend::Error);
}

// ---------------------------------------------------------------------------
// Initialisation
// ---------------------------------------------------------------------------

TEST_CASE("Initialisation: Linear is uniform in +-1/sqrt(in), as PyTorch's default", "[ch04]") {
  Generator gen(21);
  nn::Linear linear(256, 64, gen);
  const double bound = 1.0 / std::sqrt(256.0);  // 1/16 = 0.0625
  const std::vector<float> w = linear.weight.to_vector();  // 16384 values
  const auto [lo, hi] = std::minmax_element(w.begin(), w.end());
  CHECK(*lo >= -bound);
  CHECK(*hi <= bound);
  // Spread across the whole range: with 16384 draws the extremes lie within
  // ~2 * bound / 16384 of the bounds.
  CHECK(*lo < -0.99 * bound);
  CHECK(*hi > 0.99 * bound);
  // Uniform: each quarter of the range holds ~25% (one standard deviation is 0.34%).
  std::vector<int> quarter(4, 0);
  for (float v : w) ++quarter[std::min(3, static_cast<int>((v + bound) / (2 * bound) * 4))];
  for (int q : quarter) CHECK_NEAR(q / 16384.0, 0.25, 0.02);
  double mean = 0;
  for (float v : w) mean += v;
  CHECK_NEAR(mean / 16384.0, 0.0, 0.002);  // sd of the mean: bound/sqrt(3 * 16384) ~ 0.0003

  // The bias uses the same bound.
  const std::vector<float> b = linear.bias.to_vector();
  CHECK(std::all_of(b.begin(), b.end(), [&](float v) { return std::fabs(v) <= bound; }));
  CHECK(*std::max_element(b.begin(), b.end()) - *std::min_element(b.begin(), b.end()) > bound);
}

TEST_CASE("Initialisation: Embedding is N(0, 1), or N(0, std^2)", "[ch04]") {
  auto mean_std = [](const Tensor& t) {
    const std::vector<float> v = t.to_vector();
    double s = 0, s2 = 0;
    for (float x : v) s += x;
    const double mean = s / static_cast<double>(v.size());
    for (float x : v) s2 += (x - mean) * (x - mean);
    return std::pair<double, double>{mean, std::sqrt(s2 / static_cast<double>(v.size()))};
  };
  Generator gen(22);
  nn::Embedding emb(1000, 64, gen);  // 64000 draws
  const auto [mean, std] = mean_std(emb.weight);
  CHECK_NEAR(mean, 0.0, 0.02);  // sd of the mean: 1/sqrt(64000) ~ 0.004
  CHECK_NEAR(std, 1.0, 0.02);   // sd of the std: 1/sqrt(2 * 64000) ~ 0.003

  nn::Embedding small(1000, 64, gen, -1, 0.02f);
  const auto [mean2, std2] = mean_std(small.weight);
  CHECK_NEAR(mean2, 0.0, 0.0004);
  CHECK_NEAR(std2, 0.02, 0.0004);
}

TEST_CASE("Initialisation: the same seed gives identical parameters, another seed others", "[ch04]") {
  Generator g1(5), g2(5), g3(6);
  nn::MLP a({4, 8, 3}, g1), b({4, 8, 3}, g2), c({4, 8, 3}, g3);
  CHECK(snapshot(a) == snapshot(b));
  const auto sa = snapshot(a), sc = snapshot(c);
  for (size_t i = 0; i < sa.size(); ++i) CHECK(sa[i] != sc[i]);  // every tensor differs

  // Layers drawn one after another from one generator differ from each other.
  Generator g4(7);
  nn::Linear first(4, 4, g4), second(4, 4, g4);
  CHECK(first.weight.to_vector() != second.weight.to_vector());

  Generator g5(8), g6(8), g7(9);
  nn::Embedding e1(10, 4, g5), e2(10, 4, g6), e3(10, 4, g7);
  CHECK(e1.weight.to_vector() == e2.weight.to_vector());
  CHECK(e1.weight.to_vector() != e3.weight.to_vector());
}

// ---------------------------------------------------------------------------
// Optimizers. Each test sets the gradient through loss = sum(p * c), whose
// gradient is c, and follows the update rule by hand for a few steps.
// ---------------------------------------------------------------------------

TEST_CASE("SGD: plain, with weight decay", "[ch04]") {
  SECTION("plain: p -= lr * g") {
    Tensor p = parameter({1, -2});
    optim::SGD sgd({{"p", p}}, 0.1f);
    CHECK(sgd.state().empty());  // no momentum, no state
    give_grad(p, {0.5f, 3});
    sgd.step();
    // (1 - 0.1 * 0.5, -2 - 0.1 * 3) = (0.95, -2.3)
    CHECK_NEAR(p.at({0}), 0.95, 1e-6);
    CHECK_NEAR(p.at({1}), -2.3, 1e-6);
    give_grad(p, {-1, 0});
    sgd.step();
    // (0.95 + 0.1, -2.3) = (1.05, -2.3)
    CHECK_NEAR(p.at({0}), 1.05, 1e-6);
    CHECK_NEAR(p.at({1}), -2.3, 1e-6);
    CHECK(sgd.steps_taken() == 2);
  }
  SECTION("weight decay: g = grad + wd * p") {
    Tensor p = parameter({1});
    optim::SGD sgd({{"p", p}}, 0.1f, 0.0f, false, /*weight_decay=*/0.1f);
    give_grad(p, {0.5f});
    sgd.step();  // g = 0.5 + 0.1 * 1 = 0.6;      p = 1 - 0.06 = 0.94
    CHECK_NEAR(p.item(), 0.94, 1e-6);
    give_grad(p, {0.5f});
    sgd.step();  // g = 0.5 + 0.1 * 0.94 = 0.594; p = 0.94 - 0.0594 = 0.8806
    CHECK_NEAR(p.item(), 0.8806, 1e-6);
  }
}

TEST_CASE("SGD: momentum and Nesterov momentum", "[ch04]") {
  // p0 = 1, constant g = 0.5, lr = 0.1, momentum 0.9. The buffer starts at
  // the first gradient (as PyTorch's does): buf_1 = g, buf_t = 0.9 buf_(t-1) + g.
  //   buf: 0.5, 0.9 * 0.5 + 0.5 = 0.95, 0.9 * 0.95 + 0.5 = 1.355
  SECTION("heavy ball: p -= lr * buf") {
    Tensor p = parameter({1});
    optim::SGD sgd({{"p", p}}, 0.1f, 0.9f);
    const std::vector<double> expected_p = {1 - 0.05, 0.95 - 0.095, 0.855 - 0.1355};  // 0.95, 0.855, 0.7195
    const std::vector<double> expected_buf = {0.5, 0.95, 1.355};
    for (size_t t = 0; t < 3; ++t) {
      give_grad(p, {0.5f});
      sgd.step();
      CHECK_NEAR(p.item(), expected_p[t], 1e-6);
      REQUIRE(sgd.state().size() == 1);
      CHECK(sgd.state()[0].first == "momentum.p");
      CHECK_NEAR(sgd.state()[0].second.item(), expected_buf[t], 1e-6);
    }
  }
  SECTION("Nesterov: p -= lr * (g + momentum * buf)") {
    Tensor p = parameter({1});
    optim::SGD sgd({{"p", p}}, 0.1f, 0.9f, /*nesterov=*/true);
    // step 1: buf = 0.5,  d = 0.5 + 0.9 * 0.5  = 0.95;  p = 1 - 0.095 = 0.905
    // step 2: buf = 0.95, d = 0.5 + 0.9 * 0.95 = 1.355; p = 0.905 - 0.1355 = 0.7695
    // step 3: buf = 1.355, d = 0.5 + 0.9 * 1.355 = 1.7195; p = 0.7695 - 0.17195 = 0.59755
    const std::vector<double> expected_p = {0.905, 0.7695, 0.59755};
    for (size_t t = 0; t < 3; ++t) {
      give_grad(p, {0.5f});
      sgd.step();
      CHECK_NEAR(p.item(), expected_p[t], 1e-6);
    }
  }
}

TEST_CASE("Adam: bias correction at steps 1 and 2, by hand", "[ch04]") {
  // lr = 0.1, beta1 = 0.9, beta2 = 0.999, eps = 1e-8; p0 = 1; g1 = 0.5, g2 = 0.25.
  Tensor p = parameter({1});
  optim::Adam adam({{"p", p}}, 0.1f);
  CHECK(adam.beta1 == 0.9f);
  CHECK(adam.beta2 == 0.999f);
  CHECK(adam.eps == 1e-8f);
  CHECK(adam.weight_decay == 0.0f);

  // Step 1: m = 0.1 * 0.5 = 0.05, v = 0.001 * 0.25 = 0.00025.
  //   m_hat = 0.05 / (1 - 0.9) = 0.5, v_hat = 0.00025 / (1 - 0.999) = 0.25
  //   p = 1 - 0.1 * 0.5 / (sqrt(0.25) + 1e-8) = 1 - 0.1 = 0.9
  // (Without the correction the step would be 0.1 * 0.05 / sqrt(0.00025) = 0.316.)
  give_grad(p, {0.5f});
  adam.step();
  CHECK_NEAR(p.item(), 0.9, 1e-6);
  // The moments match to float precision. (0.9f and 0.999f are not exactly
  // 0.9 and 0.999: 1 - 0.999f = 0.00099998713, 1.3e-5 below 0.001, so v is
  // compared with a relative tolerance of 2e-5.)
  const attend::NamedTensors s1 = adam.state();
  REQUIRE(names_of(s1) == std::vector<std::string>{"exp_avg.p", "exp_avg_sq.p"});
  CHECK_NEAR(s1[0].second.item(), 0.05, 0.05 * 1e-6);
  CHECK_NEAR(s1[1].second.item(), 0.00025, 0.00025 * 2e-5);

  // Step 2: m = 0.9 * 0.05 + 0.1 * 0.25 = 0.07
  //         v = 0.999 * 0.00025 + 0.001 * 0.0625 = 0.00031225
  //   m_hat = 0.07 / (1 - 0.9^2) = 0.07 / 0.19 = 0.3684211
  //   v_hat = 0.00031225 / (1 - 0.999^2) = 0.00031225 / 0.001999 = 0.1562031, sqrt = 0.3952254
  //   p = 0.9 - 0.1 * 0.3684211 / 0.3952254 = 0.9 - 0.0932180 = 0.8067820
  give_grad(p, {0.25f});
  adam.step();
  CHECK_NEAR(p.item(), 0.8067820, 1e-6);
  CHECK_NEAR(adam.state()[0].second.item(), 0.07, 0.07 * 1e-6);
  CHECK_NEAR(adam.state()[1].second.item(), 0.00031225, 0.00031225 * 2e-5);
  CHECK(adam.steps_taken() == 2);
}

TEST_CASE("Adam's L2 weight decay and AdamW's decoupled decay give different updates", "[ch04]") {
  // lr = 0.1, weight_decay = 0.1, p0 = (1, 2), gradient of the loss c = (0.5, 0):
  // the second weight gets no gradient from the loss, only decay.
  SECTION("Adam: g = grad + wd * p, then adapted") {
    Tensor p = parameter({1, 2});
    optim::Adam adam({{"p", p}}, 0.1f, 0.9f, 0.999f, 1e-8f, /*weight_decay=*/0.1f);
    // Step 1: g = (0.5 + 0.1, 0 + 0.2) = (0.6, 0.2). At step 1 m_hat / sqrt(v_hat) = g / |g|,
    //   so both move by lr = 0.1: p = (0.9, 1.9) -- the decay is blown up to a full step.
    give_grad(p, {0.5f, 0});
    adam.step();
    CHECK_NEAR(p.at({0}), 0.9, 1e-6);
    CHECK_NEAR(p.at({1}), 1.9, 1e-6);
    // Step 2: g = (0.5 + 0.09, 0.19) = (0.59, 0.19)
    //   m = 0.9 * (0.06, 0.02) + 0.1 * (0.59, 0.19) = (0.113, 0.037)
    //   v = 0.999 * (0.00036, 0.00004) + 0.001 * (0.3481, 0.0361) = (0.00070774, 0.00007606)
    //   m_hat = m / 0.19 = (0.5947368, 0.1947368), v_hat = v / 0.001999 = (0.3540470, 0.0380490)
    //   p = (0.9 - 0.1 * 0.5947368 / 0.5950185, 1.9 - 0.1 * 0.1947368 / 0.1950616)
    //     = (0.9 - 0.0999527, 1.9 - 0.0998335) = (0.8000473, 1.8001665)
    give_grad(p, {0.5f, 0});
    adam.step();
    CHECK_NEAR(p.at({0}), 0.8000473, 1e-6);
    CHECK_NEAR(p.at({1}), 1.8001665, 1e-6);
  }
  SECTION("AdamW: p -= lr * wd * p, then the plain Adam step from grad alone") {
    Tensor p = parameter({1, 2});
    optim::AdamW adamw({{"p", p}}, 0.1f, 0.9f, 0.999f, 1e-8f, 0.1f);
    // Step 1: decay p *= 1 - 0.1 * 0.1 = 0.99 -> (0.99, 1.98); Adam step from g = (0.5, 0):
    //   (0.99 - 0.1, 1.98 - 0.1 * 0 / (0 + 1e-8)) = (0.89, 1.98)
    give_grad(p, {0.5f, 0});
    adamw.step();
    CHECK_NEAR(p.at({0}), 0.89, 1e-6);
    CHECK_NEAR(p.at({1}), 1.98, 1e-6);
    // Step 2: decay -> (0.8811, 1.9602); with constant g, m_hat / sqrt(v_hat) = 1 again:
    //   (0.8811 - 0.1, 1.9602) = (0.7811, 1.9602)
    give_grad(p, {0.5f, 0});
    adamw.step();
    CHECK_NEAR(p.at({0}), 0.7811, 1e-6);
    CHECK_NEAR(p.at({1}), 1.9602, 1e-6);
    // The decay never enters the moments: exp_avg of the second weight is still 0.
    CHECK(adamw.state()[0].second.at({1}) == 0.0f);
    CHECK(adamw.state()[1].second.at({1}) == 0.0f);
  }
  SECTION("AdamW's default weight decay is PyTorch's, 0.01") {
    Tensor p = parameter({1});
    optim::AdamW adamw({{"p", p}});
    CHECK(adamw.weight_decay == 0.01f);
    CHECK(adamw.lr == 1e-3f);
  }
}

TEST_CASE("Optimizers leave a parameter without a gradient unchanged", "[ch04]") {
  // Only `used` is in the loss; `unused` never gets a .grad(). Even weight
  // decay must not touch it, and its state stays zero.
  auto check = [](optim::Optimizer& opt, Tensor& used, Tensor& unused) {
    for (int t = 0; t < 2; ++t) {
      give_grad(used, {1, 1});
      opt.step();
    }
    CHECK(unused.to_vector() == std::vector<float>{3, -4});
    CHECK(used.to_vector() != std::vector<float>{1, 2});
    for (const auto& [name, s] : opt.state()) {
      INFO(name);
      if (name.find("unused") != std::string::npos) CHECK(s.to_vector() == std::vector<float>{0, 0});
    }
  };
  {
    Tensor used = parameter({1, 2}), unused = parameter({3, -4});
    optim::SGD sgd({{"used", used}, {"unused", unused}}, 0.1f, 0.9f, false, 0.1f);
    check(sgd, used, unused);
  }
  {
    Tensor used = parameter({1, 2}), unused = parameter({3, -4});
    optim::Adam adam({{"used", used}, {"unused", unused}}, 0.1f, 0.9f, 0.999f, 1e-8f, 0.1f);
    check(adam, used, unused);
  }
  {
    Tensor used = parameter({1, 2}), unused = parameter({3, -4});
    optim::AdamW adamw({{"used", used}, {"unused", unused}}, 0.1f);
    check(adamw, used, unused);
  }
}

TEST_CASE("Optimizer: zero_grad, and the parameters must be leaves", "[ch04]") {
  Generator gen(1);
  nn::Linear linear(2, 2, gen);
  optim::SGD sgd(linear.named_parameters(), 0.5f);
  attend::sum(linear(attend::ones({2}))).backward();
  CHECK(linear.weight.grad().defined());
  sgd.zero_grad();
  CHECK(!linear.weight.grad().defined());
  CHECK(!linear.bias.grad().defined());
  // With no gradients a step changes nothing (but counts).
  const auto before = snapshot(linear);
  sgd.step();
  CHECK(snapshot(linear) == before);
  CHECK(sgd.steps_taken() == 1);
  // The optimizer updates the module's own tensors in place.
  attend::sum(linear(attend::ones({2}))).backward();  // dW = 1 everywhere, db = 1
  sgd.step();
  CHECK_NEAR(linear.bias.at({0}), before[1][0] - 0.5, 1e-6);
  CHECK_NEAR(linear.weight.at({1, 1}), before[0][3] - 0.5, 1e-6);

  Tensor leaf = parameter({1, 2});
  REQUIRE_THROWS_MENTIONING(optim::SGD({{"doubled", leaf * 2.0f}}, 0.1f), "'doubled'", "leaf");
  REQUIRE_THROWS_MENTIONING(optim::Adam({{"ids", attend::from_indices({1}, {1})}}), "'ids'");
}

TEST_CASE("Optimizer: state() and load_state() continue exactly where it stopped", "[ch04]") {
  // Two parameters, names in the state: "<kind>.<parameter>", kind by kind.
  Tensor w = parameter({1, -1}), b = parameter({0.5f});
  optim::Adam adam({{"w", w}, {"b", b}}, 0.1f);
  CHECK(names_of(adam.state()) == std::vector<std::string>{"exp_avg.w", "exp_avg.b", "exp_avg_sq.w", "exp_avg_sq.b"});
  give_grad(w, {0.5f, 2});
  give_grad(b, {-1});
  adam.step();
  give_grad(w, {0.25f, -1});
  give_grad(b, {3});
  adam.step();

  // A second optimizer over copies of the current values, given the state.
  Tensor w2 = parameter(w.to_vector()), b2 = parameter(b.to_vector());
  optim::Adam resumed({{"w", w2}, {"b", b2}}, 0.1f);
  resumed.load_state(adam.state(), adam.steps_taken());
  CHECK(resumed.steps_taken() == 2);
  // The state is copied, not shared.
  CHECK(!resumed.state()[0].second.shares_storage_with(adam.state()[0].second));

  // A third without the state: its step 3 is a bias-corrected "step 1".
  Tensor w3 = parameter(w.to_vector()), b3 = parameter(b.to_vector());
  optim::Adam fresh({{"w", w3}, {"b", b3}}, 0.1f);

  for (auto* pair : {&w, &w2, &w3}) give_grad(*pair, {1, 1});
  for (auto* pair : {&b, &b2, &b3}) give_grad(*pair, {1});
  adam.step();
  resumed.step();
  fresh.step();
  CHECK(w2.to_vector() == w.to_vector());  // bit for bit
  CHECK(b2.to_vector() == b.to_vector());
  CHECK(w3.to_vector() != w.to_vector());

  SECTION("a bad state is an error naming the entry and changes nothing") {
    const attend::NamedTensors good = adam.state();
    auto state_values = [](const optim::Optimizer& opt) {
      std::vector<std::vector<float>> out;
      for (const auto& [name, t] : opt.state()) out.push_back(t.to_vector());
      return out;
    };
    const auto before = state_values(fresh);

    attend::NamedTensors missing(good.begin(), good.end() - 1);  // no "exp_avg_sq.b"
    REQUIRE_THROWS_MENTIONING(fresh.load_state(missing, 3), "missing", "'exp_avg_sq.b'");
    attend::NamedTensors misshaped = good;
    misshaped[3].second = attend::zeros({2});  // exp_avg_sq.b is (1)
    REQUIRE_THROWS_MENTIONING(fresh.load_state(misshaped, 3), "'exp_avg_sq.b'", "(1,)");
    REQUIRE_THROWS_MENTIONING(fresh.load_state(good, -1), "negative");
    // Strict both ways: nothing left over, nothing twice.
    attend::NamedTensors extra = good;
    extra.emplace_back("momentum.w", attend::zeros({2}));
    REQUIRE_THROWS_MENTIONING(fresh.load_state(extra, 3), "unexpected", "'momentum.w'");
    attend::NamedTensors twice = good;
    twice.push_back(good[0]);
    REQUIRE_THROWS_MENTIONING(fresh.load_state(twice, 3), "'exp_avg.w'", "twice");
    CHECK(state_values(fresh) == before);
    CHECK(fresh.steps_taken() == 1);
  }
}

TEST_CASE("clip_grad_norm: scales to max_norm exactly when above it", "[ch04]") {
  // Gradients (3, 4) and (12): the global norm is sqrt(9 + 16 + 144) = 13.
  Tensor a = parameter({0, 0}), b = parameter({0}), no_grad = parameter({5});
  auto reset = [&] {
    give_grad(a, {3, 4});
    give_grad(b, {12});
  };
  reset();
  // Below the limit (and at it): returns 13, gradients untouched.
  CHECK(optim::clip_grad_norm({a, b, no_grad}, 20.0f) == 13.0f);
  CHECK(a.grad().to_vector() == std::vector<float>{3, 4});
  CHECK(b.grad().to_vector() == std::vector<float>{12});
  CHECK(optim::clip_grad_norm({a, b}, 13.0f) == 13.0f);
  CHECK(a.grad().to_vector() == std::vector<float>{3, 4});

  // Above: every gradient is scaled by 6.5 / 13 = 0.5 -> (1.5, 2) and (6),
  // whose norm is sqrt(2.25 + 4 + 36) = 6.5.
  CHECK(optim::clip_grad_norm({a, b, no_grad}, 6.5f) == 13.0f);
  CHECK(a.grad().to_vector() == std::vector<float>{1.5f, 2.0f});
  CHECK(b.grad().to_vector() == std::vector<float>{6.0f});
  CHECK(!no_grad.grad().defined());
  // Clipping again changes nothing: the norm is now exactly max_norm.
  CHECK(optim::clip_grad_norm({a, b}, 6.5f) == 6.5f);
  CHECK(a.grad().to_vector() == std::vector<float>{1.5f, 2.0f});

  // A scale that is not a power of two: max_norm 1 -> (3, 4, 12) / 13.
  reset();
  CHECK(optim::clip_grad_norm({a, b}, 1.0f) == 13.0f);
  CHECK_NEAR(a.grad().at({0}), 3.0 / 13, 1e-7);
  CHECK_NEAR(a.grad().at({1}), 4.0 / 13, 1e-7);
  CHECK_NEAR(b.grad().at({0}), 12.0 / 13, 1e-7);
  CHECK_NEAR(optim::clip_grad_norm({a, b}, 100.0f), 1.0, 1e-6);

  // Nothing has a gradient: the norm is 0.
  CHECK(optim::clip_grad_norm({no_grad}, 1.0f) == 0.0f);
}

TEST_CASE("grad_norm and step_with_grad_scale: clipping folded into the update, the same bits", "[ch04]") {
  // Two parameters of 5,000 and 40,000 elements (several ranges of the
  // optimizers' loops), gradients of norm ~100, clipped to 1: the scale is
  // not a power of two. Each optimizer is run twice from the same start:
  // clip_grad_norm then step(), and grad_norm then step_with_grad_scale.
  attend::Generator gen(5);
  const Tensor w0 = attend::randn({5000}, gen), u0 = attend::randn({200, 200}, gen);
  const Tensor gw = mul(attend::randn({5000}, gen), 1.5f), gu = attend::randn({200, 200}, gen);
  const auto fresh = [](const Tensor& t) { return t.clone().set_requires_grad(); };
  const auto set_grads = [&](Tensor& w, Tensor& u) {
    give_grad(w, gw.to_vector());
    give_grad(u, gu.to_vector());
  };
  enum Mode { clip_then_step, fused, unclipped };
  const auto run = [&](const std::string& kind, Mode mode, int steps) {
    Tensor w = fresh(w0), u = fresh(u0);
    std::unique_ptr<optim::Optimizer> opt;
    if (kind == "adam") opt = std::make_unique<optim::Adam>(attend::NamedTensors{{"w", w}, {"u", u}}, 0.01f);
    if (kind == "adamw") opt = std::make_unique<optim::AdamW>(attend::NamedTensors{{"w", w}, {"u", u}}, 0.01f);
    if (kind == "sgd") opt = std::make_unique<optim::SGD>(attend::NamedTensors{{"w", w}, {"u", u}}, 0.01f, 0.9f);
    float norm = 0.0f;
    for (int s = 0; s < steps; ++s) {
      set_grads(w, u);
      if (mode == fused) {
        norm = optim::grad_norm({w, u});
        opt->step_with_grad_scale(attend::kernels::clip_scale(norm, 1.0f));
      } else if (mode == unclipped) {
        opt->step_with_grad_scale(1.0f);
      } else {
        norm = optim::clip_grad_norm({w, u}, 1.0f);
        opt->step();
      }
    }
    return std::make_tuple(w.to_vector(), u.to_vector(), norm, w.grad().to_vector());
  };
  for (const std::string kind : {"adam", "adamw", "sgd"}) {
    INFO(kind);
    const auto [w_clipped, u_clipped, norm_clipped, g_clipped] = run(kind, clip_then_step, 3);
    const auto [w_fused, u_fused, norm_fused, g_fused] = run(kind, fused, 3);
    CHECK(norm_fused == norm_clipped);
    CHECK(norm_fused > 50.0f);  // so the scale is far from 1
    CHECK(w_fused == w_clipped);
    CHECK(u_fused == u_clipped);
    // An update that ignored the scale would move the weights further.
    CHECK(w_fused != std::get<0>(run(kind, unclipped, 3)));
    if (kind != "sgd") CHECK(g_fused == gw.to_vector());  // Adam leaves .grad as it was
  }
  // Scale 1 is step() itself.
  Tensor p = parameter({1, 2}), q = parameter({1, 2});
  optim::Adam a({{"p", p}}, 0.1f), b({{"q", q}}, 0.1f);
  give_grad(p, {0.5f, -3});
  give_grad(q, {0.5f, -3});
  a.step();
  b.step_with_grad_scale(1.0f);
  CHECK(p.to_vector() == q.to_vector());
}

// ---------------------------------------------------------------------------
// Learning-rate schedules (steps count from 1)
// ---------------------------------------------------------------------------

TEST_CASE("ConstantSchedule", "[ch04]") {
  optim::ConstantSchedule s(0.25f);
  CHECK(s.lr(1) == 0.25f);
  CHECK(s.lr(1000000) == 0.25f);
}

TEST_CASE("WarmupInverseSqrtSchedule: peak * min(step / warmup, sqrt(warmup / step))", "[ch04]") {
  optim::WarmupInverseSqrtSchedule s(1e-3f, 4);
  CHECK_NEAR(s.lr(1), 2.5e-4, 1e-10);    // 1e-3 * 1/4
  CHECK_NEAR(s.lr(2), 5e-4, 1e-10);      // 1e-3 * 2/4, mid-warmup
  CHECK_NEAR(s.lr(3), 7.5e-4, 1e-10);    // 1e-3 * 3/4
  CHECK_NEAR(s.lr(4), 1e-3, 1e-10);      // end of warmup: the peak, both terms are 1
  CHECK_NEAR(s.lr(9), 6.666667e-4, 1e-10);  // 1e-3 * sqrt(4/9) = 1e-3 * 2/3
  CHECK_NEAR(s.lr(16), 5e-4, 1e-10);     // 1e-3 * sqrt(4/16)
  CHECK_NEAR(s.lr(100), 2e-4, 1e-10);    // 1e-3 * sqrt(4/100)
  CHECK_NEAR(s.lr(40000), 1e-5, 1e-11);  // 1e-3 * sqrt(4/40000) = 1e-3 / 100
  CHECK(s.lr(0) == s.lr(1));             // step 0 is treated as step 1, never 0
  // The original transformer's d_model^-0.5 * min(step^-0.5, step * warmup^-1.5)
  // is this schedule with peak = (d_model * warmup)^-0.5: d = 512, warmup = 4000.
  optim::WarmupInverseSqrtSchedule paper(static_cast<float>(1.0 / std::sqrt(512.0 * 4000.0)), 4000);
  for (int64_t step : {1, 100, 4000, 10000}) {
    const double d = step;
    CHECK_NEAR(paper.lr(step), std::pow(512.0, -0.5) * std::min(std::pow(d, -0.5), d * std::pow(4000.0, -1.5)),
               1e-9);
  }
  CHECK_THROWS_AS(optim::WarmupInverseSqrtSchedule(1e-3f, 0), attend::Error);
}

TEST_CASE("WarmupCosineSchedule: linear warmup, half a cosine down to min_lr", "[ch04]") {
  // peak 1, warmup 10, total 110, min 0.1: the cosine spans steps 10..110 (100 steps).
  optim::WarmupCosineSchedule s(1.0f, 10, 110, 0.1f);
  CHECK_NEAR(s.lr(1), 0.1, 1e-7);    // 1 * 1/10
  CHECK_NEAR(s.lr(5), 0.5, 1e-7);    // mid-warmup
  CHECK_NEAR(s.lr(10), 1.0, 1e-7);   // end of warmup: the peak
  // progress = (step - 10) / 100;  lr = 0.1 + 0.9 * 0.5 * (1 + cos(pi * progress))
  CHECK_NEAR(s.lr(35), 0.8681981, 1e-6);  // progress 0.25: 0.1 + 0.45 * (1 + 0.7071068)
  CHECK_NEAR(s.lr(60), 0.55, 1e-6);       // progress 0.5:  0.1 + 0.45 * (1 + 0)
  CHECK_NEAR(s.lr(85), 0.2318019, 1e-6);  // progress 0.75: 0.1 + 0.45 * (1 - 0.7071068)
  CHECK_NEAR(s.lr(109), 0.1002220, 1e-6); // progress 0.99: 0.1 + 0.45 * (1 - 0.9995066)
  CHECK(s.lr(110) == 0.1f);               // total_steps: min_lr
  CHECK(s.lr(1000) == 0.1f);              // and after
  // Falls monotonically after warmup.
  for (int64_t step = 11; step <= 110; ++step) CHECK(s.lr(step) <= s.lr(step - 1));

  optim::WarmupCosineSchedule to_zero(2.0f, 0, 4);  // no warmup, min_lr 0
  // progress = step / 4: 2 * 0.5 * (1 + cos(pi/4)) = 1.7071068, (1 + cos(pi/2)) = 1, ...
  CHECK_NEAR(to_zero.lr(1), 1.7071068, 1e-6);
  CHECK_NEAR(to_zero.lr(2), 1.0, 1e-6);
  CHECK_NEAR(to_zero.lr(3), 0.2928932, 1e-6);
  CHECK(to_zero.lr(4) == 0.0f);

  REQUIRE_THROWS_MENTIONING(optim::WarmupCosineSchedule(1.0f, 10, 10), "warmup=10", "total_steps=10");
  CHECK_THROWS_AS(optim::WarmupCosineSchedule(1.0f, -1, 10), attend::Error);
}

// ---------------------------------------------------------------------------
// Checkpoints
// ---------------------------------------------------------------------------

namespace {

std::vector<std::vector<float>> state_values(const optim::Optimizer& opt) {
  std::vector<std::vector<float>> out;
  for (const auto& [name, t] : opt.state()) out.push_back(t.to_vector());
  return out;
}

std::vector<uint64_t> generator_states(nn::Module& model) {
  std::vector<uint64_t> out;
  for (const auto& [name, g] : model.named_generators()) out.push_back(g->state());
  return out;
}

// Training steps first..last (inclusive) of a classifier: batch `step` is
// drawn from its own seed, so a resumed run sees the same data.
void train_steps(nn::Module& model, nn::UnaryModule& forward, optim::Optimizer& opt,
                 const optim::Schedule& schedule, int64_t first, int64_t last) {
  for (int64_t step = first; step <= last; ++step) {
    Generator data(1000 + static_cast<uint64_t>(step));
    Tensor x = attend::randn({8, 4}, data);
    std::vector<int64_t> targets;
    for (int i = 0; i < 8; ++i) targets.push_back(data.randint(3));
    opt.lr = schedule.lr(step);
    opt.zero_grad();
    attend::cross_entropy(forward(x), attend::from_indices(targets, {8})).backward();
    optim::clip_grad_norm(model.parameters(), 1.0f);
    opt.step();
  }
}

// Only the first Linear of an MLP({4, 8, ...}): "layers.0.weight" (8, 4), "layers.0.bias" (8).
class FirstLayerOnly : public nn::Module {
 public:
  explicit FirstLayerOnly(Generator& gen) {
    register_module("layers", std::make_shared<nn::ModuleList>())->push_back(std::make_shared<nn::Linear>(4, 8, gen));
  }
};

void train_steps(nn::MLP& model, optim::Optimizer& opt, const optim::Schedule& schedule, int64_t first,
                 int64_t last) {
  train_steps(model, model, opt, schedule, first, last);
}

}  // namespace

TEST_CASE("Checkpoint: save then load restores parameters, optimizer, step, generators, metadata", "[ch04]") {
  TempDir dir("ch04_checkpoint");
  const std::string path = dir.file("model.safetensors");
  Generator gen(1);
  nn::MLP model({4, 8, 8, 3}, gen, nn::Activation::ReLU, 0.1f);  // Dropouts at layers.2 and layers.5
  optim::AdamW opt(model.named_parameters(), 1e-2f);
  optim::ConstantSchedule schedule(1e-2f);
  train_steps(model, opt, schedule, 1, 3);
  const std::map<std::string, std::string> metadata = {{"config", "mlp 4-8-8-3"}, {"note", "hello"}};
  attend::nn::save_checkpoint(path, model, &opt, 3, metadata);

  SECTION("the file is plain safetensors with the documented names") {
    const attend::io::SafetensorsContents file = attend::io::load_safetensors(path);
    const std::vector<std::string> names = names_of(file.tensors);
    CHECK(names.size() == 6 + 2 * 6);  // 6 parameters, exp_avg and exp_avg_sq of each
    for (const char* name : {"layers.0.weight", "layers.6.bias", "optimizer.exp_avg.layers.0.weight",
                             "optimizer.exp_avg_sq.layers.6.bias"}) {
      INFO(name);
      CHECK(std::count(names.begin(), names.end(), name) == 1);
    }
    CHECK(file.metadata.at("attend.step") == "3");
    CHECK(file.metadata.at("attend.optimizer_steps") == "3");
    CHECK(file.metadata.at("attend.rng.layers.2.generator") ==
          std::to_string(model.named_generators()[0].second->state()));
    CHECK(file.metadata.at("config") == "mlp 4-8-8-3");
  }

  SECTION("into a model and optimizer built from another seed") {
    Generator other(2);
    nn::MLP fresh({4, 8, 8, 3}, other, nn::Activation::ReLU, 0.1f);
    optim::AdamW fresh_opt(fresh.named_parameters(), 1e-2f);
    REQUIRE(snapshot(fresh) != snapshot(model));
    REQUIRE(generator_states(fresh) != generator_states(model));
    const attend::nn::CheckpointInfo info = attend::nn::load_checkpoint(path, fresh, &fresh_opt);
    CHECK(info.step == 3);
    CHECK(info.metadata == metadata);  // only the caller's own entries
    CHECK(snapshot(fresh) == snapshot(model));  // bit for bit
    CHECK(state_values(fresh_opt) == state_values(opt));
    CHECK(fresh_opt.steps_taken() == 3);
    CHECK(generator_states(fresh) == generator_states(model));
  }

  SECTION("the model alone, without the optimizer") {
    Generator other(3);
    nn::MLP fresh({4, 8, 8, 3}, other, nn::Activation::ReLU, 0.1f);
    CHECK(attend::nn::load_checkpoint(path, fresh, nullptr).step == 3);
    CHECK(snapshot(fresh) == snapshot(model));
  }

  SECTION("a reserved metadata key is refused and the file is left as it was") {
    REQUIRE_THROWS_MENTIONING(attend::nn::save_checkpoint(path, model, &opt, 9, {{"attend.step", "9"}}), "attend.step");
    Generator other(4);
    nn::MLP fresh({4, 8, 8, 3}, other, nn::Activation::ReLU, 0.1f);
    CHECK(attend::nn::load_checkpoint(path, fresh, nullptr).step == 3);
  }
}

TEST_CASE("Checkpoint: a mismatched model or optimizer fails naming the entry and changes nothing", "[ch04]") {
  TempDir dir("ch04_checkpoint");
  const std::string path = dir.file("model.safetensors");
  Generator gen(1);
  nn::MLP model({4, 8, 8, 3}, gen, nn::Activation::ReLU, 0.1f);
  optim::Adam opt(model.named_parameters(), 1e-2f);
  optim::ConstantSchedule schedule(1e-2f);
  train_steps(model, opt, schedule, 1, 2);
  attend::nn::save_checkpoint(path, model, &opt, 2);

  Generator other(2);
  SECTION("different shapes") {
    nn::MLP wider({4, 16, 8, 3}, other, nn::Activation::ReLU, 0.1f);
    optim::Adam wider_opt(wider.named_parameters(), 1e-2f);
    const auto before = snapshot(wider);
    const auto generators_before = generator_states(wider);
    REQUIRE_THROWS_MENTIONING(attend::nn::load_checkpoint(path, wider, &wider_opt), path.c_str(), "'layers.0.weight'",
                              "(8, 4)", "(16, 4)");
    CHECK(snapshot(wider) == before);
    CHECK(generator_states(wider) == generators_before);
    CHECK(wider_opt.steps_taken() == 0);
    for (const auto& values : state_values(wider_opt)) {
      CHECK(std::all_of(values.begin(), values.end(), [](float v) { return v == 0.0f; }));
    }
  }
  SECTION("different names") {
    // Without dropout the second Linear is layers.2, not layers.3.
    nn::MLP renamed({4, 8, 8, 3}, other);
    const auto before = snapshot(renamed);
    REQUIRE_THROWS_MENTIONING(attend::nn::load_checkpoint(path, renamed, nullptr), "missing", "'layers.2.weight'");
    CHECK(snapshot(renamed) == before);
  }
  SECTION("parameters the model does not have") {
    // The model's layers.0 matches the file's exactly, but the file also has
    // layers.3 and layers.6, which would be silently dropped.
    FirstLayerOnly smaller(other);
    const auto before = snapshot(smaller);
    REQUIRE_THROWS_MENTIONING(attend::nn::load_checkpoint(path, smaller, nullptr), "unexpected", "'layers.3.");
    CHECK(snapshot(smaller) == before);
  }
  SECTION("an optimizer of another kind") {
    nn::MLP same({4, 8, 8, 3}, other, nn::Activation::ReLU, 0.1f);
    const auto before = snapshot(same);
    optim::SGD sgd(same.named_parameters(), 0.1f, 0.9f);  // wants "momentum.*"
    REQUIRE_THROWS_MENTIONING(attend::nn::load_checkpoint(path, same, &sgd), "'momentum.layers.0.weight'");
    CHECK(snapshot(same) == before);  // the model is untouched too
    optim::SGD plain(same.named_parameters(), 0.1f);  // no state at all, but the file has Adam's
    REQUIRE_THROWS_MENTIONING(attend::nn::load_checkpoint(path, same, &plain), "unexpected", "'exp_avg.layers.0.weight'");
    CHECK(snapshot(same) == before);
  }
  SECTION("a damaged or absent file") {
    const std::string bad = dir.file("bad.safetensors");
    write_file(bad, "this is not a checkpoint");
    nn::MLP same({4, 8, 8, 3}, other, nn::Activation::ReLU, 0.1f);
    const auto before = snapshot(same);
    REQUIRE_THROWS_MENTIONING(attend::nn::load_checkpoint(bad, same, nullptr), bad.c_str());
    const std::string absent = dir.file("absent.safetensors");
    REQUIRE_THROWS_MENTIONING(attend::nn::load_checkpoint(absent, same, nullptr), absent.c_str());
    CHECK(snapshot(same) == before);
  }
}

TEST_CASE("Checkpoint: stopping, saving, loading and continuing equals never stopping, bit for bit", "[ch04]") {
  // An MLP with Dropout trained with Adam, a warmup-cosine schedule and
  // gradient clipping: the parameters, Adam's moments and step count, and the
  // dropout generators must all come back for the runs to agree exactly.
  constexpr int64_t kSteps = 8, kHalf = kSteps / 2;
  const optim::WarmupCosineSchedule schedule(1e-2f, 2, kSteps);
  TempDir dir("ch04_checkpoint");
  const std::string path = dir.file("half.safetensors");
  auto build = [](uint64_t seed) {
    Generator gen(seed);
    auto model = std::make_unique<nn::MLP>(std::vector<int64_t>{4, 16, 16, 3}, gen, nn::Activation::GELU, 0.2f);
    auto opt = std::make_unique<optim::Adam>(model->named_parameters(), 0.0f);
    return std::pair{std::move(model), std::move(opt)};
  };

  auto [straight, straight_opt] = build(1);
  train_steps(*straight, *straight_opt, schedule, 1, kSteps);

  {
    auto [first_half, first_opt] = build(1);
    train_steps(*first_half, *first_opt, schedule, 1, kHalf);
    attend::nn::save_checkpoint(path, *first_half, first_opt.get(), kHalf);
  }  // the first run is gone; only the file remains

  auto [resumed, resumed_opt] = build(99);  // another seed: everything must come from the file
  const attend::nn::CheckpointInfo info = attend::nn::load_checkpoint(path, *resumed, resumed_opt.get());
  REQUIRE(info.step == kHalf);
  train_steps(*resumed, *resumed_opt, schedule, info.step + 1, kSteps);

  CHECK(snapshot(*resumed) == snapshot(*straight));
  CHECK(state_values(*resumed_opt) == state_values(*straight_opt));
  CHECK(resumed_opt->steps_taken() == kSteps);
  CHECK(generator_states(*resumed) == generator_states(*straight));

  // The comparison is sharp enough to notice a missing piece. Without the
  // dropout generators' state the masks differ ...
  {
    auto [model, opt] = build(98);
    attend::nn::load_checkpoint(path, *model, opt.get());
    for (const auto& [name, g] : model->named_generators()) g->set_state(g->state() + 1);
    train_steps(*model, *opt, schedule, kHalf + 1, kSteps);
    CHECK(snapshot(*model) != snapshot(*straight));
  }
  // ... and without the optimizer's state Adam restarts its moments.
  {
    auto [model, opt] = build(97);
    attend::nn::load_checkpoint(path, *model, nullptr);
    train_steps(*model, *opt, schedule, kHalf + 1, kSteps);
    CHECK(snapshot(*model) != snapshot(*straight));
  }
}

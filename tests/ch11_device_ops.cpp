// Chapter 11 (docs/11-cuda.md, "Tensors on the device"): the rest of the
// Transformer's ops on the device against the CPU's on awkward shapes, values
// and gradients (softmax, layer norm, dropout's mask, cross-entropy, gathers,
// cat, masks, where, max), their errors, and a whole Transformer step and its
// decoding. On the emulator in `make test`; on a GPU with make CUDA=1.
#include <cmath>
#include <string>
#include <vector>

#include "attend/attend.hpp"
#include "catch_compat.hpp"
#include "test_devices.hpp"

using attend::Device;
using attend::Shape;
using attend::Tensor;
using attend_test::compare_with_cpu;
using attend_test::cpu_leaf;
using attend_test::Match;
using attend_test::same_bits;
using Inputs = std::vector<Tensor>;

namespace {

constexpr Device cuda = Device::cuda;

// Every shape that a test walks: sizes 1, 7 and 33, ranks 1 to 3.
const std::vector<Shape>& awkward_shapes() {
  static const std::vector<Shape> shapes{{1}, {7}, {33}, {3, 33}, {2, 7, 5}, {1, 1, 7}};
  return shapes;
}

}  // namespace

TEST_CASE("softmax and log_softmax along any dim on the device: the CPU's rows", "[ch11]") {
  for (const Shape& shape : awkward_shapes()) {
    for (int64_t dim = -1; dim < static_cast<int64_t>(shape.size()); ++dim) {
      const std::string where = attend::to_string(shape) + " along " + std::to_string(dim);
      compare_with_cpu("softmax " + where, {cpu_leaf(shape)},
                       [dim](const Inputs& in) { return attend::softmax(in[0], dim); }, Match::same_bits_on_emulator);
      compare_with_cpu("log_softmax " + where, {cpu_leaf(shape)},
                       [dim](const Inputs& in) { return attend::log_softmax(in[0], dim); },
                       Match::same_bits_on_emulator);
    }
  }
  // Strided rows, read in place: a transposed view, along either dim.
  for (int64_t dim : {0, 1}) {
    compare_with_cpu("softmax of a transposed view", {cpu_leaf({33, 7})},
                     [dim](const Inputs& in) { return attend::softmax(in[0].t(), dim); }, Match::same_bits_on_emulator);
    compare_with_cpu("log_softmax of a transposed view", {cpu_leaf({33, 7})},
                     [dim](const Inputs& in) { return attend::log_softmax(in[0].t(), dim); },
                     Match::same_bits_on_emulator);
  }
  // Large logits (the max is subtracted first) and masked keys: a row with
  // every key at -inf is zeros, not NaN, on the device too.
  const Tensor mask = attend::from_vector({0, 1, 0, 0, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 1}, {3, 7});
  compare_with_cpu("softmax of masked, large scores", {cpu_leaf({3, 7})}, [&](const Inputs& in) {
    return attend::softmax(attend::masked_fill(in[0] * 100.0f, mask.to(in[0].device()), -INFINITY), -1);
  }, Match::same_bits_on_emulator);
  const Tensor scores = attend::masked_fill(attend::ones({3, 7}), mask, -INFINITY).to(cuda);
  CHECK(attend::softmax(scores, 1).cpu().select(0, 1).to_vector() == std::vector<float>(7, 0.0f));
}

TEST_CASE("layer_norm on the device: values, dx, dweight and dbias", "[ch11]") {
  for (const Shape& shape : awkward_shapes()) {
    const int64_t C = shape.back();
    compare_with_cpu("layer_norm " + attend::to_string(shape), {cpu_leaf(shape), cpu_leaf({C}), cpu_leaf({C})},
                     [](const Inputs& in) { return attend::layer_norm(in[0], in[1], in[2]); },
                     Match::same_bits_on_emulator);
  }
  compare_with_cpu("layer_norm without weight and bias", {cpu_leaf({7, 33})},
                   [](const Inputs& in) { return attend::layer_norm(in[0], Tensor(), Tensor()); },
                   Match::same_bits_on_emulator);
  compare_with_cpu("layer_norm of a transposed view", {cpu_leaf({33, 7}), cpu_leaf({33}), cpu_leaf({33})},
                   [](const Inputs& in) { return attend::layer_norm(in[0].t(), in[1], in[2]); },
                   Match::same_bits_on_emulator);
  // The weight's gradient sums 7 x 33 rows down each column: 231 terms.
  compare_with_cpu("layer_norm over many rows", {cpu_leaf({7, 33, 5}), cpu_leaf({5}), cpu_leaf({5})},
                   [](const Inputs& in) { return attend::layer_norm(in[0], in[1], in[2]); },
                   Match::same_bits_on_emulator);
  const Tensor x = attend::ones({2, 3}, cuda);
  REQUIRE_THROWS_MENTIONING(attend::layer_norm(x, attend::ones({3}), Tensor()),
                            "layer_norm: the inputs are on two devices", "input (2, 3) on cuda",
                            "weight (3,) on cpu");
  REQUIRE_THROWS_MENTIONING(attend::layer_norm(x, Tensor(), attend::ones({4}, cuda)), "layer_norm: bias of shape (4,)",
                            "expected (3,)");
}

TEST_CASE("dropout on the device draws the CPU's mask for the same seed", "[ch11]") {
  for (const Shape& shape : awkward_shapes()) {
    INFO(attend::to_string(shape));
    attend::Generator on_cpu(5), on_device(5);
    const Tensor x = attend::randn(shape, on_cpu);
    (void)attend::randn(shape, on_device);
    for (int call = 0; call < 2; ++call) {  // the second call draws further along both streams
      const Tensor y = attend::dropout(x, 0.3f, true, on_cpu);
      const Tensor y_device = attend::dropout(x.to(cuda), 0.3f, true, on_device);
      REQUIRE(y_device.device() == cuda);
      CHECK(same_bits(y_device, y));
      CHECK(on_device.state() == on_cpu.state());
    }
  }
  // Values and gradients through a transposed view; each run of f starts a
  // generator at the same seed, so the CPU and the device draw the same mask.
  for (float p : {0.1f, 0.5f, 0.9f}) {
    compare_with_cpu("dropout p = " + std::to_string(p), {cpu_leaf({33, 7})}, [p](const Inputs& in) {
      attend::Generator gen(9);
      return attend::dropout(in[0].t(), p, true, gen);
    }, Match::bit_exact);
  }
  // About p of the elements are zero (the mask is not all ones or all zeros).
  attend::Generator gen(1);
  const std::vector<float> kept = attend::dropout(attend::ones({1000}, cuda), 0.25f, true, gen).cpu().to_vector();
  int zeros = 0;
  for (float v : kept) zeros += v == 0.0f;
  CHECK(zeros > 200);
  CHECK(zeros < 300);
  // p = 1 drops everything; evaluation and p = 0 give the input itself.
  const Tensor x = attend::ones({7}, cuda);
  CHECK(attend::dropout(x, 1.0f, true, gen).cpu().to_vector() == std::vector<float>(7, 0.0f));
  CHECK(attend::dropout(x, 0.5f, false, gen).shares_storage_with(x));
  CHECK(attend::dropout(x, 0.0f, true, gen).shares_storage_with(x));
  REQUIRE_THROWS_MENTIONING(attend::dropout(x, 1.5f, true, gen), "dropout: probability must be in [0, 1]");
}

TEST_CASE("cross_entropy on the device: ignore_index and label smoothing, forward and backward", "[ch11]") {
  const Tensor targets = attend::from_indices({3, -100, 0, 4, 4, -100, 1}, {7});
  for (float smoothing : {0.0f, 0.1f}) {
    compare_with_cpu("cross_entropy (7, 5), smoothing " + std::to_string(smoothing), {cpu_leaf({7, 5})},
                     [&](const Inputs& in) {
                       return attend::cross_entropy(in[0], targets.to(in[0].device()), -100, smoothing);
                     }, Match::same_bits_on_emulator);
  }
  const Tensor targets_2d = attend::from_indices({32, 0, 7, 0, 0, 1}, {2, 3});
  compare_with_cpu("cross_entropy (2, 3, 33), pad 0 ignored", {cpu_leaf({2, 3, 33})}, [&](const Inputs& in) {
    return attend::cross_entropy(in[0], targets_2d.to(in[0].device()), 0, 0.2f);
  }, Match::same_bits_on_emulator);
  compare_with_cpu("cross_entropy of one row of one class", {cpu_leaf({1, 1})}, [](const Inputs& in) {
    return attend::cross_entropy(in[0], attend::from_indices({0}, {1}, in[0].device()));
  }, Match::same_bits_on_emulator);
  // Every target ignored: the loss is 0 and so is every gradient.
  Tensor logits = attend::randn({3, 4}, attend_test::device_test_generator(), cuda).set_requires_grad();
  const Tensor loss = attend::cross_entropy(logits, attend::from_indices({-100, -100, -100}, {3}, cuda));
  CHECK(loss.cpu().item() == 0.0f);
  loss.backward();
  CHECK(logits.grad().cpu().to_vector() == std::vector<float>(12, 0.0f));

  REQUIRE_THROWS_MENTIONING(attend::cross_entropy(logits, attend::from_indices({1, 4, 2}, {3}, cuda)),
                            "cross_entropy: target 4 is out of range [0, 4) for logits of shape (3, 4)");
  REQUIRE_THROWS_MENTIONING(attend::cross_entropy(logits, attend::from_indices({1, -1, 2}, {3}, cuda)),
                            "cross_entropy: target -1 is out of range");
  REQUIRE_THROWS_MENTIONING(attend::cross_entropy(logits, attend::from_indices({1, 2, 3}, {3})),
                            "cross_entropy: the inputs are on two devices", "logits (3, 4) on cuda",
                            "targets (3,) on cpu");
}

TEST_CASE("embedding and index_select on the device: the gather and a deterministic scatter-add", "[ch11]") {
  // Repeated ids (3 five times, 0 three times) and a padding id (3) whose
  // row gets no gradient: the scatter-add adds in id order, as on the CPU.
  const Tensor ids = attend::from_indices({3, 0, 3, 10, 2, 3, 0, 3, 3, 0, 1, 9}, {2, 6});
  for (int64_t padding : {-1, 3}) {
    compare_with_cpu("embedding (11, 7), padding " + std::to_string(padding), {cpu_leaf({11, 7})},
                     [&](const Inputs& in) { return attend::embedding(in[0], ids.to(in[0].device()), padding); },
                     Match::bit_exact);
  }
  compare_with_cpu("embedding of one id, dim 1", {cpu_leaf({1, 1})}, [](const Inputs& in) {
    return attend::embedding(in[0], attend::from_indices({0}, {1}, in[0].device()));
  }, Match::bit_exact);
  // 33 ids in a vocabulary of 5: every row is summed from many entries;
  // two runs on the device give the same bits as each other and the CPU.
  std::vector<int64_t> many;
  for (int64_t i = 0; i < 33; ++i) many.push_back((i * 7) % 5);
  const Tensor many_ids = attend::from_indices(many, {33});
  const Tensor weight = cpu_leaf({5, 33});
  const Tensor g = attend::randn({33, 33}, attend_test::device_test_generator());
  attend::sum(attend::embedding(weight, many_ids) * g).backward();
  const Tensor cpu_grad = weight.grad();
  std::vector<Tensor> device_grads;
  for (int run = 0; run < 2; ++run) {
    Tensor w = weight.detach().to(cuda).set_requires_grad();
    attend::sum(attend::embedding(w, many_ids.to(cuda)) * g.to(cuda)).backward();
    device_grads.push_back(w.grad());
  }
  CHECK(same_bits(device_grads[0], device_grads[1]));
  CHECK(same_bits(device_grads[0], cpu_grad));

  for (int64_t dim : {0, 1, 2}) {
    compare_with_cpu("index_select (5, 7, 3) along " + std::to_string(dim), {cpu_leaf({5, 7, 3})}, [dim](const Inputs& in) {
      return attend::index_select(in[0], dim, attend::from_indices({2, 0, 2, 1}, {4}, in[0].device()));
    }, Match::bit_exact);
  }
  compare_with_cpu("index_select of a transposed view", {cpu_leaf({33, 7})}, [](const Inputs& in) {
    return attend::index_select(in[0].t(), 1, attend::from_indices({32, 0, 32, 7}, {4}, in[0].device()));
  }, Match::bit_exact);

  const Tensor w = attend::ones({11, 7}, cuda);
  REQUIRE_THROWS_MENTIONING(attend::embedding(w, attend::from_indices({1, 11}, {2}, cuda)),
                            "embedding: index 11 is out of range [0, 11) for a source of shape (11, 7)");
  REQUIRE_THROWS_MENTIONING(attend::embedding(w, attend::from_indices({-1}, {1}, cuda)), "embedding: index -1");
  REQUIRE_THROWS_MENTIONING(attend::embedding(w, attend::from_indices({1, 2}, {2})),
                            "embedding: the inputs are on two devices", "weight (11, 7) on cuda", "ids (2,) on cpu");
  REQUIRE_THROWS_MENTIONING(attend::index_select(w, 1, attend::from_indices({7}, {1}, cuda)),
                            "index_select: index 7 is out of range [0, 7)");
  REQUIRE_THROWS_MENTIONING(attend::index_select(w, 0, attend::from_indices({0}, {1})),
                            "index_select: the inputs are on two devices", "index (1,) on cpu");
  // A kernel's pointer to ids: only for an int64 tensor on the device.
  REQUIRE_THROWS_MENTIONING(attend::from_indices({0}, {1}).device_index_data(),
                            "device_index_data: the tensor of shape (1,) is on the cpu", "index_data()");
  REQUIRE_THROWS_MENTIONING(w.device_index_data(), "device_index_data: expected a int64 tensor, got float32");
}

TEST_CASE("cat, stack and split on the device", "[ch11]") {
  compare_with_cpu("cat along 0", {cpu_leaf({2, 7}), cpu_leaf({1, 7}), cpu_leaf({33, 7})},
                   [](const Inputs& in) { return attend::cat(in, 0); }, Match::bit_exact);
  compare_with_cpu("cat along 1 of a transposed view", {cpu_leaf({7, 2}), cpu_leaf({1, 7}), cpu_leaf({7, 33})},
                   [](const Inputs& in) { return attend::cat({in[0], in[1].t(), in[2]}, 1); }, Match::bit_exact);
  compare_with_cpu("stack along 1", {cpu_leaf({7}), cpu_leaf({7}), cpu_leaf({7})},
                   [](const Inputs& in) { return attend::stack(in, 1); }, Match::bit_exact);
  compare_with_cpu("split into views", {cpu_leaf({33, 3})}, [](const Inputs& in) {
    const std::vector<Tensor> pieces = attend::split(in[0], 7, 0);  // 7, 7, 7, 7, 5
    CHECK(pieces.size() == 5);
    return attend::cat({pieces[4] * 2.0f, pieces[0], pieces[2] - 1.0f}, 0);
  }, Match::bit_exact);
  const Tensor ids = attend::cat({attend::from_indices({1, 2}, {2}, cuda), attend::from_indices({3}, {1}, cuda)}, 0);
  CHECK(ids.device() == cuda);
  CHECK(ids.cpu().to_index_vector() == std::vector<int64_t>{1, 2, 3});
  REQUIRE_THROWS_MENTIONING(attend::cat({attend::ones({2, 7}), attend::ones({1, 7}, cuda)}, 0),
                            "cat: the inputs are on two devices", "tensor 0 (2, 7) on cpu", "tensor 1 (1, 7) on cuda");
}

TEST_CASE("masks and where on the device: int64 masks, padding masks, where", "[ch11]") {
  const Tensor ids = attend::from_indices({4, 0, 2, 0, 0, 7}, {2, 3});
  const Tensor flags = attend::index_flags(ids.to(cuda), 0);
  CHECK(flags.device() == cuda);
  CHECK(flags.cpu().to_vector() == std::vector<float>{0, 1, 0, 1, 1, 0});
  CHECK(attend::index_flags(ids.to(cuda).t(), 0, /*equal=*/false).cpu().to_vector() ==
        std::vector<float>{1, 0, 0, 0, 1, 1});
  CHECK(same_bits(attend::nn::padding_mask(ids.to(cuda), 0), attend::nn::padding_mask(ids, 0)));
  REQUIRE_THROWS_MENTIONING(attend::index_flags(attend::ones({2}, cuda), 0), "index_flags: ids must be an int64 tensor");

  compare_with_cpu("masked_fill with an int64 mask", {cpu_leaf({2, 3})}, [&](const Inputs& in) {
    return attend::masked_fill(in[0], ids.to(in[0].device()), -5.0f);
  }, Match::bit_exact);
  const Tensor condition = attend::from_vector({1, 0, 0, 1, 0, 1, 1}, {7, 1});
  compare_with_cpu("where, broadcast", {cpu_leaf({7, 33}), cpu_leaf({33})}, [&](const Inputs& in) {
    return attend::where(condition.to(in[0].device()), in[0], in[1]);
  }, Match::bit_exact);
  compare_with_cpu("where of a transposed view", {cpu_leaf({33, 7}), cpu_leaf({7, 33})}, [&](const Inputs& in) {
    return attend::where(condition.to(in[0].device()), in[0].t(), in[1]);
  }, Match::bit_exact);
  REQUIRE_THROWS_MENTIONING(attend::where(condition, attend::ones({7, 1}, cuda), attend::ones({7, 1}, cuda)),
                            "where: the inputs are on two devices", "condition (7, 1) on cpu");
}

TEST_CASE("max and argmax on the device: the first maximum, its gradient", "[ch11]") {
  for (const std::vector<int64_t>& dims : std::vector<std::vector<int64_t>>{{0}, {1}, {2}, {0, 2}}) {
    compare_with_cpu("max over " + attend::to_string(Shape(dims)), {cpu_leaf({7, 33, 1})},
                     [&](const Inputs& in) { return attend::max(in[0], dims, /*keepdim=*/dims.size() == 1); },
                     Match::bit_exact);
  }
  compare_with_cpu("max of everything, of a transposed view", {cpu_leaf({33, 7})},
                   [](const Inputs& in) { return attend::max(in[0].t()); }, Match::bit_exact);
  // Ties go to the first maximum, as on the CPU, and so does the gradient.
  Tensor tied = attend::from_vector({1, 3, 3, 2, -1, -1, 5, 5}, {4, 2}, cuda).set_requires_grad();
  const Tensor best = attend::argmax(tied, 1);
  CHECK(best.device() == cuda);
  CHECK(best.dtype() == attend::DType::Int64);
  CHECK(best.cpu().to_index_vector() == std::vector<int64_t>{1, 0, 0, 0});
  CHECK(attend::argmax(tied, 0, /*keepdim=*/true).cpu().to_index_vector() == std::vector<int64_t>{3, 3});
  attend::sum(attend::max(tied, {1})).backward();
  CHECK(tied.grad().cpu().to_vector() == std::vector<float>{0, 1, 1, 0, 1, 0, 1, 0});
  REQUIRE_THROWS_MENTIONING(attend::argmax(attend::ones({3, 0}, cuda), 1), "argmax: cannot reduce over an empty dim");
}

TEST_CASE("a Transformer step and its decoding on the device equal the CPU's", "[ch11]") {
  attend::nn::TransformerConfig config;
  config.src_vocab = 13;
  config.tgt_vocab = 11;
  config.d_model = 8;
  config.heads = 2;
  config.d_ff = 16;
  config.encoder_layers = config.decoder_layers = 1;
  config.max_len = 8;
  config.dropout = 0.1f;  // drawn the same on both devices
  attend::Generator gen_cpu(3), gen_device(3);
  attend::nn::Seq2SeqTransformer on_cpu(config, gen_cpu), on_device(config, gen_device);
  // Moves every parameter to the device in place (what Module::to will do).
  for (auto& [name, p] : on_device.named_parameters()) p.impl()->storage = p.detach().to(cuda).impl()->storage;

  const Tensor src = attend::from_indices({5, 7, 2, 12, 0, 3, 3, 9, 0, 0}, {2, 5});       // padded with 0
  const Tensor tgt_in = attend::from_indices({1, 4, 6, 10, 1, 8, 0, 0}, {2, 4});         // <bos> = 1
  const Tensor tgt_out = attend::from_indices({4, 6, 10, 2, 8, 2, 0, 0}, {2, 4});        // <eos> = 2
  for (int step = 0; step < 2; ++step) {
    INFO("step " << step);
    auto loss_of = [&](attend::nn::Seq2SeqTransformer& model, Device device) {
      const Tensor logits = model.forward(src.to(device), tgt_in.to(device));  // (2, 4, 11)
      return attend::cross_entropy(logits.reshape({8, 11}), tgt_out.to(device).reshape({8}), 0, 0.1f);
    };
    const Tensor loss_cpu = loss_of(on_cpu, Device::cpu), loss_device = loss_of(on_device, cuda);
    loss_cpu.backward();
    loss_device.backward();
    CHECK(std::abs(loss_device.cpu().item() - loss_cpu.item()) <= 1e-5f * (1.0f + std::abs(loss_cpu.item())));
    const attend::NamedTensors cpu_parameters = on_cpu.named_parameters();
    const attend::NamedTensors device_parameters = on_device.named_parameters();  // the same order
    REQUIRE(device_parameters.size() == cpu_parameters.size());
    for (size_t i = 0; i < cpu_parameters.size(); ++i) {
      const auto& [name, p] = cpu_parameters[i];
      const Tensor& device_p = device_parameters[i].second;
      INFO(name);
      REQUIRE(device_p.grad().defined());
      CHECK(device_p.grad().device() == cuda);
      // matmul sums in another order on the device: 1e-4 (see ch11_device.cpp)
      CHECK(attend::allclose(device_p.grad().cpu(), p.grad(), 1e-4f, 1e-4f));
    }
    on_cpu.zero_grad();
    on_device.zero_grad();
  }

  // Greedy decoding and beam search, with and without the cache, give the
  // CPU's tokens when src is on the device.
  for (bool use_cache : {true, false}) {
    INFO("use_cache " << use_cache);
    attend::decode::DecodeOptions greedy;
    greedy.use_cache = use_cache;
    CHECK(attend::decode::greedy_decode(on_device, src.to(cuda), 4, 1, 2, greedy) ==
          attend::decode::greedy_decode(on_cpu, src, 4, 1, 2, greedy));
    attend::decode::BeamOptions beam;
    beam.beam_size = 3;
    beam.use_cache = use_cache;
    const auto beams_device = attend::decode::beam_search(on_device, src.to(cuda), 4, 1, 2, beam);
    const auto beams_cpu = attend::decode::beam_search(on_cpu, src, 4, 1, 2, beam);
    REQUIRE(beams_device.size() == beams_cpu.size());
    for (size_t b = 0; b < beams_cpu.size(); ++b) {
      REQUIRE(beams_device[b].size() == beams_cpu[b].size());
      for (size_t k = 0; k < beams_cpu[b].size(); ++k) CHECK(beams_device[b][k].tokens == beams_cpu[b][k].tokens);
    }
  }
}

// Chapter 7's golden test: the same tiny Transformer built in PyTorch
// (tests/golden/make_ch07_golden.py, run once) and in Attend, with the same
// weights and inputs, must give the same logits, loss and parameter gradients.
// The reference file is a safetensors file, so Python is never needed here.
#include <cmath>

#include "attend/attend.hpp"
#include "catch_compat.hpp"

using namespace attend;

namespace {

// Largest |a - b| / (atol + rtol |b|) over all elements: <= 1 means within tolerance.
double worst_ratio(const Tensor& a, const Tensor& b, double rtol, double atol, double* worst_abs) {
  const std::vector<float> va = a.to_vector(), vb = b.to_vector();
  double worst = 0.0;
  for (size_t i = 0; i < va.size(); ++i) {
    const double diff = std::fabs(static_cast<double>(va[i]) - vb[i]);
    *worst_abs = std::max(*worst_abs, diff);
    worst = std::max(worst, diff / (atol + rtol * std::fabs(static_cast<double>(vb[i]))));
  }
  return worst;
}

}  // namespace

TEST_CASE("a tiny Transformer matches PyTorch: logits, loss and every gradient", "[ch07][golden]") {
  const io::SafetensorsContents golden =
      io::load_safetensors(std::string(ATTEND_SOURCE_DIR) + "/tests/golden/ch07_transformer.safetensors");
  std::map<std::string, Tensor> file(golden.tensors.begin(), golden.tensors.end());

  nn::TransformerConfig config{.src_vocab = 11, .tgt_vocab = 13, .d_model = 16, .heads = 2,
      .encoder_layers = 2, .decoder_layers = 2, .d_ff = 32, .dropout = 0.0f, .max_len = 32, .pad_id = 0};  // as in make_ch07_golden.py
  Generator gen(0);
  nn::Seq2SeqTransformer model(config, gen);

  // Every Attend parameter has a PyTorch twin in the file, and nothing is left over.
  NamedTensors params;
  size_t golden_params = 0;
  for (const auto& [name, t] : golden.tensors) golden_params += name.rfind("param.", 0) == 0;
  for (const auto& [name, p] : model.named_parameters()) {
    INFO("parameter " << name);
    REQUIRE(file.count("param." + name) == 1);
    params.emplace_back(name, file.at("param." + name));
  }
  REQUIRE(params.size() == golden_params);
  model.load_state_dict(params);

  const Tensor logits = model.forward(file.at("input.src"), file.at("input.tgt_in"));
  const Tensor loss = cross_entropy(logits, file.at("input.tgt_out"), /*ignore_index=*/0,
                                    /*label_smoothing=*/0.1f);
  loss.backward();

  // float32 both sides, different summation orders: the forward agrees to
  // about 1e-6 absolute on logits of size ~1 (rtol 1e-5 asked by the issue);
  // gradients pass through more arithmetic, and small ones are compared
  // against an absolute floor of 1e-6.
  double worst_abs = 0.0;
  CHECK(worst_ratio(logits, file.at("output.logits"), 1e-5, 1e-5, &worst_abs) <= 1.0);
  INFO("largest logit difference " << worst_abs);
  CHECK(std::fabs(loss.item() - file.at("output.loss").item()) <= 1e-5 * std::fabs(file.at("output.loss").item()) + 1e-6);

  double worst_grad_abs = 0.0;
  for (const auto& [name, p] : model.named_parameters()) {
    INFO("gradient of " << name);
    REQUIRE(p.grad().defined());
    CHECK(worst_ratio(p.grad(), file.at("grad." + name), 1e-4, 1e-6, &worst_grad_abs) <= 1.0);
  }
  INFO("largest gradient difference " << worst_grad_abs);
  CHECK(worst_grad_abs < 1e-4);
}

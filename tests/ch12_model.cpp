// Chapter 12 tests at the model level (docs/12-scaling-attention.md): a
// Transformer with tiled attention computes what the reference one computes
// (dropout included), a sliding-window model's tiled path agrees with the
// reference path and its band mask, the windowed decoder's ring cache gives
// what decoding without a cache gives, and the kind travels in checkpoints.
#include <cmath>
#include <sstream>
#include <string>
#include <vector>

#include "attend/autograd.hpp"
#include "attend/decode.hpp"
#include "attend/ops.hpp"
#include "attend/safetensors.hpp"
#include "attend/tensor.hpp"
#include "attend/train.hpp"
#include "attend/transformer.hpp"
#include "catch_compat.hpp"
#include "test_files.hpp"
#include "test_threads.hpp"

using attend::Generator;
using attend::Tensor;
using attend::nn::AttentionKind;
namespace nn = attend::nn;
using attend_test::TempDir;

namespace {

// Chapter 9's small random model (with dropout), with the given attention kind.
nn::TransformerConfig small_config(const std::string& attention) {
  return {.src_vocab = 11, .tgt_vocab = 13, .d_model = 16, .heads = 4, .d_ff = 32, .dropout = 0.1f, .max_len = 24,
          .attention = AttentionKind::parse(attention)};
}

// Two padded sources and targets (pad id 0): the masks matter. (Functions, not
// globals: a tensor made before main() would end the program when making one
// throws, as it does in a learner's copy with chapter 1's exercises to write.)
Tensor source_ids() {
  return attend::from_indices({4, 5, 6, 7, 2, 3, 9, 2, 0, 0, 8, 2, 6, 5, 4, 7, 9, 3, 2, 0}, {2, 10});
}
Tensor target_ids() { return attend::from_indices({1, 5, 6, 7, 8, 9, 4, 4, 3, 1, 12, 11, 10, 3, 2, 0, 0, 0}, {2, 9}); }

float loss_of(nn::Seq2SeqTransformer& model) {
  const Tensor logits = model.forward(source_ids(), target_ids());
  const Tensor loss = attend::cross_entropy(logits.narrow(1, 0, 8), target_ids().narrow(1, 1, 8).contiguous(), 0, 0.0f);
  loss.backward();
  return loss.item();
}

}  // namespace

TEST_CASE("model: tiled attention gives the reference model's loss and gradients, dropout included", "[ch12]") {
  Generator gen_a(5), gen_b(5);
  nn::Seq2SeqTransformer reference(small_config("reference"), gen_a), tiled(small_config("tiled"), gen_b);
  for (bool training : {false, true}) {
    INFO((training ? "training (dropout 0.1 on the attention weights too)" : "eval"));
    reference.train(training);
    tiled.train(training);
    reference.zero_grad();
    tiled.zero_grad();
    CHECK_NEAR(loss_of(tiled), loss_of(reference), 1e-5);
    const attend::NamedTensors a = reference.named_parameters(), b = tiled.named_parameters();
    REQUIRE(a.size() == b.size());
    for (size_t i = 0; i < a.size(); ++i) {
      INFO(a[i].first);
      CHECK(attend::max_abs_diff(a[i].second.grad(), b[i].second.grad()) <= 2e-5f);
    }
  }
  // Both drew the same numbers from every dropout generator.
  auto ga = reference.named_generators(), gb = tiled.named_generators();
  for (size_t i = 0; i < ga.size(); ++i) CHECK(ga[i].second->state() == gb[i].second->state());
}

TEST_CASE("model: window:W computed tiled equals the reference path with its band mask", "[ch12]") {
  Generator gen(6);
  nn::Seq2SeqTransformer model(small_config("window:2"), gen);
  model.eval();
  attend::NoGradGuard no_grad;
  const Tensor tiled = model.forward(source_ids(), target_ids());
  // Recording weights sends every attention through chapter 5's reference
  // with the (B, 1, T, T) mask that AttentionMask::to_dense builds.
  for (auto* layer_list : {model.encoder->layers.get(), model.decoder->layers.get()}) {
    for (size_t i = 0; i < layer_list->size(); ++i) {
      if (auto* e = dynamic_cast<nn::TransformerEncoderLayer*>(&(*layer_list)[i])) e->self_attn->record_weights = true;
      if (auto* d = dynamic_cast<nn::TransformerDecoderLayer*>(&(*layer_list)[i])) {
        d->self_attn->record_weights = d->multihead_attn->record_weights = true;
      }
    }
  }
  const Tensor reference = model.forward(source_ids(), target_ids());
  CHECK(attend::max_abs_diff(tiled, reference) <= 1e-5f);
  // The window really hides keys: encoder position 0 gives keys 3.. zero weight (W = 2, symmetric),
  // decoder position 5 gives keys 0..2 zero weight (causal, the 2 before and itself).
  auto& enc = model.encoder->layers->at<nn::TransformerEncoderLayer>(0);
  auto& dec = model.decoder->layers->at<nn::TransformerDecoderLayer>(0);
  CHECK(enc.self_attn->last_weights.at({0, 1, 0, 3}) == 0.0f);
  CHECK(enc.self_attn->last_weights.at({0, 1, 0, 2}) > 0.0f);
  CHECK(dec.self_attn->last_weights.at({0, 2, 5, 2}) == 0.0f);
  CHECK(dec.self_attn->last_weights.at({0, 2, 5, 3}) > 0.0f);
  // Cross-attention is not windowed: target position 0 sees source position 6.
  CHECK(dec.multihead_attn->last_weights.at({1, 0, 0, 6}) > 0.0f);
  // A window as wide as the sequence is plain tiled attention.
  Generator gen_wide(6), gen_tiled(6);
  nn::Seq2SeqTransformer wide(small_config("window:30"), gen_wide), full(small_config("tiled"), gen_tiled);
  wide.eval();
  full.eval();
  CHECK(attend::max_abs_diff(wide.forward(source_ids(), target_ids()), full.forward(source_ids(), target_ids())) == 0.0f);
}

TEST_CASE("windowed decoder: the ring cache of W + 1 positions gives what decoding without a cache gives", "[ch12]") {
  for (int64_t W : {0, 1, 3}) {
    INFO("W = " << W);
    Generator gen(7);
    nn::Seq2SeqTransformer model(small_config("window:" + std::to_string(W)), gen);
    model.eval();
    attend::NoGradGuard no_grad;
    // Step by step against the full forward: 12 steps wrap a ring of W + 1 slots several times.
    const Tensor tgt = attend::from_indices({1, 5, 6, 7, 8, 9, 4, 4, 3, 7, 6, 5, 1, 12, 11, 10, 3, 6, 7, 8, 9, 4, 5, 6},
                                            {2, 12});
    const Tensor full = model.forward(source_ids(), tgt);  // (2, 12, 13)
    nn::DecoderCache cache = model.start_decoding(source_ids(), 12);
    CHECK(cache.layers[0].self_attn.ring);
    CHECK(cache.layers[0].self_attn.capacity() == W + 1);
    CHECK(cache.self_attention_bytes() == 2 * 2 * 2 * (W + 1) * 16 * 4);  // keys+values, layers, rows, slots, C, float
    for (int64_t t = 0; t < 12; ++t) {
      const Tensor logits = model.decode_step(tgt.narrow(1, t, 1).contiguous(), cache);
      INFO("step " << t << ": max |cached - full| = " << attend::max_abs_diff(logits, full.narrow(1, t, 1)));
      CHECK(attend::allclose(logits, full.narrow(1, t, 1), 1e-5f, 1e-5f));
    }
    // Three positions per call go one at a time through the ring: the same again.
    nn::DecoderCache chunks = model.start_decoding(source_ids(), 12);
    for (int64_t t = 0; t < 12; t += 3) {
      CHECK(attend::allclose(model.decode_step(tgt.narrow(1, t, 3).contiguous(), chunks), full.narrow(1, t, 3), 1e-5f,
                             1e-5f));
    }
    // Greedy decoding with and without the cache: the same tokens and logits.
    std::vector<Tensor> cached_logits, recomputed_logits;
    attend::decode::DecodeOptions cached, recomputed;
    cached.stop_at_eos = recomputed.stop_at_eos = false;
    cached.step_logits = &cached_logits;
    recomputed.use_cache = false;
    recomputed.step_logits = &recomputed_logits;
    const auto a = attend::decode::greedy_decode(model, source_ids(), 15, 1, 2, cached);
    const auto b = attend::decode::greedy_decode(model, source_ids(), 15, 1, 2, recomputed);
    CHECK(a == b);
    REQUIRE(cached_logits.size() == recomputed_logits.size());
    for (size_t step = 0; step < cached_logits.size(); ++step) {
      CHECK(attend::allclose(cached_logits[step], recomputed_logits[step], 1e-5f, 1e-5f));
    }
    // Beam search reorders the ring with its beams.
    const auto beams = attend::decode::beam_search(model, source_ids(), 15, 1, 2, {3, 0.6, true});
    const auto beams_reference = attend::decode::beam_search(model, source_ids(), 15, 1, 2, {3, 0.6, false});
    for (size_t s = 0; s < beams.size(); ++s) CHECK(beams[s][0].tokens == beams_reference[s][0].tokens);
  }
}

TEST_CASE("model: the attention kind is stored in the checkpoint and used when loading", "[ch12]") {
  attend_test::KeepThreads keep;
  TempDir dir("ch12_checkpoint");
  auto options = [&](const std::string& attention, const std::string& out) {
    attend::train::TrainOptions o;
    o.task = "copy";
    o.train_size = 64;
    o.valid_size = 8;
    o.model.d_model = 16;
    o.model.heads = 2;
    o.model.encoder_layers = o.model.decoder_layers = 1;
    o.model.d_ff = 32;
    o.model.dropout = 0.1f;
    o.model.attention = AttentionKind::parse(attention);
    o.batch_size = 16;
    o.steps = 12;
    o.warmup = 4;
    o.seed = 3;
    o.threads = 1;
    o.eval_every = o.checkpoint_every = 0;
    o.log_every = 1000;
    o.out = dir.file(out);
    return o;
  };
  std::ostringstream log;
  const auto reference = attend::train::train(options("reference", "reference.safetensors"), log);
  const auto tiled = attend::train::train(options("tiled", "tiled.safetensors"), log);
  const auto window = attend::train::train(options("window:3", "window.safetensors"), log);
  // Same seed, same steps: tiled training follows the reference up to float rounding.
  REQUIRE(tiled.steps.size() == reference.steps.size());
  for (size_t i = 0; i < tiled.steps.size(); ++i) CHECK_NEAR(tiled.steps[i].loss, reference.steps[i].loss, 1e-4);
  CHECK(std::fabs(window.steps.back().loss - reference.steps.back().loss) > 1e-6);  // a window is another model

  const auto metadata = attend::io::load_safetensors(dir.file("window.safetensors")).metadata;
  CHECK(attend_test::contains(metadata.at("model.config"), "attention=window:3"));
  attend::train::TranslationModel loaded = attend::train::load_translation_model(dir.file("window.safetensors"));
  CHECK(loaded.config.attention.to_string() == "window:3");
  CHECK(loaded.model->decoder->layers->at<nn::TransformerDecoderLayer>(0).self_attn->attention.to_string() ==
        "window:3");
  CHECK(attend::train::load_translation_model(dir.file("tiled.safetensors")).config.attention.to_string() == "tiled");
  const std::vector<std::string> out = loaded.translate({"a b c"});
  CHECK(out.size() == 1);

  // Resuming a run with another kind is refused, naming both.
  attend::train::TrainOptions resumed = options("tiled", "window.safetensors");
  resumed.resume = resumed.out;
  resumed.steps = 14;
  REQUIRE_THROWS_MENTIONING(attend::train::train(resumed, log), "--attention window:3", "--attention tiled");

  // A kind the program does not know is an error naming the file and the entry.
  attend::io::SafetensorsContents contents = attend::io::load_safetensors(dir.file("window.safetensors"));
  std::string& config = contents.metadata.at("model.config");
  config.replace(config.find("window:3"), 8, "flash");
  attend::io::save_safetensors(dir.file("bad.safetensors"), contents.tensors, contents.metadata);
  REQUIRE_THROWS_MENTIONING(attend::train::load_translation_model(dir.file("bad.safetensors")), "bad.safetensors",
                            "attention=flash", "attention kind 'flash'");
}

TEST_CASE("attend train --attention reference | tiled | window:W", "[ch12]") {
  using attend::train::parse_train_arguments;
  CHECK(parse_train_arguments({}).model.attention.to_string() == "reference");
  CHECK(parse_train_arguments({"--attention", "tiled"}).model.attention.to_string() == "tiled");
  const attend::train::TrainOptions o = parse_train_arguments({"--attention", "window:64", "--steps", "5"});
  CHECK(o.model.attention.type == AttentionKind::Window);
  CHECK(o.model.attention.window == 64);
  CHECK(attend_test::contains(attend::train::train_options_help(), "--attention KIND"));
  REQUIRE_THROWS_MENTIONING(parse_train_arguments({"--attention", "flash"}), "--attention", "'flash'");
  REQUIRE_THROWS_MENTIONING(parse_train_arguments({"--attention", "window:-3"}), "--attention", "window:-3");
}

TEST_CASE("memory estimate: tiled attention drops the (T, T) activations", "[ch12]") {
  attend::train::TrainOptions o;
  const attend::train::DataShape shape{.source_vocab = 64, .target_vocab = 99, .longest_sentence = 200, .examples = 1000};
  const double reference = attend::train::estimate_training_memory(o, shape).activation_bytes;
  o.model.attention = AttentionKind::parse("tiled");
  const double tiled = attend::train::estimate_training_memory(o, shape).activation_bytes;
  // Per token, 3 H T floats per attention (T = 200, H = 4: 2400) become H (4);
  // 2 encoder attentions and 2 x 2 decoder ones; forward and backward (2),
  // 4 bytes, batch 64, T tokens.
  CHECK(reference - tiled == 2.0 * 4 * 64 * 200 * (6 * (3 * 4 * 200 - 4)));
  o.model.attention = AttentionKind::parse("window:16");
  CHECK(attend::train::estimate_training_memory(o, shape).activation_bytes == tiled);
}

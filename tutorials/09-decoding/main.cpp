// Tutorial 09: greedy decoding against beam search on real sentences, the KV
// cache checked against recomputing (its memory, its speed), and the attention
// maps of "the bank by the river". Chapter 9 (docs/09-decoding.md). Run:
//   build/tutorials/09-decoding [--model M.safetensors] [--benchmark [--batch B]]
// (without --model it first trains a small model, about a minute on one core).
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include "attend/attend.hpp"
#include "attend/data.hpp"
#include "attend/decode.hpp"
#include "attend/train.hpp"

using attend::Tensor;
namespace data = attend::data;
namespace train = attend::train;

namespace {

constexpr int64_t kBos = data::Vocabulary::kBos, kEos = data::Vocabulary::kEos;

int failures = 0;
void check(bool ok, const std::string& what) {
  std::printf("check: %-70s %s\n", what.c_str(), ok ? "ok" : "FAILED");
  if (!ok) ++failures;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

// A toy-French model trained here: d_model 64, 4 heads, 2 + 2 layers, 700
// steps. The checkpoint after 150 steps is kept as well: a model still unsure
// of itself, where beam search has something to do.
struct Models {
  train::TranslationModel early, final;
};

Models train_small_models() {
  train::TrainOptions o;
  o.task = "toy-french";
  o.train_size = 20000;
  o.model.d_model = 64;
  o.model.heads = 4;
  o.model.d_ff = 256;
  o.model.dropout = 0.0f;
  o.batch_size = 64;
  o.lr = 2e-3f;
  o.warmup = 200;
  o.eval_every = 0;
  o.checkpoint_every = 0;
  std::ostringstream log;
  const auto start = std::chrono::steady_clock::now();
  o.steps = 150;
  o.out = "09-toy-french-150.safetensors";
  train::train(o, log);
  o.resume = o.out;  // continue the same run to step 700
  o.steps = 700;
  o.out = "09-toy-french.safetensors";
  train::train(o, log);
  std::printf("trained 09-toy-french.safetensors (and the step-150 checkpoint 09-toy-french-150.safetensors)\n"
              "in %.0f s: d_model 64, 4 heads, 2+2 layers, feed-forward 256, 700 steps of 64 sentences\n",
              seconds_since(start));
  return {train::load_translation_model("09-toy-french-150.safetensors"),
          train::load_translation_model("09-toy-french.safetensors")};
}

// The padded batch of these sentences, as translate() builds it: (B, S), <eos> last.
Tensor source_batch(const train::TranslationModel& m, const std::vector<std::string>& sentences) {
  std::vector<std::vector<int64_t>> ids;
  std::vector<int64_t> indices;
  for (const std::string& s : sentences) {
    indices.push_back(static_cast<int64_t>(ids.size()));
    ids.push_back(m.source_vocab.encode(s));
  }
  return data::make_batch(ids, ids, indices).src;
}

std::string words(const train::TranslationModel& m, const std::vector<int64_t>& ids) {
  return m.target_vocab.decode(ids);
}

// --- 1. greedy against beam search ---

void greedy_versus_beam(train::TranslationModel& m, const std::vector<data::SentencePair>& pairs,
                        const std::string& which) {
  std::printf("\n== 1. Greedy decoding against beam search (K = 4, alpha = 0.6), %zu test sentences, %s\n\n",
              pairs.size(), which.c_str());
  std::vector<std::string> sources;
  for (const auto& p : pairs) sources.push_back(p.source);
  const Tensor src = source_batch(m, sources);
  const int64_t max_len = 2 * src.size(1) + 10;  // the output may be twice the source, plus some
  const auto greedy = attend::decode::greedy_decode(*m.model, src, max_len, kBos, kEos);
  const auto beams = attend::decode::beam_search(*m.model, src, max_len, kBos, kEos, {4, 0.6, true});
  const std::vector<double> greedy_lp = attend::decode::sequence_log_probs(*m.model, src, greedy, kBos, kEos);

  int greedy_right = 0, beam_right = 0, differ = 0, shown = 0, beam_lower = 0;
  for (size_t i = 0; i < pairs.size(); ++i) {
    const std::string g = words(m, greedy[i]), b = words(m, beams[i][0].tokens);
    greedy_right += g == pairs[i].target;
    beam_right += b == pairs[i].target;
    const double greedy_score = greedy_lp[i] / attend::decode::length_penalty(static_cast<int64_t>(greedy[i].size()) + 1, 0.6);
    if (beams[i][0].score < greedy_score - 1e-4 && beam_lower++ == 0) {
      std::printf("beam search ends BELOW greedy here (greedy's prefix fell out of the beam):\n");
      std::printf("source    %s\n", pairs[i].source.c_str());
      std::printf("greedy    %-62s log P %7.3f  score %7.3f\n", g.c_str(), greedy_lp[i], greedy_score);
      std::printf("beam      %-62s log P %7.3f  score %7.3f\n\n", b.c_str(), beams[i][0].log_prob, beams[i][0].score);
    }
    if (g == b) continue;
    ++differ;
    if (shown++ >= 3) continue;
    std::printf("source    %s\n", pairs[i].source.c_str());
    std::printf("greedy    %-62s log P %7.3f  score %7.3f\n", g.c_str(), greedy_lp[i], greedy_score);
    std::printf("beam      %-62s log P %7.3f  score %7.3f\n", b.c_str(), beams[i][0].log_prob, beams[i][0].score);
    std::printf("reference %s\n", pairs[i].target.c_str());
    std::printf("  the beam's other hypotheses:\n");
    for (size_t h = 1; h < beams[i].size(); ++h) {
      std::printf("  %-70s log P %7.3f  score %7.3f%s\n", words(m, beams[i][h].tokens).c_str(), beams[i][h].log_prob,
                  beams[i][h].score, beams[i][h].finished ? "" : "  (unfinished)");
    }
    std::printf("\n");
  }
  std::printf("beam and greedy differ on %d of %zu sentences\n", differ, pairs.size());
  std::printf("exact match with the reference: greedy %d, beam %d (of %zu)\n", greedy_right, beam_right, pairs.size());
  // Beam search is a heuristic: it could drop greedy's prefix and end lower. Count it.
  std::printf("beam scored below greedy on %d of %zu sentences\n", beam_lower, pairs.size());
  const auto one = attend::decode::beam_search(*m.model, src, max_len, kBos, kEos, {1, 0.6, true});
  bool same = true;
  for (size_t i = 0; i < pairs.size(); ++i) same = same && one[i][0].tokens == greedy[i];
  check(same, "beam search with K = 1 is greedy decoding");
}

// --- 2. the cache: the same numbers, less work ---

void cache_agrees(train::TranslationModel& m, const std::vector<data::SentencePair>& pairs) {
  std::printf("\n== 2. The KV cache gives the same tokens and logits as recomputing\n\n");
  std::vector<std::string> sources;
  for (size_t i = 0; i < std::min<size_t>(64, pairs.size()); ++i) sources.push_back(pairs[i].source);
  const Tensor src = source_batch(m, sources);
  std::vector<Tensor> with, without;
  attend::decode::DecodeOptions cached, recomputed;
  cached.step_logits = &with;
  recomputed.use_cache = false;
  recomputed.step_logits = &without;
  const auto a = attend::decode::greedy_decode(*m.model, src, 40, kBos, kEos, cached);
  const auto b = attend::decode::greedy_decode(*m.model, src, 40, kBos, kEos, recomputed);
  float worst = 0.0f;
  for (size_t t = 0; t < with.size(); ++t) {
    for (size_t row = 0; row < a.size(); ++row) {
      if (t > a[row].size()) continue;  // that sentence had finished
      worst = std::max(worst, attend::max_abs_diff(with[t].select(0, static_cast<int64_t>(row)),
                                                   without[t].select(0, static_cast<int64_t>(row))));
    }
  }
  std::printf("%zu sentences, %zu steps: largest difference between the logits %.2e\n", a.size(), with.size(), worst);
  check(a == b, "the same tokens with and without the cache");
  check(worst < 1e-4f, "the same logits (to 1e-4)");
}

// --- 3. what the cache holds ---

void cache_memory(train::TranslationModel& m) {
  const auto& c = m.config;
  std::printf("\n== 3. The memory the cache holds (d_model %lld, %lld decoder layers, float32)\n\n",
              static_cast<long long>(c.d_model), static_cast<long long>(c.decoder_layers));
  const Tensor src = source_batch(m, {"the small cat sees the red car .", "we eat the bank near the river ."});
  const int64_t capacity = 64;
  const attend::nn::DecoderCache cache = m.model->start_decoding(src, capacity);
  const int64_t rows = cache.rows(), S = src.size(1), L = c.decoder_layers;
  const int64_t per_token_layer = cache.self_attention_bytes() / (L * rows * capacity);
  const int64_t formula = 2 * c.d_model * 4;  // keys and values, every head: H * D = d_model floats each
  std::printf("self-attention: %lld bytes per target token per layer = 2 (keys, values) x d_model %lld x 4 bytes\n",
              static_cast<long long>(per_token_layer), static_cast<long long>(c.d_model));
  std::printf("cross-attention: %lld bytes per source token per layer, computed once per sentence\n",
              static_cast<long long>(cache.cross_attention_bytes() / (L * rows * S)));
  std::printf("a batch of %lld sentences of %lld source tokens, room for %lld output tokens: %lld + %lld bytes\n",
              static_cast<long long>(rows), static_cast<long long>(S), static_cast<long long>(capacity),
              static_cast<long long>(cache.self_attention_bytes()), static_cast<long long>(cache.cross_attention_bytes()));
  check(per_token_layer == formula, "self-attention cache = 2 * d_model * 4 bytes per token per layer");
}

// --- 4. speed ---

void speed(train::TranslationModel& m, const std::vector<int64_t>& lengths, int repeats, int64_t batch) {
  std::printf("\n== 4. Speed: greedy decoding of %lld sentences to exactly L tokens, %d thread(s), median of %d\n\n",
              static_cast<long long>(batch), omp_get_max_threads(), repeats);
  // The first sentences of the test split (their length only matters for the cross-attention).
  std::vector<std::string> sources;
  for (const auto& p : data::generate_task("toy-french", data::Split::Test, batch, 7)) sources.push_back(p.source);
  const Tensor src = source_batch(m, sources);
  std::printf("%8s %16s %16s %9s\n", "L", "cache (tok/s)", "recompute", "speedup");
  for (int64_t L : lengths) {
    std::vector<double> with, without;
    for (int r = 0; r < repeats; ++r) {  // side by side, so that both see the same machine load
      for (bool use_cache : {true, false}) {
        attend::decode::DecodeOptions o;
        o.use_cache = use_cache;
        o.stop_at_eos = false;  // force the length
        const auto start = std::chrono::steady_clock::now();
        attend::decode::greedy_decode(*m.model, src, L, kBos, kEos, o);
        (use_cache ? with : without).push_back(seconds_since(start));
      }
    }
    const double tokens = static_cast<double>(batch * L);
    std::printf("%8lld %16.0f %16.0f %8.1fx\n", static_cast<long long>(L), tokens / median(with),
                tokens / median(without), median(without) / median(with));
    std::fflush(stdout);
  }
}

// --- 5. attention maps ---

// Position of the first of `tokens` in `list`, or -1.
int64_t find(const std::vector<std::string>& list, std::initializer_list<const char*> tokens) {
  for (size_t i = 0; i < list.size(); ++i) {
    for (const char* t : tokens) {
      if (list[i] == t) return static_cast<int64_t>(i);
    }
  }
  return -1;
}

void attention(train::TranslationModel& m) {
  std::printf("\n== 5. Attention maps: the bank by the river\n\n");
  const std::string with_river = "the boat sees the red bank near the river .";
  const std::string without_river = "the boat sees the red bank near the house .";
  for (const std::string& sentence : {with_river, without_river}) {
    const train::AttentionReport r = train::attention_report(m, sentence);
    std::printf("%s  ->  %s\n", sentence.c_str(), r.translation.c_str());
    const Tensor cross = attend::mean(r.maps.cross.back().select(0, 0), {0});  // (T, S), last layer
    std::printf("cross-attention, last layer, mean over the heads:\n%s\n",
                attend::io::ascii_heatmap(cross, r.outputs, r.source).c_str());
    if (sentence == with_river) {
      attend::decode::draw_attention_maps(r.maps, 0, r.source, r.decoder_inputs, r.outputs, sentence + "  ->  " + r.translation)
          .save("09-attention.svg");
      std::printf("every layer and head: 09-attention.svg\n\n");
    }
  }

  // One picture proves little: measure over many sentences with a bank and a river.
  std::vector<std::string> sentences;
  for (const auto& p : data::generate_task("toy-french", data::Split::Test, 4000, 11)) {
    const bool bank = p.source.find("bank") != std::string::npos, river = p.source.find("river") != std::string::npos;
    if (bank && river) sentences.push_back(p.source);
    if (sentences.size() == 40) break;
  }
  const int64_t layers = m.config.decoder_layers, heads = m.config.heads;
  // [layer][head]: weight of the `rive` row on `river` and on `bank`; [layer]: encoder `bank` -> `river`.
  std::vector<std::vector<double>> on_river(static_cast<size_t>(layers), std::vector<double>(static_cast<size_t>(heads))),
      on_bank = on_river;
  std::vector<std::vector<double>> encoder_bank_river(static_cast<size_t>(m.config.encoder_layers),
                                                      std::vector<double>(static_cast<size_t>(heads)));
  auto others_river = encoder_bank_river;  // the same from every other source token (not bank, not river)
  std::vector<double> uniform_level;
  int used = 0;
  for (const std::string& s : sentences) {
    const train::AttentionReport r = train::attention_report(m, s);
    const int64_t out = find(r.outputs, {"rive", "rives"});
    const int64_t river = find(r.source, {"river", "rivers"}), bank = find(r.source, {"bank", "banks"});
    if (out < 0 || river < 0 || bank < 0) continue;  // the model wrote banque (or something else)
    ++used;
    for (int64_t l = 0; l < layers; ++l) {
      for (int64_t h = 0; h < heads; ++h) {
        on_river[l][h] += r.maps.cross[static_cast<size_t>(l)].at({0, h, out, river});
        on_bank[l][h] += r.maps.cross[static_cast<size_t>(l)].at({0, h, out, bank});
      }
    }
    for (size_t l = 0; l < encoder_bank_river.size(); ++l) {
      for (int64_t h = 0; h < heads; ++h) {
        encoder_bank_river[l][h] += r.maps.encoder_self[l].at({0, h, bank, river});
        double others = 0.0;
        const int64_t S = static_cast<int64_t>(r.source.size());
        for (int64_t q = 0; q < S; ++q) {
          if (q != bank && q != river) others += r.maps.encoder_self[l].at({0, h, q, river});
        }
        others_river[l][h] += others / static_cast<double>(S - 2);
      }
    }
    uniform_level.push_back(1.0 / static_cast<double>(r.source.size()));
  }
  std::printf("%zu test sentences with a bank and a river; the model wrote rive(s) in %d\n", sentences.size(), used);
  if (used == 0) return;
  std::printf("mean cross-attention of the row that writes rive(s), on river and on bank (uniform would be %.3f):\n",
              std::accumulate(uniform_level.begin(), uniform_level.end(), 0.0) / used);
  for (int64_t l = 0; l < layers; ++l) {
    for (int64_t h = 0; h < heads; ++h) {
      std::printf("  decoder layer %lld head %lld:  on river %.3f   on bank %.3f\n", static_cast<long long>(l),
                  static_cast<long long>(h), on_river[l][h] / used, on_bank[l][h] / used);
    }
  }
  std::printf("mean encoder self-attention on river, from bank and from the other source tokens:\n");
  for (size_t l = 0; l < encoder_bank_river.size(); ++l) {
    for (int64_t h = 0; h < heads; ++h) {
      std::printf("  encoder layer %zu head %lld:  from bank %.3f   from the others %.3f\n", l, static_cast<long long>(h),
                  encoder_bank_river[l][h] / used, others_river[l][h] / used);
    }
  }

  // Attention weights say where information may flow, not that it matters.
  // Test it: silence the head where bank looks at river most (zero its value
  // projection, so it adds nothing) and translate again; then, for contrast,
  // silence the head of that layer that looks at river least.
  size_t layer = 0;
  int64_t most = 0, least = 0;
  for (size_t l = 0; l < encoder_bank_river.size(); ++l) {
    for (int64_t h = 0; h < heads; ++h) {
      if (encoder_bank_river[l][h] > encoder_bank_river[layer][most]) layer = l, most = h;
    }
  }
  for (int64_t h = 0; h < heads; ++h) {
    if (encoder_bank_river[layer][h] < encoder_bank_river[layer][least]) least = h;
  }
  auto& attention = *m.model->encoder->layers->at<attend::nn::TransformerEncoderLayer>(layer).self_attn;
  const int64_t D = m.config.d_model / heads;
  for (int64_t head : {most, least}) {
    const Tensor weight = attend::copy_to_contiguous(attention.v_proj->weight);
    const Tensor bias = attend::copy_to_contiguous(attention.v_proj->bias);
    attend::copy_into(attention.v_proj->weight.narrow(0, head * D, D), attend::zeros({D, m.config.d_model}));
    attend::copy_into(attention.v_proj->bias.narrow(0, head * D, D), attend::zeros({D}));
    int rive = 0, banque = 0;
    for (const std::string& out : m.translate(sentences)) {
      rive += out.find(" rive") != std::string::npos;
      banque += out.find(" banque") != std::string::npos;
    }
    std::printf("encoder layer %zu head %lld silenced: rive(s) in %d of %zu translations, banque(s) in %d\n", layer,
                static_cast<long long>(head), rive, sentences.size(), banque);
    attend::copy_into(attention.v_proj->weight, weight);  // put the head back
    attend::copy_into(attention.v_proj->bias, bias);
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string model_path;
  bool benchmark = false;
  int64_t batch = 8;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--model" && i + 1 < argc) {
      model_path = argv[++i];
    } else if (a == "--benchmark") {
      benchmark = true;
    } else if (a == "--batch" && i + 1 < argc) {
      batch = std::max(1, std::atoi(argv[++i]));
    } else {
      std::cerr << "usage: 09-decoding [--model MODEL.safetensors] [--benchmark [--batch B]]\n";
      return 2;
    }
  }
  try {
    const auto pairs = data::generate_task("toy-french", data::Split::Test, 200, 3);
    train::TranslationModel m;
    if (model_path.empty()) {
      Models models = train_small_models();
      if (!benchmark) greedy_versus_beam(models.early, pairs, "the model after 150 steps");
      m = std::move(models.final);
    } else {
      m = train::load_translation_model(model_path);
    }
    std::printf("\nmodel: d_model %lld, %lld heads, %lld+%lld layers, feed-forward %lld\n",
                static_cast<long long>(m.config.d_model), static_cast<long long>(m.config.heads),
                static_cast<long long>(m.config.encoder_layers), static_cast<long long>(m.config.decoder_layers),
                static_cast<long long>(m.config.d_ff));
    if (benchmark) {
      cache_memory(m);
      speed(m, {16, 32, 64, 128}, 5, batch);
    } else {
      greedy_versus_beam(m, pairs, model_path.empty() ? "the model after 700 steps" : model_path);
      cache_agrees(m, pairs);
      cache_memory(m);
      speed(m, {16, 64}, 1, 8);
      attention(m);
    }
  } catch (const std::exception& e) {
    std::cerr << "09-decoding: " << e.what() << "\n";
    return 1;
  }
  if (failures) {
    std::printf("%d check(s) FAILED\n", failures);
    return 1;
  }
  std::printf("\nall checks passed\n");
  return 0;
}

// Tutorial 07: a small encoder-decoder Transformer, taken through one forward
// pass stage by stage, with its parameters counted layer by layer, the
// sinusoidal positions printed, and the sizes of token embeddings and
// positions compared for two initialisations. Chapter 7 (docs/07-transformer.md).
// Build and run:  make tutorials && build/tutorials/07-transformer
#include <cmath>
#include <cstdio>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "attend/attend.hpp"

using attend::Tensor;
using attend::to_string;
namespace nn = attend::nn;

namespace {

// Counts a failed check; the program exits 1 if any failed.
int failures = 0;
void check(bool ok, const char* what) {
  std::printf("check: %-64s %s\n", what, ok ? "ok" : "FAILED");
  if (!ok) ++failures;
}

// Root mean square of all elements: the typical size of one entry.
float rms(const Tensor& t) { return std::sqrt(attend::mean(attend::pow(t, 2.0f)).item()); }

// The group a parameter name belongs to: "encoder.layers.0.self_attn.q_proj.weight"
// -> "encoder.layers.0", "encoder.norm.weight" -> "encoder.norm",
// "src_embed.weight" -> "src_embed".
std::string group_of(const std::string& name) {
  std::vector<std::string> parts;
  size_t start = 0;
  for (size_t dot = name.find('.'); dot != std::string::npos; dot = name.find('.', start)) {
    parts.push_back(name.substr(start, dot - start));
    start = dot + 1;
  }
  parts.push_back(name.substr(start));
  if (parts.size() >= 3 && parts[1] == "layers") return parts[0] + "." + parts[1] + "." + parts[2];
  if (parts.size() >= 3) return parts[0] + "." + parts[1];
  return parts[0];
}

// "stage  (2, 7, 32)  rms 1.234"
void stage(const char* what, const Tensor& t) {
  std::printf("  %-34s %-14s rms %.3f\n", what, to_string(t.shape()).c_str(), rms(t));
}

// "mask  (2, 1, 1, 7)  4 of 14 blocked"
void mask_stage(const char* what, const Tensor& mask) {
  std::printf("  %-34s %-14s %lld of %lld blocked\n", what, to_string(mask.shape()).c_str(),
              static_cast<long long>(attend::sum(mask).item()), static_cast<long long>(mask.numel()));
}

}  // namespace

int main() {
  attend::Generator gen(7);
  nn::TransformerConfig config{.src_vocab = 20, .tgt_vocab = 24, .d_model = 32, .heads = 4,
      .encoder_layers = 2, .decoder_layers = 2, .d_ff = 64, .max_len = 32};
  nn::Seq2SeqTransformer model(config, gen);
  model.eval();  // no dropout: the stages below must add up to model.forward

  std::cout << "== 1. Parameters, layer by layer\n\n";
  const int64_t C = config.d_model, F = config.d_ff;
  std::printf("d_model C = %lld, heads %lld, d_ff F = %lld, vocabularies %lld and %lld\n\n",
              static_cast<long long>(C), static_cast<long long>(config.heads), static_cast<long long>(F),
              static_cast<long long>(config.src_vocab), static_cast<long long>(config.tgt_vocab));
  std::vector<std::string> groups;  // in the order they first appear
  std::map<std::string, int64_t> counts;
  for (const auto& [name, p] : model.named_parameters()) {
    const std::string g = group_of(name);
    if (!counts.count(g)) groups.push_back(g);
    counts[g] += p.numel();
  }
  for (const std::string& g : groups) std::printf("  %-20s %7lld\n", g.c_str(), static_cast<long long>(counts[g]));
  std::printf("  %-20s %7lld\n\n", "total", static_cast<long long>(model.parameter_count()));

  const int64_t attention = 4 * (C * C + C);              // q, k, v, out projections
  const int64_t feed_forward = (C * F + F) + (F * C + C);  // linear1, linear2
  const int64_t norm = 2 * C;                              // weight and bias
  std::printf("encoder layer = attention 4(C^2+C) + feed-forward (CF+F)+(FC+C) + 2 norms 2*2C\n"
              "              = %lld + %lld + %lld = %lld\n",
              static_cast<long long>(attention), static_cast<long long>(feed_forward),
              static_cast<long long>(2 * norm), static_cast<long long>(attention + feed_forward + 2 * norm));
  std::printf("decoder layer = 2 attentions + feed-forward + 3 norms = %lld\n\n",
              static_cast<long long>(2 * attention + feed_forward + 3 * norm));
  check(counts["encoder.layers.0"] == attention + feed_forward + 2 * norm, "encoder layer count by formula");
  check(counts["decoder.layers.0"] == 2 * attention + feed_forward + 3 * norm, "decoder layer count by formula");

  std::cout << "\nthe names inside one encoder layer and one decoder layer, and the rest:\n";
  for (const auto& [name, p] : model.named_parameters()) {
    const std::string g = group_of(name);
    if (g == "encoder.layers.1" || g == "decoder.layers.1") continue;
    std::printf("  %-48s %s\n", name.c_str(), to_string(p.shape()).c_str());
  }
  std::cout << "\n";

  std::cout << "== 2. Sinusoidal positional encoding\n\n";
  // PE[pos, 2i] = sin(pos / 10000^(2i/C)), PE[pos, 2i+1] = cos(pos / 10000^(2i/C))
  const Tensor pe = attend::nn::sinusoidal_positional_encoding(config.max_len, C);  // (max_len, C)
  const std::vector<int64_t> dims = {0, 1, 2, 3, 14, 15, 30, 31};
  std::printf("%5s", "pos");
  for (int64_t d : dims) std::printf("  dim %-3lld", static_cast<long long>(d));
  std::printf("\n");
  for (int64_t pos : {0, 1, 2, 3, 10, 31}) {
    std::printf("%5lld", static_cast<long long>(pos));
    for (int64_t d : dims) std::printf("  %7.4f", pe.at({pos, d}));
    std::printf("\n");
  }
  const double two_pi = 6.283185307179586;
  std::printf("wavelengths: dims 0/1 %.1f positions, dims 14/15 %.1f, dims 30/31 %.0f\n",
              two_pi, two_pi * std::pow(10000.0, 14.0 / 32.0), two_pi * std::pow(10000.0, 30.0 / 32.0));
  std::printf("every row has the same length: |PE[0]| = %.3f, |PE[17]| = %.3f, sqrt(C/2) = %.3f\n",
              std::sqrt(attend::sum(attend::pow(pe.select(0, 0), 2.0f)).item()),
              std::sqrt(attend::sum(attend::pow(pe.select(0, 17), 2.0f)).item()), std::sqrt(C / 2.0));
  const Tensor similarity = attend::matmul(pe, pe.t());  // (max_len, max_len): PE[p] . PE[q]
  std::printf("PE[p] . PE[p+2] depends only on the distance: p=3: %.4f, p=10: %.4f, p=20: %.4f\n",
              similarity.at({3, 5}), similarity.at({10, 12}), similarity.at({20, 22}));
  // If queries and keys were positions alone, attention would look near the diagonal.
  const int64_t P = 12;
  std::vector<std::string> labels;
  for (int64_t p = 0; p < P; ++p) labels.push_back(std::to_string(p));
  std::cout << "softmax(PE PE^T / sqrt(C)) for positions 0..11: each is nearest itself and its neighbours\n"
            << attend::io::ascii_heatmap(
                   attend::softmax(similarity.narrow(0, 0, P).narrow(1, 0, P) / std::sqrt(static_cast<float>(C)), -1),
                   labels, labels)
            << "\n";

  std::cout << "== 3. Token embeddings against positions (d_model 128)\n\n";
  // The tokens are multiplied by sqrt(d_model) before the positions are added.
  // Initialised N(0, 1/d_model) (Attend's default) they come out N(0, 1), the
  // size of the positions; initialised N(0, 1) (PyTorch's nn.Embedding default)
  // they come out sqrt(d_model) times larger, and the positions are lost in them.
  for (float embedding_std : {0.0f, 1.0f}) {
    nn::TransformerConfig big = config;
    big.d_model = 128;
    big.d_ff = 512;
    big.embedding_std = embedding_std;
    attend::Generator big_gen(7);
    nn::Seq2SeqTransformer m(big, big_gen);
    std::vector<int64_t> id_values;  // every source token but <pad>: 1..19
    for (int64_t id = 1; id < big.src_vocab; ++id) id_values.push_back(id);
    const Tensor token_ids = attend::from_indices(id_values, {1, 19});  // (1, 19)
    const Tensor tokens = m.src_embed->forward(token_ids) * std::sqrt(128.0f);  // (1, 19, 128)
    const Tensor positions = attend::nn::sinusoidal_positional_encoding(19, 128);    // (19, 128)
    std::printf("embedding std %-22s scaled tokens rms %6.3f, positions rms %.3f, ratio %6.2f\n",
                embedding_std > 0 ? "1 (PyTorch's default):" : "1/sqrt(128) (default):", rms(tokens),
                rms(positions), rms(tokens) / rms(positions));
  }
  std::printf("the second ratio is sqrt(128) = %.2f times the first.\n\n", std::sqrt(128.0));

  std::cout << "== 4. One forward pass, stage by stage\n\n";
  // Two source sentences of 7 and 5 tokens and two target prefixes of 6 and 4;
  // id 0 is <pad>. (In chapter 8 the target starts with <bos>.)
  const Tensor src = attend::from_indices({5, 9, 3, 12, 7, 4, 2,   11, 6, 8, 3, 2, 0, 0}, {2, 7});
  const Tensor tgt = attend::from_indices({1, 14, 6, 21, 9, 3,   1, 17, 5, 8, 0, 0}, {2, 6});
  std::cout << "source ids " << to_string(src.shape()) << " (B, S), target ids " << to_string(tgt.shape())
            << " (B, T)\n\nencoder:\n";
  const float sqrt_c = std::sqrt(static_cast<float>(C));
  const Tensor src_tokens = model.src_embed->forward(src) * sqrt_c;  // (B, S, C)
  stage("src tokens * sqrt(C)", src_tokens);
  const Tensor src_positions = pe.narrow(0, 0, src.size(1));  // (S, C), broadcast over B
  stage("+ positions", src_positions);
  const Tensor x = model.embed(*model.src_embed, src);  // tokens * sqrt(C) + positions (+ dropout)
  stage("= encoder input", x);
  check(attend::allclose(x, src_tokens + src_positions), "embed() = tokens * sqrt(C) + positions");
  const Tensor src_mask = attend::nn::padding_mask(src, config.pad_id);  // (B, 1, 1, S)
  mask_stage("source padding mask", src_mask);
  Tensor h = x;
  for (size_t i = 0; i < model.encoder->layers->size(); ++i) {
    h = model.encoder->layers->at<nn::TransformerEncoderLayer>(i).forward(h, src_mask);
    stage(("after encoder.layers." + std::to_string(i)).c_str(), h);
  }
  const Tensor memory = model.encoder->norm->forward(h);  // (B, S, C)
  stage("memory = encoder.norm(...)", memory);
  check(attend::allclose(memory, model.encode(src), 1e-5f, 1e-5f), "the same as model.encode(src)");

  std::cout << "\ndecoder:\n";
  const Tensor y0 = model.embed(*model.tgt_embed, tgt);  // (B, T, C)
  stage("tgt tokens * sqrt(C) + positions", y0);
  const Tensor self_mask = attend::nn::combine_masks(attend::nn::causal_mask(tgt.size(1)),
                                                 attend::nn::padding_mask(tgt, config.pad_id));
  mask_stage("causal + target padding mask", self_mask);
  Tensor y = y0;
  for (size_t i = 0; i < model.decoder->layers->size(); ++i) {
    Tensor cross;
    y = model.decoder->layers->at<nn::TransformerDecoderLayer>(i).forward(y, memory, self_mask, src_mask, &cross);
    stage(("after decoder.layers." + std::to_string(i)).c_str(), y);
    stage("  (its cross-attention weights)", cross);
  }
  y = model.decoder->norm->forward(y);
  stage("decoder.norm(...)", y);
  const Tensor logits = model.output_proj->forward(y);  // (B, T, V)
  stage("logits = output_proj(...)", logits);
  const Tensor logits_model = model.forward(src, tgt);
  check(attend::allclose(logits, logits_model, 1e-5f, 1e-5f), "the stages give what model.forward(src, tgt) gives");

  std::cout << "\nsanity checks of an untrained model:\n";
  // Changing target token 4 must not change the logits at positions 0..3:
  // position t predicts token t+1 and may only see tokens 0..t.
  const Tensor tgt_changed = attend::from_indices({1, 14, 6, 21, 2, 3,   1, 17, 5, 8, 0, 0}, {2, 6});
  const Tensor logits_changed = model.forward(src, tgt_changed);
  check(attend::allclose(logits_changed.narrow(1, 0, 4), logits_model.narrow(1, 0, 4), 1e-5f, 1e-6f) &&
            !attend::allclose(logits_changed.narrow(1, 4, 2), logits_model.narrow(1, 4, 2)),
        "target token 4 changes logits 4.. and not 0..3 (causal)");
  // Padding in the source must not matter: the same sentence with more <pad>.
  const Tensor src_short = attend::from_indices({11, 6, 8, 3, 2}, {1, 5});
  const Tensor one = model.forward(src_short, tgt.narrow(0, 1, 1));
  check(attend::allclose(one, logits_model.narrow(0, 1, 1), 1e-5f, 1e-5f),
        "sentence 2 without its <pad> tokens gives the same logits");
  const Tensor targets = attend::from_indices({14, 6, 21, 9, 3, 2,   17, 5, 8, 2, 0, 0}, {2, 6});
  std::printf("cross-entropy at initialisation %.3f; ln(V) = ln(%lld) = %.3f (a uniform guess)\n\n",
              attend::cross_entropy(logits_model, targets, config.pad_id).item(),
              static_cast<long long>(config.tgt_vocab), std::log(static_cast<double>(config.tgt_vocab)));

  if (failures) {
    std::printf("%d check(s) FAILED\n", failures);
    return 1;
  }
  std::cout << "all checks passed\n";
  return 0;
}

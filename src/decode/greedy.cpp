// Greedy decoding: the most likely next token, one step at a time, with the
// KV cache (chapter 9) or recomputing the whole prefix every step (chapter 8's
// way, kept as the reference). Chapters 8 and 9 (docs/09-decoding.md).
#include <algorithm>

#include "attend/autograd.hpp"
#include "attend/decode.hpp"
#include "attend/ops.hpp"

namespace attend::decode {

namespace {

// The most likely token of each row of logits (B, V), the first on ties;
// never <pad> or <bos>, which are not outputs (beam search skips them too).
std::vector<int64_t> best_tokens(const Tensor& logits, int64_t pad_id, int64_t bos_id) {
  // exercise 9.1 begin: the argmax of each row of logits (B, V), skipping pad and bos, first on ties
  const std::vector<float> values = logits.to_vector();
  const int64_t B = logits.size(0), V = logits.size(1);
  std::vector<int64_t> best(static_cast<size_t>(B), -1);
  for (int64_t b = 0; b < B; ++b) {
    const float* row = values.data() + b * V;
    for (int64_t v = 0; v < V; ++v) {
      if (v == pad_id || v == bos_id) continue;
      if (best[b] < 0 || row[v] > row[best[b]]) best[b] = v;
    }
  }
  return best;
  // exercise 9.1 end
}

}  // namespace

std::vector<std::vector<int64_t>> greedy_decode(nn::Seq2SeqTransformer& model, const Tensor& src,
                                                int64_t max_len, int64_t bos_id, int64_t eos_id,
                                                const DecodeOptions& options) {
  if (src.dim() != 2) throw Error("greedy_decode: src must be (B, S), got " + to_string(src.shape()));
  const int64_t B = src.size(0);
  std::vector<std::vector<int64_t>> outputs(static_cast<size_t>(B));
  // The decoder cannot look further than its positional table.
  max_len = std::min(max_len, model.config.max_len - 1);
  if (max_len < 1 || B == 0) return outputs;
  NoGradGuard no_grad;
  const bool was_training = model.is_training();
  model.eval();

  StepwiseDecoder decoder(model, src, max_len, bos_id, options.use_cache);  // encodes src once
  std::vector<bool> finished(static_cast<size_t>(B), false);
  for (int64_t t = 1; t <= max_len; ++t) {
    const Tensor logits = decoder.next_logits();  // (B, V)
    if (options.step_logits) options.step_logits->push_back(logits);
    // The choice is made on the host, which needs it to go on: the last
    // logits (B, V) come back from the device, a few KB a step (chapter 11).
    const std::vector<int64_t> next = best_tokens(logits.cpu(), model.config.pad_id, bos_id);  // (B)
    std::vector<int64_t> tokens(static_cast<size_t>(B), model.config.pad_id);
    bool all_done = true;
    for (size_t b = 0; b < static_cast<size_t>(B); ++b) {
      // A finished sentence is fed <pad> (ignored: its output is complete).
      if (finished[b]) continue;
      tokens[b] = next[b];
      if (next[b] == eos_id && options.stop_at_eos) {
        finished[b] = true;
      } else {
        outputs[b].push_back(next[b]);
        all_done = false;
      }
    }
    if (all_done || t == max_len) break;
    decoder.push(tokens);
  }
  model.train(was_training);
  return outputs;
}

}  // namespace attend::decode

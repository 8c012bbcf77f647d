// Greedy decoding, recomputing the decoder over the whole prefix at every
// step (chapter 9 replaces this by a KV cache). Chapter 8 (docs/08-translation.md).
#include <algorithm>

#include "attend/autograd.hpp"
#include "attend/decode.hpp"
#include "attend/ops.hpp"

namespace attend {

std::vector<std::vector<int64_t>> greedy_decode(nn::Seq2SeqTransformer& model, const Tensor& src,
                                                int64_t max_len, int64_t bos_id, int64_t eos_id) {
  if (src.dim() != 2) throw Error("greedy_decode: src must be (B, S), got " + to_string(src.shape()));
  NoGradGuard no_grad;
  const bool was_training = model.is_training();
  model.eval();
  const int64_t B = src.size(0);
  const int64_t pad = model.config.pad_id;
  // The decoder cannot look further than its positional table.
  max_len = std::min(max_len, model.config.max_len - 1);

  const Tensor memory = model.encode(src);  // (B, S, C), computed once
  std::vector<int64_t> prefix(static_cast<size_t>(B), bos_id);  // (B, t) row-major, grows by a column
  std::vector<std::vector<int64_t>> outputs(static_cast<size_t>(B));
  std::vector<bool> finished(static_cast<size_t>(B), false);
  for (int64_t t = 1; t <= max_len; ++t) {
    const Tensor logits = model.decode(from_indices(prefix, {B, t}), memory, src);  // (B, t, V)
    const std::vector<int64_t> next = argmax(logits.select(1, t - 1), -1).to_index_vector();  // (B)
    std::vector<int64_t> extended;
    extended.reserve(static_cast<size_t>(B * (t + 1)));
    bool all_done = true;
    for (int64_t b = 0; b < B; ++b) {
      extended.insert(extended.end(), prefix.begin() + b * t, prefix.begin() + (b + 1) * t);
      int64_t token = pad;  // finished sentences are padded (the mask hides padding)
      if (!finished[b]) {
        token = next[b];
        if (token == eos_id) {
          finished[b] = true;
        } else {
          outputs[b].push_back(token);
        }
      }
      extended.push_back(token);
      all_done = all_done && finished[b];
    }
    prefix = std::move(extended);
    if (all_done) break;
  }
  model.train(was_training);
  return outputs;
}

}  // namespace attend

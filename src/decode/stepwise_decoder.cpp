// StepwiseDecoder: next-token logits for growing prefixes, either from the
// KV cache (one new token per step) or by recomputing the whole prefix (the
// reference). Chapter 9 (docs/09-decoding.md).
#include "attend/decode.hpp"
#include "attend/ops.hpp"

namespace attend::decode {

namespace {

// The rows `index` of a (B, S) Int64 tensor (index_select is for floats),
// on its device. (The ids are read on the host: a few hundred of them, once
// per reorder of the reference decoder.)
Tensor select_rows(const Tensor& ids, const std::vector<int64_t>& index) {
  const int64_t S = ids.size(1);
  const std::vector<int64_t> all = ids.cpu().to_index_vector();
  std::vector<int64_t> out;
  out.reserve(index.size() * static_cast<size_t>(S));
  for (int64_t row : index) out.insert(out.end(), all.begin() + row * S, all.begin() + (row + 1) * S);
  return from_indices(out, {static_cast<int64_t>(index.size()), S}, ids.device());
}

}  // namespace

StepwiseDecoder::StepwiseDecoder(nn::Seq2SeqTransformer& model, const Tensor& src, int64_t max_steps,
                                 int64_t bos_id, bool use_cache)
    : model_(model), use_cache_(use_cache), max_steps_(max_steps) {
  if (src.dim() != 2 || src.dtype() != DType::Int64) {
    throw Error("StepwiseDecoder: src must be Int64 (B, S), got " + to_string(src.shape()));
  }
  if (max_steps < 1 || max_steps > model.config.max_len) {
    throw Error("StepwiseDecoder: max_steps " + std::to_string(max_steps) + " must be in [1, max_len " +
                std::to_string(model.config.max_len) + "]");
  }
  const int64_t B = src.size(0);
  device_ = src.device();
  prefixes_.assign(static_cast<size_t>(B), std::vector<int64_t>{bos_id});
  for (int64_t b = 0; b < B; ++b) sentence_.push_back(b);
  if (use_cache_) {
    cache_ = model.start_decoding(src, max_steps);  // encodes once, cross-attention keys/values too
  } else {
    src_ = rows_src_ = src;
    memory_ = rows_memory_ = model.encode(src);  // (B, S, C): even the reference does not re-encode
  }
}

Tensor StepwiseDecoder::next_logits() {
  const int64_t R = rows(), t = static_cast<int64_t>(prefixes_[0].size());  // every prefix has t tokens
  if (t > max_steps_) throw Error("StepwiseDecoder: more than max_steps " + std::to_string(max_steps_) + " steps");
  if (use_cache_) {
    // The cache holds positions 0 .. t-2; feed only the newest token, at position t-1.
    if (cache_.length != t - 1) throw Error("StepwiseDecoder: push one token per row between two steps");
    std::vector<int64_t> newest;
    for (const auto& p : prefixes_) newest.push_back(p.back());
    return model_.decode_step(from_indices(newest, {R, 1}, device_), cache_).select(1, 0);  // (R, V)
  }
  // The reference: every row's whole prefix through the decoder again.
  std::vector<int64_t> all;
  for (const auto& p : prefixes_) all.insert(all.end(), p.begin(), p.end());
  const Tensor logits = model_.decode(from_indices(all, {R, t}, device_), rows_memory_, rows_src_);  // (R, t, V)
  return logits.select(1, t - 1);  // (R, V): the last position predicts the next token
}

void StepwiseDecoder::push(const std::vector<int64_t>& tokens) {
  if (static_cast<int64_t>(tokens.size()) != rows()) {
    throw Error("StepwiseDecoder::push: " + std::to_string(tokens.size()) + " tokens for " +
                std::to_string(rows()) + " rows");
  }
  for (size_t r = 0; r < tokens.size(); ++r) prefixes_[r].push_back(tokens[r]);
}

void StepwiseDecoder::reorder(const std::vector<int64_t>& index) {
  bool identity = static_cast<int64_t>(index.size()) == rows();
  bool same_sentences = identity;
  for (size_t i = 0; i < index.size(); ++i) {
    if (index[i] < 0 || index[i] >= rows()) {
      throw Error("StepwiseDecoder::reorder: row " + std::to_string(index[i]) + " of " + std::to_string(rows()));
    }
    identity = identity && index[i] == static_cast<int64_t>(i);
    same_sentences = same_sentences && sentence_[static_cast<size_t>(index[i])] == sentence_[i];
  }
  if (identity) return;  // nothing moves (greedy decoding never reorders)
  std::vector<std::vector<int64_t>> prefixes;
  std::vector<int64_t> sentence;
  for (int64_t row : index) {
    prefixes.push_back(prefixes_[static_cast<size_t>(row)]);
    sentence.push_back(sentence_[static_cast<size_t>(row)]);
  }
  prefixes_ = std::move(prefixes);
  sentence_ = std::move(sentence);
  // The cache follows its rows. Beams that stay within their sentence keep the
  // source side as it is; expanding sentences into beams copies it as well.
  if (use_cache_) {
    cache_.reorder(from_indices(index, {static_cast<int64_t>(index.size())}, device_), !same_sentences);
  } else if (!same_sentences) {  // the reference: each row's source and its encoding
    rows_memory_ = index_select(memory_, 0, from_indices(sentence_, {rows()}, device_));
    rows_src_ = select_rows(src_, sentence_);
  }
}

}  // namespace attend::decode

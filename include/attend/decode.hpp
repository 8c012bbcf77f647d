// Turning a trained model's next-token scores into output sentences.
// Chapter 8 uses greedy decoding; chapter 9 (docs/09-decoding.md) adds beam
// search and the KV cache.
#pragma once

#include <cstdint>
#include <vector>

#include "attend/transformer.hpp"

namespace attend {

// Greedy decoding: start from <bos>, append the most likely next token, stop
// at <eos> or after max_len tokens. Runs in eval mode without recording a
// graph (the model's train/eval mode is restored afterwards).
// src: (B, S) Int64 -> B token-id sequences, without <bos> and <eos>.
std::vector<std::vector<int64_t>> greedy_decode(nn::Seq2SeqTransformer& model, const Tensor& src,
                                                int64_t max_len, int64_t bos_id, int64_t eos_id);

}  // namespace attend

// A small Transformer config shared by the tests that decode with it
// (chapter 9's KV cache, chapter 12's tiled and windowed attention). Uses
// attend/transformer.hpp only.
#pragma once

#include "attend/transformer.hpp"

namespace attend_test {

// 11 source and 13 target tokens, d_model 16, 4 heads, 2 + 2 layers, d_ff 32,
// dropout 0.1 (decoding must switch it off), positions up to 24.
inline attend::nn::TransformerConfig small_transformer_config() {
  attend::nn::TransformerConfig c;
  c.src_vocab = 11;
  c.tgt_vocab = 13;
  c.d_model = 16;
  c.heads = 4;
  c.d_ff = 32;
  c.dropout = 0.1f;
  c.max_len = 24;
  return c;
}

}  // namespace attend_test

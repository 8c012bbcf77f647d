// The encoder-decoder Transformer: positional encoding, feed-forward blocks,
// residual connections with layer norm, encoder and decoder layers and the
// whole sequence-to-sequence model. Chapter 7 (docs/07-transformer.md).
//
// Parameter names follow PyTorch's nn.Transformer where one exists
// (encoder.layers.0.self_attn..., linear1, linear2, norm1, norm2, norm3,
// multihead_attn); docs/07-transformer.md maps them one to one.
#pragma once

#include <memory>

#include "attend/multihead_attention.hpp"
#include "attend/nn.hpp"

namespace attend {

// (max_len, d_model): PE[pos, 2i] = sin(pos / 10000^(2i/d)), PE[pos, 2i+1] = cos(same).
Tensor sinusoidal_positional_encoding(int64_t max_len, int64_t d_model);

namespace nn {

struct TransformerConfig {
  int64_t src_vocab = 0, tgt_vocab = 0;
  int64_t d_model = 128;
  int64_t heads = 4;
  int64_t encoder_layers = 2, decoder_layers = 2;
  int64_t d_ff = 512;
  float dropout = 0.1f;
  int64_t max_len = 256;          // longest sequence the positions cover
  int64_t pad_id = 0;             // token id of <pad> on both sides
  bool pre_norm = true;           // false: post-norm, as in the original paper
  bool learned_positions = false; // false: sinusoidal (fixed)
  bool use_positions = true;      // false: no positional information at all (for experiments)
  bool tie_output = false;        // output projection shares the target embedding's weight
  Activation activation = Activation::ReLU;
  // Token embeddings are multiplied by sqrt(d_model), so they start as
  // N(0, 1/d_model): after scaling they are N(0, 1), the size of the
  // positional encoding, and do not swamp it. <= 0 means 1/sqrt(d_model).
  float embedding_std = 0.0f;
};

// Position-wise feed-forward: linear2(dropout(activation(linear1(x)))).
// x: (B, T, d_model) -> (B, T, d_model)
class FeedForward : public Module {
 public:
  FeedForward(int64_t d_model, int64_t d_ff, float dropout, Activation activation, Generator& gen);
  Tensor forward(const Tensor& x);
  std::shared_ptr<Linear> linear1, linear2;
  std::shared_ptr<Dropout> dropout;
  Activation activation;
};

// Self-attention then feed-forward, each wrapped in a residual connection
// with layer norm: pre-norm x + f(norm(x)), or post-norm norm(x + f(x)).
class TransformerEncoderLayer : public Module {
 public:
  TransformerEncoderLayer(const TransformerConfig& config, Generator& gen);
  // x: (B, S, C), mask: broadcastable to (B, H, S, S) (source padding) -> (B, S, C)
  Tensor forward(const Tensor& x, const Tensor& mask = Tensor());
  std::shared_ptr<MultiHeadAttention> self_attn;
  std::shared_ptr<FeedForward> feed_forward;
  std::shared_ptr<LayerNorm> norm1, norm2;
  std::shared_ptr<Dropout> dropout1, dropout2;
  bool pre_norm;
};

// Masked self-attention, cross-attention over the encoder's output, then
// feed-forward; each a residual block with layer norm.
class TransformerDecoderLayer : public Module {
 public:
  TransformerDecoderLayer(const TransformerConfig& config, Generator& gen);
  // y: (B, T, C), memory: (B, S, C); self_mask broadcastable to (B, H, T, T)
  // (causal + target padding), memory_mask to (B, H, T, S) (source padding).
  // cross_weights, if given, receives the cross-attention weights (B, H, T, S).
  Tensor forward(const Tensor& y, const Tensor& memory, const Tensor& self_mask,
                 const Tensor& memory_mask, Tensor* cross_weights = nullptr);
  std::shared_ptr<MultiHeadAttention> self_attn, multihead_attn;
  std::shared_ptr<FeedForward> feed_forward;
  std::shared_ptr<LayerNorm> norm1, norm2, norm3;
  std::shared_ptr<Dropout> dropout1, dropout2, dropout3;
  bool pre_norm;
};

// A stack of N encoder layers (+ a final layer norm with pre-norm).
class TransformerEncoder : public Module {
 public:
  TransformerEncoder(const TransformerConfig& config, Generator& gen);
  Tensor forward(const Tensor& x, const Tensor& mask = Tensor());
  std::shared_ptr<ModuleList> layers;
  std::shared_ptr<LayerNorm> norm;  // null for post-norm
};

// A stack of N decoder layers (+ a final layer norm with pre-norm).
class TransformerDecoder : public Module {
 public:
  TransformerDecoder(const TransformerConfig& config, Generator& gen);
  Tensor forward(const Tensor& y, const Tensor& memory, const Tensor& self_mask,
                 const Tensor& memory_mask);
  std::shared_ptr<ModuleList> layers;
  std::shared_ptr<LayerNorm> norm;  // null for post-norm
};

// The encoder-decoder model: token ids in, next-token logits out.
class Seq2SeqTransformer : public Module {
 public:
  Seq2SeqTransformer(const TransformerConfig& config, Generator& gen);

  // src: (B, S), tgt: (B, T) Int64 token ids, padded with config.pad_id
  // -> logits (B, T, tgt_vocab): position t predicts target token t+1.
  Tensor forward(const Tensor& src, const Tensor& tgt);

  // The two halves, for decoding one token at a time (chapter 9).
  // src: (B, S) -> memory (B, S, C)
  Tensor encode(const Tensor& src);
  // tgt: (B, T), memory: (B, S, C), src: (B, S) (for its padding) -> logits (B, T, V)
  Tensor decode(const Tensor& tgt, const Tensor& memory, const Tensor& src);

  // token embeddings * sqrt(d_model) + positions, then dropout. ids: (B, T) -> (B, T, C)
  Tensor embed(const Embedding& table, const Tensor& ids);

  TransformerConfig config;
  std::shared_ptr<Embedding> src_embed, tgt_embed;
  std::shared_ptr<Embedding> src_pos, tgt_pos;  // learned positions; null if sinusoidal
  std::shared_ptr<TransformerEncoder> encoder;
  std::shared_ptr<TransformerDecoder> decoder;
  std::shared_ptr<Linear> output_proj;          // null when tied to tgt_embed
  std::shared_ptr<Dropout> embed_dropout;

 private:
  Tensor positions_;  // (max_len, d_model) sinusoidal table (not a parameter)
};

}  // namespace nn
}  // namespace attend

// The encoder-decoder Transformer: positional encoding, feed-forward blocks,
// residual connections with layer norm, encoder and decoder layers and the
// whole sequence-to-sequence model. Chapter 7 (docs/07-transformer.md);
// chapter 9 (docs/09-decoding.md) adds decoding with a KV cache.
//
// Parameter names follow PyTorch's nn.Transformer where one exists
// (encoder.layers.0.self_attn..., linear1, linear2, norm1, norm2, norm3,
// multihead_attn); docs/07-transformer.md maps them one to one.
#pragma once

#include <memory>
#include <vector>

#include "attend/multihead_attention.hpp"
#include "attend/nn.hpp"

namespace attend::nn {

// (max_len, d_model): PE[pos, 2i] = sin(pos / 10000^(2i/d)), PE[pos, 2i+1] = cos(same).
Tensor sinusoidal_positional_encoding(int64_t max_len, int64_t d_model);


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
  // Chapter 12: how every attention computes (reference, tiled, window:W).
  // With window:W the encoder sees W positions on each side, the decoder's
  // self-attention the W before and itself; cross-attention stays full.
  AttentionKind attention = {};
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
  Tensor forward(const Tensor& x, const AttentionMask& mask = AttentionMask());
  std::shared_ptr<MultiHeadAttention> self_attn;
  std::shared_ptr<FeedForward> feed_forward;
  std::shared_ptr<LayerNorm> norm1, norm2;
  std::shared_ptr<Dropout> dropout1, dropout2;
  bool pre_norm;
};

// What one decoder layer keeps while decoding one token at a time (chapter 9).
struct DecoderLayerCache {
  KVCache self_attn;   // keys and values of the target positions decoded so far
  KVCache cross_attn;  // keys and values of the encoder output, computed once
};

// Masked self-attention, cross-attention over the encoder's output, then
// feed-forward; each a residual block with layer norm.
class TransformerDecoderLayer : public Module {
 public:
  TransformerDecoderLayer(const TransformerConfig& config, Generator& gen);
  // y: (B, T, C), memory: (B, S, C); self_mask broadcastable to (B, H, T, T)
  // (causal + target padding), memory_mask to (B, H, T, S) (source padding).
  // cross_weights, if given, receives the cross-attention weights (B, H, T, S).
  // With a cache (chapter 9), y holds only the new positions (B, Tn, C):
  // self-attention appends their keys and values to cache->self_attn and
  // looks at everything cached (self_mask is not used), and cross-attention
  // uses cache->cross_attn instead of projecting `memory` (which may be
  // undefined). The result is (B, Tn, C), as the full forward gives there.
  Tensor forward(const Tensor& y, const Tensor& memory, const AttentionMask& self_mask,
                 const AttentionMask& memory_mask, Tensor* cross_weights = nullptr,
                 DecoderLayerCache* cache = nullptr);
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
  Tensor forward(const Tensor& x, const AttentionMask& mask = AttentionMask());
  std::shared_ptr<ModuleList> layers;
  std::shared_ptr<LayerNorm> norm;  // null for post-norm
};

// The decoder's caches for all its layers, for B rows (chapter 9).
struct DecoderCache {
  std::vector<DecoderLayerCache> layers;  // one per decoder layer
  Tensor memory_mask;                     // (B, 1, 1, S): 1 at source padding
  int64_t length = 0;                     // target positions decoded so far
  int64_t capacity = 0;                   // the most target positions it holds

  int64_t rows() const { return memory_mask.defined() ? memory_mask.size(0) : 0; }
  // Row i becomes what row index[i] was (index: Int64 (B')), in every layer:
  // the cache follows its beam when beam search reorders beams, and repeated
  // rows turn B sentences into B * K beams. include_source = false leaves the
  // source side (cross-attention keys and values, memory_mask) alone, which is
  // right when every row's new parent translates the same sentence.
  void reorder(const Tensor& index, bool include_source = true);
  // Bytes of keys and values held: self-attention (the whole capacity) and
  // cross-attention.
  int64_t self_attention_bytes() const;
  int64_t cross_attention_bytes() const;
};

// A stack of N decoder layers (+ a final layer norm with pre-norm).
class TransformerDecoder : public Module {
 public:
  TransformerDecoder(const TransformerConfig& config, Generator& gen);
  // As TransformerDecoderLayer::forward, through every layer; with a cache,
  // y holds only the new positions and layer i uses cache->layers[i].
  Tensor forward(const Tensor& y, const Tensor& memory, const AttentionMask& self_mask,
                 const AttentionMask& memory_mask, DecoderCache* cache = nullptr);
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

  // Chapter 9, decoding with a KV cache. start_decoding encodes src (B, S)
  // once and returns the decoder's cache for B rows and up to `capacity`
  // target positions (at most config.max_len), with every layer's
  // cross-attention keys and values already computed. With window:W
  // (chapter 12) the self-attention caches are rings of W + 1 positions.
  DecoderCache start_decoding(const Tensor& src, int64_t capacity);
  // tokens: (B, Tn) ids of the next target positions (usually Tn = 1, the
  // token chosen last step; <bos> first) -> logits (B, Tn, V) for the tokens
  // after them. They sit at positions cache.length ...; the cache grows by Tn.
  // Gives what decode() gives at those positions for the whole prefix.
  Tensor decode_step(const Tensor& tokens, DecoderCache& cache);

  // token embeddings * sqrt(d_model) + positions [position_offset, + T), then
  // dropout. ids: (B, T) -> (B, T, C). The offset is where ids start in the
  // sequence (chapter 9: one new token at position t).
  Tensor embed(const Embedding& table, const Tensor& ids, int64_t position_offset = 0);

  TransformerConfig config;
  std::shared_ptr<Embedding> src_embed, tgt_embed;
  std::shared_ptr<Embedding> src_pos, tgt_pos;  // learned positions; null if sinusoidal
  std::shared_ptr<TransformerEncoder> encoder;
  std::shared_ptr<TransformerDecoder> decoder;
  std::shared_ptr<Linear> output_proj;          // null when tied to tgt_embed
  std::shared_ptr<Dropout> embed_dropout;

 private:
  Tensor output_logits(const Tensor& h);  // (B, T, C) -> (B, T, V)
  Tensor positions_;  // (max_len, d_model) sinusoidal table: a buffer (moved by to(), not a parameter)
};

}  // namespace attend::nn

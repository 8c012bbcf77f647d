// The encoder-decoder Transformer (chapter 7, docs/07-transformer.md) and
// decoding it one token at a time with a KV cache (chapter 9, docs/09-decoding.md).
#include "attend/transformer.hpp"

#include <cmath>

#include "attend/attention.hpp"
#include "attend/ops.hpp"

namespace attend::nn {

Tensor sinusoidal_positional_encoding(int64_t max_len, int64_t d_model) {
  Tensor pe = zeros({max_len, d_model});
  float* p = pe.data();
  // exercise 7.1 begin: pe[pos][2i] = sin(pos / 10000^(2i/d)), pe[pos][2i+1] = cos(the same)
  for (int64_t pos = 0; pos < max_len; ++pos) {
    for (int64_t i = 0; i < d_model; i += 2) {
      // Wavelengths grow geometrically across the pairs, from 2 pi (i = 0) to
      // 2 pi * 10000^((d_model - 2) / d_model) for the last pair.
      const double angle = static_cast<double>(pos) /
                           std::pow(10000.0, static_cast<double>(i) / static_cast<double>(d_model));
      p[pos * d_model + i] = static_cast<float>(std::sin(angle));
      if (i + 1 < d_model) p[pos * d_model + i + 1] = static_cast<float>(std::cos(angle));
    }
  }
  // exercise 7.1 end
  return pe;
}


// --- FeedForward ---

FeedForward::FeedForward(int64_t d_model, int64_t d_ff, float p, Activation activation_, Generator& gen)
    : activation(activation_) {
  linear1 = register_module("linear1", std::make_shared<Linear>(d_model, d_ff, gen));
  dropout = register_module("dropout", std::make_shared<Dropout>(p, gen));
  linear2 = register_module("linear2", std::make_shared<Linear>(d_ff, d_model, gen));
}

Tensor FeedForward::forward(const Tensor& x) {
  // exercise 7.2 begin: linear2(dropout(activation(linear1(x))))
  Tensor h = linear1->forward(x);  // (B, T, d_ff)
  h = activation == Activation::ReLU ? relu(h) : gelu(h);
  return linear2->forward(dropout->forward(h));  // (B, T, d_model)
  // exercise 7.2 end
}

// --- encoder layer ---

TransformerEncoderLayer::TransformerEncoderLayer(const TransformerConfig& c, Generator& gen)
    : pre_norm(c.pre_norm) {
  self_attn = register_module("self_attn", std::make_shared<MultiHeadAttention>(c.d_model, c.heads, c.dropout, gen, c.attention));
  feed_forward = register_module("feed_forward", std::make_shared<FeedForward>(c.d_model, c.d_ff, c.dropout, c.activation, gen));
  norm1 = register_module("norm1", std::make_shared<LayerNorm>(c.d_model));
  norm2 = register_module("norm2", std::make_shared<LayerNorm>(c.d_model));
  dropout1 = register_module("dropout1", std::make_shared<Dropout>(c.dropout, gen));
  dropout2 = register_module("dropout2", std::make_shared<Dropout>(c.dropout, gen));
}

Tensor TransformerEncoderLayer::forward(const Tensor& x, const AttentionMask& mask) {
  // exercise 7.3 begin: encoder layer: self-attention and feed-forward, each in a residual, pre- or post-norm
  if (pre_norm) {
    // x + f(norm(x)): the residual path from input to output is untouched.
    const Tensor h = norm1->forward(x);
    Tensor out = x + dropout1->forward(self_attn->forward(h, h, h, mask));
    return out + dropout2->forward(feed_forward->forward(norm2->forward(out)));
  }
  // norm(x + f(x)): the original paper's order.
  const Tensor out = norm1->forward(x + dropout1->forward(self_attn->forward(x, x, x, mask)));
  return norm2->forward(out + dropout2->forward(feed_forward->forward(out)));
  // exercise 7.3 end
}

// --- decoder layer ---

TransformerDecoderLayer::TransformerDecoderLayer(const TransformerConfig& c, Generator& gen)
    : pre_norm(c.pre_norm) {
  // A window is about positions within one sequence: cross-attention (target
  // to source) stays full, computed tiled.
  const AttentionKind cross = c.attention.type == AttentionKind::Window ? AttentionKind{AttentionKind::Tiled, 0} : c.attention;
  self_attn = register_module("self_attn", std::make_shared<MultiHeadAttention>(c.d_model, c.heads, c.dropout, gen, c.attention));
  multihead_attn = register_module("multihead_attn", std::make_shared<MultiHeadAttention>(c.d_model, c.heads, c.dropout, gen, cross));
  feed_forward = register_module("feed_forward", std::make_shared<FeedForward>(c.d_model, c.d_ff, c.dropout, c.activation, gen));
  norm1 = register_module("norm1", std::make_shared<LayerNorm>(c.d_model));
  norm2 = register_module("norm2", std::make_shared<LayerNorm>(c.d_model));
  norm3 = register_module("norm3", std::make_shared<LayerNorm>(c.d_model));
  dropout1 = register_module("dropout1", std::make_shared<Dropout>(c.dropout, gen));
  dropout2 = register_module("dropout2", std::make_shared<Dropout>(c.dropout, gen));
  dropout3 = register_module("dropout3", std::make_shared<Dropout>(c.dropout, gen));
}

Tensor TransformerDecoderLayer::forward(const Tensor& y, const Tensor& memory, const AttentionMask& self_mask,
                                        const AttentionMask& memory_mask, Tensor* cross_weights, DecoderLayerCache* cache) {
  // The two attentions, over the whole target so far or (with a cache, chapter
  // 9) for the new positions only. Everything around them is written once below.
  auto self_attention = [&](const Tensor& h) {
    return cache ? self_attn->forward_cached(h, cache->self_attn) : self_attn->forward(h, h, h, self_mask);
  };
  auto cross_attention = [&](const Tensor& h) {
    return cache ? multihead_attn->attend_to(h, cache->cross_attn.filled_keys(), cache->cross_attn.filled_values(),
                                             memory_mask, cross_weights)
                 : multihead_attn->forward(h, memory, memory, memory_mask, cross_weights);
  };
  // exercise 7.4 begin: decoder layer: self-attention, cross-attention, feed-forward, each in a residual
  if (pre_norm) {
    Tensor out = y + dropout1->forward(self_attention(norm1->forward(y)));
    out = out + dropout2->forward(cross_attention(norm2->forward(out)));
    return out + dropout3->forward(feed_forward->forward(norm3->forward(out)));
  }
  Tensor out = norm1->forward(y + dropout1->forward(self_attention(y)));
  out = norm2->forward(out + dropout2->forward(cross_attention(out)));
  return norm3->forward(out + dropout3->forward(feed_forward->forward(out)));
  // exercise 7.4 end
}

// --- stacks ---

TransformerEncoder::TransformerEncoder(const TransformerConfig& c, Generator& gen) {
  layers = register_module("layers", std::make_shared<ModuleList>());
  for (int64_t i = 0; i < c.encoder_layers; ++i) layers->push_back(std::make_shared<TransformerEncoderLayer>(c, gen));
  // With pre-norm the last residual sum is never normalised inside a layer.
  if (c.pre_norm) norm = register_module("norm", std::make_shared<LayerNorm>(c.d_model));
}

Tensor TransformerEncoder::forward(const Tensor& x, const AttentionMask& mask) {
  Tensor h = x;
  for (size_t i = 0; i < layers->size(); ++i) h = layers->at<TransformerEncoderLayer>(i).forward(h, mask);
  return norm ? norm->forward(h) : h;
}

TransformerDecoder::TransformerDecoder(const TransformerConfig& c, Generator& gen) {
  layers = register_module("layers", std::make_shared<ModuleList>());
  for (int64_t i = 0; i < c.decoder_layers; ++i) layers->push_back(std::make_shared<TransformerDecoderLayer>(c, gen));
  if (c.pre_norm) norm = register_module("norm", std::make_shared<LayerNorm>(c.d_model));
}

Tensor TransformerDecoder::forward(const Tensor& y, const Tensor& memory, const AttentionMask& self_mask,
                                   const AttentionMask& memory_mask, DecoderCache* cache) {
  Tensor h = y;
  for (size_t i = 0; i < layers->size(); ++i) {
    h = layers->at<TransformerDecoderLayer>(i).forward(h, memory, self_mask, memory_mask, nullptr,
                                                       cache ? &cache->layers[i] : nullptr);
  }
  return norm ? norm->forward(h) : h;
}

// --- the decoder's cache (chapter 9) ---

void DecoderCache::reorder(const Tensor& index, bool include_source) {
  if (!include_source && index.numel() != rows()) {
    throw Error("DecoderCache::reorder: " + std::to_string(index.numel()) + " rows from " + std::to_string(rows()) +
                " changes the number of rows, so the source side must be reordered too");
  }
  for (DecoderLayerCache& layer : layers) {
    layer.self_attn.reorder(index);
    if (include_source) layer.cross_attn.reorder(index);
  }
  if (include_source) memory_mask = index_select(memory_mask, 0, index);
}

int64_t DecoderCache::self_attention_bytes() const {
  int64_t total = 0;
  for (const DecoderLayerCache& layer : layers) total += layer.self_attn.bytes();
  return total;
}

int64_t DecoderCache::cross_attention_bytes() const {
  int64_t total = 0;
  for (const DecoderLayerCache& layer : layers) total += layer.cross_attn.bytes();
  return total;
}

// --- the whole model ---

Seq2SeqTransformer::Seq2SeqTransformer(const TransformerConfig& c, Generator& gen) : config(c) {
  if (c.src_vocab <= 0 || c.tgt_vocab <= 0) throw Error("Seq2SeqTransformer: vocabulary sizes must be positive");
  if (c.d_model % c.heads != 0) {
    throw Error("Seq2SeqTransformer: d_model " + std::to_string(c.d_model) + " is not divisible by heads " +
                std::to_string(c.heads));
  }
  const float std = c.embedding_std > 0.0f ? c.embedding_std : 1.0f / std::sqrt(static_cast<float>(c.d_model));
  src_embed = register_module("src_embed", std::make_shared<Embedding>(c.src_vocab, c.d_model, gen, c.pad_id, std));
  tgt_embed = register_module("tgt_embed", std::make_shared<Embedding>(c.tgt_vocab, c.d_model, gen, c.pad_id, std));
  if (c.use_positions && c.learned_positions) {
    // Learned positions start at the size of the sinusoidal ones' entries.
    src_pos = register_module("src_pos", std::make_shared<Embedding>(c.max_len, c.d_model, gen, -1, 1.0f / std::sqrt(2.0f)));
    tgt_pos = register_module("tgt_pos", std::make_shared<Embedding>(c.max_len, c.d_model, gen, -1, 1.0f / std::sqrt(2.0f)));
  } else if (c.use_positions) {
    positions_ = register_buffer("positions", sinusoidal_positional_encoding(c.max_len, c.d_model));
  }
  embed_dropout = register_module("embed_dropout", std::make_shared<Dropout>(c.dropout, gen));
  encoder = register_module("encoder", std::make_shared<TransformerEncoder>(c, gen));
  decoder = register_module("decoder", std::make_shared<TransformerDecoder>(c, gen));
  if (!c.tie_output) output_proj = register_module("output_proj", std::make_shared<Linear>(c.d_model, c.tgt_vocab, gen));
}

Tensor Seq2SeqTransformer::embed(const Embedding& table, const Tensor& ids, int64_t position_offset) {
  if (ids.dim() != 2) throw Error("Seq2SeqTransformer: token ids must be (B, T), got " + to_string(ids.shape()));
  const int64_t T = ids.size(1);
  if (position_offset < 0 || position_offset + T > config.max_len) {
    throw Error("Seq2SeqTransformer: positions " + std::to_string(position_offset) + " to " +
                std::to_string(position_offset + T - 1) + " (a sequence of length " +
                std::to_string(position_offset + T) + ") exceed max_len " + std::to_string(config.max_len));
  }
  Tensor x = embedding(table.weight, ids, table.padding_idx) * std::sqrt(static_cast<float>(config.d_model));
  if (config.use_positions) {
    const Embedding* learned = &table == src_embed.get() ? src_pos.get() : tgt_pos.get();
    // (T, C) broadcasts over the batch.
    // The sinusoidal table is a buffer: Module::to moves it with the
    // parameters; moved any other way, it follows the embeddings to their
    // device the first time they are there (one copy, not one per step).
    if (!learned && positions_.device() != x.device()) positions_ = positions_.to(x.device());
    x = x + (learned ? learned->weight.narrow(0, position_offset, T) : positions_.narrow(0, position_offset, T));
  }
  return embed_dropout->forward(x);
}

Tensor Seq2SeqTransformer::encode(const Tensor& src) {
  return encoder->forward(embed(*src_embed, src), AttentionMask::padding(padding_mask(src, config.pad_id)));
}

Tensor Seq2SeqTransformer::output_logits(const Tensor& h) {
  if (output_proj) return output_proj->forward(h);
  return matmul(h, tgt_embed->weight.t());  // tied: scores against every target embedding
}

Tensor Seq2SeqTransformer::decode(const Tensor& tgt, const Tensor& memory, const Tensor& src) {
  // Target position t may see positions <= t that are not padding. (As rules:
  // the reference turns them into a (B, 1, T, T) tensor, tiled attention never does.)
  const AttentionMask self_mask = AttentionMask::causal_with_padding(padding_mask(tgt, config.pad_id));
  return output_logits(decoder->forward(embed(*tgt_embed, tgt), memory, self_mask,
                                        AttentionMask::padding(padding_mask(src, config.pad_id))));
}

Tensor Seq2SeqTransformer::forward(const Tensor& src, const Tensor& tgt) {
  if (src.dim() != 2 || tgt.dim() != 2 || src.size(0) != tgt.size(0)) {
    throw Error("Seq2SeqTransformer: src " + to_string(src.shape()) + " and tgt " + to_string(tgt.shape()) +
                " must be (B, S) and (B, T) with the same B");
  }
  return decode(tgt, encode(src), src);
}

// --- decoding with a KV cache (chapter 9) ---

DecoderCache Seq2SeqTransformer::start_decoding(const Tensor& src, int64_t capacity) {
  if (capacity < 1 || capacity > config.max_len) {
    throw Error("Seq2SeqTransformer::start_decoding: capacity " + std::to_string(capacity) +
                " must be in [1, max_len " + std::to_string(config.max_len) + "]");
  }
  const Tensor memory = encode(src);  // (B, S, C): the encoder runs once
  DecoderCache cache;
  cache.memory_mask = padding_mask(src, config.pad_id);  // (B, 1, 1, S)
  cache.capacity = capacity;
  const int64_t B = src.size(0), D = config.d_model / config.heads;
  for (size_t i = 0; i < decoder->layers->size(); ++i) {
    TransformerDecoderLayer& layer = decoder->layers->at<TransformerDecoderLayer>(i);
    DecoderLayerCache c;
    // Empty, filled step by step; a sliding window needs only its last W + 1
    // positions (chapter 12), kept in a ring.
    const int64_t window_positions = config.attention.window + 1;
    const bool ring = config.attention.type == AttentionKind::Window && window_positions < capacity;
    c.self_attn = KVCache(B, config.heads, ring ? window_positions : capacity, D, ring, memory.device());
    c.cross_attn = layer.multihead_attn->cache_keys_values(memory);       // (B, H, S, D), complete
    cache.layers.push_back(std::move(c));
  }
  return cache;
}

Tensor Seq2SeqTransformer::decode_step(const Tensor& tokens, DecoderCache& cache) {
  if (tokens.dim() != 2 || tokens.size(0) != cache.rows() || cache.length + tokens.size(1) > cache.capacity) {
    throw Error("Seq2SeqTransformer::decode_step: tokens " + to_string(tokens.shape()) + " do not fit a cache of " +
                std::to_string(cache.rows()) + " rows holding " + std::to_string(cache.length) + " of " +
                std::to_string(cache.capacity) + " positions");
  }
  // exercise 9.4 begin: embed the new tokens at their positions, run the decoder with the cache, advance it
  const Tensor x = embed(*tgt_embed, tokens, cache.length);  // (B, Tn, C) at positions length ...
  const Tensor h = decoder->forward(x, Tensor(), Tensor(), cache.memory_mask, &cache);
  cache.length += tokens.size(1);
  return output_logits(h);  // (B, Tn, V)
  // exercise 9.4 end
}

}  // namespace attend::nn

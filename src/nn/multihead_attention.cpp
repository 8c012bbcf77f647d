// Multi-head attention (chapter 6, docs/06-multihead-attention.md), its
// KV cache for decoding one token at a time (chapter 9, docs/09-decoding.md),
// tiled and sliding-window attention and the ring cache (chapter 12,
// docs/12-scaling-attention.md).
#include "attend/multihead_attention.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "attend/attention.hpp"
#include "attend/ops.hpp"

namespace attend::nn {

Tensor split_heads(const Tensor& x, int64_t heads) {
  if (x.dim() != 3 || x.size(2) % heads != 0) {
    throw Error("split_heads: expects (B, T, C) with C divisible by " + std::to_string(heads) +
                " heads, got " + to_string(x.shape()));
  }
  // (B, T, C) -> (B, T, H, D) is a free view; the transpose to (B, H, T, D)
  // only swaps strides (the matmul that follows makes it contiguous).
  // exercise 6.1 begin: split_heads: (B, T, C) -> (B, H, T, C/H) as a view
  return x.reshape({x.size(0), x.size(1), heads, x.size(2) / heads}).transpose(1, 2);
  // exercise 6.1 end
}

Tensor merge_heads(const Tensor& x) {
  if (x.dim() != 4) throw Error("merge_heads: expects (B, H, T, D), got " + to_string(x.shape()));
  // (B, H, T, D) -> (B, T, H, D) -> (B, T, H*D); the reshape copies once.
  // exercise 6.2 begin: merge_heads: (B, H, T, D) -> (B, T, H*D)
  return x.transpose(1, 2).reshape({x.size(0), x.size(2), x.size(1) * x.size(3)});
  // exercise 6.2 end
}


MultiHeadAttention::MultiHeadAttention(int64_t d_model_, int64_t heads_, float dropout, Generator& gen,
                                       AttentionKind attention_)
    : d_model(d_model_), heads(heads_), attention(attention_) {
  if (heads <= 0 || d_model <= 0 || d_model % heads != 0) {
    throw Error("MultiHeadAttention: d_model " + std::to_string(d_model) +
                " is not divisible by heads " + std::to_string(heads));
  }
  q_proj = register_module("q_proj", std::make_shared<Linear>(d_model, d_model, gen));
  k_proj = register_module("k_proj", std::make_shared<Linear>(d_model, d_model, gen));
  v_proj = register_module("v_proj", std::make_shared<Linear>(d_model, d_model, gen));
  out_proj = register_module("out_proj", std::make_shared<Linear>(d_model, d_model, gen));
  attention_dropout = register_module("attention_dropout", std::make_shared<Dropout>(dropout, gen));
}

Tensor MultiHeadAttention::forward(const Tensor& query, const Tensor& key, const Tensor& value,
                                   const AttentionMask& mask, Tensor* weights) {
  const bool shapes_ok = query.defined() && key.defined() && value.defined() && query.dim() == 3 &&
                         key.dim() == 3 && value.dim() == 3 && query.size(2) == d_model &&
                         key.size(2) == d_model && value.size(2) == d_model &&
                         key.size(0) == query.size(0) && value.size(0) == query.size(0) &&
                         key.size(1) == value.size(1);
  if (!shapes_ok) {
    throw Error("MultiHeadAttention: query " + (query.defined() ? to_string(query.shape()) : "?") +
                ", key " + (key.defined() ? to_string(key.shape()) : "?") + ", value " +
                (value.defined() ? to_string(value.shape()) : "?") + " do not fit: expected (B, Tq, " +
                std::to_string(d_model) + "), (B, Tk, " + std::to_string(d_model) + "), (B, Tk, " +
                std::to_string(d_model) + ")");
  }
  AttentionMask windowed = mask;
  if (attention.type == AttentionKind::Window) windowed.window = attention.window;
  // exercise 6.4 begin: project key and value, split them into heads, and attend_to them
  return attend_to(query, split_heads(k_proj->forward(key), heads),  // (B, H, Tk, D)
                   split_heads(v_proj->forward(value), heads), windowed, weights);
  // exercise 6.4 end
}

Tensor MultiHeadAttention::attend_to(const Tensor& query, const Tensor& k, const Tensor& v, const AttentionMask& mask,
                                     Tensor* weights) {
  const Tensor q = split_heads(q_proj->forward(query), heads);  // (B, H, Tq, D)
  Tensor heads_out;                                             // (B, H, Tq, D)
  if (attention.type == AttentionKind::Reference || weights || record_weights) {
    // The attention of chapter 5, with dropout on the weights while training.
    // exercise 6.3 begin: every head's weights (with dropout), kept where asked, and heads_out = weights @ v
    const Tensor w = attention_dropout->forward(attention_weights(q, k, mask.to_dense(q.size(2), k.size(2))));
    if (weights) *weights = w;  // (B, H, Tq, Tk)
    if (record_weights) last_weights = w.detach();
    heads_out = matmul(w, v);
    // exercise 6.3 end
  } else {
    // Chapter 12: the same values tile by tile, the same dropout draws.
    TiledAttentionOptions options;
    if (attention_dropout->is_training() && attention_dropout->p > 0.0f) {
      options.dropout = attention_dropout->p;
      options.generator = &attention_dropout->generator();
    }
    heads_out = tiled_attention(q, k, v, mask, options);
  }
  return out_proj->forward(merge_heads(heads_out));  // (B, Tq, C)
}

// --- chapter 9: the KV cache ---

KVCache MultiHeadAttention::cache_keys_values(const Tensor& x) {
  if (x.dim() != 3 || x.size(2) != d_model) {
    throw Error("MultiHeadAttention::cache_keys_values: expects (B, T, " + std::to_string(d_model) + "), got " +
                to_string(x.shape()));
  }
  KVCache cache(x.size(0), heads, x.size(1), d_model / heads, /*ring=*/false, x.device());
  cache.append(split_heads(k_proj->forward(x), heads), split_heads(v_proj->forward(x), heads));
  return cache;
}

Tensor MultiHeadAttention::forward_cached(const Tensor& x, KVCache& cache, Tensor* weights) {
  if (x.dim() != 3 || x.size(2) != d_model || x.size(0) != cache.keys.size(0)) {
    throw Error("MultiHeadAttention::forward_cached: x " + to_string(x.shape()) + " does not fit a cache of " +
                std::to_string(cache.keys.defined() ? cache.keys.size(0) : 0) + " rows and d_model " +
                std::to_string(d_model));
  }
  const int64_t start = cache.positions, new_positions = x.size(1);
  if (cache.ring) {
    // Chapter 12: after position p is appended, the ring holds exactly the
    // window p - W .. p (in slot order, not position order: the softmax and
    // the weighted sum do not care about the order of the keys), so each
    // new position attends to the whole ring, without a mask.
    std::vector<Tensor> outputs;
    for (int64_t t = 0; t < new_positions; ++t) {
      const Tensor xt = x.narrow(1, t, 1);  // (B, 1, C)
      cache.append(split_heads(k_proj->forward(xt), heads), split_heads(v_proj->forward(xt), heads));
      outputs.push_back(attend_to(xt, cache.filled_keys(), cache.filled_values(), AttentionMask(), weights));
    }
    return new_positions == 1 ? outputs[0] : cat(outputs, 1);
  }
  // Only the new positions are projected: the older keys and values are in the cache.
  cache.append(split_heads(k_proj->forward(x), heads), split_heads(v_proj->forward(x), heads));
  // New query i sits at position start + i and may see keys 0 .. start + i
  // (and, with a window, not before start + i - W). A single new position
  // without a window sees every cached key: no mask at all.
  AttentionMask mask;
  if (new_positions > 1 || attention.type == AttentionKind::Window) {
    mask = AttentionMask::causal_with_padding(Tensor(), start);
    if (attention.type == AttentionKind::Window) mask.window = attention.window;
  }
  return attend_to(x, cache.filled_keys(), cache.filled_values(), mask, weights);
}

KVCache::KVCache(int64_t batch, int64_t heads, int64_t capacity, int64_t head_dim, bool ring_, Device device)
    : keys(zeros({batch, heads, capacity, head_dim}, device)),
      values(zeros({batch, heads, capacity, head_dim}, device)),
      ring(ring_) {}

void KVCache::append(const Tensor& new_keys, const Tensor& new_values) {
  if (!keys.defined() || new_keys.dim() != 4 || new_keys.shape() != new_values.shape() ||
      new_keys.size(0) != keys.size(0) || new_keys.size(1) != keys.size(1) || new_keys.size(3) != keys.size(3) ||
      (!ring && length + new_keys.size(2) > capacity())) {
    throw Error("KVCache::append: keys " + to_string(new_keys.shape()) + " and values " +
                to_string(new_values.shape()) + " do not fit a cache " +
                (keys.defined() ? to_string(keys.shape()) : std::string("(empty)")) + " holding " +
                std::to_string(length) + " positions");
  }
  const int64_t n = new_keys.size(2);
  if (ring) {  // chapter 12: position p into slot p % capacity
    // exercise 12.3 begin: the ring: position p goes to slot p % capacity; length = min(positions, capacity)
    for (int64_t t = 0; t < n; ++t, ++positions) {
      const int64_t slot = positions % capacity();
      copy_into(keys.narrow(2, slot, 1), new_keys.narrow(2, t, 1));
      copy_into(values.narrow(2, slot, 1), new_values.narrow(2, t, 1));
    }
    length = std::min(positions, capacity());
    // exercise 12.3 end
    return;
  }
  // Write into the preallocated buffer through a view: positions [length, length + n).
  // exercise 9.3 begin: write the new keys and values at positions length .. length+n-1, advance
  copy_into(keys.narrow(2, length, n), new_keys);
  copy_into(values.narrow(2, length, n), new_values);
  length += n;
  positions += n;
  // exercise 9.3 end
}

void KVCache::reorder(const Tensor& index) {
  if (!keys.defined()) return;
  // Gather first (a new tensor), then write back: one row may be the parent
  // of several rows, so rows cannot be moved in place one by one.
  const Tensor k = index_select(filled_keys(), 0, index);  // (B', H, length, D)
  const Tensor v = index_select(filled_values(), 0, index);
  if (k.size(0) != keys.size(0)) {  // a different number of rows: a new buffer
    keys = zeros({k.size(0), keys.size(1), keys.size(2), keys.size(3)}, keys.device());
    values = zeros(keys.shape(), keys.device());
  }
  copy_into(filled_keys(), k);
  copy_into(filled_values(), v);
}

int64_t KVCache::bytes() const {
  return keys.defined() ? 2 * keys.numel() * static_cast<int64_t>(sizeof(float)) : 0;
}

}  // namespace attend::nn

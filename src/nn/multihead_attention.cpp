// Multi-head attention (chapter 6, docs/06-multihead-attention.md) and its
// KV cache for decoding one token at a time (chapter 9, docs/09-decoding.md).
#include "attend/multihead_attention.hpp"

#include <cmath>
#include <limits>

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
  return x.reshape({x.size(0), x.size(1), heads, x.size(2) / heads}).transpose(1, 2);
}

Tensor merge_heads(const Tensor& x) {
  if (x.dim() != 4) throw Error("merge_heads: expects (B, H, T, D), got " + to_string(x.shape()));
  // (B, H, T, D) -> (B, T, H, D) -> (B, T, H*D); the reshape copies once.
  return x.transpose(1, 2).reshape({x.size(0), x.size(2), x.size(1) * x.size(3)});
}


MultiHeadAttention::MultiHeadAttention(int64_t d_model_, int64_t heads_, float dropout, Generator& gen)
    : d_model(d_model_), heads(heads_) {
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
                                   const Tensor& mask, Tensor* weights) {
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
  return attend_to(query, split_heads(k_proj->forward(key), heads),  // (B, H, Tk, D)
                   split_heads(v_proj->forward(value), heads), mask, weights);
}

Tensor MultiHeadAttention::attend_to(const Tensor& query, const Tensor& k, const Tensor& v, const Tensor& mask,
                                     Tensor* weights) {
  const Tensor q = split_heads(q_proj->forward(query), heads);  // (B, H, Tq, D)
  // The attention of chapter 5, with dropout on the weights while training.
  const Tensor w = attention_dropout->forward(attention_weights(q, k, mask));  // (B, H, Tq, Tk)
  if (weights) *weights = w;
  if (record_weights) last_weights = w.detach();
  const Tensor attention = matmul(w, v);  // (B, H, Tq, D)
  return out_proj->forward(merge_heads(attention));  // (B, Tq, C)
}

// --- chapter 9: the KV cache ---

KVCache MultiHeadAttention::cache_keys_values(const Tensor& x) {
  if (x.dim() != 3 || x.size(2) != d_model) {
    throw Error("MultiHeadAttention::cache_keys_values: expects (B, T, " + std::to_string(d_model) + "), got " +
                to_string(x.shape()));
  }
  KVCache cache(x.size(0), heads, x.size(1), d_model / heads);
  cache.append(split_heads(k_proj->forward(x), heads), split_heads(v_proj->forward(x), heads));
  return cache;
}

Tensor MultiHeadAttention::forward_cached(const Tensor& x, KVCache& cache, Tensor* weights) {
  if (x.dim() != 3 || x.size(2) != d_model || x.size(0) != cache.keys.size(0)) {
    throw Error("MultiHeadAttention::forward_cached: x " + to_string(x.shape()) + " does not fit a cache of " +
                std::to_string(cache.keys.defined() ? cache.keys.size(0) : 0) + " rows and d_model " +
                std::to_string(d_model));
  }
  const int64_t start = cache.length, new_positions = x.size(1);
  // Only the new positions are projected: the older keys and values are in the cache.
  cache.append(split_heads(k_proj->forward(x), heads), split_heads(v_proj->forward(x), heads));
  // New query i sits at position start + i and may see keys 0 .. start + i.
  // A single new position sees every cached key: no mask at all.
  Tensor mask;
  if (new_positions > 1) mask = causal_mask(start + new_positions).narrow(0, start, new_positions);  // (Tn, length)
  return attend_to(x, cache.filled_keys(), cache.filled_values(), mask, weights);
}

KVCache::KVCache(int64_t batch, int64_t heads, int64_t capacity, int64_t head_dim)
    : keys(zeros({batch, heads, capacity, head_dim})), values(zeros({batch, heads, capacity, head_dim})) {}

void KVCache::append(const Tensor& new_keys, const Tensor& new_values) {
  if (!keys.defined() || new_keys.dim() != 4 || new_keys.shape() != new_values.shape() ||
      new_keys.size(0) != keys.size(0) || new_keys.size(1) != keys.size(1) || new_keys.size(3) != keys.size(3) ||
      length + new_keys.size(2) > capacity()) {
    throw Error("KVCache::append: keys " + to_string(new_keys.shape()) + " and values " +
                to_string(new_values.shape()) + " do not fit a cache " +
                (keys.defined() ? to_string(keys.shape()) : std::string("(empty)")) + " holding " +
                std::to_string(length) + " positions");
  }
  const int64_t n = new_keys.size(2);
  // Write into the preallocated buffer through a view: positions [length, length + n).
  copy_into(keys.narrow(2, length, n), new_keys);
  copy_into(values.narrow(2, length, n), new_values);
  length += n;
}

void KVCache::reorder(const Tensor& index) {
  if (!keys.defined()) return;
  // Gather first (a new tensor), then write back: one row may be the parent
  // of several rows, so rows cannot be moved in place one by one.
  const Tensor k = index_select(filled_keys(), 0, index);  // (B', H, length, D)
  const Tensor v = index_select(filled_values(), 0, index);
  if (k.size(0) != keys.size(0)) {  // a different number of rows: a new buffer
    keys = zeros({k.size(0), keys.size(1), keys.size(2), keys.size(3)});
    values = zeros(keys.shape());
  }
  copy_into(filled_keys(), k);
  copy_into(filled_values(), v);
}

int64_t KVCache::bytes() const {
  return keys.defined() ? 2 * keys.numel() * static_cast<int64_t>(sizeof(float)) : 0;
}

}  // namespace attend::nn

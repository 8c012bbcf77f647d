// The tiled attention op (forward and recorded backward around the kernels of
// src/kernels/attention.cpp), masks by rules, and the attention kinds.
// Chapter 12 (docs/12-scaling-attention.md).
#include "attend/tiled_attention.hpp"

#include <vector>

#include "attend/attention.hpp"
#include "attend/autograd.hpp"
#include "attend/error.hpp"
#include "attend/gpu_kernels.hpp"
#include "attend/kernels.hpp"
#include "attend/ops.hpp"

namespace attend::nn {

// --- kinds ---

std::string AttentionKind::to_string() const {
  switch (type) {
    case Reference: return "reference";
    case Tiled: return "tiled";
    case Window: return "window:" + std::to_string(window);
  }
  return "?";
}

AttentionKind AttentionKind::parse(const std::string& text) {
  if (text == "reference") return {Reference, 0};
  if (text == "tiled") return {Tiled, 0};
  const std::string prefix = "window:";
  if (text.rfind(prefix, 0) == 0) {
    const std::string number = text.substr(prefix.size());
    bool digits = !number.empty() && number.size() <= 9;
    for (char c : number) digits = digits && c >= '0' && c <= '9';
    if (digits) return {Window, std::stoll(number)};
  }
  throw Error("attention kind '" + text + "' is not one of reference, tiled, window:W (W a whole number >= 0)");
}

// --- masks ---

AttentionMask AttentionMask::padding(const Tensor& key_padding) {
  AttentionMask m;
  m.key_padding = key_padding;
  return m;
}

AttentionMask AttentionMask::causal_with_padding(const Tensor& key_padding, int64_t query_offset) {
  AttentionMask m;
  m.key_padding = key_padding;
  m.causal = true;
  m.query_offset = query_offset;
  return m;
}

Tensor AttentionMask::to_dense(int64_t queries, int64_t keys) const {
  Tensor rules;
  if (causal || window >= 0) {
    kernels::AttentionMasking masking;
    masking.causal = causal;
    masking.query_offset = query_offset;
    masking.window = window;
    // The rules are made where the mask's tensors are (the batch's padding
    // on the GPU makes them there, by a kernel: chapter 11), else on the CPU.
    const Tensor& given = key_padding.defined() ? key_padding : dense;
    if (given.defined() && given.device() == Device::cuda) {
      rules = empty({queries, keys}, Device::cuda);  // every element written
      kernels::attention_rules_device(masking, queries, keys, rules.device_data());
    } else {
      rules = zeros({queries, keys});  // (Tq, Tk)
      float* p = rules.data();
      for (int64_t i = 0; i < queries; ++i) {
        for (int64_t j = 0; j < keys; ++j) {
          if (!kernels::query_sees_key(masking, query_offset + i, j)) p[i * keys + j] = 1.0f;
        }
      }
    }
  }
  Tensor padding = key_padding;
  if (padding.defined() && padding.dim() == 2) padding = padding.reshape({padding.size(0), 1, 1, padding.size(1)});
  return combine_masks(dense, combine_masks(rules, padding));
}

// --- the op ---

namespace {

// An operand as the kernel reads it: (B, H, T, width) with the last dim contiguous.
kernels::HeadRows head_rows(const Tensor& t) {
  return {t.data(), t.strides()[0], t.strides()[1], t.strides()[2]};
}

std::string shapes_of(const Tensor& q, const Tensor& k, const Tensor& v) {
  auto shape = [](const Tensor& t) { return t.defined() ? to_string(t.shape()) : std::string("?"); };
  return "q " + shape(q) + ", k " + shape(k) + ", v " + shape(v);
}

// The (B, Tk) padding flags of a mask, contiguous; undefined when there are
// none. A dense mask is accepted when it only varies along batch and key.
Tensor padding_flags(const AttentionMask& mask, int64_t B, int64_t Tk, const std::string& what) {
  Tensor flags = mask.key_padding;
  if (mask.dense.defined()) {
    const Tensor& d = mask.dense;
    const bool key_only = d.dim() == 4 && d.size(1) == 1 && d.size(2) == 1;
    if (!key_only || flags.defined()) {
      throw Error("tiled_attention: " + what + " and a dense mask " + to_string(d.shape()) +
                  ": a tiled kernel never builds (Tq, Tk); give padding as (B, 1, 1, Tk) and "
                  "causal / window as rules (AttentionMask)");
    }
    flags = d;
  }
  if (!flags.defined()) return flags;
  const bool fits = (flags.dim() == 4 && flags.size(1) == 1 && flags.size(2) == 1) || flags.dim() == 2;
  if (!fits || (flags.size(0) != B && flags.size(0) != 1) || flags.size(-1) != Tk) {
    throw Error("tiled_attention: key padding " + to_string(flags.shape()) + " does not fit " + what +
                ": expected (B, 1, 1, Tk) or (B, Tk) with B = " + std::to_string(B) + ", Tk = " + std::to_string(Tk));
  }
  return flags.reshape({flags.size(0), Tk}).contiguous();
}

}  // namespace

Tensor tiled_attention(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in, const AttentionMask& mask,
                       const TiledAttentionOptions& options, Tensor* log_sum_exp) {
  const std::string what = shapes_of(q_in, k_in, v_in);
  const bool fits = q_in.defined() && k_in.defined() && v_in.defined() && q_in.dim() == 4 && k_in.dim() == 4 &&
                    v_in.dim() == 4 && q_in.dtype() == DType::Float32 && k_in.dtype() == DType::Float32 &&
                    v_in.dtype() == DType::Float32 && k_in.size(0) == q_in.size(0) &&
                    v_in.size(0) == q_in.size(0) && k_in.size(1) == q_in.size(1) && v_in.size(1) == q_in.size(1) &&
                    k_in.size(3) == q_in.size(3) && v_in.size(2) == k_in.size(2) && q_in.size(3) > 0;
  if (!fits) {
    throw Error("tiled_attention: " + what + " do not fit: need float32 q (B, H, Tq, D), k (B, H, Tk, D), "
                "v (B, H, Tk, Dv)");
  }
  if (q_in.device() != Device::cpu || k_in.device() != Device::cpu || v_in.device() != Device::cpu) {
    throw Error("tiled_attention: runs on the CPU only so far (" + what + " on " + to_string(q_in.device()) +
                "); on the device, use the reference attention (--attention reference)");
  }
  if (options.tiles.query_block < 1 || options.tiles.key_block < 1) {
    throw Error("tiled_attention: tile sizes must be positive, got " + std::to_string(options.tiles.query_block) +
                " x " + std::to_string(options.tiles.key_block));
  }
  if (!(options.dropout >= 0.0f && options.dropout <= 1.0f) || (options.dropout > 0.0f && !options.generator)) {
    throw Error("tiled_attention: dropout " + std::to_string(options.dropout) + " needs p in [0, 1] and a generator");
  }
  // The kernel reads rows in place when each row is contiguous.
  auto rows_contiguous = [](const Tensor& t) { return t.size(3) == 1 || t.strides()[3] == 1 ? t : t.contiguous(); };
  const Tensor q = rows_contiguous(q_in), k = rows_contiguous(k_in), v = rows_contiguous(v_in);

  kernels::AttentionSizes sizes;
  sizes.batch = q.size(0);
  sizes.heads = q.size(1);
  sizes.queries = q.size(2);
  sizes.keys = k.size(2);
  sizes.head_dim = q.size(3);
  sizes.value_dim = v.size(3);
  const Tensor flags = padding_flags(mask, sizes.batch, sizes.keys, what);
  kernels::AttentionMasking masking;
  masking.causal = mask.causal;
  masking.query_offset = mask.query_offset;
  masking.window = mask.window;
  if (flags.defined()) {
    masking.key_blocked = flags.data();
    masking.key_blocked_stride = flags.size(0) == 1 ? 0 : sizes.keys;  // one row shared by the batch
  }
  kernels::AttentionDropout dropout;
  if (options.dropout > 0.0f) {
    dropout.p = options.dropout;
    dropout.generator_state = options.generator->state();
    // Leave the generator where dropout() leaves it after one draw per weight.
    const uint64_t weights = static_cast<uint64_t>(sizes.batch * sizes.heads * sizes.queries * sizes.keys);
    options.generator->set_state(dropout.generator_state + weights * kernels::kSplitMix64Step);
  }

  Tensor out = empty({sizes.batch, sizes.heads, sizes.queries, sizes.value_dim});  // every row written
  Tensor lse = empty({sizes.batch, sizes.heads, sizes.queries});
  kernels::attention_forward_tiled(head_rows(q), head_rows(k), head_rows(v), out.data(), lse.data(), sizes, masking,
                                   dropout, options.tiles);
  if (log_sum_exp) *log_sum_exp = lse;

  // The backward recomputes every score tile from q, k and the saved
  // log-sum-exp (see the kernel): nothing of size Tq x Tk is kept.
  record_op("tiled_attention", out, {q_in, k_in, v_in},
            [q, k, v, o = out.detach(), lse, flags, sizes, masking, dropout, tiles = options.tiles](const Tensor& g) {
              const Tensor d_out = g.contiguous();
              Tensor dq = empty(q.shape()), dk = empty(k.shape()), dv = empty(v.shape());
              kernels::attention_backward_tiled(head_rows(q), head_rows(k), head_rows(v), o.data(), lse.data(),
                                                d_out.data(), dq.data(), dk.data(), dv.data(), sizes, masking,
                                                dropout, tiles);
              (void)flags;  // kept alive: masking.key_blocked points into it
              return std::vector<Tensor>{dq, dk, dv};
            });
  return out;
}

}  // namespace attend::nn

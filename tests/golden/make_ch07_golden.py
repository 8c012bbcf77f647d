#!/usr/bin/python3
# Writes tests/golden/ch07_transformer.safetensors: a tiny encoder-decoder
# Transformer built from torch.nn.Transformer with fixed weights, its inputs,
# logits, loss and every parameter gradient, for tests/ch07_pytorch_golden.cpp.
# Run once with Debian's PyTorch (apt-get install python3-torch): /usr/bin/python3 tests/golden/make_ch07_golden.py
# Chapter 7 (docs/07-transformer.md maps the parameter names used here).
import json
import math
import os
import struct

import numpy as np
import torch

torch.manual_seed(7)
D, HEADS, LAYERS, FF, SRC_V, TGT_V, PAD, MAX_LEN = 16, 2, 2, 32, 11, 13, 0, 32
SMOOTHING = 0.1

transformer = torch.nn.Transformer(d_model=D, nhead=HEADS, num_encoder_layers=LAYERS,
                                   num_decoder_layers=LAYERS, dim_feedforward=FF, dropout=0.0,
                                   batch_first=True, norm_first=True)
src_embed = torch.nn.Embedding(SRC_V, D, padding_idx=PAD)
tgt_embed = torch.nn.Embedding(TGT_V, D, padding_idx=PAD)
output_proj = torch.nn.Linear(D, TGT_V)
# Give the layer norms non-trivial weights so that they are tested too.
with torch.no_grad():
    for name, p in transformer.named_parameters():
        if "norm" in name:
            p.add_(0.1 * torch.randn_like(p))
    for emb in (src_embed, tgt_embed):
        emb.weight.normal_(0.0, 1.0 / math.sqrt(D))
        emb.weight[PAD].zero_()

# The positional encoding exactly as src/nn/transformer.cpp computes it.
pe = torch.zeros(MAX_LEN, D, dtype=torch.float64)
for pos in range(MAX_LEN):
    for i in range(0, D, 2):
        angle = pos / (10000.0 ** (i / D))
        pe[pos, i] = math.sin(angle)
        pe[pos, i + 1] = math.cos(angle)
pe = pe.float()

src = torch.tensor([[3, 5, 7, 2, 0], [4, 4, 9, 10, 2]])                # (B, S), padded with 0
tgt_in = torch.tensor([[1, 6, 8, 11, 0, 0], [1, 12, 3, 5, 7, 9]])      # (B, T)
tgt_out = torch.tensor([[6, 8, 11, 2, 0, 0], [12, 3, 5, 7, 9, 2]])     # (B, T), 0 ignored

def embed(table, ids):
    return table(ids) * math.sqrt(D) + pe[: ids.shape[1]]

causal = torch.triu(torch.ones(tgt_in.shape[1], tgt_in.shape[1], dtype=torch.bool), diagonal=1)
hidden = transformer(embed(src_embed, src), embed(tgt_embed, tgt_in), tgt_mask=causal,
                     src_key_padding_mask=src == PAD, tgt_key_padding_mask=tgt_in == PAD,
                     memory_key_padding_mask=src == PAD)
logits = output_proj(hidden)
loss = torch.nn.functional.cross_entropy(logits.reshape(-1, TGT_V), tgt_out.reshape(-1),
                                         ignore_index=PAD, label_smoothing=SMOOTHING)
loss.backward()

# Attend's parameter names -> (tensor, gradient), splitting PyTorch's packed q/k/v.
entries = {}
def put(name, p):
    entries[name] = (p.detach(), p.grad)
def put_attention(prefix, attn):
    w, b = attn.in_proj_weight, attn.in_proj_bias
    for k, proj in enumerate(["q_proj", "k_proj", "v_proj"]):
        entries[f"{prefix}.{proj}.weight"] = (w.detach()[k * D:(k + 1) * D], w.grad[k * D:(k + 1) * D])
        entries[f"{prefix}.{proj}.bias"] = (b.detach()[k * D:(k + 1) * D], b.grad[k * D:(k + 1) * D])
    put(f"{prefix}.out_proj.weight", attn.out_proj.weight)
    put(f"{prefix}.out_proj.bias", attn.out_proj.bias)
def put_layer(prefix, layer, attentions):
    for ours, theirs in attentions:
        put_attention(f"{prefix}.{ours}", getattr(layer, theirs))
    for lin in ("linear1", "linear2"):
        put(f"{prefix}.feed_forward.{lin}.weight", getattr(layer, lin).weight)
        put(f"{prefix}.feed_forward.{lin}.bias", getattr(layer, lin).bias)
    for norm in ("norm1", "norm2", "norm3"):
        if hasattr(layer, norm):
            put(f"{prefix}.{norm}.weight", getattr(layer, norm).weight)
            put(f"{prefix}.{norm}.bias", getattr(layer, norm).bias)

put("src_embed.weight", src_embed.weight)
put("tgt_embed.weight", tgt_embed.weight)
for i, layer in enumerate(transformer.encoder.layers):
    put_layer(f"encoder.layers.{i}", layer, [("self_attn", "self_attn")])
put("encoder.norm.weight", transformer.encoder.norm.weight)
put("encoder.norm.bias", transformer.encoder.norm.bias)
for i, layer in enumerate(transformer.decoder.layers):
    put_layer(f"decoder.layers.{i}", layer, [("self_attn", "self_attn"), ("multihead_attn", "multihead_attn")])
put("decoder.norm.weight", transformer.decoder.norm.weight)
put("decoder.norm.bias", transformer.decoder.norm.bias)
put("output_proj.weight", output_proj.weight)
put("output_proj.bias", output_proj.bias)

tensors = {"input.src": src, "input.tgt_in": tgt_in, "input.tgt_out": tgt_out,
           "output.logits": logits.detach(), "output.loss": loss.detach()}
for name, (value, grad) in entries.items():
    tensors["param." + name] = value
    tensors["grad." + name] = grad

# A safetensors file written by hand: 8-byte header length, JSON, raw data.
header, blobs, offset = {}, [], 0
for name, t in tensors.items():
    array = t.contiguous().numpy()
    dtype = {np.dtype("float32"): "F32", np.dtype("int64"): "I64"}[array.dtype]
    data = array.astype(array.dtype.newbyteorder("<")).tobytes()
    header[name] = {"dtype": dtype, "shape": list(array.shape), "data_offsets": [offset, offset + len(data)]}
    blobs.append(data)
    offset += len(data)
header["__metadata__"] = {
    "config": f"d_model={D} heads={HEADS} layers={LAYERS} d_ff={FF} src_vocab={SRC_V} tgt_vocab={TGT_V} "
              f"pad={PAD} max_len={MAX_LEN} label_smoothing={SMOOTHING} pre_norm=1",
    "made_by": f"tests/golden/make_ch07_golden.py with torch {torch.__version__}"}
text = json.dumps(header, separators=(",", ":")).encode()
text += b" " * (-(len(text) + 8) % 8)
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ch07_transformer.safetensors")
with open(out, "wb") as f:
    f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))
print(f"wrote {out}: {len(tensors)} tensors, loss {loss.item():.6f}")

// Tutorial 06: nn::MultiHeadAttention taken apart. The projections, how
// nn::split_heads turns (B, T, C) into (B, H, T, D) without copying, each head's
// attention weights as a picture, self- vs cross-attention shapes, and the
// parameters. Chapter 6 (docs/06-multihead-attention.md).
// Build and run:  make tutorials && build/tutorials/06-multihead
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "attend/attend.hpp"

using attend::Tensor;
using attend::to_string;

namespace {

// Counts a failed check; the program exits 1 if any failed.
int failures = 0;
void check(bool ok, const char* what) {
  std::printf("check: %-62s %s\n", what, ok ? "ok" : "FAILED");
  if (!ok) ++failures;
}

// "shape (2, 4, 5, 4), strides (80, 4, 16, 1), contiguous: no"
std::string layout(const Tensor& t) {
  return "shape " + to_string(t.shape()) + ", strides " + to_string(t.strides()) +
         ", contiguous: " + (t.is_contiguous() ? "yes" : "no");
}

}  // namespace

int main() {
  const int64_t C = 16, H = 4;  // d_model and heads: each head works in D = C / H = 4 channels
  attend::Generator gen(6);
  attend::nn::MultiHeadAttention mha(C, H, /*dropout=*/0.0f, gen);
  mha.eval();

  std::cout << "== 1. Parameters\n\n";
  for (const auto& [name, p] : mha.named_parameters()) {
    std::printf("  %-16s %-10s %5lld\n", name.c_str(), to_string(p.shape()).c_str(),
                static_cast<long long>(p.numel()));
  }
  std::printf("  total %lld = 4 (C^2 + C) = 4 (%lld + %lld)\n", static_cast<long long>(mha.parameter_count()),
              static_cast<long long>(C * C), static_cast<long long>(C));
  check(mha.parameter_count() == 4 * (C * C + C), "parameter_count() == 4 (C^2 + C)");
  // The number of heads does not appear in the formula: heads split C, they do not add to it.
  std::cout << "  with 1, 2, 4, 8, 16 heads:";
  for (int64_t heads : {1, 2, 4, 8, 16}) {
    attend::nn::MultiHeadAttention other(C, heads, 0.0f, gen);
    std::cout << " " << other.parameter_count();
  }
  std::cout << "\n\n";

  std::cout << "== 2. Self-attention, one step at a time\n\n";
  // A sentence of words with random vectors. Nothing tells the model where a
  // word is (chapter 7 adds positions), so the two "the" are indistinguishable.
  const std::vector<std::string> words = {"the", "cat", "sat", "on", "the", "mat"};
  const Tensor ids = attend::from_indices({0, 1, 2, 3, 0, 4,   // the cat sat on the mat
                                           4, 2, 3, 0, 1, 0},  // second sentence, for the batch
                                          {2, 6});
  attend::nn::Embedding table(5, C, gen, /*padding_idx=*/-1, /*std=*/2.0f);
  const Tensor x = table.forward(ids);  // (B, T, C) = (2, 6, 16)
  std::cout << "x:                     " << layout(x) << "   (B, T, C)\n";

  const Tensor q = mha.q_proj->forward(x);  // (B, T, C): Linear on the last dim
  const Tensor k = mha.k_proj->forward(x);
  const Tensor v = mha.v_proj->forward(x);
  std::cout << "q = q_proj(x):         " << layout(q) << "\n";
  const Tensor qh = attend::nn::split_heads(q, H);  // (B, H, T, D)
  const Tensor kh = attend::nn::split_heads(k, H);
  const Tensor vh = attend::nn::split_heads(v, H);
  std::cout << "  reshape to (B,T,H,D): " << layout(q.reshape({2, 6, H, C / H})) << "\n";
  std::cout << "  transpose(1, 2):      " << layout(qh) << "   (B, H, T, D)\n";
  check(qh.shares_storage_with(q), "nn::split_heads is a view: no copy");
  // Head h, position t holds channels [h*D, (h+1)*D) of q at position t.
  check(attend::allclose(qh.select(1, 2).select(1, 3), q.select(1, 3).narrow(-1, 2 * (C / H), C / H)),
        "head 2 at position 3 = q[:, 3, 8:12]");

  const Tensor w = attend::nn::attention_weights(qh, kh);  // (B, H, T, T)
  std::cout << "w = softmax(q k^T/2):  " << layout(w) << "   (B, H, Tq, Tk), one T x T map per head\n";
  const Tensor heads_out = attend::matmul(w, vh);  // (B, H, T, D)
  std::cout << "w v:                   " << layout(heads_out) << "\n";
  const Tensor merged = attend::nn::merge_heads(heads_out);  // (B, T, C)
  std::cout << "merge_heads:           " << layout(merged) << "   (B, T, H*D)\n";
  const Tensor y = mha.out_proj->forward(merged);  // (B, T, C)
  std::cout << "out_proj:              " << layout(y) << "\n";

  Tensor mha_weights;
  const Tensor y_module = mha.forward(x, x, x, Tensor(), &mha_weights);
  check(attend::allclose(y, y_module, 1e-5f, 1e-6f) && attend::allclose(w, mha_weights),
        "the steps give what mha.forward(x, x, x) gives");
  check(attend::allclose(attend::nn::merge_heads(qh), q), "nn::merge_heads(nn::split_heads(q)) == q");
  std::cout << "\n";

  std::cout << "== 3. Each head's weights for \"the cat sat on the mat\"\n\n";
  for (int64_t h = 0; h < H; ++h) {
    const Tensor wh = mha_weights.select(0, 0).select(0, h);  // (T, T)
    const std::vector<float> row = wh.select(0, 2).to_vector();  // the query "sat"
    std::printf("head %lld (\"sat\" looks at: the %.2f, cat %.2f, sat %.2f, on %.2f, the %.2f, mat %.2f)\n",
                static_cast<long long>(h), row[0], row[1], row[2], row[3], row[4], row[5]);
    std::cout << attend::io::ascii_heatmap(wh, words, words) << "\n";
  }
  std::cout << "Each head has its own q/k channels, so each draws a different map. Columns 0 and 4\n"
               "(the two \"the\") are always equal, and so are rows 0 and 4: without positions,\n"
               "attention cannot tell the two apart. Nothing is trained yet, so the maps mean\n"
               "nothing (the word vectors have std 2 so that the maps show some contrast).\n\n";
  const Tensor first = mha_weights.select(0, 0);  // (H, T, T), "the cat sat on the mat"
  check(attend::allclose(first.select(2, 0), first.select(2, 4)),
        "both \"the\" keys get the same weight from every query");
  std::cout << "\n";

  std::cout << "== 4. Cross-attention: queries from one sequence, keys and values from another\n\n";
  // A decoder with 3 target positions reads an encoder output ("memory") of 6.
  const Tensor target = attend::randn({2, 3, C}, gen);  // (B, Tq, C)
  const Tensor memory = x;                              // (B, Tk, C)
  // Pretend the second source sentence ends in two padding tokens.
  const Tensor src_ids = attend::from_indices({1, 1, 1, 1, 1, 1,  1, 1, 1, 1, 0, 0}, {2, 6});
  const Tensor pad = attend::nn::padding_mask(src_ids, 0);  // (B, 1, 1, Tk): one mask for every head and query
  Tensor cross_weights;
  const Tensor cross = mha.forward(target, memory, memory, pad, &cross_weights);
  std::cout << "query " << to_string(target.shape()) << ", key/value " << to_string(memory.shape())
            << ", mask " << to_string(pad.shape()) << "\n"
            << "  -> weights " << to_string(cross_weights.shape()) << " (B, H, Tq, Tk): Tq rows, Tk columns\n"
            << "  -> output  " << to_string(cross.shape()) << " (B, Tq, C): one vector per query\n";
  std::cout << "sentence 2, head 0 (the last two source positions are padding):\n"
            << attend::io::ascii_heatmap(cross_weights.select(0, 1).select(0, 0), {"y0", "y1", "y2"},
                                     {"m0", "m1", "m2", "m3", "m4", "m5"});
  check(attend::sum(cross_weights.select(0, 1).narrow(-1, 4, 2)).item() == 0.0f,
        "padded memory positions get zero weight in every head");
  Tensor self_weights;
  mha.forward(target, target, target, Tensor(), &self_weights);
  std::cout << "self-attention of the same query sequence: weights " << to_string(self_weights.shape())
            << " (B, H, Tq, Tq)\n\n";

  std::cout << "== 5. What goes wrong\n\n";
  try {
    attend::nn::MultiHeadAttention bad(10, 4, 0.0f, gen);
  } catch (const attend::Error& e) {
    std::cout << "MultiHeadAttention(10, 4): " << e.what() << "\n";
  }
  try {
    mha.forward(target, attend::randn({2, 6, 8}, gen), memory);
  } catch (const attend::Error& e) {
    std::cout << "key of the wrong width: " << e.what() << "\n";
  }
  std::cout << "\n";

  if (failures) {
    std::printf("%d check(s) FAILED\n", failures);
    return 1;
  }
  std::cout << "all checks passed\n";
  return 0;
}

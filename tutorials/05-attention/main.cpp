// Tutorial 05: scaled dot-product attention by hand, on word vectors chosen
// by hand, so that "bank" in "the bank by the river" visibly looks at
// "river"; then padding and causal masks, a fully masked row, and why the
// scores are divided by sqrt(D). Chapter 5 (docs/05-attention.md).
// Build and run:  make tutorials && build/tutorials/05-attention
#include <cmath>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "attend/attend.hpp"

using attend::Tensor;

namespace {

// The vocabulary: token id -> word. Id 0 is padding.
const std::vector<std::string> kWords = {"<pad>", "the", "bank", "by", "river", "money", "in"};
constexpr int64_t kPad = 0;

// Each word as 4 numbers, one per "feature" (chosen by hand; a trained model
// learns its own, which nobody can name):
//                 nature  money  function-word  noun
const std::vector<float> kEmbeddings = {
    0.0f, 0.0f, 0.0f, 0.0f,  // <pad>: nothing at all
    0.0f, 0.0f, 1.0f, 0.0f,  // the
    0.2f, 0.2f, 0.0f, 1.0f,  // bank: a noun, a little of both senses (ambiguous)
    0.0f, 0.0f, 1.0f, 0.0f,  // by
    1.0f, 0.0f, 0.0f, 1.0f,  // river: a noun about nature
    0.0f, 1.0f, 0.0f, 1.0f,  // money: a noun about money
    0.0f, 0.0f, 1.0f, 0.0f,  // in
};

// Words of a row of ids, for labels. ids: (T) Int64
std::vector<std::string> words_of(const Tensor& ids) {
  std::vector<std::string> out;
  for (int64_t id : ids.to_index_vector()) out.push_back(kWords[static_cast<size_t>(id)]);
  return out;
}

// Prints a (rows, cols) matrix with a word on each row and above each column.
void print_table(const Tensor& m, const std::vector<std::string>& rows, const std::vector<std::string>& cols) {
  std::printf("%8s", "");
  for (const std::string& c : cols) std::printf("%8s", c.c_str());
  std::printf("\n");
  for (int64_t r = 0; r < m.size(0); ++r) {
    std::printf("%8s", rows[static_cast<size_t>(r)].c_str());
    for (int64_t c = 0; c < m.size(1); ++c) std::printf("%8.3f", m.at({r, c}));
    std::printf("\n");
  }
}

// The mean of |t| over all elements.
float mean_abs(const Tensor& t) {
  double total = 0.0;
  for (float v : t.to_vector()) total += std::fabs(v);
  return static_cast<float>(total / static_cast<double>(t.numel()));
}

// Counts a failed check; the program exits 1 if any failed.
int failures = 0;
void check(bool ok, const char* what) {
  std::printf("check: %-58s %s\n", what, ok ? "ok" : "FAILED");
  if (!ok) ++failures;
}

}  // namespace

int main() {
  std::cout << "== 1. Words as vectors\n\n";
  const Tensor table = attend::from_vector(kEmbeddings, {7, 4});  // (V, 4)
  // Two sentences of 5 tokens; the second is one word shorter, so it is padded.
  const Tensor ids = attend::from_indices({1, 2, 3, 1, 4,    // the bank by the river
                                           5, 6, 1, 2, kPad},  // money in the bank <pad>
                                          {2, 5});
  const Tensor x = attend::embedding(table, ids);  // (B, T, 4) = (2, 5, 4)
  const std::vector<std::string> s1 = words_of(ids.select(0, 0)), s2 = words_of(ids.select(0, 1));
  std::cout << "features: nature, money, function-word, noun\n";
  print_table(x.select(0, 0), s1, {"nature", "money", "funct", "noun"});
  std::cout << "x = embedding(table, ids): " << attend::to_string(x.shape()) << "  (B, T, D)\n\n";

  std::cout << "== 2. Queries, keys and values\n\n";
  // Three hand-made projections (chapter 6 learns them). A query says what a
  // word is looking for, a key what it offers, a value what it passes on.
  //   key   = the word's own features (Wk is the identity)
  //   query = a noun asks "which topic are we in?": 6 on nature and on money
  //   value = the word's topic: (nature, money)
  const Tensor Wq = attend::from_vector({0, 0, 0, 0,  0, 0, 0, 0,  0, 0, 0, 0,  6, 6, 0, 0}, {4, 4});
  const Tensor Wk = attend::from_vector({1, 0, 0, 0,  0, 1, 0, 0,  0, 0, 1, 0,  0, 0, 0, 1}, {4, 4});
  const Tensor Wv = attend::from_vector({1, 0,  0, 1,  0, 0,  0, 0}, {4, 2});
  const Tensor q = attend::matmul(x, Wq);  // (B, T, D) = (2, 5, 4)
  const Tensor k = attend::matmul(x, Wk);  // (B, T, D) = (2, 5, 4)
  const Tensor v = attend::matmul(x, Wv);  // (B, T, Dv) = (2, 5, 2)
  std::cout << "queries (sentence 1):\n";
  print_table(q.select(0, 0), s1, {"q0", "q1", "q2", "q3"});
  std::cout << "keys (sentence 1):\n";
  print_table(k.select(0, 0), s1, {"k0", "k1", "k2", "k3"});
  std::cout << "values (sentence 1):\n";
  print_table(v.select(0, 0), s1, {"nature", "money"});
  std::cout << "\n";

  std::cout << "== 3. Scores, scaling, softmax, output: \"the bank by the river\"\n\n";
  const Tensor q1 = q.select(0, 0), k1 = k.select(0, 0), v1 = v.select(0, 0);  // (T, D)
  const Tensor scores = attend::matmul(q1, k1.t());  // (T, T): scores[i][j] = q_i . k_j
  std::cout << "scores = q k^T  (row: the query's word, column: the key's word)\n";
  print_table(scores, s1, s1);
  const float scale = 1.0f / std::sqrt(4.0f);  // D = 4
  const Tensor scaled = scores * scale;
  std::printf("scaled = scores / sqrt(D) = scores * %.3f\n", scale);
  print_table(scaled, s1, s1);
  const Tensor weights = attend::softmax(scaled, -1);  // (T, T), each row sums to 1
  std::cout << "weights = softmax(scaled) along each row\n";
  print_table(weights, s1, s1);
  std::cout << "\n" << attend::io::ascii_heatmap(weights, s1, s1) << "\n";
  std::cout << "\"bank\" looks mostly at \"river\"; \"river\" looks mostly at itself;\n"
               "the function words ask for nothing (query 0), so they average every word.\n\n";
  const Tensor out = attend::matmul(weights, v1);  // (T, Dv): weighted averages of the values
  std::cout << "output = weights v: each row is a weighted average of the value rows\n";
  print_table(out, s1, {"nature", "money"});
  std::printf("\"bank\" went in as topic (%.2f, %.2f) and comes out as (%.3f, %.3f): the river bank.\n\n",
              v1.at({1, 0}), v1.at({1, 1}), out.at({1, 0}), out.at({1, 1}));

  Tensor library_weights;
  const Tensor library = attend::nn::scaled_dot_product_attention(q1, k1, v1, Tensor(), &library_weights);
  check(attend::allclose(library, out) && attend::allclose(library_weights, weights),
        "nn::scaled_dot_product_attention gives the same weights and output");
  std::cout << "\n";

  std::cout << "== 4. Same word, other sentence: \"money in the bank <pad>\"\n\n";
  // Both sentences at once: (B, T, D) -> (B, T, T) scores, batched.
  Tensor w_nomask;
  const Tensor out_nomask = attend::nn::scaled_dot_product_attention(q, k, v, Tensor(), &w_nomask);
  std::cout << "without a mask, sentence 2:\n";
  print_table(w_nomask.select(0, 1), s2, s2);
  std::printf("\"bank\" gives weight %.3f to <pad>, a token that is not there; its output (%.3f, %.3f).\n\n",
              w_nomask.at({1, 3, 4}), out_nomask.at({1, 3, 0}), out_nomask.at({1, 3, 1}));

  // nn::padding_mask is shaped for multi-head scores (B, H, Tq, Tk): (B, 1, 1, Tk).
  // Our scores have no head dim, (B, Tq, Tk), so drop it: (B, 1, Tk).
  const Tensor pad4 = attend::nn::padding_mask(ids, kPad);  // (B, 1, 1, T)
  const Tensor pad = pad4.squeeze(1);                   // (B, 1, T): broadcasts over the queries
  std::cout << "nn::padding_mask(ids, <pad>) " << attend::to_string(pad4.shape()) << ", squeeze(1) -> "
            << attend::to_string(pad.shape()) << ":\n" << pad << "\n";
  Tensor w_pad;
  const Tensor out_pad = attend::nn::scaled_dot_product_attention(q, k, v, pad, &w_pad);
  std::cout << "with the padding mask, sentence 2:\n";
  print_table(w_pad.select(0, 1), s2, s2);
  std::cout << "\n" << attend::io::ascii_heatmap(w_pad.select(0, 1), s2, s2) << "\n";
  std::printf("\"bank\" now comes out as (%.3f, %.3f): the money bank. Same query, other keys.\n",
              out_pad.at({1, 3, 0}), out_pad.at({1, 3, 1}));
  check(w_pad.select(0, 1).select(1, 4).to_vector() == std::vector<float>(5, 0.0f),
        "no query gives any weight to <pad>");
  check(attend::allclose(out_pad.select(0, 0), out), "sentence 1 has no padding: unchanged");
  std::cout << "\n";

  std::cout << "== 5. The causal mask: no looking ahead\n\n";
  const Tensor causal = attend::nn::causal_mask(5);  // (T, T), 1 above the diagonal
  std::cout << "nn::causal_mask(5) =\n" << causal << "\n";
  Tensor w_causal;
  const Tensor out_causal = attend::nn::scaled_dot_product_attention(q1, k1, v1, causal, &w_causal);
  std::cout << "sentence 1 with the causal mask:\n";
  print_table(w_causal, s1, s1);
  std::cout << "\n" << attend::io::ascii_heatmap(w_causal, s1, s1) << "\n";
  std::printf("\"bank\" cannot see \"river\" (it comes later): its output (%.3f, %.3f) stays ambiguous.\n"
              "\"the\" (first) sees only itself: its weights are [1, 0, 0, 0, 0].\n\n",
              out_causal.at({1, 0}), out_causal.at({1, 1}));

  // A decoder needs both: no future and no padding. The union broadcasts
  // (T, T) with (B, 1, T) to (B, T, T).
  const Tensor both = attend::nn::combine_masks(causal, pad);
  Tensor w_both;
  attend::nn::scaled_dot_product_attention(q, k, v, both, &w_both);
  std::cout << "nn::combine_masks(causal (5, 5), padding (2, 1, 5)) -> " << attend::to_string(both.shape())
            << "; sentence 2:\n";
  print_table(w_both.select(0, 1), s2, s2);
  std::cout << "(the <pad> row still looks at real words: its output is thrown away later, by the loss)\n\n";

  std::cout << "== 6. A fully masked row gives zeros, not NaN\n\n";
  // A sequence of nothing but padding: every key of every query is blocked.
  const Tensor empty_ids = attend::from_indices({kPad, kPad, kPad}, {1, 3});
  const Tensor xe = attend::embedding(table, empty_ids);  // (1, 3, 4)
  Tensor w_empty;
  const Tensor out_empty = attend::nn::scaled_dot_product_attention(
      attend::matmul(xe, Wq), attend::matmul(xe, Wk), attend::matmul(xe, Wv),
      attend::nn::padding_mask(empty_ids, kPad).squeeze(1), &w_empty);
  std::cout << "every score is -inf; softmax would be 0/0. Attend returns zero weights:\n"
            << w_empty << "\nand a zero output:\n" << out_empty << "\n";
  check(attend::sum(attend::pow(w_empty, 2.0f)).item() == 0.0f && attend::sum(attend::pow(out_empty, 2.0f)).item() == 0.0f,
        "fully masked rows: weights 0 and output 0");
  std::cout << "\n";

  std::cout << "== 7. Why divide by sqrt(D)\n\n";
  const Tensor small = attend::from_vector({1, 2, 3}, {3});
  std::cout << "softmax([1, 2, 3])    = " << attend::softmax(small, -1) << "\n"
            << "softmax([8, 16, 24])  = " << attend::softmax(small * 8.0f, -1)
            << "   (the same order, 8x larger: one winner takes all)\n\n";
  // Random unit-variance queries and keys: a dot product of D such terms has
  // variance D. Without scaling, the softmax saturates as D grows: one key
  // takes all the weight and the gradient through the softmax vanishes.
  attend::Generator gen(5);
  const int64_t queries = 256, keys = 16;
  std::printf("%6s %14s | %16s %14s | %16s %14s\n", "D", "std(q.k)", "top weight", "mean |grad|",
              "top weight", "mean |grad|");
  std::printf("%6s %14s | %31s | %31s\n", "", "", "unscaled: softmax(q.k)", "scaled: softmax(q.k / sqrt D)");
  for (int64_t D : {4, 64, 512}) {
    const Tensor qr = attend::randn({queries, D}, gen), kr = attend::randn({keys, D}, gen);
    const Tensor dots = attend::matmul(qr, kr.t());  // (256, 16)
    const float std_dots = std::sqrt(attend::mean(attend::pow(dots, 2.0f)).item());
    const Tensor upstream = attend::randn({queries, keys}, gen);  // some gradient from above
    float top[2], grad[2];
    for (int scaled_run = 0; scaled_run < 2; ++scaled_run) {
      Tensor s = (scaled_run ? dots / std::sqrt(static_cast<float>(D)) : dots).detach();
      s.set_requires_grad();
      const Tensor w = attend::softmax(s, -1);
      attend::sum(w * upstream).backward();
      top[scaled_run] = attend::mean(attend::max(w, {-1})).item();
      // d(softmax)/d(scores): how much a nudge to a score still moves the weights.
      grad[scaled_run] = mean_abs(s.grad());
    }
    std::printf("%6lld %14.2f | %16.3f %14.2e | %16.3f %14.2e\n", static_cast<long long>(D), std_dots,
                top[0], grad[0], top[1], grad[1]);
  }
  std::cout << "\nstd(q.k) grows like sqrt(D) (2, 8, 22.6). Unscaled, the top weight tends to 1 and the\n"
               "gradient to 0; scaled, both stay the same for every D.\n\n";

  if (failures) {
    std::printf("%d check(s) FAILED\n", failures);
    return 1;
  }
  std::cout << "all checks passed\n";
  return 0;
}

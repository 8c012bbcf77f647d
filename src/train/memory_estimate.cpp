// How much memory a training run needs, estimated from its options before
// anything is allocated, so that `--d-model 1048576` is refused at once with
// the estimate and the flag to blame instead of ending in std::bad_alloc.
// Chapter 8 (docs/08-translation.md, Appendix A, "Sizes that cannot fit").
#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include "attend/train.hpp"

namespace attend::train {

namespace {

constexpr double kFloat = 4.0;  // bytes

// "1.5 GB": decimal units, as disks and `free -h --si` count.
std::string bytes_text(double bytes) {
  const char* units[] = {"bytes", "kB", "MB", "GB", "TB", "PB", "EB"};
  int unit = 0;
  while (bytes >= 1000.0 && unit < 6) {
    bytes /= 1000.0;
    ++unit;
  }
  char text[64];
  std::snprintf(text, sizeof text, unit == 0 ? "%.0f %s" : "%.1f %s", bytes, units[unit]);
  return text;
}

}  // namespace

MemoryEstimate estimate_training_memory(const TrainOptions& o, const DataShape& shape) {
  // Everything in double: the flags may be large enough to overflow int64 products.
  const double d = static_cast<double>(o.model.d_model), f = static_cast<double>(o.model.d_ff);
  const double heads = static_cast<double>(o.model.heads);
  const double encoder_layers = static_cast<double>(o.model.encoder_layers);
  const double decoder_layers = static_cast<double>(o.model.decoder_layers);
  const double vs = static_cast<double>(shape.source_vocab), vt = static_cast<double>(shape.target_vocab);
  MemoryEstimate e;

  // Parameters, as the modules of chapters 4-7 hold them.
  const double attention = 4.0 * (d * d + d);   // q, k, v and out projections with biases
  const double feed_forward = 2.0 * d * f + f + d;  // linear1 and linear2 with biases
  const double layer_norm = 2.0 * d;                // gain and bias
  const double final_norm = o.model.pre_norm ? layer_norm : 0.0;
  e.parameters = encoder_layers * (attention + feed_forward + 2.0 * layer_norm) + final_norm +
                 decoder_layers * (2.0 * attention + feed_forward + 3.0 * layer_norm) + final_norm +
                 (vs + vt) * d + (o.model.learned_positions ? 2.0 * static_cast<double>(o.model.max_len) * d : 0.0) +
                 (o.model.tie_output ? 0.0 : d * vt + vt);
  // The weight, its gradient and Adam's first and second moments.
  e.model_bytes = 4.0 * kFloat * e.parameters;

  // Activations: the floats one token's forward keeps for backward, counted
  // op by op (each projection, norm, dropout and residual output is a tensor
  // of d; linear1, the activation and its dropout three of f; scores,
  // softmax and its dropout three of H * T per reference attention), plus the logits
  // and their log-softmax over the target vocabulary. Backward makes
  // gradients of the same size again.
  const double t = static_cast<double>(std::max<int64_t>(shape.longest_sentence, 1));
  const bool generated = o.train_path.empty();
  const double train_examples = generated ? static_cast<double>(o.train_size) : static_cast<double>(shape.examples);
  const double batch = std::max(1.0, std::min(static_cast<double>(o.batch_size), train_examples));
  // Chapter 12: tiled and windowed attention keep no (T, T) matrix, only one
  // log-sum-exp per query and head.
  const bool tiled = o.model.attention.type != nn::AttentionKind::Reference;
  const double per_attention = tiled ? heads : 3.0 * heads * t;
  const double per_token = 8.0 * d + encoder_layers * (17.0 * d + 3.0 * f + per_attention) +
                           decoder_layers * (27.0 * d + 3.0 * f + 2.0 * per_attention) + 2.0 * d + 2.0 * vt;
  e.activation_bytes = 2.0 * kFloat * batch * t * per_token;

  // Each pair: two strings (32 bytes and their text), two vectors of token
  // ids (24 bytes and 8 per id), and for a generated task an entry in the set
  // that keeps the examples distinct: about 256 + 32 * T bytes.
  const double examples =
      generated ? static_cast<double>(o.train_size) + static_cast<double>(o.valid_size) : static_cast<double>(shape.examples);
  e.data_bytes = examples * (256.0 + 32.0 * t);
  return e;
}

double physical_memory_bytes() {
  const long pages = sysconf(_SC_PHYS_PAGES), page_size = sysconf(_SC_PAGE_SIZE);
  return pages > 0 && page_size > 0 ? static_cast<double>(pages) * static_cast<double>(page_size) : 0.0;
}

void check_training_memory(const TrainOptions& o, const DataShape& shape, double available_bytes) {
  const MemoryEstimate e = estimate_training_memory(o, shape);
  if (available_bytes <= 0.0 || e.total() <= available_bytes) return;
  // The flag to blame: the one whose default value shrinks the estimate most.
  const TrainOptions defaults;
  std::string blamed;
  double smallest = e.total();
  for (const char* flag : {"--d-model", "--ff", "--layers", "--decoder-layers", "--heads", "--batch", "--train-size",
                           "--valid-size"}) {
    const TrainOption* option = find_train_option(flag);
    if (option == nullptr || option->get(o) == option->get(defaults)) continue;
    // --layers sets the decoder's layers too; --decoder-layers is to blame only where it differs.
    const bool same_layers = o.model.decoder_layers == o.model.encoder_layers;
    if (std::string(flag) == "--decoder-layers" && same_layers) continue;
    TrainOptions changed = o;
    option->set(changed, option->get(defaults));
    if (std::string(flag) == "--layers" && !same_layers) changed.model.decoder_layers = o.model.decoder_layers;
    const double total = estimate_training_memory(changed, shape).total();
    if (total < smallest) {
      smallest = total;
      blamed = std::string(flag) + " " + option->get(o) + " is the cause (with its default " +
               option->get(defaults) + " the estimate is " + bytes_text(total) + ")";
    }
  }
  char parameters[32];
  std::snprintf(parameters, sizeof parameters, "%.3g", e.parameters);
  throw Error("train: this run needs about " + bytes_text(e.total()) + " of memory (" + parameters +
              " parameters with their gradients and Adam's moments " + bytes_text(e.model_bytes) +
              ", activations of a batch " + bytes_text(e.activation_bytes) + ", sentence pairs " +
              bytes_text(e.data_bytes) + "), more than this machine's " + bytes_text(available_bytes) + "; " +
              (blamed.empty() ? std::string("make the model or the batch smaller") : blamed));
}

}  // namespace attend::train

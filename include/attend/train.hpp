// Training and evaluating a translation model: the training loop with its
// schedule, clipping, validation, progress display, checkpoints and exact
// resume; loading a trained model to translate and score.
// Chapter 8 (docs/08-translation.md).
#pragma once

#include <functional>
#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

#include "attend/data.hpp"
#include "attend/decode.hpp"
#include "attend/optim.hpp"
#include "attend/transformer.hpp"

namespace attend::train {

// A trained model with what it needs to translate text: its config and the
// vocabularies of both sides (all stored in the checkpoint's metadata).
struct TranslationModel {
  nn::TransformerConfig config;
  data::Vocabulary source_vocab, target_vocab;
  bool lowercase = false;  // fold the input's case as the training data was folded
  std::unique_ptr<nn::Seq2SeqTransformer> model;

  // How translate() decodes (chapter 9, docs/09-decoding.md).
  int64_t beam_size = 1;      // 1: greedy decoding; K > 1: beam search of width K
  double length_alpha = 0.6;  // beam search's length-penalty exponent
  bool use_cache = true;      // false: recompute every prefix (to compare with the KV cache)

  // Translates sentences (raw text: tokenized here; unknown words become
  // <unk>), `batch_size` at a time, decoding as the fields above say (greedy
  // by default). One output per input.
  std::vector<std::string> translate(const std::vector<std::string>& sentences, int64_t batch_size = 64);

  // Why translate() would refuse `sentence`, or "" if it would not: more
  // tokens than the model's positions hold. (`attend translate` checks each
  // line with it, so that one bad line does not stop the others.)
  std::string sentence_problem(const std::string& sentence) const;
};

// How much of some input text a model's source vocabulary knows: a model
// that knows none of it (a copy-task model given English) translates
// nothing but <unk>, and says so only through this warning.
struct VocabularyCoverage {
  int64_t tokens = 0;   // tokens seen, as translate() tokenizes them
  int64_t unknown = 0;  // those the source vocabulary lacks (read as <unk>)
  void add(const TranslationModel& model, const std::string& sentence);
  // "warning: 9 of the 10 input tokens (90%) are unknown ..." when more than
  // half the tokens are unknown; "" otherwise.
  std::string warning() const;
};

// One sentence translated, with the attention weights of every layer and head
// for the pair and the tokens that label their axes (chapter 9).
struct AttentionReport {
  std::string translation;
  std::vector<std::string> source;          // the tokens the encoder read, then <eos>
  std::vector<std::string> decoder_inputs;  // <bos>, then the translation's tokens
  std::vector<std::string> outputs;         // the translation's tokens, then <eos>: what each step wrote
  decode::AttentionMaps maps;                       // for a batch of one sentence
};
AttentionReport attention_report(TranslationModel& model, const std::string& sentence);

// Reads a checkpoint written by train(): config, vocabularies and weights.
// A damaged or foreign file is an Error naming the file and the problem.
TranslationModel load_translation_model(const std::string& path);

struct EvalResult {
  double loss = 0.0;            // mean cross-entropy per target token (no smoothing)
  double perplexity = 0.0;      // exp(loss)
  double token_accuracy = 0.0;  // teacher-forced: argmax == target, over real tokens
  double exact_match = 0.0;     // greedy output equals one of the references
  double bleu = 0.0;            // corpus BLEU-4 (metrics.hpp)
  int64_t sentences = 0;        // distinct source sentences scored
};

// Scores `model` on pairs. Several pairs with the same source are several
// references for it. Teacher-forced loss and accuracy use every pair.
EvalResult evaluate(TranslationModel& model, const std::vector<data::SentencePair>& pairs,
                    int64_t batch_size = 64);

struct TrainOptions {
  // Data: a built-in task, or TSV files.
  std::string task = "toy-french";  // toy-french | copy | reverse (when train_path is empty)
  std::string train_path, valid_path;
  int64_t train_size = 200000;      // examples generated for a built-in task
  int64_t valid_size = 500;         // validation examples (generated, or cut from train_path)
  bool skip_bad_lines = false;
  bool lowercase = false;
  int64_t min_count = 1;            // vocabulary: drop rarer words
  int64_t max_tokens = 100;         // longest sentence side accepted from a TSV file

  // Model (vocabulary sizes are filled in from the data).
  nn::TransformerConfig model;

  // Optimisation.
  int64_t steps = 1000;             // stop after this many steps...
  double minutes = 0.0;             // ...or after this many minutes, if > 0
  int64_t batch_size = 64;          // sentences per batch
  float lr = 1e-3f;                 // peak learning rate
  int64_t warmup = 400;
  std::string schedule = "inverse-sqrt";  // or "cosine" (needs steps)
  float label_smoothing = 0.1f;
  float clip_norm = 1.0f;
  uint64_t seed = 1;
  int threads = 0;                  // OpenMP threads; 0 = the default
  Device device = Device::cpu;      // where the model and optimizer live (chapter 11)
  bool report_speed = false;        // --device given: a last line with the speed (and device memory)

  // Output.
  std::string out;                  // empty: model.safetensors, or with resume, the resumed file
  std::string resume;               // checkpoint to continue from
  std::string plot;                 // SVG of the loss curves, if set
  int64_t log_every = 50;           // plain progress line every N steps (no terminal)
  int64_t eval_every = 250;
  int64_t eval_sentences = 300;     // greedy decoding is slow: score a sample
  int64_t checkpoint_every = 500;

  // Called before each training step with the step's number (1, 2, ...)
  // and its batch, on the thread that trains. Tutorial 10 sets the thread
  // count here, to time blocks of steps on 1 and 2 threads in one run.
  std::function<void(int64_t step, const data::Batch& batch)> before_step;
};

// --- the options table (src/train/train_options.cpp) ---

// A bad command line for `attend train` (the CLI reports it as a usage error).
class OptionError : public Error {
 public:
  using Error::Error;
};

// One row of the table that drives `attend train`: its parsing, --help, the
// checks on resume. `get` writes the field as text; `set` parses text into it
// (OptionError naming the flag for a bad value).
struct TrainOption {
  enum class Kind { Integer, Real, Text, Switch };
  // MustMatch: part of the run (stored in the checkpoint; a resumed run may not
  // change it). DataFile: stored, but the file may move (its contents are
  // checked). ThisRunOnly: how this invocation runs (steps, threads, output).
  enum class Resume { MustMatch, DataFile, ThisRunOnly };
  const char* flag;        // "--batch"
  const char* value_name;  // "B" (empty for a switch)
  Kind kind;
  double min, max;         // the accepted range of a number
  Resume resume;
  const char* help;
  std::function<std::string(const TrainOptions&)> get;
  std::function<void(TrainOptions&, const std::string&)> set;
};

const std::vector<TrainOption>& train_options();
const TrainOption* find_train_option(const std::string& flag);  // nullptr if unknown

// `attend train`'s arguments (after "train") -> options; OptionError if bad.
TrainOptions parse_train_arguments(const std::vector<std::string>& args);
// The options part of `attend train --help`, one line per row of the table.
std::string train_options_help();
// Why `--device` cannot run here, as an Error (nothing for the CPU): a build
// without CUDA says how to build with it (make CUDA=1), a CUDA build on a
// machine without a GPU says that none was found. In a build without CUDA,
// the environment variable ATTEND_EMULATE_CUDA=1 lets cuda run on the CUDA
// emulator instead (correct and very slow: for tests of a tiny model).
void require_device_available(Device device);

// Errors (naming the flag) for options that cannot train: --d-model not a
// multiple of --heads, an unknown task, no steps and no minutes, sizes whose
// parameters or generated pairs cannot fit in the machine's memory...
void check_train_options(const TrainOptions& options);

// --- the memory a run needs (src/train/memory_estimate.cpp) ---

// What a run's memory depends on besides its options; known once the data
// are read. check_train_options() uses the smallest possible values.
struct DataShape {
  int64_t source_vocab = 4, target_vocab = 4;  // the 4 special tokens at least
  int64_t longest_sentence = 1;                // tokens of the longest side, <eos> included
  int64_t examples = 0;                        // sentence pairs held in memory
};

// An estimate, in bytes, of what training with these options needs at its
// peak: meant to refuse sizes that cannot fit before anything is allocated,
// not to plan to the last megabyte.
struct MemoryEstimate {
  double parameters = 0.0;        // the model's parameter count (exact)
  double model_bytes = 0.0;       // parameters, gradients, Adam's two moments: 4 floats each
  double activation_bytes = 0.0;  // what one batch's forward keeps for backward, and its gradients
  double data_bytes = 0.0;        // the sentence pairs as strings and as token ids
  double total() const { return model_bytes + activation_bytes + data_bytes; }
};
MemoryEstimate estimate_training_memory(const TrainOptions& options, const DataShape& shape);

// The machine's physical memory in bytes (sysconf), 0 if it cannot be told.
double physical_memory_bytes();

// Error when the estimate exceeds `available_bytes`, naming the estimate, its
// parts and the flag most responsible (the one whose default value would
// shrink the estimate most), e.g. "--d-model 1048576".
void check_training_memory(const TrainOptions& options, const DataShape& shape, double available_bytes);

struct StepRecord {
  int64_t step;
  double loss;  // training loss of that step's batch
  double lr;
};

struct EvalRecord {
  int64_t step;
  EvalResult result;
};

struct TrainResult {
  std::vector<StepRecord> steps;  // every step of this run (after a resume: from there on)
  std::vector<EvalRecord> evals;
  int64_t final_step = 0;
  bool interrupted = false;       // stopped by Ctrl-C (a checkpoint was written)
};

// --- one training step, and the loop around it (src/train/trainer.cpp) ---

// The step a learner must understand: forward, loss, zero_grad, backward,
// clip, step. Returns the batch's loss; a NaN or infinite loss returns before
// anything is updated (the caller stops). The batch must be on the model's
// device (data::batch_on_device).
double train_step(nn::Seq2SeqTransformer& model, const data::Batch& batch, optim::Optimizer& optimizer,
                  float label_smoothing, float clip_norm);

// Trains, printing progress to `log`. Throws Error on bad options or data,
// and on a NaN/infinite loss (naming the step; the last checkpoint stays).
TrainResult train(const TrainOptions& options, std::ostream& log);

}  // namespace attend::train

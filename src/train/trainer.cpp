// The training loop for translation: data, model, Adam with warmup, label
// smoothing, clipping, validation, progress, checkpoints, exact resume.
// Chapter 8 (docs/08-translation.md).
#include <omp.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <functional>
#include <map>
#include <iostream>
#include <sstream>

#include "attend/autograd.hpp"
#include "attend/checkpoint.hpp"
#include "attend/ops.hpp"
#include "attend/optim.hpp"
#include "attend/safetensors.hpp"
#include "attend/svg.hpp"
#include "attend/train.hpp"
#include "train_internal.hpp"

namespace attend::train {

namespace {

// --- Ctrl-C: finish the step, write a checkpoint, stop ---

volatile std::sig_atomic_t g_interrupted = 0;
extern "C" void on_interrupt(int) { g_interrupted = 1; }

// Installs the handler for the duration of training, then restores the old one.
class InterruptGuard {
 public:
  InterruptGuard() : previous_(std::signal(SIGINT, on_interrupt)) { g_interrupted = 0; }
  ~InterruptGuard() { std::signal(SIGINT, previous_); }
  InterruptGuard(const InterruptGuard&) = delete;
  InterruptGuard& operator=(const InterruptGuard&) = delete;

 private:
  void (*previous_)(int);
};

// --- training state kept in the checkpoint's metadata ---

const std::string kSeedKey = "train.seed";
const std::string kEpochKey = "train.epoch";
const std::string kEpochRngKey = "train.epoch_rng";      // data shuffling state at the epoch's start
const std::string kBatchKey = "train.batch_in_epoch";    // next batch of that epoch
const std::string kHistoryKey = "train.history";         // "step loss lr" lines
const std::string kEvalHistoryKey = "train.eval_history";  // "step loss exact_match bleu" lines

const std::string kRunKey = "train.run";                // the settings that define the run (below)
const std::string kDataKey = "train.data";              // "<pairs> <fingerprint>" of the training pairs
const std::string kScheduleStepsKey = "train.schedule_steps";  // length of a cosine schedule

// --- the settings a resumed run must share with the run it continues ---

// Text of a number that reads back as the same float or integer.
template <typename T>
std::string exact_text(T value) {
  std::ostringstream s;
  s.precision(9);
  s << value;
  return s.str();
}

// One setting: its command-line flag, how to read it from the options as
// text, and how to set it from that text. `must_match`: a resumed run may not
// change it (a data file may move: its contents are checked instead).
// --valid-size, --max-tokens, --decoder-layers and --clip-norm have no option
// in `attend train`; they name the TrainOptions fields a C++ caller sets.
struct RunSetting {
  const char* flag;
  bool must_match;
  std::function<std::string(const TrainOptions&)> get;
  std::function<void(TrainOptions&, const std::string&)> set;
};

const std::vector<RunSetting>& run_settings() {
  using O = TrainOptions;
  static const std::vector<RunSetting> settings = {
      {"--task", true, [](const O& o) { return o.task; }, [](O& o, const std::string& v) { o.task = v; }},
      {"--data", false, [](const O& o) { return o.train_path; }, [](O& o, const std::string& v) { o.train_path = v; }},
      {"--valid", false, [](const O& o) { return o.valid_path; }, [](O& o, const std::string& v) { o.valid_path = v; }},
      {"--train-size", true, [](const O& o) { return exact_text(o.train_size); },
       [](O& o, const std::string& v) { o.train_size = std::stoll(v); }},
      {"--valid-size", true, [](const O& o) { return exact_text(o.valid_size); },
       [](O& o, const std::string& v) { o.valid_size = std::stoll(v); }},
      {"--skip-bad-lines", true, [](const O& o) { return exact_text(o.skip_bad_lines); },
       [](O& o, const std::string& v) { o.skip_bad_lines = v == "1"; }},
      {"--lowercase", true, [](const O& o) { return exact_text(o.lowercase); },
       [](O& o, const std::string& v) { o.lowercase = v == "1"; }},
      {"--min-count", true, [](const O& o) { return exact_text(o.min_count); },
       [](O& o, const std::string& v) { o.min_count = std::stoll(v); }},
      {"--max-tokens", true, [](const O& o) { return exact_text(o.max_tokens); },
       [](O& o, const std::string& v) { o.max_tokens = std::stoll(v); }},
      {"--d-model", true, [](const O& o) { return exact_text(o.model.d_model); },
       [](O& o, const std::string& v) { o.model.d_model = std::stoll(v); }},
      {"--heads", true, [](const O& o) { return exact_text(o.model.heads); },
       [](O& o, const std::string& v) { o.model.heads = std::stoll(v); }},
      {"--layers", true, [](const O& o) { return exact_text(o.model.encoder_layers); },
       [](O& o, const std::string& v) { o.model.encoder_layers = std::stoll(v); }},
      {"--decoder-layers", true, [](const O& o) { return exact_text(o.model.decoder_layers); },
       [](O& o, const std::string& v) { o.model.decoder_layers = std::stoll(v); }},
      {"--ff", true, [](const O& o) { return exact_text(o.model.d_ff); },
       [](O& o, const std::string& v) { o.model.d_ff = std::stoll(v); }},
      {"--dropout", true, [](const O& o) { return exact_text(o.model.dropout); },
       [](O& o, const std::string& v) { o.model.dropout = std::stof(v); }},
      {"--batch", true, [](const O& o) { return exact_text(o.batch_size); },
       [](O& o, const std::string& v) { o.batch_size = std::stoll(v); }},
      {"--lr", true, [](const O& o) { return exact_text(o.lr); }, [](O& o, const std::string& v) { o.lr = std::stof(v); }},
      {"--warmup", true, [](const O& o) { return exact_text(o.warmup); },
       [](O& o, const std::string& v) { o.warmup = std::stoll(v); }},
      {"--schedule", true, [](const O& o) { return o.schedule; }, [](O& o, const std::string& v) { o.schedule = v; }},
      {"--label-smoothing", true, [](const O& o) { return exact_text(o.label_smoothing); },
       [](O& o, const std::string& v) { o.label_smoothing = std::stof(v); }},
      {"--clip-norm", true, [](const O& o) { return exact_text(o.clip_norm); },
       [](O& o, const std::string& v) { o.clip_norm = std::stof(v); }},
  };
  return settings;
}

// "flag value" lines; values never hold a newline (paths with one are refused).
std::string run_settings_text(const TrainOptions& o) {
  std::string text;
  for (const RunSetting& s : run_settings()) {
    const std::string value = s.get(o);
    if (value.find('\n') != std::string::npos) throw Error(std::string("train: ") + s.flag + " must not contain a newline");
    text += std::string(s.flag) + " " + value + "\n";
  }
  return text;
}

// On --resume: each setting comes from the checkpoint. A setting the caller
// gave (a value other than the default) must agree with it, so that a run
// cannot silently continue with another batch size, learning rate or model.
void adopt_run_settings(TrainOptions& o, const std::string& path, const std::string& text) {
  std::map<std::string, std::string> stored;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    const size_t space = line.find(' ');
    if (space == std::string::npos) throw Error(path + ": malformed run settings line '" + line + "'");
    stored[line.substr(0, space)] = line.substr(space + 1);
  }
  const TrainOptions defaults;
  for (const RunSetting& s : run_settings()) {
    auto it = stored.find(s.flag);
    if (it == stored.end()) throw Error(path + ": the run settings lack " + s.flag);
    const std::string given = s.get(o);
    if (s.must_match && given != s.get(defaults) && given != it->second) {
      throw Error(path + ": the run in this checkpoint used " + s.flag + " " + it->second + ", this one asks for " +
                  s.flag + " " + given + " (leave " + s.flag + " out to continue the run as it was)");
    }
    if (!s.must_match && given != s.get(defaults)) continue;  // a moved data file: its contents are checked later
    try {
      s.set(o, it->second);
    } catch (const std::exception&) {
      throw Error(path + ": bad value '" + it->second + "' for " + s.flag + " in the run settings");
    }
  }
}

// "<pairs> <fingerprint>": the count and a 64-bit FNV-1a hash of the
// training pairs, so that a resumed run can tell it is fed the same data.
std::string data_fingerprint(const std::vector<data::SentencePair>& pairs) {
  uint64_t hash = data::kFnv1aOffsetBasis;
  for (const data::SentencePair& p : pairs) {
    hash = data::fnv1a(p.source, hash);
    hash = data::fnv1a("\t", hash);
    hash = data::fnv1a(p.target, hash);
    hash = data::fnv1a("\n", hash);
  }
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(hash));
  return std::to_string(pairs.size()) + " " + hex;
}

struct DataState {
  int64_t epoch = 0;
  uint64_t epoch_rng = 0;
  int64_t batch_in_epoch = 0;
};

std::string format_seconds(double seconds) {
  const int64_t s = static_cast<int64_t>(seconds + 0.5);
  char buf[32];
  if (s >= 3600) {
    std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", static_cast<long long>(s / 3600),
                  static_cast<long long>(s / 60 % 60), static_cast<long long>(s % 60));
  } else {
    std::snprintf(buf, sizeof buf, "%02lld:%02lld", static_cast<long long>(s / 60), static_cast<long long>(s % 60));
  }
  return buf;
}

// The live progress line: a bar on a terminal (redrawn in place with \r),
// one plain line every `every` steps otherwise (a log file, a CI run).
class Progress {
 public:
  Progress(std::ostream& out, bool terminal, int64_t every) : out_(out), terminal_(terminal), every_(every) {}

  void update(int64_t step, int64_t total, double loss, double lr, double tokens_per_second,
              double elapsed, double left) {
    if (!terminal_ && step % every_ != 0 && step != total) return;
    char line[256];
    std::snprintf(line, sizeof line, "step %lld/%lld  loss %.4f  lr %.2e  %.0f tok/s  elapsed %s  left %s",
                  static_cast<long long>(step), static_cast<long long>(total), loss, lr, tokens_per_second,
                  format_seconds(elapsed).c_str(), format_seconds(left).c_str());
    if (terminal_) {
      const int width = 24;
      const int filled = total > 0 ? static_cast<int>(width * step / total) : 0;
      out_ << "\r[" << std::string(static_cast<size_t>(filled), '#')
           << std::string(static_cast<size_t>(width - filled), '.') << "] " << line << "\033[K" << std::flush;
      dirty_ = true;
    } else {
      out_ << line << "\n" << std::flush;
    }
  }

  // A line of its own (validation results, checkpoints) without breaking the bar.
  void message(const std::string& text) {
    if (dirty_) out_ << "\n";
    dirty_ = false;
    out_ << text << "\n" << std::flush;
  }

 private:
  std::ostream& out_;
  bool terminal_;
  int64_t every_;
  bool dirty_ = false;
};

void check_options(const TrainOptions& o) {
  auto fail = [](const std::string& what) { throw Error("train: " + what); };
  if (o.steps <= 0 && o.minutes <= 0.0) fail("need --steps > 0 or --minutes > 0");
  if (o.batch_size <= 0) fail("--batch must be positive");
  if (!(o.lr > 0.0f)) fail("--lr must be positive");
  if (o.warmup < 1) fail("--warmup must be at least 1");
  if (!(o.label_smoothing >= 0.0f && o.label_smoothing < 1.0f)) fail("--label-smoothing must be in [0, 1)");
  if (!(o.model.dropout >= 0.0f && o.model.dropout < 1.0f)) fail("--dropout must be in [0, 1)");
  if (o.model.d_model <= 0 || o.model.heads <= 0 || o.model.d_model % o.model.heads != 0) {
    fail("--d-model " + std::to_string(o.model.d_model) + " must be a positive multiple of --heads " +
         std::to_string(o.model.heads));
  }
  if (o.model.encoder_layers < 1 || o.model.decoder_layers < 1 || o.model.d_ff < 1) fail("layers and --ff must be positive");
  if (o.schedule != "inverse-sqrt" && o.schedule != "cosine") fail("unknown schedule '" + o.schedule + "'");
  if (o.schedule == "cosine" && o.steps <= o.warmup) fail("the cosine schedule needs --steps > --warmup");
  if (o.out.empty()) fail("--out must name a file");
  if (o.train_path.empty() && o.train_size <= 0) fail("the training set is empty");
}

// Training and validation pairs, from a task or from TSV files.
void load_pairs(const TrainOptions& o, std::vector<data::SentencePair>& train_pairs,
                std::vector<data::SentencePair>& valid_pairs, std::ostream& log) {
  if (o.train_path.empty()) {
    train_pairs = data::generate_task(o.task, data::Split::Train, o.train_size, o.seed);
    valid_pairs = data::generate_task(o.task, data::Split::Valid, o.valid_size, o.seed + 1);
    return;
  }
  data::TsvOptions tsv;
  tsv.max_tokens = o.max_tokens;
  tsv.skip_bad_lines = o.skip_bad_lines;
  tsv.lowercase = o.lowercase;
  data::TsvSummary summary;
  train_pairs = data::read_tsv(o.train_path, tsv, &summary);
  log << o.train_path << ": " << summary.pairs << " pairs";
  if (summary.skipped > 0) log << ", " << summary.skipped << " bad lines skipped (first: " << summary.first_problem << ")";
  log << "\n";
  if (!o.valid_path.empty()) {
    valid_pairs = data::read_tsv(o.valid_path, tsv, &summary);
  } else {
    // Hold out the last valid_size pairs (the file's order is the user's).
    const size_t n = std::min(train_pairs.size() / 10, static_cast<size_t>(std::max<int64_t>(o.valid_size, 0)));
    valid_pairs.assign(train_pairs.end() - static_cast<std::ptrdiff_t>(n), train_pairs.end());
    train_pairs.resize(train_pairs.size() - n);
  }
  if (train_pairs.empty()) throw Error(o.train_path + ": no training pairs");
}

std::string history_text(const std::vector<StepRecord>& steps) {
  std::ostringstream s;
  s.precision(9);
  for (const StepRecord& r : steps) s << r.step << " " << r.loss << " " << r.lr << "\n";
  return s.str();
}

std::vector<StepRecord> parse_history(const std::string& text) {
  std::vector<StepRecord> out;
  std::istringstream in(text);
  StepRecord r{};
  while (in >> r.step >> r.loss >> r.lr) out.push_back(r);
  return out;
}

std::string eval_history_text(const std::vector<EvalRecord>& evals) {
  std::ostringstream s;
  s.precision(9);
  for (const EvalRecord& e : evals) {
    s << e.step << " " << e.result.loss << " " << e.result.exact_match << " " << e.result.bleu << "\n";
  }
  return s.str();
}

std::vector<EvalRecord> parse_eval_history(const std::string& text) {
  std::vector<EvalRecord> out;
  std::istringstream in(text);
  EvalRecord e{};
  while (in >> e.step >> e.result.loss >> e.result.exact_match >> e.result.bleu) out.push_back(e);
  return out;
}

// Training loss (averaged over windows of steps) and validation loss on top;
// validation exact match below.
void write_plot(const std::string& path, const std::vector<StepRecord>& steps, const std::vector<EvalRecord>& evals) {
  io::svg::Series train_loss{"train loss", {}, {}, ""}, valid_loss{"valid loss", {}, {}, ""};
  const size_t window = std::max<size_t>(1, steps.size() / 200);
  for (size_t i = 0; i + window <= steps.size(); i += window) {
    double sum = 0.0;
    for (size_t k = i; k < i + window; ++k) sum += steps[k].loss;
    train_loss.x.push_back(static_cast<double>(steps[i + window - 1].step));
    train_loss.y.push_back(sum / static_cast<double>(window));
  }
  io::svg::Series exact{"valid exact match", {}, {}, ""};
  for (const EvalRecord& e : evals) {
    valid_loss.x.push_back(static_cast<double>(e.step));
    valid_loss.y.push_back(e.result.loss);
    exact.x.push_back(static_cast<double>(e.step));
    exact.y.push_back(e.result.exact_match);
  }
  if (train_loss.x.empty()) return;
  io::svg::LinePlot loss_plot{"Loss", "step", "cross-entropy per token", {train_loss}, 720.0, 360.0};
  if (!valid_loss.x.empty()) loss_plot.series.push_back(valid_loss);
  io::svg::Canvas page(720.0, exact.x.empty() ? 360.0 : 720.0);
  page.draw_canvas(io::svg::draw_line_plot(loss_plot), 0.0, 0.0);
  if (!exact.x.empty()) {
    io::svg::LinePlot exact_plot{"Validation exact match (greedy)", "step", "fraction of sentences", {exact}, 720.0, 360.0};
    page.draw_canvas(io::svg::draw_line_plot(exact_plot), 0.0, 360.0);
  }
  page.save(path);
}

}  // namespace

TrainResult train(const TrainOptions& options, std::ostream& log) {
  check_options(options);
  if (options.threads > 0) omp_set_num_threads(options.threads);
  TrainResult result;
  TrainOptions o = options;

  // --- the model and its vocabularies: fresh, or from the checkpoint ---
  TranslationModel tm;
  std::map<std::string, std::string> resumed;  // the checkpoint's metadata
  std::vector<StepRecord> history;
  std::vector<EvalRecord> eval_history;
  if (!o.resume.empty()) {
    tm = load_translation_model(o.resume);
    resumed = io::load_safetensors(o.resume).metadata;
    try {
      o.seed = std::stoull(resumed.at(kSeedKey));
    } catch (const std::exception&) {
      throw Error(o.resume + ": not a training checkpoint (no valid '" + kSeedKey + "')");
    }
    if (!resumed.count(kRunKey)) throw Error(o.resume + ": not a training checkpoint (no '" + kRunKey + "')");
    adopt_run_settings(o, o.resume, resumed.at(kRunKey));
    check_options(o);
    history = parse_history(resumed[kHistoryKey]);
    eval_history = parse_eval_history(resumed[kEvalHistoryKey]);
  }
  std::vector<data::SentencePair> train_pairs, valid_pairs;
  load_pairs(o, train_pairs, valid_pairs, log);
  const std::string fingerprint = data_fingerprint(train_pairs);
  if (!o.resume.empty()) {
    if (resumed[kDataKey] != fingerprint) {
      throw Error(o.resume + ": the training data are not those of the run in this checkpoint (pairs and fingerprint: " +
                  resumed[kDataKey] + " then, " + fingerprint + " now)");
    }
  }
  if (o.resume.empty()) {
    std::vector<std::string> sources, targets;
    for (const auto& p : train_pairs) {
      sources.push_back(p.source);
      targets.push_back(p.target);
    }
    tm.source_vocab = data::Vocabulary::build(sources, o.min_count);
    tm.target_vocab = data::Vocabulary::build(targets, o.min_count);
    tm.lowercase = o.lowercase;
    tm.config = o.model;
    tm.config.src_vocab = tm.source_vocab.size();
    tm.config.tgt_vocab = tm.target_vocab.size();
    tm.config.pad_id = data::Vocabulary::kPad;
    Generator init(o.seed);
    tm.model = std::make_unique<nn::Seq2SeqTransformer>(tm.config, init);
  }
  nn::Seq2SeqTransformer& model = *tm.model;
  model.train();

  // Encoded training data; examples that do not fit the positional table are dropped.
  std::vector<std::vector<int64_t>> src_ids, tgt_ids;
  for (const auto& p : train_pairs) {
    std::vector<int64_t> s = tm.source_vocab.encode(p.source), t = tm.target_vocab.encode(p.target);
    if (static_cast<int64_t>(std::max(s.size(), t.size())) + 1 > tm.config.max_len) continue;
    src_ids.push_back(std::move(s));
    tgt_ids.push_back(std::move(t));
  }
  if (src_ids.empty()) throw Error("train: no training example fits max_len " + std::to_string(tm.config.max_len));
  std::vector<data::SentencePair> eval_pairs = valid_pairs;
  if (static_cast<int64_t>(eval_pairs.size()) > o.eval_sentences) eval_pairs.resize(static_cast<size_t>(o.eval_sentences));

  optim::Adam optimizer(model.named_parameters(), o.lr, 0.9f, 0.98f, 1e-9f);
  std::unique_ptr<optim::Schedule> schedule;
  int64_t schedule_steps = 0;  // the cosine schedule's length (0: inverse square root)
  if (o.schedule == "cosine") {
    // The cosine curve is drawn over the first run's --steps; a resumed run
    // that goes further stays at the floor.
    int64_t total = o.steps;
    if (!o.resume.empty()) {
      try {
        total = std::stoll(resumed.at(kScheduleStepsKey));
      } catch (const std::exception&) {
        throw Error(o.resume + ": the length of the cosine schedule is missing or malformed");
      }
    }
    schedule_steps = total;
    schedule = std::make_unique<optim::WarmupCosineSchedule>(o.lr, o.warmup, total, o.lr * 0.01f);
  } else {
    schedule = std::make_unique<optim::WarmupInverseSqrtSchedule>(o.lr, o.warmup);
  }

  // --- where the data stream stands ---
  DataState ds;
  Generator shuffle(o.seed + 12345);
  int64_t step = 0;
  if (!o.resume.empty()) {
    step = nn::load_checkpoint(o.resume, model, &optimizer).step;
    try {
      ds.epoch = std::stoll(resumed.at(kEpochKey));
      ds.epoch_rng = std::stoull(resumed.at(kEpochRngKey));
      ds.batch_in_epoch = std::stoll(resumed.at(kBatchKey));
    } catch (const std::exception&) {
      throw Error(o.resume + ": the data position of the run is missing or malformed");
    }
    shuffle.set_state(ds.epoch_rng);
    log << "resuming " << o.resume << " at step " << step << "\n";
  } else {
    ds.epoch_rng = shuffle.state();
  }
  std::vector<std::vector<int64_t>> epoch = data::bucketed_batches(src_ids, tgt_ids, o.batch_size, shuffle);
  if (ds.batch_in_epoch > static_cast<int64_t>(epoch.size())) throw Error(o.resume + ": data position beyond the epoch");

  log << "model: " << model.parameter_count() << " parameters (d_model " << tm.config.d_model << ", "
      << tm.config.heads << " heads, " << tm.config.encoder_layers << "+" << tm.config.decoder_layers
      << " layers, feed-forward " << tm.config.d_ff << "); vocabularies " << tm.source_vocab.size() << " / "
      << tm.target_vocab.size() << "; " << src_ids.size() << " training pairs; threads "
      << omp_get_max_threads() << "\n";

  std::string last_checkpoint;
  int64_t saved_step = -1;
  auto save = [&](int64_t at_step) {
    std::map<std::string, std::string> meta;
    meta[kConfigKey] = config_to_string(tm.config);
    meta[kSourceVocabKey] = tm.source_vocab.serialize();
    meta[kTargetVocabKey] = tm.target_vocab.serialize();
    meta[kLowercaseKey] = tm.lowercase ? "1" : "0";
    meta[kSeedKey] = std::to_string(o.seed);
    meta[kRunKey] = run_settings_text(o);
    meta[kDataKey] = fingerprint;
    if (schedule_steps > 0) meta[kScheduleStepsKey] = std::to_string(schedule_steps);
    meta[kEpochKey] = std::to_string(ds.epoch);
    meta[kEpochRngKey] = std::to_string(ds.epoch_rng);
    meta[kBatchKey] = std::to_string(ds.batch_in_epoch);
    meta[kHistoryKey] = history_text(history);
    meta[kEvalHistoryKey] = eval_history_text(eval_history);
    nn::save_checkpoint(o.out, model, &optimizer, at_step, meta);
    last_checkpoint = o.out;
    saved_step = at_step;
  };

  const bool terminal = isatty(STDERR_FILENO) && &log == &std::cerr;
  Progress progress(log, terminal, o.log_every);
  InterruptGuard interrupt_guard;
  const auto start = std::chrono::steady_clock::now();
  auto seconds_since_start = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };
  const int64_t first_step = step;
  int64_t tokens_seen = 0;
  const int64_t planned = o.minutes > 0.0 ? 0 : o.steps;  // 0: until time runs out

  while (true) {
    if (planned > 0 && step >= planned) break;
    if (o.minutes > 0.0 && seconds_since_start() >= o.minutes * 60.0) break;
    if (o.minutes > 0.0 && o.steps > 0 && step >= o.steps) break;

    if (ds.batch_in_epoch == static_cast<int64_t>(epoch.size())) {  // next epoch
      ++ds.epoch;
      ds.batch_in_epoch = 0;
      ds.epoch_rng = shuffle.state();
      epoch = data::bucketed_batches(src_ids, tgt_ids, o.batch_size, shuffle);
    }
    const data::Batch batch = data::make_batch(src_ids, tgt_ids, epoch[static_cast<size_t>(ds.batch_in_epoch)]);
    ++ds.batch_in_epoch;
    ++step;

    optimizer.lr = schedule->lr(step);
    const Tensor logits = model.forward(batch.src, batch.tgt_in);  // (B, T, V)
    const Tensor loss = cross_entropy(logits, batch.tgt_out, data::Vocabulary::kPad, o.label_smoothing);
    const double loss_value = loss.item();
    if (!std::isfinite(loss_value)) {
      progress.message("");
      throw Error("train: the loss became " + std::string(std::isnan(loss_value) ? "NaN" : "infinite") + " at step " +
                  std::to_string(step) + "; stopped. " +
                  (last_checkpoint.empty() ? std::string("No checkpoint was written in this run.")
                                           : "The last good checkpoint is " + last_checkpoint + "."));
    }
    optimizer.zero_grad();
    loss.backward();
    optim::clip_grad_norm(model.parameters(), o.clip_norm);
    optimizer.step();

    history.push_back({step, loss_value, optimizer.lr});
    result.steps.push_back(history.back());
    tokens_seen += batch.source_tokens + batch.target_tokens;
    const double elapsed = seconds_since_start();
    const double per_step = elapsed / static_cast<double>(step - first_step);
    const int64_t total = planned > 0 ? planned : step + static_cast<int64_t>((o.minutes * 60.0 - elapsed) / per_step);
    progress.update(step, std::max(total, step), loss_value, optimizer.lr, static_cast<double>(tokens_seen) / elapsed,
                    elapsed, static_cast<double>(std::max<int64_t>(0, total - step)) * per_step);

    const bool last = (planned > 0 && step >= planned) || (o.minutes > 0.0 && seconds_since_start() >= o.minutes * 60.0);
    if (o.eval_every > 0 && (step % o.eval_every == 0 || last) && !eval_pairs.empty()) {
      const EvalResult r = evaluate(tm, eval_pairs, o.batch_size);
      eval_history.push_back({step, r});
      result.evals.push_back(eval_history.back());
      char line[200];
      std::snprintf(line, sizeof line, "valid @ %lld: loss %.4f  ppl %.3f  token acc %.4f  exact %.4f  BLEU %.2f (%lld sentences)",
                    static_cast<long long>(step), r.loss, r.perplexity, r.token_accuracy, r.exact_match, r.bleu,
                    static_cast<long long>(r.sentences));
      progress.message(line);
      if (!o.plot.empty()) write_plot(o.plot, history, eval_history);
    }
    if (g_interrupted) {
      save(step);
      progress.message("interrupted at step " + std::to_string(step) + ": checkpoint written to " + o.out);
      result.interrupted = true;
      break;
    }
    if ((o.checkpoint_every > 0 && step % o.checkpoint_every == 0) || last) save(step);
  }
  if (saved_step != step) save(step);
  if (!o.plot.empty()) write_plot(o.plot, history, eval_history);
  progress.message("done: step " + std::to_string(step) + ", " + format_seconds(seconds_since_start()) +
                   "; model written to " + o.out);
  result.final_step = step;
  return result;
}

}  // namespace attend::train

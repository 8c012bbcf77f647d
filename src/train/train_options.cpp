// The options of a training run in one table: it parses `attend train`'s
// command line, writes its --help, checks the values, and says which
// settings a resumed run must share with the run it continues.
// Chapter 8 (docs/08-translation.md, Appendix A, "Training from the command line").
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <map>
#include <sstream>

#include "attend/gpu_kernels.hpp"
#include "attend/train.hpp"

namespace attend::train {

namespace {

// Text of a number that reads back as the same float or integer.
template <typename T>
std::string exact_text(T value) {
  std::ostringstream s;
  s.precision(9);
  s << value;
  return s.str();
}

// The value `text` of `flag` as an integer in [min, max], or OptionError.
int64_t parse_integer(const std::string& flag, const std::string& text, double min, double max) {
  try {
    size_t used = 0;
    const long long x = std::stoll(text, &used);
    if (used == text.size() && x >= min && x <= max) return x;
  } catch (const std::logic_error&) {
  }
  throw OptionError("bad value for " + flag + ": '" + text + "' (an integer >= " + exact_text(min) +
                    (max < 1e18 ? " and <= " + exact_text(max) : std::string()) + ")");
}

// The value `text` of `flag` as a number in [min, max], or OptionError.
double parse_real(const std::string& flag, const std::string& text, double min, double max) {
  try {
    size_t used = 0;
    const double x = std::stod(text, &used);
    if (used == text.size() && x >= min && x <= max) return x;
  } catch (const std::logic_error&) {
  }
  throw OptionError("bad value for " + flag + ": '" + text + "' (a number in [" + exact_text(min) + ", " +
                    exact_text(max) + "])");
}

using O = TrainOptions;
using Kind = TrainOption::Kind;
using Resume = TrainOption::Resume;
constexpr double kNoLimit = 9.2e18;

// One row: flag, value name, kind, range, resume rule, help, and how to read
// and write the field. Rows are applied in this order (so --minutes comes
// before --steps and --layers before --decoder-layers).
TrainOption integer_option(const char* flag, const char* value_name, double min, double max, Resume resume,
                           const char* help, int64_t O::*field) {
  return {flag, value_name, Kind::Integer, min, max, resume, help,
          [field](const O& o) { return exact_text(o.*field); },
          [field, flag, min, max](O& o, const std::string& v) { o.*field = parse_integer(flag, v, min, max); }};
}

TrainOption model_integer_option(const char* flag, const char* value_name, Resume resume, const char* help,
                                 int64_t nn::TransformerConfig::*field) {
  return {flag, value_name, Kind::Integer, 1, kNoLimit, resume, help,
          [field](const O& o) { return exact_text(o.model.*field); },
          [field, flag](O& o, const std::string& v) { o.model.*field = parse_integer(flag, v, 1, kNoLimit); }};
}

TrainOption real_option(const char* flag, const char* value_name, double min, double max, Resume resume,
                        const char* help, float O::*field) {
  return {flag, value_name, Kind::Real, min, max, resume, help,
          [field](const O& o) { return exact_text(o.*field); },
          [field, flag, min, max](O& o, const std::string& v) {
            o.*field = static_cast<float>(parse_real(flag, v, min, max));
          }};
}

TrainOption text_option(const char* flag, const char* value_name, Resume resume, const char* help,
                        std::string O::*field) {
  return {flag, value_name, Kind::Text, 0, 0, resume, help, [field](const O& o) { return o.*field; },
          [field](O& o, const std::string& v) { o.*field = v; }};
}

TrainOption switch_option(const char* flag, Resume resume, const char* help, bool O::*field) {
  return {flag, "", Kind::Switch, 0, 1, resume, help, [field](const O& o) { return exact_text(o.*field); },
          [field](O& o, const std::string& v) { o.*field = v == "1"; }};
}

}  // namespace

const std::vector<TrainOption>& train_options() {
  static const std::vector<TrainOption> table = {
      // --- data ---
      {"--task", "T", Kind::Text, 0, 0, Resume::MustMatch, "a built-in task: toy-french | copy | reverse",
       // A run on --data files has no task: stored as "", so a --task given on resume is named as a change.
       [](const O& o) { return o.train_path.empty() ? o.task : std::string(); },
       [](O& o, const std::string& v) {
         if (!v.empty()) {
           try {
             data::check_task_name(v);
           } catch (const Error& e) {
             throw OptionError(e.what());
           }
         }
         o.task = v.empty() ? O().task : v;
       }},
      text_option("--data", "FILE", Resume::DataFile, "train on source<TAB>target lines instead of a task",
                  &O::train_path),
      text_option("--valid", "FILE", Resume::DataFile, "validation pairs (default: held out from --data)",
                  &O::valid_path),
      integer_option("--train-size", "N", 1, kNoLimit, Resume::MustMatch, "examples generated for a task",
                     &O::train_size),
      integer_option("--valid-size", "N", 0, kNoLimit, Resume::MustMatch,
                     "validation examples (generated, or held out from --data)", &O::valid_size),
      switch_option("--skip-bad-lines", Resume::MustMatch,
                    "skip malformed lines of --data/--valid (counted) instead of failing", &O::skip_bad_lines),
      switch_option("--lowercase", Resume::MustMatch, "fold the case of --data/--valid", &O::lowercase),
      integer_option("--min-count", "N", 1, kNoLimit, Resume::MustMatch, "drop words seen fewer than N times",
                     &O::min_count),
      integer_option("--max-tokens", "N", 1, kNoLimit, Resume::MustMatch,
                     "longest sentence side accepted from --data", &O::max_tokens),
      // --- the model ---
      model_integer_option("--d-model", "D", Resume::MustMatch, "model width", &nn::TransformerConfig::d_model),
      model_integer_option("--heads", "H", Resume::MustMatch, "attention heads", &nn::TransformerConfig::heads),
      {"--layers", "L", Kind::Integer, 1, kNoLimit, Resume::MustMatch, "encoder layers (and decoder layers)",
       [](const O& o) { return exact_text(o.model.encoder_layers); },
       [](O& o, const std::string& v) {
         o.model.encoder_layers = o.model.decoder_layers = parse_integer("--layers", v, 1, kNoLimit);
       }},
      model_integer_option("--decoder-layers", "L", Resume::MustMatch, "decoder layers, if not --layers",
                           &nn::TransformerConfig::decoder_layers),
      model_integer_option("--ff", "F", Resume::MustMatch, "feed-forward width", &nn::TransformerConfig::d_ff),
      {"--dropout", "P", Kind::Real, 0, 0.99, Resume::MustMatch, "dropout probability",
       [](const O& o) { return exact_text(o.model.dropout); },
       [](O& o, const std::string& v) { o.model.dropout = static_cast<float>(parse_real("--dropout", v, 0, 0.99)); }},
      {"--attention", "KIND", Kind::Text, 0, 0, Resume::MustMatch,
       "reference | tiled | window:W (chapter 12: tiled computes the same values in O(T) memory; window:W lets "
       "each position see W neighbours)",
       [](const O& o) { return o.model.attention.to_string(); },
       [](O& o, const std::string& v) {
         try {
           o.model.attention = nn::AttentionKind::parse(v);
         } catch (const Error& e) {
           throw OptionError(std::string("bad value for --attention: ") + e.what());
         }
       }},
      // --- optimisation ---
      integer_option("--batch", "B", 1, kNoLimit, Resume::MustMatch, "sentences per batch", &O::batch_size),
      real_option("--lr", "X", 1e-9, 10, Resume::MustMatch, "peak learning rate", &O::lr),
      integer_option("--warmup", "W", 1, kNoLimit, Resume::MustMatch, "warmup steps", &O::warmup),
      {"--schedule", "S", Kind::Text, 0, 0, Resume::MustMatch, "inverse-sqrt | cosine",
       [](const O& o) { return o.schedule; },
       [](O& o, const std::string& v) {
         if (v != "inverse-sqrt" && v != "cosine") throw OptionError("unknown schedule '" + v + "' (inverse-sqrt or cosine)");
         o.schedule = v;
       }},
      real_option("--label-smoothing", "E", 0, 0.99, Resume::MustMatch, "label smoothing", &O::label_smoothing),
      real_option("--clip-norm", "C", 1e-9, 1e9, Resume::MustMatch, "clip the gradient's norm to C",
                  &O::clip_norm),
      {"--seed", "S", Kind::Integer, 0, kNoLimit, Resume::MustMatch, "random seed (data, initial weights, dropout)",
       [](const O& o) { return exact_text(o.seed); },
       [](O& o, const std::string& v) { o.seed = static_cast<uint64_t>(parse_integer("--seed", v, 0, kNoLimit)); }},
      // --- this run only (a resumed run may change them) ---
      {"--minutes", "M", Kind::Real, 0, 1e6, Resume::ThisRunOnly, "train for M minutes (stops at --steps too if given)",
       [](const O& o) { return exact_text(o.minutes); },
       [](O& o, const std::string& v) {
         o.minutes = parse_real("--minutes", v, 0, 1e6);
         if (o.minutes > 0.0) o.steps = 0;  // no step limit unless --steps follows
       }},
      integer_option("--steps", "N", 0, kNoLimit, Resume::ThisRunOnly, "train up to step N", &O::steps),
      {"--threads", "T", Kind::Integer, 1, 4096, Resume::ThisRunOnly, "OpenMP threads (default: all cores)",
       [](const O& o) { return exact_text(o.threads); },
       [](O& o, const std::string& v) { o.threads = static_cast<int>(parse_integer("--threads", v, 1, 4096)); }},
      {"--device", "D", Kind::Text, 0, 0, Resume::ThisRunOnly,
       "cpu | cuda: where the model and optimizer live (cuda: a `make CUDA=1` build and an NVIDIA GPU); "
       "given, the last line says the time a step and, on cuda, the device memory peak",
       [](const O& o) { return to_string(o.device); },
       [](O& o, const std::string& v) {
         try {
           o.device = parse_device(v);
         } catch (const Error& e) {
           throw OptionError(std::string("bad value for --device: ") + e.what());
         }
         o.report_speed = true;
       }},
      integer_option("--eval-every", "N", 0, kNoLimit, Resume::ThisRunOnly, "validate every N steps (0: never)",
                     &O::eval_every),
      integer_option("--checkpoint-every", "N", 0, kNoLimit, Resume::ThisRunOnly,
                     "write the checkpoint every N steps (0: only at the end)", &O::checkpoint_every),
      text_option("--out", "FILE", Resume::ThisRunOnly,
                  "the model file (default model.safetensors; with --resume, the resumed file)", &O::out),
      text_option("--resume", "FILE", Resume::ThisRunOnly,
                  "continue the run in FILE; its data and settings come from FILE (a different value given "
                  "for one of them is an error)",
                  &O::resume),
      text_option("--plot", "FILE.svg", Resume::ThisRunOnly, "write the loss curves as an SVG picture", &O::plot),
  };
  return table;
}

const TrainOption* find_train_option(const std::string& flag) {
  for (const TrainOption& option : train_options()) {
    if (flag == option.flag) return &option;
  }
  return nullptr;
}

TrainOptions parse_train_arguments(const std::vector<std::string>& args) {
  std::map<std::string, std::string> given;  // flag -> value ("1" for a switch)
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    const TrainOption* option = find_train_option(a);
    if (!option) {
      throw OptionError(a.rfind("--", 0) == 0 ? "unknown option " + a : "unexpected argument '" + a + "'");
    }
    if (option->kind == Kind::Switch) {
      given[a] = "1";
    } else {
      if (i + 1 >= args.size()) throw OptionError(a + " needs a value");
      given[a] = args[++i];
    }
  }
  if (given.count("--task") && given.count("--data")) throw OptionError("give --task or --data, not both");
  if (given.count("--valid") && !given.count("--data")) throw OptionError("--valid needs --data");
  TrainOptions o;
  for (const TrainOption& option : train_options()) {  // in the table's order
    auto it = given.find(option.flag);
    if (it != given.end()) option.set(o, it->second);
  }
  return o;
}

std::string train_options_help() {
  const TrainOptions defaults;
  std::string help;
  for (const TrainOption& option : train_options()) {
    std::string left = std::string("  ") + option.flag + (option.kind == Kind::Switch ? "" : std::string(" ") + option.value_name);
    left.resize(std::max<size_t>(left.size() + 1, 24), ' ');
    std::string text = option.help;
    const std::string value = option.get(defaults);
    if (option.kind == Kind::Integer || option.kind == Kind::Real) {
      std::ostringstream shown;  // 6 significant digits: "0.001", not "0.00100000005"
      shown << std::stod(value);
      if (std::string(option.flag) != "--threads" && std::string(option.flag) != "--minutes") {
        text += " (default " + shown.str() + ")";
      }
    } else if (option.kind == Kind::Text && !value.empty()) {
      text += " (default " + value + ")";
    }
    help += left + text + "\n";
  }
  return help;
}

void require_device_available(Device device) {
  if (device == Device::cpu) return;
  if (!kernels::running_on_gpu()) {
    const char* emulate = std::getenv("ATTEND_EMULATE_CUDA");
    if (emulate != nullptr && std::string(emulate) == "1") return;  // tests: the emulator stands in
    throw Error("--device cuda: this attend was built without CUDA; build it with CUDA: make CUDA=1 "
                "(needs nvcc; the program is then build/cuda/attend)");
  }
  const std::string reason = kernels::gpu_unavailable_reason();
  if (!reason.empty()) {
    throw Error("--device cuda: no GPU was found (CUDA says: " + reason +
                "); run it on a machine with an NVIDIA GPU and its driver, or use --device cpu");
  }
}

void check_train_options(const TrainOptions& o) {
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
  if (o.train_path.empty()) data::check_task_name(o.task);
  if (o.train_path.empty() && o.train_size <= 0) fail("the training set is empty");
  require_device_available(o.device);
  // Sizes that cannot fit are refused before anything is allocated (the data
  // are not read yet: the smallest vocabularies and sentences stand in).
  check_training_memory(o, DataShape{}, physical_memory_bytes());
}

std::string run_settings_text(const TrainOptions& o) {
  std::string text;
  for (const TrainOption& option : train_options()) {
    if (option.resume == Resume::ThisRunOnly) continue;
    const std::string value = option.get(o);
    if (value.find('\n') != std::string::npos) throw Error(std::string("train: ") + option.flag + " must not contain a newline");
    text += std::string(option.flag) + " " + value + "\n";
  }
  return text;
}

void adopt_run_settings(TrainOptions& o, const std::string& path, const std::string& text) {
  std::map<std::string, std::string> stored;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    const size_t space = line.find(' ');
    if (space == std::string::npos) throw Error(path + ": malformed run settings line '" + line + "'");
    stored[line.substr(0, space)] = line.substr(space + 1);
  }
  const TrainOptions defaults;
  auto shown = [](const std::string& flag, const std::string& value) {
    return value.empty() ? "no " + flag : flag + " " + value;
  };
  for (const TrainOption& option : train_options()) {
    if (option.resume == Resume::ThisRunOnly) continue;
    auto it = stored.find(option.flag);
    if (it == stored.end()) {
      throw Error(path + ": the run settings lack " + std::string(option.flag) +
                  " (a checkpoint from an older Attend cannot be resumed; start a new run)");
    }
    const std::string given = option.get(o);
    const bool changed = given != option.get(defaults);
    if (option.resume == Resume::MustMatch && changed && given != it->second) {
      throw Error(path + ": the run in this checkpoint used " + shown(option.flag, it->second) + ", this one asks for " +
                  shown(option.flag, given) + " (leave " + option.flag + " out to continue the run as it was)");
    }
    if (option.resume == Resume::DataFile && changed) continue;  // a moved data file: its contents are checked later
    try {
      option.set(o, it->second);
    } catch (const std::exception&) {
      throw Error(path + ": bad value '" + it->second + "' for " + option.flag + " in the run settings");
    }
  }
}

}  // namespace attend::train

// The `attend` program: data, train, translate, eval, attention. Errors become
// one line on stderr; exit status 0 on success, 1 on an error, 2 on a usage
// error. Chapter 8 (docs/08-translation.md); chapter 9 (docs/09-decoding.md)
// adds beam search and the KV cache to translate, and the attention command;
// chapter 11 (docs/11-cuda.md) the --device of train, translate and eval.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "attend/attention.hpp"
#include "attend/heatmap.hpp"
#include "attend/data.hpp"
#include "attend/files.hpp"
#include "attend/metrics.hpp"
#include "attend/ops.hpp"
#include "attend/train.hpp"

using namespace attend;

namespace {

// A bad command line: reported with the command's usage line, exit status 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

const char* kMainUsage =
    "usage: attend COMMAND [OPTIONS]\n"
    "\n"
    "commands:\n"
    "  data       print examples of a built-in task as source<TAB>target lines\n"
    "  train      train a translation model\n"
    "  translate  translate sentences with a trained model\n"
    "  eval       score a trained model on a TSV file\n"
    "  attention  translate a sentence and draw its attention maps (SVG)\n"
    "\n"
    "'attend COMMAND --help' describes a command's options.\n";

struct Command {
  std::string usage;  // the first line of --help and of usage errors
  std::string help;   // the options, one per line
};

const std::map<std::string, Command> kCommands = {
    {"data",
     {"usage: attend data --task toy-french|copy|reverse --split train|valid|test --n N [--seed S]",
      "  --task T     the task (default toy-french)\n"
      "  --split S    which split (default train); splits never share a source sentence\n"
      "  --n N        how many examples (default 10)\n"
      "  --seed S     random seed (default 1)\n"}},
    {"train",
     {"usage: attend train [--task T | --data TRAIN.tsv [--valid VALID.tsv]] [--steps N | --minutes M] [OPTIONS]",
      ""}},  // the options come from the table in src/train/train_options.cpp
    {"translate",
     {"usage: attend translate --model MODEL.safetensors [--beam K [--alpha A]] [--no-cache] [--device D] [SENTENCE ...]",
      "  --model FILE   a model written by 'attend train'\n"
      "  --batch B      sentences translated together (default 64)\n"
      "  --beam K       beam search with K hypotheses per sentence (default 1: greedy)\n"
      "  --alpha A      length penalty ((5 + length) / 6)^A for beam search (default 0.6)\n"
      "  --no-cache     recompute every prefix instead of using the KV cache (same output, slower)\n"
      "  --device D     cpu | cuda: where the model runs (default cpu; cuda needs a `make CUDA=1` build and a GPU)\n"
      "  Without sentences, each line of standard input is translated; one output line per input line.\n"}},
    {"eval",
     {"usage: attend eval --model MODEL.safetensors --data TEST.tsv [--device D]",
      "  --model FILE       a model written by 'attend train'\n"
      "  --data FILE        source<TAB>target lines; a repeated source adds a reference\n"
      "  --skip-bad-lines   skip malformed lines instead of failing\n"
      "  --batch B          sentences scored together (default 64)\n"
      "  --device D         cpu | cuda: where the model runs (default cpu; cuda needs a `make CUDA=1` build and a GPU)\n"}},
    {"attention",
     {"usage: attend attention --model MODEL.safetensors --out ATTN.svg [--beam K] \"SENTENCE\"",
      "  --model FILE   a model written by 'attend train'\n"
      "  --out FILE     the SVG page: a heatmap per layer and head (encoder, decoder, cross-attention)\n"
      "  --beam K       translate with beam search (default 1: greedy)\n"
      "  --alpha A      length penalty for beam search (default 0.6)\n"
      "  Prints the translation and its cross-attention (last layer, mean over heads) as a text heatmap.\n"}},
};

// --name value options and --flag switches, checked against what a command knows.
class Arguments {
 public:
  Arguments(const std::string& command, int argc, char** argv, const std::vector<std::string>& valued,
            const std::vector<std::string>& flags) {
    for (int i = 0; i < argc; ++i) {
      const std::string a = argv[i];
      if (a.rfind("--", 0) != 0 || a == "--") {
        positional.push_back(a);
        continue;
      }
      if (std::find(flags.begin(), flags.end(), a) != flags.end()) {
        values_[a] = "1";
      } else if (std::find(valued.begin(), valued.end(), a) != valued.end()) {
        if (i + 1 >= argc) throw UsageError(command + ": " + a + " needs a value");
        values_[a] = argv[++i];
      } else {
        throw UsageError(command + ": unknown option " + a);
      }
    }
  }
  bool has(const std::string& name) const { return values_.count(name) > 0; }
  std::string text(const std::string& name, const std::string& fallback) const {
    return has(name) ? values_.at(name) : fallback;
  }
  int64_t integer(const std::string& name, int64_t fallback, int64_t min) const {
    if (!has(name)) return fallback;
    const std::string& v = values_.at(name);
    try {
      size_t used = 0;
      const long long x = std::stoll(v, &used);
      if (used == v.size() && x >= min) return x;
    } catch (const std::logic_error&) {
    }
    throw UsageError("bad value for " + name + ": '" + v + "' (an integer >= " + std::to_string(min) + ")");
  }
  double real(const std::string& name, double fallback, double min, double max) const {
    if (!has(name)) return fallback;
    const std::string& v = values_.at(name);
    try {
      size_t used = 0;
      const double x = std::stod(v, &used);
      if (used == v.size() && x >= min && x <= max) return x;
    } catch (const std::logic_error&) {
    }
    throw UsageError("bad value for " + name + ": '" + v + "' (a number in [" + std::to_string(min) + ", " +
                     std::to_string(max) + "])");
  }
  std::vector<std::string> positional;

 private:
  std::map<std::string, std::string> values_;
};

// --device cpu|cuda (default cpu), parsed and checked before any work: a
// build without CUDA or a machine without a GPU is an error saying so
// (train::require_device_available; chapter 11, docs/11-cuda.md).
Device device_argument(const Arguments& args) {
  Device device = Device::cpu;
  try {
    device = parse_device(args.text("--device", "cpu"));
  } catch (const Error& e) {
    throw UsageError(std::string("bad value for --device: ") + e.what());
  }
  train::require_device_available(device);
  return device;
}

int run_data(const Arguments& args) {
  const std::string task = args.text("--task", "toy-french");
  try {
    data::check_task_name(task);
  } catch (const Error& e) {
    throw UsageError(e.what());
  }
  const std::string split = args.text("--split", "train");
  if (split != "train" && split != "valid" && split != "test") throw UsageError("data: unknown split '" + split + "'");
  // Each example is written as it is drawn: `attend data --n 100000000 | head` prints at once.
  data::generate_task(task, data::parse_split(split), args.integer("--n", 10, 0),
                      static_cast<uint64_t>(args.integer("--seed", 1, 0)), [](const data::SentencePair& p) {
                        std::cout << p.source << "\t" << p.target << "\n";
                        if (!std::cout) throw Error("data: cannot write to standard output");
                      });
  return 0;
}

// The options are parsed by the training options table (train_options.cpp),
// which also writes --help and checks a resumed run's settings.
int run_train(const std::vector<std::string>& args) {
  // Ctrl-C ends training cleanly (with a checkpoint): that is a success too.
  train::train(train::parse_train_arguments(args), std::cerr);
  return 0;
}

int run_translate(const Arguments& args) {
  if (!args.has("--model")) throw UsageError("translate: --model is required");
  const Device device = device_argument(args);
  train::TranslationModel model = train::load_translation_model(args.text("--model", ""));
  model.model->to(device);
  const int64_t batch = args.integer("--batch", 64, 1);
  model.beam_size = args.integer("--beam", 1, 1);
  model.length_alpha = args.real("--alpha", 0.6, 0.0, 10.0);
  model.use_cache = !args.has("--no-cache");
  // Each line is checked on its own (NUL bytes, invalid UTF-8, too long): a
  // bad line gets an empty output line and an error naming it, the others
  // are translated, and the exit status is 1. Lines are read and translated
  // a chunk at a time, so memory stays bounded however long the input is.
  const size_t chunk_lines = static_cast<size_t>(std::min<int64_t>(batch, 4096)) * 16;
  int bad_lines = 0;
  train::VocabularyCoverage coverage;
  std::vector<std::string> lines, problems;  // problem: "" or "WHERE: what"
  auto translate_chunk = [&] {
    std::vector<std::string> good;
    for (size_t i = 0; i < lines.size(); ++i) {
      if (problems[i].empty()) good.push_back(lines[i]);
    }
    const std::vector<std::string> translations = model.translate(good, batch);
    size_t next = 0;
    for (size_t i = 0; i < lines.size(); ++i) {
      if (problems[i].empty()) {
        std::cout << translations[next++] << "\n";
      } else {
        std::cout << "\n" << std::flush;  // flushed first, so that the error follows its line's place
        std::cerr << "attend translate: " << problems[i] << "\n";
        ++bad_lines;
      }
    }
    lines.clear();
    problems.clear();
  };
  auto add_line = [&](const std::string& line, const std::string& where, std::string problem) {
    if (problem.empty()) problem = model.sentence_problem(line);
    if (problem.empty()) coverage.add(model, line);
    lines.push_back(line);
    problems.push_back(problem.empty() ? "" : where + ": " + problem);
    if (lines.size() == chunk_lines) translate_chunk();
  };
  if (!args.positional.empty()) {
    for (size_t i = 0; i < args.positional.size(); ++i) {
      add_line(args.positional[i], "argument " + std::to_string(i + 1), data::text_line_problem(args.positional[i]));
    }
  } else {
    data::TextLineReader reader(std::cin, "standard input");
    std::string line, problem;
    while (reader.next(line, &problem)) add_line(line, reader.where(), problem);
  }
  translate_chunk();
  if (const std::string warning = coverage.warning(); !warning.empty()) std::cerr << "attend translate: " << warning << "\n";
  return bad_lines > 0 ? 1 : 0;
}

int run_eval(const Arguments& args) {
  if (!args.has("--model") || !args.has("--data")) throw UsageError("eval: --model and --data are required");
  const Device device = device_argument(args);
  train::TranslationModel model = train::load_translation_model(args.text("--model", ""));
  model.model->to(device);
  data::TsvOptions tsv;
  tsv.skip_bad_lines = args.has("--skip-bad-lines");
  tsv.lowercase = model.lowercase;
  tsv.max_tokens = model.config.max_len - 1;
  const auto pairs = data::read_tsv(args.text("--data", ""), tsv);  // an Error if it holds no pair
  train::VocabularyCoverage coverage;
  for (const auto& p : pairs) coverage.add(model, p.source);
  if (const std::string warning = coverage.warning(); !warning.empty()) std::cerr << "attend eval: " << warning << "\n";
  const train::EvalResult r = train::evaluate(model, pairs, args.integer("--batch", 64, 1));
  std::printf("%-16s %10s\n", "metric", "value");
  std::printf("%-16s %10.4f\n", "exact match", r.exact_match);
  std::printf("%-16s %10.4f\n", "token accuracy", r.token_accuracy);
  std::printf("%-16s %10.2f\n", "BLEU", r.bleu);
  std::printf("%-16s %10.4f\n", "loss", r.loss);
  std::printf("%-16s %10.3f\n", "perplexity", r.perplexity);
  std::printf("%-16s %10lld\n", "sentences", static_cast<long long>(r.sentences));
  std::printf("exact_match=%.4f token_accuracy=%.4f bleu=%.2f sentences=%lld\n", r.exact_match, r.token_accuracy,
              r.bleu, static_cast<long long>(r.sentences));
  return 0;
}

}  // namespace

int run_attention(const Arguments& args) {
  if (!args.has("--model") || !args.has("--out")) throw UsageError("attention: --model and --out are required");
  if (args.positional.size() != 1) throw UsageError("attention: give exactly one sentence (quoted)");
  io::check_output_files({{"--model", args.text("--model", "")}}, {{"--out", args.text("--out", "")}});
  train::TranslationModel model = train::load_translation_model(args.text("--model", ""));
  model.beam_size = args.integer("--beam", 1, 1);
  model.length_alpha = args.real("--alpha", 0.6, 0.0, 10.0);
  if (model.config.decoder_layers < 1) throw std::runtime_error("the model has no decoder layers: no cross-attention");
  const train::AttentionReport r = train::attention_report(model, args.positional[0]);
  const std::string out = args.text("--out", "");
  decode::draw_attention_maps(r.maps, 0, r.source, r.decoder_inputs, r.outputs, args.positional[0] + "  ->  " + r.translation)
      .save(out);
  std::cout << r.translation << "\n\n";
  // The last layer's cross-attention, averaged over heads: (T, S).
  const Tensor cross = mean(r.maps.cross.back().select(0, 0), {0});
  std::cout << "cross-attention, last layer, mean over heads (rows: the word being written; columns: source):\n"
            << io::ascii_heatmap(cross, r.outputs, r.source) << "\nattention maps of every layer and head: " << out << "\n";
  return 0;
}

int main(int argc, char** argv) {
  // OpenMP reads OMP_WAIT_POLICY once, before main() runs. Threads that spin
  // while waiting steal the cores their partners need whenever anything else
  // runs on the machine (a 6x slowdown measured on 2 busy cores), so unless
  // the user chose a policy, restart this program once with passive waiting.
  if (std::getenv("OMP_WAIT_POLICY") == nullptr) {
    setenv("OMP_WAIT_POLICY", "passive", 1);
    execv("/proc/self/exe", argv);  // returns only if that failed (e.g. no /proc): carry on
  }
  if (argc < 2) {  // no command: a usage error
    std::cerr << kMainUsage;
    return 2;
  }
  if (std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    std::cout << kMainUsage;
    return 0;
  }
  const std::string command = argv[1];
  auto found = kCommands.find(command);
  if (found == kCommands.end()) {
    std::cerr << "attend: unknown command '" << command << "'\n" << kMainUsage;
    return 2;
  }
  const Command& spec = found->second;
  for (int i = 2; i < argc; ++i) {
    if (std::string(argv[i]) == "--help" || std::string(argv[i]) == "-h") {
      std::cout << spec.usage << "\n\n" << (command == "train" ? train::train_options_help() : spec.help);
      return 0;
    }
  }
  static const std::map<std::string, std::pair<std::vector<std::string>, std::vector<std::string>>> kOptions = {
      {"data", {{"--task", "--split", "--n", "--seed"}, {}}},
      {"translate", {{"--model", "--batch", "--beam", "--alpha", "--device"}, {"--no-cache"}}},
      {"eval", {{"--model", "--data", "--batch", "--device"}, {"--skip-bad-lines"}}},
      {"attention", {{"--model", "--out", "--beam", "--alpha"}, {}}},
  };
  static const std::map<std::string, std::function<int(const Arguments&)>> kRun = {
      {"data", run_data}, {"translate", run_translate}, {"eval", run_eval},
      {"attention", run_attention}};
  try {
    int status = 0;
    if (command == "train") {
      status = run_train(std::vector<std::string>(argv + 2, argv + argc));
    } else {
      const auto& [valued, flags] = kOptions.at(command);
      const Arguments args(command, argc - 2, argv + 2, valued, flags);
      status = kRun.at(command)(args);
    }
    // Output that never arrived (a full disk, a closed pipe) is a failure, not a success.
    std::cout.flush();
    if (!std::cout || std::fflush(stdout) != 0 || std::ferror(stdout)) {
      std::cerr << "attend " << command << ": cannot write to standard output: " << std::strerror(errno) << "\n";
      return 1;
    }
    return status;
  } catch (const train::OptionError& e) {
    std::cerr << "attend " << command << ": " << e.what() << "\n" << spec.usage << "\n";
    return 2;
  } catch (const UsageError& e) {
    const std::string what = e.what();  // "train: ..." or, from a value check, "bad value for ..."
    std::cerr << "attend " << (what.rfind(command + ":", 0) == 0 ? what : command + ": " + what) << "\n"
              << spec.usage << "\n";
    return 2;
  } catch (const std::exception& e) {
    const std::string what = e.what();  // "translate: ..." from the library names the command already
    std::cerr << "attend " << (what.rfind(command + ": ", 0) == 0 ? what : command + ": " + what) << "\n";
    return 1;
  }
}

// Checkpoints: model + optimizer + step + generators + metadata in one
// safetensors file (include/attend/safetensors.hpp does the bytes).
// Chapter 4 (docs/04-modules-and-optimizers.md).
#include "attend/checkpoint.hpp"

#include <charconv>
#include <set>

#include "attend/safetensors.hpp"

namespace attend::nn {

namespace {

const std::string kOptimizerPrefix = "optimizer.";
const std::string kStepKey = "attend.step";
const std::string kOptimizerStepsKey = "attend.optimizer_steps";
const std::string kRngPrefix = "attend.rng.";

// Parses a whole decimal string; `what` names it in the error.
template <class Int>
Int parse_integer(const std::string& text, const std::string& path, const std::string& what) {
  Int value{};
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size()) {
    throw Error(path + ": metadata '" + what + "' is not a valid integer: '" + text + "'");
  }
  return value;
}

}  // namespace

void save_checkpoint(const std::string& path, nn::Module& model, const optim::Optimizer* optimizer,
                     int64_t step, const std::map<std::string, std::string>& metadata) {
  io::Metadata meta;
  for (const auto& [key, value] : metadata) {
    if (key.rfind("attend.", 0) == 0) {
      throw Error(path + ": metadata key '" + key + "' is reserved (keys starting with 'attend.')");
    }
    meta[key] = value;
  }
  meta[kStepKey] = std::to_string(step);
  for (const auto& [name, generator] : model.named_generators()) {
    meta[kRngPrefix + name] = std::to_string(generator->state());
  }
  NamedTensors tensors = model.state_dict();
  if (optimizer) {
    meta[kOptimizerStepsKey] = std::to_string(optimizer->steps_taken());
    for (const auto& [name, t] : optimizer->state()) tensors.emplace_back(kOptimizerPrefix + name, t);
  }
  io::save_safetensors(path, tensors, meta);
}

CheckpointInfo load_checkpoint(const std::string& path, nn::Module& model, optim::Optimizer* optimizer) {
  io::SafetensorsContents file = io::load_safetensors(path);  // validates the format itself

  // Split the tensors into model parameters and optimizer state.
  NamedTensors params, optimizer_state;
  for (auto& [name, t] : file.tensors) {
    if (name.rfind(kOptimizerPrefix, 0) == 0) {
      optimizer_state.emplace_back(name.substr(kOptimizerPrefix.size()), t);
    } else {
      params.emplace_back(name, t);
    }
  }

  // Check everything before changing anything: parameters, optimizer, generators.
  std::map<std::string, Tensor> by_name(params.begin(), params.end());
  for (const auto& [name, p] : model.named_parameters()) {
    auto it = by_name.find(name);
    if (it == by_name.end()) throw Error(path + ": missing parameter '" + name + "'");
    if (it->second.dtype() != DType::Float32 || it->second.shape() != p.shape()) {
      throw Error(path + ": parameter '" + name + "' has shape " + to_string(it->second.shape()) +
                  " (" + to_string(it->second.dtype()) + ") but the model expects " +
                  to_string(p.shape()) + " (float32)");
    }
    by_name.erase(it);
  }
  if (!by_name.empty()) {
    throw Error(path + ": unexpected parameter '" + by_name.begin()->first + "' (not in the model)");
  }
  const auto get = [&](const std::string& key) -> const std::string& {
    auto it = file.metadata.find(key);
    if (it == file.metadata.end()) throw Error(path + ": metadata '" + key + "' is missing");
    return it->second;
  };
  CheckpointInfo info;
  info.step = parse_integer<int64_t>(get(kStepKey), path, kStepKey);
  std::vector<std::pair<Generator*, uint64_t>> generator_states;
  for (const auto& [name, generator] : model.named_generators()) {
    const std::string key = kRngPrefix + name;
    generator_states.emplace_back(generator, parse_integer<uint64_t>(get(key), path, key));
  }
  int64_t optimizer_steps = 0;
  if (optimizer) {
    if (optimizer_state.empty() && !optimizer->state().empty()) {
      throw Error(path + ": the checkpoint holds no optimizer state");
    }
    optimizer_steps = parse_integer<int64_t>(get(kOptimizerStepsKey), path, kOptimizerStepsKey);
  }

  // Now apply. The optimizer checks its own entries before it changes anything,
  // so it goes first; loading parameters cannot fail after the checks above.
  try {
    if (optimizer) optimizer->load_state(optimizer_state, optimizer_steps);
  } catch (const Error& e) {
    throw Error(path + ": " + e.what());
  }
  model.load_state_dict(params);
  for (auto& [generator, state] : generator_states) generator->set_state(state);
  for (auto& [key, value] : file.metadata) {
    if (key.rfind("attend.", 0) != 0) info.metadata[key] = value;
  }
  return info;
}

}  // namespace attend::nn

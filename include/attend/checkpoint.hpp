// Checkpoints: a model's parameters, the optimizer's state, the step, the
// random generators and string metadata in one safetensors file, written
// atomically. Chapter 4 (docs/04-modules-and-optimizers.md).
//
// Names in the file: parameters under their own names ("layers.0.weight"),
// optimizer state as "optimizer.<kind>.<parameter>" ("optimizer.exp_avg.layers.0.weight");
// metadata keys "attend.step", "attend.optimizer_steps", "attend.rng.<generator>"
// next to the caller's own entries.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "attend/nn.hpp"
#include "attend/optim.hpp"

namespace attend::nn {

struct CheckpointInfo {
  int64_t step = 0;                            // the training step saved
  std::map<std::string, std::string> metadata;  // the caller's own entries
};

// Saves model (and optimizer, if not null) at `step`. Caller metadata keys
// must not start with "attend.". Nothing on disk changes if this throws.
void save_checkpoint(const std::string& path, nn::Module& model, const optim::Optimizer* optimizer,
                     int64_t step, const std::map<std::string, std::string>& metadata = {});

// Loads into model (and optimizer, if not null). Everything is validated
// before anything is changed: a damaged file or a mismatched model leaves
// both untouched and throws an Error naming the file and the problem.
CheckpointInfo load_checkpoint(const std::string& path, nn::Module& model, optim::Optimizer* optimizer);

}  // namespace attend::nn

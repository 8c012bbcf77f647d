// Modules: layers that own named parameters and submodules, so a whole model
// can be listed, saved, loaded and switched between training and evaluation.
// Chapter 4 (docs/04-modules-and-optimizers.md).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "attend/random.hpp"
#include "attend/tensor.hpp"

namespace attend::nn {

// A module owns parameters (tensors that require grad) and child modules,
// each under a name. Names compose with dots: a Linear registered as
// "q_proj" inside a module registered as "self_attn" has the parameter
// "self_attn.q_proj.weight".
class Module {
 public:
  virtual ~Module() = default;
  Module() = default;
  Module(const Module&) = delete;  // a module owns its parameters: no silent copies
  Module& operator=(const Module&) = delete;

  // Every parameter, depth first in registration order, with its full name.
  NamedTensors named_parameters() const;
  std::vector<Tensor> parameters() const;
  int64_t parameter_count() const;  // total number of scalars

  // name -> tensor for every parameter (the tensors themselves, not copies).
  NamedTensors state_dict() const;
  // Copies values into the parameters (in place: optimizers keep working).
  // Strict: a missing, unexpected or mis-shaped entry is an error naming it.
  void load_state_dict(const NamedTensors& state);

  // Training mode (dropout active) or evaluation mode; applies to all children.
  void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }

  void zero_grad();  // forgets the gradients of all parameters

  // --- devices (chapter 11, docs/11-cuda.md, "Training on the device") ---
  // Moves every parameter (with its gradient, if any) and every buffer to
  // `device`, in place: every handle (a Linear's `weight`, an optimizer's
  // list) sees the moved tensor. Returns the module, as PyTorch's to() does.
  // Build the optimizer after this: its state is made beside the parameters.
  Module& to(Device device);
  // The device of the parameters (cpu for a module without any); an Error
  // naming two parameters when they are on two devices.
  Device device() const;
  // Tensors a module keeps that are not parameters (no gradient, not in the
  // state dict: the sinusoidal position table), with their full names.
  NamedTensors named_buffers() const;

  // Every random generator (dropout's) with its full name, for checkpoints.
  std::vector<std::pair<std::string, Generator*>> named_generators();

 protected:
  // Registers a parameter (it will require grad) and returns it.
  Tensor register_parameter(const std::string& name, Tensor value);
  // Registers a child module and returns it.
  template <class M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> module) {
    check_new_name(name);
    children_.emplace_back(name, module);
    return module;
  }
  // Registers a generator the module draws from during forward (dropout).
  void register_generator(const std::string& name, Generator* generator);
  // Registers a buffer (moved by to(), never trained or saved) and returns it.
  Tensor register_buffer(const std::string& name, Tensor value);

 private:
  void check_new_name(const std::string& name) const;
  void collect_parameters(const std::string& prefix, NamedTensors& out) const;
  void collect_buffers(const std::string& prefix, NamedTensors& out) const;
  void collect_generators(const std::string& prefix,
                          std::vector<std::pair<std::string, Generator*>>& out);

  NamedTensors parameters_;
  NamedTensors buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  std::vector<std::pair<std::string, Generator*>> generators_;
  bool training_ = true;
};

// A module with one tensor in and one tensor out, so it can sit in a Sequential.
class UnaryModule : public Module {
 public:
  virtual Tensor forward(const Tensor& x) = 0;
  Tensor operator()(const Tensor& x) { return forward(x); }
};

// A list of modules named by position: "0", "1", ... so that their
// parameters are "layers.0.weight", "layers.1.weight", ...
class ModuleList : public Module {
 public:
  template <class M>
  std::shared_ptr<M> push_back(std::shared_ptr<M> module) {
    items_.push_back(module);
    return register_module(std::to_string(items_.size() - 1), std::move(module));
  }
  size_t size() const { return items_.size(); }
  Module& operator[](size_t i) const { return *items_.at(i); }
  template <class M>
  M& at(size_t i) const { return dynamic_cast<M&>(*items_.at(i)); }

 private:
  std::vector<std::shared_ptr<Module>> items_;
};

// y = x W^T + b.  x: (..., in) -> (..., out). W: (out, in), b: (out).
// Initialised as PyTorch does by default: W and b uniform in
// [-1/sqrt(in), 1/sqrt(in)] (Kaiming-uniform with a = sqrt(5)).
class Linear : public UnaryModule {
 public:
  Linear(int64_t in_features, int64_t out_features, Generator& gen, bool bias = true);
  Tensor forward(const Tensor& x) override;
  Tensor weight, bias;  // bias is undefined when constructed with bias = false
  int64_t in_features, out_features;
};

// A lookup table: ids (any shape, Int64) -> (*ids.shape, dim).
// weight: (num_embeddings, dim) ~ N(0, std^2) (PyTorch's default std is 1).
// The row of padding_idx (if >= 0) starts at zero and never gets a gradient.
class Embedding : public Module {
 public:
  Embedding(int64_t num_embeddings, int64_t dim, Generator& gen, int64_t padding_idx = -1,
            float std = 1.0f);
  Tensor forward(const Tensor& ids);
  Tensor operator()(const Tensor& ids) { return forward(ids); }
  Tensor weight;
  int64_t padding_idx;
};

// Normalises the last dim to mean 0 and variance 1, then scales and shifts
// with learned weight (ones) and bias (zeros). x: (..., dim) -> (..., dim)
class LayerNorm : public UnaryModule {
 public:
  explicit LayerNorm(int64_t dim, float eps = 1e-5f);
  Tensor forward(const Tensor& x) override;
  Tensor weight, bias;
  float eps;
};

// Zeroes elements with probability p while training; the identity in eval().
// Owns its generator (seeded from the one given), saved in checkpoints.
class Dropout : public UnaryModule {
 public:
  Dropout(float p, Generator& gen);
  Tensor forward(const Tensor& x) override;
  float p;
  // The generator it draws from (chapter 12's tiled attention draws the same
  // numbers from it inside its kernel).
  Generator& generator() { return generator_; }

 private:
  Generator generator_;
};

class ReLU : public UnaryModule {
 public:
  Tensor forward(const Tensor& x) override;
};

class GELU : public UnaryModule {
 public:
  Tensor forward(const Tensor& x) override;
};

// Runs its modules one after another; they are named "0", "1", ...
class Sequential : public UnaryModule {
 public:
  Sequential() = default;
  explicit Sequential(std::vector<std::shared_ptr<UnaryModule>> modules);
  void push_back(std::shared_ptr<UnaryModule> module);
  Tensor forward(const Tensor& x) override;
  size_t size() const { return modules_.size(); }

 private:
  std::vector<std::shared_ptr<UnaryModule>> modules_;
};

enum class Activation { ReLU, GELU };

// A multi-layer perceptron: Linear, activation, (dropout), ..., Linear.
// sizes = {in, hidden..., out}; no activation after the last layer.
// Parameters: "layers.0.weight", "layers.0.bias", "layers.2.weight", ...
class MLP : public UnaryModule {
 public:
  MLP(const std::vector<int64_t>& sizes, Generator& gen, Activation activation = Activation::ReLU,
      float dropout = 0.0f);
  Tensor forward(const Tensor& x) override;

 private:
  std::shared_ptr<Sequential> layers_;
};

}  // namespace attend::nn

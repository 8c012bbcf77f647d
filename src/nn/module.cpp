// Module bookkeeping (named parameters, children, train/eval, state dicts)
// and the basic layers. Chapter 4 (docs/04-modules-and-optimizers.md).
#include <cmath>
#include <set>

#include "attend/autograd.hpp"
#include "attend/nn.hpp"
#include "attend/ops.hpp"

namespace attend::nn {

// --- Module ---

void Module::check_new_name(const std::string& name) const {
  if (name.empty() || name.find('.') != std::string::npos) {
    throw Error("Module: invalid name '" + name + "' (names are non-empty and have no dots)");
  }
  for (const auto& [existing, t] : parameters_) {
    if (existing == name) throw Error("Module: the name '" + name + "' is already registered");
  }
  for (const auto& [existing, m] : children_) {
    if (existing == name) throw Error("Module: the name '" + name + "' is already registered");
  }
  for (const auto& [existing, t] : buffers_) {
    if (existing == name) throw Error("Module: the name '" + name + "' is already registered");
  }
}

Tensor Module::register_parameter(const std::string& name, Tensor value) {
  check_new_name(name);
  if (!value.defined()) throw Error("Module: parameter '" + name + "' is undefined");
  value.set_requires_grad(true);
  parameters_.emplace_back(name, value);
  return value;
}

void Module::register_generator(const std::string& name, Generator* generator) {
  generators_.emplace_back(name, generator);
}

Tensor Module::register_buffer(const std::string& name, Tensor value) {
  check_new_name(name);
  if (!value.defined()) throw Error("Module: buffer '" + name + "' is undefined");
  buffers_.emplace_back(name, value);
  return value;
}

void Module::collect_buffers(const std::string& prefix, NamedTensors& out) const {
  for (const auto& [name, t] : buffers_) out.emplace_back(prefix + name, t);
  for (const auto& [name, child] : children_) child->collect_buffers(prefix + name + ".", out);
}

NamedTensors Module::named_buffers() const {
  NamedTensors out;
  collect_buffers("", out);
  return out;
}

namespace {

// Moves t's elements to `device` in place: its TensorImpl gets the new
// storage (contiguous there), so every handle sharing it sees the move.
// Parameters and buffers are whole tensors, never views of another.
void move_in_place(const Tensor& t, Device device) {
  if (!t.defined() || t.device() == device) return;
  const Tensor moved = to_device(t, device);
  TensorImpl& impl = *t.impl();
  impl.storage = moved.impl()->storage;
  impl.strides = moved.strides();
  impl.offset = 0;
}

}  // namespace

Module& Module::to(Device device) {
  for (const auto& [name, p] : named_parameters()) {
    move_in_place(p, device);
    move_in_place(p.grad(), device);  // the gradient stays beside its parameter
  }
  for (const auto& [name, b] : named_buffers()) move_in_place(b, device);
  return *this;
}

Device Module::device() const {
  const NamedTensors params = named_parameters();
  for (const auto& [name, p] : params) {
    if (p.device() != params.front().second.device()) {
      throw Error("Module::device: the parameters are on two devices: '" + params.front().first + "' on " +
                  to_string(params.front().second.device()) + ", '" + name + "' on " + to_string(p.device()));
    }
  }
  return params.empty() ? Device::cpu : params.front().second.device();
}

void Module::collect_parameters(const std::string& prefix, NamedTensors& out) const {
  // exercise 4.1 begin: append own parameters as prefix + name, then each child's with prefix + child name + '.'
  for (const auto& [name, t] : parameters_) out.emplace_back(prefix + name, t);
  for (const auto& [name, child] : children_) child->collect_parameters(prefix + name + ".", out);
  // exercise 4.1 end
}

void Module::collect_generators(const std::string& prefix,
                                std::vector<std::pair<std::string, Generator*>>& out) {
  for (const auto& [name, g] : generators_) out.emplace_back(prefix + name, g);
  for (const auto& [name, child] : children_) child->collect_generators(prefix + name + ".", out);
}

NamedTensors Module::named_parameters() const {
  NamedTensors out;
  collect_parameters("", out);
  return out;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& [name, t] : named_parameters()) out.push_back(t);
  return out;
}

int64_t Module::parameter_count() const {
  int64_t n = 0;
  for (const Tensor& t : parameters()) n += t.numel();
  return n;
}

NamedTensors Module::state_dict() const { return named_parameters(); }

void Module::load_state_dict(const NamedTensors& state) {
  const NamedTensors mine = named_parameters();
  std::set<std::string> known;
  for (const auto& [name, t] : mine) known.insert(name);
  std::map<std::string, Tensor> given;
  for (const auto& [name, t] : state) {
    if (!known.count(name)) throw Error("load_state_dict: unexpected entry '" + name + "'");
    if (!given.emplace(name, t).second) throw Error("load_state_dict: entry '" + name + "' appears twice");
  }
  // Check everything first, so a bad state dict changes nothing.
  for (const auto& [name, t] : mine) {
    auto it = given.find(name);
    if (it == given.end()) throw Error("load_state_dict: missing entry '" + name + "'");
    if (!it->second.defined() || it->second.dtype() != DType::Float32 ||
        it->second.shape() != t.shape()) {
      throw Error("load_state_dict: entry '" + name + "' has shape " +
                  (it->second.defined() ? to_string(it->second.shape()) : std::string("(undefined)")) +
                  " but the parameter has shape " + to_string(t.shape()));
    }
  }
  for (const auto& [name, t] : mine) copy_into(t, given.at(name));
}

void Module::train(bool on) {
  training_ = on;
  for (auto& [name, child] : children_) child->train(on);
}

void Module::zero_grad() {
  for (Tensor t : parameters()) t.zero_grad();
}

std::vector<std::pair<std::string, Generator*>> Module::named_generators() {
  std::vector<std::pair<std::string, Generator*>> out;
  collect_generators("", out);
  return out;
}

// --- Linear ---

namespace {
// Uniform in [-bound, bound).
Tensor uniform(const Shape& shape, float bound, Generator& gen) {
  Tensor t = rand(shape, gen);
  for (float& v : t.impl()->storage->floats) v = (2.0f * v - 1.0f) * bound;
  return t;
}
}  // namespace

Linear::Linear(int64_t in, int64_t out, Generator& gen, bool with_bias)
    : in_features(in), out_features(out) {
  if (in <= 0 || out <= 0) {
    throw Error("Linear: sizes must be positive, got in=" + std::to_string(in) + " out=" + std::to_string(out));
  }
  // Kaiming-uniform with a = sqrt(5): gain sqrt(2 / (1 + 5)) times sqrt(3 / in)
  // gives the bound 1/sqrt(in), the same bound PyTorch uses for the bias.
  const float bound = 1.0f / std::sqrt(static_cast<float>(in));
  weight = register_parameter("weight", uniform({out, in}, bound, gen));
  if (with_bias) bias = register_parameter("bias", uniform({out}, bound, gen));
}

Tensor Linear::forward(const Tensor& x) {
  if (x.dim() < 1 || x.size(-1) != in_features) {
    throw Error("Linear: input of shape " + to_string(x.shape()) + " does not end in in_features=" +
                std::to_string(in_features) + " (weight " + to_string(weight.shape()) + ")");
  }
  // x weight^T + bias: the leading dims folded into one big matmul, the bias
  // added in place (one op: see attend::linear, chapter 10).
  return linear(x, weight, bias);
}

// --- Embedding ---

Embedding::Embedding(int64_t num, int64_t dim, Generator& gen, int64_t padding_idx_, float std)
    : padding_idx(padding_idx_) {
  if (num <= 0 || dim <= 0) throw Error("Embedding: sizes must be positive");
  if (padding_idx >= num) {
    throw Error("Embedding: padding_idx " + std::to_string(padding_idx) + " is out of range for " +
                std::to_string(num) + " embeddings");
  }
  Tensor w = randn({num, dim}, gen);
  for (float& v : w.impl()->storage->floats) v *= std;
  if (padding_idx >= 0) copy_into(w.select(0, padding_idx), zeros({dim}));
  weight = register_parameter("weight", w);
}

Tensor Embedding::forward(const Tensor& ids) { return embedding(weight, ids, padding_idx); }

// --- LayerNorm ---

LayerNorm::LayerNorm(int64_t dim, float eps_) : eps(eps_) {
  weight = register_parameter("weight", ones({dim}));
  bias = register_parameter("bias", zeros({dim}));
}

Tensor LayerNorm::forward(const Tensor& x) { return layer_norm(x, weight, bias, eps); }

// --- Dropout, activations ---

Dropout::Dropout(float p_, Generator& gen) : p(p_), generator_(gen.next_u64()) {
  if (!(p >= 0.0f && p <= 1.0f)) throw Error("Dropout: p must be in [0, 1], got " + std::to_string(p));
  register_generator("generator", &generator_);
}

Tensor Dropout::forward(const Tensor& x) { return dropout(x, p, is_training(), generator_); }

Tensor ReLU::forward(const Tensor& x) { return relu(x); }
Tensor GELU::forward(const Tensor& x) { return gelu(x); }

// --- Sequential, MLP ---

Sequential::Sequential(std::vector<std::shared_ptr<UnaryModule>> modules) {
  for (auto& m : modules) push_back(std::move(m));
}

void Sequential::push_back(std::shared_ptr<UnaryModule> module) {
  modules_.push_back(module);
  register_module(std::to_string(modules_.size() - 1), std::move(module));
}

Tensor Sequential::forward(const Tensor& x) {
  Tensor h = x;
  for (auto& m : modules_) h = m->forward(h);
  return h;
}

MLP::MLP(const std::vector<int64_t>& sizes, Generator& gen, Activation activation, float dropout_p) {
  if (sizes.size() < 2) throw Error("MLP: needs at least an input and an output size");
  layers_ = register_module("layers", std::make_shared<Sequential>());
  for (size_t i = 0; i + 1 < sizes.size(); ++i) {
    layers_->push_back(std::make_shared<Linear>(sizes[i], sizes[i + 1], gen));
    if (i + 2 == sizes.size()) break;  // no activation after the output layer
    if (activation == Activation::ReLU) {
      layers_->push_back(std::make_shared<ReLU>());
    } else {
      layers_->push_back(std::make_shared<GELU>());
    }
    if (dropout_p > 0.0f) layers_->push_back(std::make_shared<Dropout>(dropout_p, gen));
  }
}

Tensor MLP::forward(const Tensor& x) { return layers_->forward(x); }

}  // namespace attend::nn

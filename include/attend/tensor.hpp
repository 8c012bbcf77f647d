// Tensor: an n-dimensional array of float32 (or int64 indices) that is a view
// (shape, strides, offset) onto a shared flat Storage. Chapter 1 teaches the
// data side (docs/01-tensors.md): storage, shape, strides, offset, views. The
// autograd methods are chapter 2's (docs/02-autograd.md; their fields live in
// autograd.hpp). View methods are differentiable ops: they live in
// src/ops/views.cpp beside their backward. Chapter 11 puts tensors on a
// device (docs/11-cuda.md, "Tensors on the device").
#pragma once

#include <initializer_list>
#include <iosfwd>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "attend/device_allocator.hpp"
#include "attend/random.hpp"
#include "attend/shape.hpp"
#include "attend/uninitialized_allocator.hpp"

namespace attend {

struct Node;          // a step of the autograd graph (autograd.hpp, chapter 2)
struct AutogradMeta;  // a tensor's autograd fields (autograd.hpp, chapter 2)

// Float32 holds values; Int64 holds indices (token ids, class targets).
enum class DType { Float32, Int64 };
std::string to_string(DType dtype);

// Where a tensor's elements live, named as PyTorch names them: the host's
// memory, or the GPU's (chapter 11; in the default build the CUDA emulator's,
// which host code may not read either). Ops run where their inputs are.
enum class Device { cpu, cuda };
std::string to_string(Device device);
Device parse_device(const std::string& name);  // "cpu" or "cuda"

// One flat buffer shared by a tensor and all of its views. On the CPU exactly
// one of the two vectors is used, chosen by dtype. (FloatBuffer is a
// std::vector of float that can grow without zero-filling: chapter 10's
// speed-up, see uninitialized_allocator.hpp.) On the device both stay empty
// and the elements are in device_memory, from the caching allocator.
struct Storage {
  DType dtype = DType::Float32;
  FloatBuffer floats;
  std::vector<int64_t> indices;
  Device device = Device::cpu;
  kernels::DeviceBlock device_memory;  // Device::cuda only
};

// What a Tensor handle points to. Element (i0, i1, ...) lives at
// storage[offset + i0*strides[0] + i1*strides[1] + ...].
struct TensorImpl {
  std::shared_ptr<Storage> storage;
  Shape shape;
  Shape strides;
  int64_t offset = 0;
  std::string name;  // optional, shown when printing and in DOT graphs

  // Chapter 2's part (requires_grad, grad, grad_fn), defined in autograd.hpp;
  // null for a tensor that never took part in autograd, as in PyTorch.
  std::shared_ptr<AutogradMeta> autograd;
};

// A Tensor is a cheap handle (a shared pointer): copying it shares the same
// array, as in PyTorch. Use clone() for an independent copy.
class Tensor {
 public:
  Tensor() = default;  // an undefined tensor (defined() == false)
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  bool defined() const { return impl_ != nullptr; }
  const std::shared_ptr<TensorImpl>& impl() const { return impl_; }

  // --- shape and layout (chapter 1) ---
  const Shape& shape() const;
  const Shape& strides() const;
  int64_t offset() const;
  int64_t dim() const;                // number of dimensions (rank)
  int64_t size(int64_t dim) const;    // dim may be negative
  int64_t numel() const;
  DType dtype() const;
  Device device() const;
  bool is_contiguous() const;         // row-major with no gaps
  bool shares_storage_with(const Tensor& other) const;

  // --- data access (chapter 1) ---
  // Pointer to element (0, 0, ...) of a Float32 tensor; walk it with strides().
  // These and every reader below are for a tensor on the CPU: on the device
  // they throw (copy it to the host with cpu() first).
  float* data();
  const float* data() const;
  // The same for an Int64 tensor.
  int64_t* index_data();
  const int64_t* index_data() const;

  float at(const std::vector<int64_t>& index) const;      // one element, Float32
  void set(const std::vector<int64_t>& index, float value);
  int64_t index_at(const std::vector<int64_t>& index) const;  // one element, Int64
  float item() const;                  // the value of a one-element Float32 tensor
  std::vector<float> to_vector() const;          // all elements in row-major order
  std::vector<int64_t> to_index_vector() const;  // the same for Int64

  // --- devices (chapter 11; differentiable, see src/ops/views.cpp) ---
  // Itself when it is on `device` already, else a copy there; the gradient
  // flows back to the device it came from.
  Tensor to(Device device) const;
  Tensor cpu() const;   // to(Device::cpu)
  Tensor cuda() const;  // to(Device::cuda)
  // Pointer to element (0, 0, ...) of a Float32 tensor on the device, in
  // device memory: for kernels (src/kernels/*.cu), never read on the host.
  float* device_data();
  const float* device_data() const;
  // The same for an Int64 tensor on the device (token ids, targets).
  int64_t* device_index_data();
  const int64_t* device_index_data() const;

  // --- views (chapter 1; differentiable, see src/ops/views.cpp) ---
  Tensor view(const Shape& shape) const;      // never copies; throws if impossible
  Tensor reshape(const Shape& shape) const;   // a view when possible, else a copy
  Tensor transpose(int64_t dim0, int64_t dim1) const;
  Tensor t() const;                           // transpose of a 2-D tensor
  Tensor permute(const Shape& dims) const;
  Tensor slice(int64_t dim, int64_t start, int64_t end, int64_t step = 1) const;
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
  Tensor select(int64_t dim, int64_t index) const;  // drops `dim`
  Tensor unsqueeze(int64_t dim) const;
  Tensor squeeze(int64_t dim) const;
  Tensor squeeze() const;                     // drops every size-1 dim
  Tensor expand(const Shape& shape) const;    // size-1 dims stretched with stride 0
  Tensor flatten() const;                     // reshape to (numel,)
  Tensor contiguous() const;                  // itself if contiguous, else a copy
  Tensor clone() const;                       // always a copy (differentiable)

  // --- autograd (chapter 2) ---
  bool requires_grad() const;
  // Only on leaves. Returns the handle (a copy, so chaining on a temporary is safe).
  Tensor set_requires_grad(bool value = true);
  bool is_leaf() const;                             // not produced by a recorded op
  Tensor grad() const;                              // undefined until backward
  void zero_grad();                                 // forget the accumulated gradient
  void retain_grad();                               // keep grad() on a non-leaf
  // Backpropagate from this tensor. Without `gradient` it must hold one element.
  void backward(const Tensor& gradient = Tensor(), bool retain_graph = false) const;
  Tensor detach() const;                            // same data, no history
  const std::shared_ptr<Node>& grad_fn() const;
  std::string grad_fn_name() const;                 // the op that made it ("mul"), "" for a leaf
  const std::string& name() const;
  Tensor set_name(const std::string& name);

  // --- printing (chapter 1) ---
  std::string to_string() const;

 private:
  std::shared_ptr<TensorImpl> impl_;
};

std::ostream& operator<<(std::ostream& os, const Tensor& t);

// Tensors with names, in order: parameters, state dicts, checkpoint contents.
using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

// --- factories (chapter 1) ---
// The names are PyTorch's: zeros() fills with 0; empty() leaves the values
// unset (whatever the memory held), for an op that writes every element
// before anything reads it (docs/01-tensors.md, "Making tensors"). Each
// makes its tensor on `device` (chapter 11); the _like ones on t's device.
Tensor zeros(const Shape& shape, DType dtype = DType::Float32, Device device = Device::cpu);
Tensor zeros(const Shape& shape, Device device);
Tensor empty(const Shape& shape, DType dtype = DType::Float32, Device device = Device::cpu);
Tensor empty(const Shape& shape, Device device);
Tensor ones(const Shape& shape, Device device = Device::cpu);
Tensor full(const Shape& shape, float value, Device device = Device::cpu);
Tensor scalar_tensor(float value, Device device = Device::cpu);  // a 0-d tensor
Tensor zeros_like(const Tensor& t);
Tensor ones_like(const Tensor& t);
Tensor arange(int64_t end);                        // 0, 1, ..., end-1
Tensor arange(float start, float end, float step = 1.0f);
Tensor from_vector(const std::vector<float>& values, const Shape& shape,
                   Device device = Device::cpu);
Tensor from_indices(const std::vector<int64_t>& values, const Shape& shape,
                    Device device = Device::cpu);  // Int64
// Drawn on the host, so the same seed gives the same numbers on either device.
Tensor randn(const Shape& shape, Generator& gen, Device device = Device::cpu);  // N(0, 1)
Tensor rand(const Shape& shape, Generator& gen, Device device = Device::cpu);   // U[0, 1)

// A tensor with the given layout over existing storage (no copy, no history).
// The building block of every view; checks that all elements are in bounds.
Tensor as_strided(const Tensor& base, const Shape& shape, const Shape& strides, int64_t offset);

// A new contiguous tensor holding t's values, Float32 or Int64, on t's device
// (no history). The raw copy behind contiguous() and clone().
Tensor copy_to_contiguous(const Tensor& t);

// t's values on `device` (no history): t itself when it is there already,
// else a new contiguous tensor there. The raw move behind Tensor::to, and
// how printing, checkpoints and gradcheck read a device tensor's values.
Tensor to_device(const Tensor& t, Device device);

// Writes src's values into the elements of dst (a view, usually), in place;
// src broadcasts to dst's shape; from another device it is moved to dst's
// first (load_state_dict into a model on the GPU). No history: a building
// block for ops.
void copy_into(const Tensor& dst, const Tensor& src);

// True when |a - b| <= atol + rtol * |b| for every element (shapes must match).
bool allclose(const Tensor& a, const Tensor& b, float rtol = 1e-5f, float atol = 1e-6f);
// The largest |a - b| over all elements (shapes must match).
float max_abs_diff(const Tensor& a, const Tensor& b);

}  // namespace attend

// Tensor basics: layout queries, element access, factories, as_strided.
// Chapter 1 (docs/01-tensors.md). Views and copies are in src/ops/views.cpp,
// printing in src/tensor/print.cpp, autograd methods in src/autograd/engine.cpp.
// Devices (chapter 11, docs/11-cuda.md): storage in device memory, the
// readers' guard, to_device and the device side of the copies.
#include "attend/tensor.hpp"

#include <algorithm>
#include <cmath>

#include "attend/gpu_kernels.hpp"
#include "attend/strided.hpp"

#ifdef __GLIBC__
#include <malloc.h>
#endif

namespace attend {

std::string to_string(DType dtype) { return dtype == DType::Float32 ? "float32" : "int64"; }

std::string to_string(Device device) { return device == Device::cpu ? "cpu" : "cuda"; }

Device parse_device(const std::string& name) {
  if (name == "cpu") return Device::cpu;
  if (name == "cuda") return Device::cuda;
  throw Error("unknown device '" + name + "': expected cpu or cuda");
}

namespace {

const TensorImpl& checked(const std::shared_ptr<TensorImpl>& impl) {
  if (!impl) throw Error("tensor: use of an undefined tensor");
  return *impl;
}

// Offset in storage of the element at `index`, with bounds checks.
int64_t element_offset(const TensorImpl& t, const std::vector<int64_t>& index,
                       const std::string& op) {
  if (index.size() != t.shape.size()) {
    throw Error(op + ": got " + std::to_string(index.size()) + " indices for a tensor of shape " +
                attend::to_string(t.shape));
  }
  // exercise 1.2 begin: storage offset of element index: t.offset + sum_d i_d * strides[d], range checked
  int64_t offset = t.offset;
  for (size_t d = 0; d < index.size(); ++d) {
    int64_t i = index[d] < 0 ? index[d] + t.shape[d] : index[d];
    if (i < 0 || i >= t.shape[d]) {
      throw Error(op + ": index " + std::to_string(index[d]) + " is out of range for dim " +
                  std::to_string(d) + " of shape " + attend::to_string(t.shape));
    }
    offset += i * t.strides[d];
  }
  return offset;
  // exercise 1.2 end
}

// Host code never reads device memory directly, not even on the emulator
// (where it could): the data moves only where the program says so.
void require_host(const TensorImpl& t, const char* op) {
  if (t.storage->device != Device::cpu) {
    throw Error(std::string(op) + ": the tensor of shape " + attend::to_string(t.shape) + " is on " +
                attend::to_string(t.storage->device) + ": copy it to the host with .cpu() first");
  }
}

size_t element_bytes(DType dtype) { return dtype == DType::Float32 ? sizeof(float) : sizeof(int64_t); }

// How many elements the storage holds, on either device.
int64_t storage_elements(const Storage& storage) {
  if (storage.device != Device::cpu) {
    return static_cast<int64_t>(storage.device_memory.bytes() / element_bytes(storage.dtype));
  }
  return storage.dtype == DType::Float32 ? static_cast<int64_t>(storage.floats.size())
                                         : static_cast<int64_t>(storage.indices.size());
}

// Element (0, 0, ...) of t in device memory (null for an empty storage).
void* device_element0(const TensorImpl& t) {
  auto* base = static_cast<unsigned char*>(t.storage->device_memory.get());
  return base == nullptr ? nullptr
                         : base + static_cast<size_t>(t.offset) * element_bytes(t.storage->dtype);
}

void require_dtype(const TensorImpl& t, DType dtype, const std::string& op) {
  if (t.storage->dtype != dtype) {
    throw Error(op + ": expected a " + attend::to_string(dtype) + " tensor, got " +
                attend::to_string(t.storage->dtype) + " of shape " + attend::to_string(t.shape));
  }
}

// Memory from the C library's allocator (chapter 10, docs/10-speed.md,
// "Memory"). A training step frees and allocates the same large buffers
// again and again. glibc's malloc serves a block above its "mmap threshold"
// (128 KiB at first, raised on its own up to 32 MiB) with fresh pages from
// the kernel and gives them back when it is freed, and gives back the top of
// its heap once more than the "trim threshold" is free there: every step
// then pays for its tensors in page faults, the kernel zeroing each page
// before the first write. Measured on 60 toy-French steps on 1 thread:
// 270,709 page faults and 9.0 s of CPU time with the defaults, 27,677 and
// 5.8 s with the two settings below, and the same peak resident memory (111
// and 112 MiB): freed blocks stay in the heap and the next step reuses them.
// (The same as GLIBC_TUNABLES=glibc.malloc.mmap_threshold=...:glibc.malloc.
// trim_threshold=...; other C libraries keep their own policy.)
#ifdef __GLIBC__
const bool g_malloc_tuned = [] {
  mallopt(M_MMAP_THRESHOLD, 32 << 20);   // blocks up to 32 MiB come from the heap...
  mallopt(M_TRIM_THRESHOLD, 128 << 20);  // ...which keeps up to 128 MiB free for reuse
  return true;
}();
#endif

// zero_fill false: the Float32 elements are left unset (see empty()); an
// Int64 buffer is an ordinary vector and always starts at 0.
std::shared_ptr<TensorImpl> make_impl(const Shape& shape, DType dtype, bool zero_fill = true,
                                      Device device = Device::cpu) {
  for (int64_t s : shape) {
    if (s < 0) throw Error("tensor: negative size in shape " + attend::to_string(shape));
  }
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>();
  impl->storage->dtype = dtype;
  impl->storage->device = device;
  if (device == Device::cuda) {
    // Fresh device memory holds garbage (NaN on the emulator).
    impl->storage->device_memory =
        kernels::DeviceBlock(static_cast<size_t>(numel(shape)) * element_bytes(dtype));
    if (zero_fill && dtype == DType::Float32) {
      kernels::fill_device(static_cast<float*>(impl->storage->device_memory.get()), numel(shape), 0.0f);
    } else if (zero_fill) {
      const std::vector<int64_t> host_zeros(static_cast<size_t>(numel(shape)), 0);
      kernels::copy_to_device(impl->storage->device_memory.get(), host_zeros.data(),
                              host_zeros.size() * sizeof(int64_t));
    }
  } else if (dtype == DType::Float32) {
    if (zero_fill) {
      impl->storage->floats.assign(static_cast<size_t>(numel(shape)), 0.0f);
    } else {
      impl->storage->floats.resize(static_cast<size_t>(numel(shape)));  // UninitializedAllocator: no fill
    }
  } else {
    impl->storage->indices.assign(static_cast<size_t>(numel(shape)), 0);
  }
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  return impl;
}

}  // namespace

// --- layout ---

const Shape& Tensor::shape() const { return checked(impl_).shape; }
const Shape& Tensor::strides() const { return checked(impl_).strides; }
int64_t Tensor::offset() const { return checked(impl_).offset; }
int64_t Tensor::dim() const { return static_cast<int64_t>(shape().size()); }
int64_t Tensor::size(int64_t d) const { return shape()[normalize_dim(d, dim(), "size")]; }
int64_t Tensor::numel() const { return attend::numel(shape()); }
DType Tensor::dtype() const { return checked(impl_).storage->dtype; }
Device Tensor::device() const { return checked(impl_).storage->device; }

bool Tensor::is_contiguous() const {
  // Sizes of 1 may have any stride: only dims that are walked matter.
  int64_t expected = 1;
  const Shape& sh = shape();
  const Shape& st = strides();
  for (size_t i = sh.size(); i-- > 0;) {
    if (sh[i] == 1) continue;
    if (st[i] != expected) return false;
    expected *= sh[i];
  }
  return true;
}

bool Tensor::shares_storage_with(const Tensor& other) const {
  return defined() && other.defined() && impl_->storage == other.impl_->storage;
}

// --- data ---

float* Tensor::data() {
  require_dtype(checked(impl_), DType::Float32, "data");
  require_host(*impl_, "data");
  return impl_->storage->floats.data() + impl_->offset;
}
const float* Tensor::data() const {
  require_dtype(checked(impl_), DType::Float32, "data");
  require_host(*impl_, "data");
  return impl_->storage->floats.data() + impl_->offset;
}
int64_t* Tensor::index_data() {
  require_dtype(checked(impl_), DType::Int64, "index_data");
  require_host(*impl_, "index_data");
  return impl_->storage->indices.data() + impl_->offset;
}
const int64_t* Tensor::index_data() const {
  require_dtype(checked(impl_), DType::Int64, "index_data");
  require_host(*impl_, "index_data");
  return impl_->storage->indices.data() + impl_->offset;
}

namespace {
// Element (0, 0, ...) of a tensor that must be on the device, for a kernel.
void* device_pointer(const std::shared_ptr<TensorImpl>& impl, DType dtype, const char* op, const char* host_reader) {
  require_dtype(checked(impl), dtype, op);
  if (impl->storage->device != Device::cuda) {
    throw Error(std::string(op) + ": the tensor of shape " + attend::to_string(impl->shape) + " is on the cpu: use " +
                host_reader + "(), or move it with .to(Device::cuda)");
  }
  return device_element0(*impl);
}
}  // namespace

float* Tensor::device_data() {
  return static_cast<float*>(device_pointer(impl_, DType::Float32, "device_data", "data"));
}
const float* Tensor::device_data() const { return const_cast<Tensor*>(this)->device_data(); }
int64_t* Tensor::device_index_data() {
  return static_cast<int64_t*>(device_pointer(impl_, DType::Int64, "device_index_data", "index_data"));
}
const int64_t* Tensor::device_index_data() const { return const_cast<Tensor*>(this)->device_index_data(); }

float Tensor::at(const std::vector<int64_t>& index) const {
  const TensorImpl& t = checked(impl_);
  require_dtype(t, DType::Float32, "at");
  require_host(t, "at");
  return t.storage->floats[static_cast<size_t>(element_offset(t, index, "at"))];
}

void Tensor::set(const std::vector<int64_t>& index, float value) {
  const TensorImpl& t = checked(impl_);
  require_dtype(t, DType::Float32, "set");
  require_host(t, "set");
  t.storage->floats[static_cast<size_t>(element_offset(t, index, "set"))] = value;
}

int64_t Tensor::index_at(const std::vector<int64_t>& index) const {
  const TensorImpl& t = checked(impl_);
  require_dtype(t, DType::Int64, "index_at");
  require_host(t, "index_at");
  return t.storage->indices[static_cast<size_t>(element_offset(t, index, "index_at"))];
}

float Tensor::item() const {
  require_host(checked(impl_), "item");
  if (numel() != 1) {
    throw Error("item: only a one-element tensor has an item, got shape " + attend::to_string(shape()));
  }
  return at(std::vector<int64_t>(static_cast<size_t>(dim()), 0));
}

std::vector<float> Tensor::to_vector() const {
  const TensorImpl& t = checked(impl_);
  require_dtype(t, DType::Float32, "to_vector");
  require_host(t, "to_vector");
  std::vector<float> out;
  out.reserve(static_cast<size_t>(numel()));
  const float* base = t.storage->floats.data();
  for_each_offset<1>(t.shape, {&t.strides}, {t.offset},
                     [&](const std::array<int64_t, 1>& o) { out.push_back(base[o[0]]); });
  return out;
}

std::vector<int64_t> Tensor::to_index_vector() const {
  const TensorImpl& t = checked(impl_);
  require_dtype(t, DType::Int64, "to_index_vector");
  require_host(t, "to_index_vector");
  std::vector<int64_t> out;
  out.reserve(static_cast<size_t>(numel()));
  const int64_t* base = t.storage->indices.data();
  for_each_offset<1>(t.shape, {&t.strides}, {t.offset},
                     [&](const std::array<int64_t, 1>& o) { out.push_back(base[o[0]]); });
  return out;
}

const std::string& Tensor::name() const { return checked(impl_).name; }
Tensor Tensor::set_name(const std::string& name) {
  checked(impl_);
  impl_->name = name;
  return *this;
}

// --- factories ---

Tensor zeros(const Shape& shape, DType dtype, Device device) {
  return Tensor(make_impl(shape, dtype, /*zero_fill=*/true, device));
}
Tensor zeros(const Shape& shape, Device device) { return zeros(shape, DType::Float32, device); }
Tensor empty(const Shape& shape, DType dtype, Device device) {
  return Tensor(make_impl(shape, dtype, /*zero_fill=*/false, device));
}
Tensor empty(const Shape& shape, Device device) { return empty(shape, DType::Float32, device); }
Tensor ones(const Shape& shape, Device device) { return full(shape, 1.0f, device); }

Tensor full(const Shape& shape, float value, Device device) {
  Tensor t = empty(shape, DType::Float32, device);
  if (device == Device::cuda) {
    kernels::fill_device(t.device_data(), t.numel(), value);  // no copy from the host
  } else {
    t.impl()->storage->floats.assign(static_cast<size_t>(t.numel()), value);
  }
  return t;
}

Tensor scalar_tensor(float value, Device device) { return full({}, value, device); }
Tensor zeros_like(const Tensor& t) { return zeros(t.shape(), t.device()); }
Tensor ones_like(const Tensor& t) { return ones(t.shape(), t.device()); }

Tensor arange(int64_t end) { return arange(0.0f, static_cast<float>(end), 1.0f); }

Tensor arange(float start, float end, float step) {
  if (step == 0.0f) throw Error("arange: step must not be zero");
  const double count = std::ceil((static_cast<double>(end) - start) / step);
  const int64_t n = count > 0 ? static_cast<int64_t>(count) : 0;
  Tensor t = empty({n});
  float* p = t.data();
  for (int64_t i = 0; i < n; ++i) p[i] = start + static_cast<float>(i) * step;
  return t;
}

Tensor from_vector(const std::vector<float>& values, const Shape& shape, Device device) {
  if (static_cast<int64_t>(values.size()) != attend::numel(shape)) {
    throw Error("from_vector: " + std::to_string(values.size()) +
                " values do not fill shape " + attend::to_string(shape) + " (" +
                std::to_string(attend::numel(shape)) + " elements)");
  }
  Tensor t = empty(shape);
  t.impl()->storage->floats.assign(values.begin(), values.end());
  return to_device(t, device);
}

Tensor from_indices(const std::vector<int64_t>& values, const Shape& shape, Device device) {
  if (static_cast<int64_t>(values.size()) != attend::numel(shape)) {
    throw Error("from_indices: " + std::to_string(values.size()) +
                " values do not fill shape " + attend::to_string(shape) + " (" +
                std::to_string(attend::numel(shape)) + " elements)");
  }
  Tensor t = empty(shape, DType::Int64);
  t.impl()->storage->indices = values;
  return to_device(t, device);
}

Tensor randn(const Shape& shape, Generator& gen, Device device) {
  Tensor t = empty(shape);
  for (float& v : t.impl()->storage->floats) v = gen.normal();
  return to_device(t, device);
}

Tensor rand(const Shape& shape, Generator& gen, Device device) {
  Tensor t = empty(shape);
  for (float& v : t.impl()->storage->floats) v = gen.uniform();
  return to_device(t, device);
}

Tensor as_strided(const Tensor& base, const Shape& shape, const Shape& strides, int64_t offset) {
  const TensorImpl& b = checked(base.impl());
  if (shape.size() != strides.size()) {
    throw Error("as_strided: shape " + attend::to_string(shape) + " and strides " + attend::to_string(strides) +
                " have different lengths");
  }
  for (int64_t size : shape) {
    if (size < 0) throw Error("as_strided: negative size in shape " + attend::to_string(shape));
  }
  // Every element must lie inside the storage: check the smallest and largest offsets.
  const int64_t storage_size = storage_elements(*b.storage);
  if (attend::numel(shape) > 0) {
    int64_t lo = offset, hi = offset;
    for (size_t d = 0; d < shape.size(); ++d) {
      const int64_t reach = (shape[d] - 1) * strides[d];
      (reach < 0 ? lo : hi) += reach;
    }
    if (lo < 0 || hi >= storage_size) {
      throw Error("as_strided: shape " + attend::to_string(shape) + " with strides " +
                  attend::to_string(strides) + " and offset " + std::to_string(offset) +
                  " reaches outside a storage of " + std::to_string(storage_size) + " elements");
    }
  }
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = b.storage;
  impl->shape = shape;
  impl->strides = strides;
  impl->offset = offset;
  return Tensor(impl);
}

Tensor copy_to_contiguous(const Tensor& t) {
  Tensor out = empty(t.shape(), t.dtype(), t.device());
  copy_into(out, t);
  return out;
}

Tensor to_device(const Tensor& t, Device device) {
  if (t.device() == device) return t;
  // Made contiguous where it is, then moved as one block of bytes.
  const Tensor source = t.is_contiguous() ? t : copy_to_contiguous(t);
  Tensor out = empty(t.shape(), t.dtype(), device);
  const TensorImpl& s = *source.impl();
  const size_t bytes = static_cast<size_t>(t.numel()) * element_bytes(t.dtype());
  if (bytes == 0) return out;
  if (device == Device::cuda) {
    const void* host = t.dtype() == DType::Float32
                           ? static_cast<const void*>(s.storage->floats.data() + s.offset)
                           : static_cast<const void*>(s.storage->indices.data() + s.offset);
    kernels::copy_to_device(device_element0(*out.impl()), host, bytes);
  } else {
    Storage& o = *out.impl()->storage;
    void* host = t.dtype() == DType::Float32 ? static_cast<void*>(o.floats.data())
                                             : static_cast<void*>(o.indices.data());
    kernels::copy_to_host(host, device_element0(s), bytes);
  }
  return out;
}

void copy_into(const Tensor& dst, const Tensor& src) {
  const TensorImpl& d = checked(dst.impl());
  const TensorImpl& s = checked(src.impl());
  if (d.storage->dtype != s.storage->dtype) {
    throw Error("copy_into: cannot copy " + attend::to_string(s.storage->dtype) + " into " +
                attend::to_string(d.storage->dtype));
  }
  if (d.storage->device != s.storage->device) return copy_into(dst, to_device(src, dst.device()));
  const Shape src_strides = broadcast_strides(s.shape, s.strides, d.shape, "copy_into");
  if (d.storage->device == Device::cuda) {
    const kernels::DeviceShape shape = device_shape(d.shape, "copy_into");
    if (d.storage->dtype == DType::Float32) {
      kernels::copy_strided_device(static_cast<const float*>(device_element0(s)),
                                   device_strides(src_strides),
                                   static_cast<float*>(device_element0(d)),
                                   device_strides(d.strides), shape);
    } else {
      kernels::copy_strided_device(static_cast<const int64_t*>(device_element0(s)),
                                   device_strides(src_strides),
                                   static_cast<int64_t*>(device_element0(d)),
                                   device_strides(d.strides), shape);
    }
    return;
  }
  if (d.storage->dtype == DType::Float32) {
    const float* from = s.storage->floats.data();
    float* to = d.storage->floats.data();
    // Rows are shared among threads, unless the destination repeats an
    // element (a stride 0: several writes to one place, the last one wins).
    const bool distinct = std::find(d.strides.begin(), d.strides.end(), 0) == d.strides.end();
    const int64_t parallel_from = distinct ? kParallelThreshold : INT64_MAX;
    if (!d.shape.empty() && d.strides.back() == 1 && src_strides.back() == 1) {
      // Rows contiguous on both sides (a permute that keeps the last dim,
      // as split_heads and merge_heads do): one block copy per row.
      const int64_t inner = d.shape.back();
      parallel_for_each_row<2>(d.shape, {&src_strides, &d.strides}, {s.offset, d.offset}, parallel_from,
                               [&](int64_t, const std::array<int64_t, 2>& o) {
                                 std::copy(from + o[0], from + o[0] + inner, to + o[1]);
                               });
    } else {
      parallel_for_each_offset<2>(d.shape, {&src_strides, &d.strides}, {s.offset, d.offset}, parallel_from,
                                  [&](int64_t, const std::array<int64_t, 2>& o) { to[o[1]] = from[o[0]]; });
    }
  } else {
    const int64_t* from = s.storage->indices.data();
    int64_t* to = d.storage->indices.data();
    for_each_offset<2>(d.shape, {&src_strides, &d.strides}, {s.offset, d.offset},
                       [&](const std::array<int64_t, 2>& o) { to[o[1]] = from[o[0]]; });
  }
}

bool allclose(const Tensor& a, const Tensor& b, float rtol, float atol) {
  if (a.shape() != b.shape()) {
    throw Error("allclose: shapes " + attend::to_string(a.shape()) + " and " + attend::to_string(b.shape()) +
                " differ");
  }
  const std::vector<float> va = a.to_vector(), vb = b.to_vector();
  for (size_t i = 0; i < va.size(); ++i) {
    if (!(std::fabs(va[i] - vb[i]) <= atol + rtol * std::fabs(vb[i]))) return false;
  }
  return true;
}

float max_abs_diff(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape()) {
    throw Error("max_abs_diff: shapes " + attend::to_string(a.shape()) + " and " +
                attend::to_string(b.shape()) + " differ");
  }
  const std::vector<float> va = a.to_vector(), vb = b.to_vector();
  float worst = 0.0f;
  for (size_t i = 0; i < va.size(); ++i) {
    const float d = std::fabs(va[i] - vb[i]);
    if (std::isnan(d)) return d;  // a NaN anywhere is the worst difference there is
    worst = std::max(worst, d);
  }
  return worst;
}

}  // namespace attend

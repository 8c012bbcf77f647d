// Chapter 11, CUDA (docs/11-cuda.md): the SGEMM ladder and the row softmax
// against their CPU references on awkward sizes, batched and through
// transposed views (on the GPU with make CUDA=1); and, under the emulator,
// each classic mistake of tests/ch11_broken_kernels.cu found: a barrier not
// reached by all, unwritten shared memory, out-of-range accesses (sanitize).
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "attend/gpu_kernels.hpp"
#include "catch_compat.hpp"
#include "ch11_broken_kernels.hpp"
#include "test_files.hpp"
#include "test_matmul.hpp"

#if defined(__SANITIZE_ADDRESS__)
#define ATTEND_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ATTEND_TEST_ASAN 1
#endif
#endif
#ifdef ATTEND_TEST_ASAN
#include <sys/wait.h>
#include <unistd.h>
#endif

namespace kernels = attend::kernels;
using attend::kernels::DeviceArray;
using attend::kernels::StridedMatrices;
using attend_test::check_close;
using attend_test::Dense;
using attend_test::Floats;
using attend_test::random_dense;
using attend_test::random_floats;
using Offsets = std::vector<int64_t>;

namespace {

// A batch of matrices in device memory, read through strides.
struct DeviceOperand {
  DeviceArray<float> data;
  DeviceArray<int64_t> offsets;
  int64_t row_stride, col_stride;
  StridedMatrices view() const { return {data.data(), offsets.data(), row_stride, col_stride}; }
};

DeviceOperand upload(const Floats& values, const Offsets& offsets, int64_t row_stride,
                     int64_t col_stride) {
  return {DeviceArray<float>(values), DeviceArray<int64_t>(offsets), row_stride, col_stride};
}

// c = a @ b with a kernel of the ladder, both row-major, batch 1.
Floats device_matmul(kernels::DeviceMatmul run, const Dense& a, const Dense& b) {
  const DeviceOperand da = upload(a.v, {0}, a.cols, 1), db = upload(b.v, {0}, b.cols, 1);
  DeviceArray<float> c(a.rows * b.cols);
  run(da.view(), db.view(), c.data(), 1, a.rows, a.cols, b.cols);
  return c.to_host();
}

// The transpose of a row-major (rows, cols) matrix, row-major (cols, rows).
Floats transposed(const Dense& m) {
  Floats t(m.v.size());
  for (int64_t r = 0; r < m.rows; ++r) {
    for (int64_t c = 0; c < m.cols; ++c) t[static_cast<size_t>(c * m.rows + r)] = m.at(r, c);
  }
  return t;
}

}  // namespace

TEST_CASE("every SGEMM of the ladder equals matmul_reference on awkward sizes", "[ch11]") {
  // 1 and 7: less than a warp; 33 and 65: one past a 32 tile; 127: one short
  // of a 128 tile; and non-square mixes of them.
  struct Size {
    int64_t M, K, N;
  };
  const std::vector<Size> sizes{{1, 1, 1},    {7, 7, 7},    {33, 33, 33}, {65, 65, 65},
                                {127, 127, 127}, {1, 127, 7}, {127, 1, 65}, {7, 33, 127},
                                {65, 127, 1},  {33, 7, 65}};
  uint32_t seed = 1;
  for (const Size& s : sizes) {
    const Dense a = random_dense(s.M, s.K, seed++), b = random_dense(s.K, s.N, seed++);
    for (const kernels::SgemmVersion& version : kernels::sgemm_ladder()) {
      check_close(device_matmul(version.run, a, b), a, b, version.name);
    }
  }
}

TEST_CASE("the ladder computes a batch on the grid, with a broadcast operand", "[ch11]") {
  // a: 3 matrices (33, 65) one after another; b: one (65, 7) matrix used by
  // all three (offsets 0, 0, 0), as for (B, T, D) @ (D, N); and then three
  // b matrices stored in reverse order.
  const int64_t batch = 3, M = 33, K = 65, N = 7;
  std::vector<Dense> as, bs;
  Floats a_all, b_all;
  for (int64_t i = 0; i < batch; ++i) {
    as.push_back(random_dense(M, K, static_cast<uint32_t>(10 + i)));
    bs.push_back(random_dense(K, N, static_cast<uint32_t>(20 + i)));
    a_all.insert(a_all.end(), as.back().v.begin(), as.back().v.end());
    b_all.insert(b_all.end(), bs.back().v.begin(), bs.back().v.end());
  }
  const DeviceOperand a = upload(a_all, {0, M * K, 2 * M * K}, K, 1);
  const DeviceOperand b_shared = upload(b_all, {0, 0, 0}, N, 1);
  const DeviceOperand b_reversed = upload(b_all, {2 * K * N, K * N, 0}, N, 1);
  for (const kernels::SgemmVersion& version : kernels::sgemm_ladder()) {
    DeviceArray<float> c(batch * M * N);
    version.run(a.view(), b_shared.view(), c.data(), batch, M, K, N);
    const Floats shared = c.to_host();
    version.run(a.view(), b_reversed.view(), c.data(), batch, M, K, N);
    const Floats reversed = c.to_host();
    for (int64_t i = 0; i < batch; ++i) {
      const auto first = static_cast<ptrdiff_t>(i * M * N), last = first + M * N;
      check_close(Floats(shared.begin() + first, shared.begin() + last), as[static_cast<size_t>(i)],
                  bs[0], std::string(version.name) + " broadcast b, matrix " + std::to_string(i));
      check_close(Floats(reversed.begin() + first, reversed.begin() + last),
                  as[static_cast<size_t>(i)], bs[static_cast<size_t>(batch - 1 - i)],
                  std::string(version.name) + " reversed b, matrix " + std::to_string(i));
    }
  }
}

TEST_CASE("the ladder reads transposed views through strides, without copies", "[ch11]") {
  // The backward pass of c = a @ b needs a^T and b^T: a (M, K) stored as its
  // transpose (K, M) row-major is the view with strides (1, M).
  const int64_t M = 65, K = 33, N = 127;
  const Dense a = random_dense(M, K, 3), b = random_dense(K, N, 4);
  const Floats a_t = transposed(a), b_t = transposed(b);
  const DeviceOperand a_rows = upload(a.v, {0}, K, 1), a_columns = upload(a_t, {0}, 1, M);
  const DeviceOperand b_rows = upload(b.v, {0}, N, 1), b_columns = upload(b_t, {0}, 1, K);
  for (const kernels::SgemmVersion& version : kernels::sgemm_ladder()) {
    DeviceArray<float> c(M * N);
    version.run(a_columns.view(), b_rows.view(), c.data(), 1, M, K, N);
    check_close(c.to_host(), a, b, std::string(version.name) + " a transposed");
    version.run(a_rows.view(), b_columns.view(), c.data(), 1, M, K, N);
    check_close(c.to_host(), a, b, std::string(version.name) + " b transposed");
    version.run(a_columns.view(), b_columns.view(), c.data(), 1, M, K, N);
    check_close(c.to_host(), a, b, std::string(version.name) + " both transposed");
  }
}

TEST_CASE("the ladder writes zeros for K = 0 and rejects negative sizes by name", "[ch11]") {
  for (const kernels::SgemmVersion& version : kernels::sgemm_ladder()) {
    const DeviceOperand a = upload({}, {0}, 0, 1), b = upload({}, {0}, 5, 1);
    DeviceArray<float> c(std::vector<float>(15, 7.0f));
    version.run(a.view(), b.view(), c.data(), 1, 3, 0, 5);  // (3, 0) @ (0, 5): an empty sum
    CHECK(c.to_host() == Floats(15, 0.0f));
    REQUIRE_THROWS_MENTIONING(version.run(a.view(), b.view(), c.data(), 1, -1, 4, 5), version.name,
                              "a (-1, 4) @ b (4, 5)", ">= 0");
  }
}

TEST_CASE("a product too tall for the grid's 65535 rows of blocks is an error, not a bad launch",
          "[ch11]") {
  // 65535 * 32 + 1 rows of 32-row tiles need 65536 blocks on the grid's y.
  const int64_t M = 65535 * 32 + 1;
  const DeviceOperand a = upload({}, {0}, 0, 1), b = upload({}, {0}, 1, 1);
  DeviceArray<float> c(M);
  REQUIRE_THROWS_MENTIONING(kernels::sgemm_3_shared_tiles(a.view(), b.view(), c.data(), 1, M, 0, 1),
                            "sgemm_3_shared_tiles", "65536 blocks on the grid's y (2097121 / 32)");
  REQUIRE_THROWS_MENTIONING(kernels::sgemm_1_naive(a.view(), b.view(), c.data(), 1, 1, 0, M),
                            "sgemm_1_naive", "65536 blocks on the grid's y (2097121 / 32)");
}

TEST_CASE("the row softmax equals softmax_rows_reference", "[ch11]") {
  // Rows shorter than a warp, longer than a block (256 threads), masked
  // entries (-inf, as attention's masks write) and large values.
  struct Size {
    int64_t rows, cols;
  };
  uint32_t seed = 50;
  for (const Size s : {Size{1, 1}, Size{7, 33}, Size{65, 127}, Size{3, 1000}, Size{2, 257}}) {
    Floats x = random_floats(s.rows * s.cols, seed++);
    for (size_t i = 0; i < x.size(); ++i) {
      x[i] *= 10.0f;
      if (i % 5 == 3) x[i] = -INFINITY;  // never a whole row (every row has a column 0)
      if (i % 11 == 4) x[i] += 1000.0f;  // exp would overflow without the max subtracted
    }
    Floats expected(x.size());
    kernels::softmax_rows_reference(x.data(), expected.data(), s.rows, s.cols);
    const DeviceArray<float> dx(x);
    DeviceArray<float> dy(s.rows * s.cols);
    kernels::softmax_rows_device(dx.data(), dy.data(), s.rows, s.cols);
    const Floats y = dy.to_host();
    INFO("softmax of (" << s.rows << ", " << s.cols << ")");
    double worst = 0.0;
    for (size_t i = 0; i < y.size(); ++i) {
      const double error = std::fabs(static_cast<double>(y[i]) - expected[i]);
      worst = std::isnan(error) ? INFINITY : std::max(worst, error / (1e-6 * expected[i] + 1e-30));
    }
    CHECK(worst <= 1.0);
    for (int64_t r = 0; r < s.rows; ++r) {  // and each row sums to 1
      double sum = 0.0;
      for (int64_t j = 0; j < s.cols; ++j) sum += y[static_cast<size_t>(r * s.cols + j)];
      CHECK_NEAR(sum, 1.0, 1e-5);
    }
  }
  const DeviceArray<float> x(4), y(4);
  REQUIRE_THROWS_MENTIONING(kernels::softmax_rows_device(x.data(), y.data(), 2, -2),
                            "softmax_rows_device", "(2, -2)");
}

TEST_CASE("device arrays copy to the device and back; a bad launch names its kernel", "[ch11]") {
  const Floats values{1.5f, -2.0f, 3.25f};
  const DeviceArray<float> array(values);
  CHECK(array.size() == 3);
  CHECK(array.to_host() == values);
  REQUIRE_THROWS_MENTIONING(DeviceArray<float>(-1), "DeviceArray", "-1");

  DeviceArray<float> out(100);
  attend_test::broken::fill_with_blocks_of(out.data(), 100, 96);  // 2 blocks, the last one partly
  const Floats filled = out.to_host();
  for (size_t i = 0; i < filled.size(); ++i) CHECK(filled[i] == static_cast<float>(i));
  REQUIRE_THROWS_MENTIONING(attend_test::broken::fill_with_blocks_of(out.data(), 100, 2048),
                            "fill_kernel");
}

TEST_CASE("only kernel sources include the CUDA emulator, and kernels know no tensors", "[ch11]") {
  // The layers: a .cu file is a kernel (src/kernels, or a broken one in
  // tests/); it includes attend/cuda_or_emulator.hpp, which alone includes
  // the emulator; and it uses no tensor, graph or op.
  namespace fs = std::filesystem;
  const fs::path root(ATTEND_SOURCE_DIR);
  int kernel_sources = 0;
  for (const char* folder : {"include", "src", "tests", "tutorials"}) {
    for (const fs::directory_entry& entry : fs::recursive_directory_iterator(root / folder)) {
      if (!entry.is_regular_file()) continue;
      const fs::path& path = entry.path();
      const std::string ext = path.extension().string();
      if (ext != ".cu" && ext != ".cpp" && ext != ".hpp") continue;
      const std::string text = attend_test::read_file(path.string());
      const std::string name = fs::relative(path, root).string();
      INFO(name);
      const bool is_kernel = ext == ".cu";
      kernel_sources += is_kernel;
      CHECK(attend_test::contains(text, "#include \"attend/cuda_or_emulator.hpp\"") == is_kernel);
      CHECK(attend_test::contains(text, "#include \"attend/cuda_emulator.hpp\"") ==
            (name == "include/attend/cuda_or_emulator.hpp"));
      if (is_kernel) {
        for (const char* upper : {"attend/attend.hpp", "attend/tensor.hpp", "attend/autograd.hpp",
                                  "attend/ops.hpp", "attend/shape.hpp"}) {
          CHECK_FALSE(attend_test::contains(text, upper));
        }
      }
    }
  }
  CHECK(kernel_sources >= 4);  // device_memory, matmul, softmax, the broken ones
}

#ifndef ATTEND_CUDA
// ---------------------------------------------------------------------------
// The emulator as a checker (these mistakes hang or give garbage on a GPU)
// ---------------------------------------------------------------------------

namespace {

bool has_nan(const Floats& v) {
  for (float x : v) {
    if (std::isnan(x)) return true;
  }
  return false;
}

}  // namespace

TEST_CASE("emulator: fresh device memory is NaN, so an output nobody wrote shows", "[ch11]") {
  const DeviceArray<float> fresh(5);
  for (float x : fresh.to_host()) CHECK(std::isnan(x));
}

TEST_CASE("emulator: the tiled SGEMM without its first barrier reads NaN from shared memory",
          "[ch11]") {
  // Each thread stores one element of each tile and, without waiting, reads
  // the whole row and column: elements other threads have not written yet,
  // still the NaN the emulator filled shared memory with at the block's start.
  const int64_t M = 33, K = 40, N = 33;
  const Dense a = random_dense(M, K, 60), b = random_dense(K, N, 61);
  const DeviceOperand da = upload(a.v, {0}, K, 1), db = upload(b.v, {0}, N, 1);
  DeviceArray<float> c(M * N);
  attend_test::broken::sgemm_3_no_barrier_after_load(da.view(), db.view(), c.data(), M, K, N);
  CHECK(has_nan(c.to_host()));
  kernels::sgemm_3_shared_tiles(da.view(), db.view(), c.data(), 1, M, K, N);  // with the barrier
  CHECK_FALSE(has_nan(c.to_host()));
  check_close(c.to_host(), a, b, "sgemm_3_shared_tiles");
}

TEST_CASE("emulator: the tiled SGEMM without its second barrier computes wrong values", "[ch11]") {
  // Threads run in order until they wait. Without the barrier at the end of
  // the k loop, thread (0, 0) loads its part of the next tiles while the
  // other threads still have to read the current ones: they read a mix. With
  // one tile of k (K <= 32) there is no next tile and the result is right,
  // which shows that the overwrite is the reason.
  const int64_t M = 33, N = 33;
  for (const int64_t K : {32, 65}) {
    const Dense a = random_dense(M, K, 70), b = random_dense(K, N, 71);
    const DeviceOperand da = upload(a.v, {0}, K, 1), db = upload(b.v, {0}, N, 1);
    DeviceArray<float> c(M * N);
    attend_test::broken::sgemm_3_no_barrier_before_overwrite(da.view(), db.view(), c.data(), M, K, N);
    const double worst = attend_test::worst_error_ratio(c.to_host(), a, b);
    INFO("K = " << K << ": worst error / allowed = " << worst);
    CHECK((K <= 32 ? worst <= 1.0 : worst > 1.0));
  }
}

TEST_CASE("emulator: a __syncthreads that some threads return before is reported, not hung",
          "[ch11]") {
  // M = N = 33: block (0, 0, 0) lies inside c, so every thread reaches the
  // barrier; block (1, 0, 0) covers column 32 only, and the 992 threads of
  // columns 33..63 return at once.
  const int64_t M = 33, K = 8, N = 33;
  const Dense a = random_dense(M, K, 80), b = random_dense(K, N, 81);
  const DeviceOperand da = upload(a.v, {0}, K, 1), db = upload(b.v, {0}, N, 1);
  DeviceArray<float> c(M * N);
  REQUIRE_THROWS_MENTIONING(
      attend_test::broken::sgemm_3_early_return(da.view(), db.view(), c.data(), M, K, N),
      "sgemm_3_early_return_kernel, block (1, 0, 0)", "__syncthreads at tests/ch11_broken_kernels.cu:",
      "reached by 32 of 1024 threads", "the first: thread (1, 0, 0)) returned");
  // The emulator is usable again after the error.
  kernels::sgemm_3_shared_tiles(da.view(), db.view(), c.data(), 1, M, K, N);
  check_close(c.to_host(), a, b, "sgemm_3_shared_tiles after the error");
}

TEST_CASE("emulator: threads waiting at two different barriers are reported", "[ch11]") {
  DeviceArray<float> out(64);
  REQUIRE_THROWS_MENTIONING(attend_test::broken::different_barriers(out.data()),
                            "different_barriers_kernel, block (0, 0, 0)", "different barriers",
                            "thread (1, 0, 0) at __syncthreads at tests/ch11_broken_kernels.cu:");
}

#ifdef ATTEND_TEST_ASAN
namespace {

// Runs f in a child process (fork) and returns what it wrote to stderr and
// whether it exited with status 0: the sanitizers end a process at the first
// error, and this test process must go on.
std::pair<bool, std::string> run_in_child(const std::function<void()>& f) {
  int pipe_ends[2];
  REQUIRE(pipe(pipe_ends) == 0);
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    close(pipe_ends[0]);
    dup2(pipe_ends[1], 2);
    try {
      f();
    } catch (...) {
      _exit(3);
    }
    _exit(0);
  }
  close(pipe_ends[1]);
  std::string text;
  char buffer[4096];
  for (ssize_t n; (n = read(pipe_ends[0], buffer, sizeof buffer)) > 0;) text.append(buffer, static_cast<size_t>(n));
  close(pipe_ends[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  return {WIFEXITED(status) && WEXITSTATUS(status) == 0, text};
}

}  // namespace

TEST_CASE("emulator under make sanitize: out-of-range global and shared accesses are caught",
          "[ch11]") {
  // Global memory: 33 elements in blocks of 32 without `if (i < n)`; with
  // 64 elements nothing is out of range and the child exits cleanly.
  const auto [clean_ok, clean_text] = run_in_child([] {
    DeviceArray<float> out(64);
    attend_test::broken::write_without_bounds_check(out.data(), 64);
  });
  INFO(clean_text);
  CHECK(clean_ok);
  const auto [global_ok, global_text] = run_in_child([] {
    DeviceArray<float> out(33);
    attend_test::broken::write_without_bounds_check(out.data(), 33);
  });
  INFO(global_text);
  CHECK_FALSE(global_ok);
  CHECK(attend_test::contains(global_text, "AddressSanitizer: heap-buffer-overflow"));
  // A static __shared__ array indexed one past its end (UBSan's bounds check).
  const auto [static_ok, static_text] = run_in_child([] {
    DeviceArray<float> out(32);
    attend_test::broken::static_shared_off_by_one(out.data());
  });
  INFO(static_text);
  CHECK_FALSE(static_ok);
  CHECK(attend_test::contains(static_text, "index 32 out of bounds for type 'float [32]'"));
  // Dynamic shared memory read one past its end.
  const auto [dynamic_ok, dynamic_text] = run_in_child([] {
    DeviceArray<float> out(32);
    attend_test::broken::dynamic_shared_off_by_one(out.data());
  });
  INFO(dynamic_text);
  CHECK_FALSE(dynamic_ok);
  CHECK(attend_test::contains(dynamic_text, "AddressSanitizer: heap-buffer-overflow"));
}
#endif  // ATTEND_TEST_ASAN
#endif  // ATTEND_CUDA

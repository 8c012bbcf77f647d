// Matrix multiplication kernels. Chapter 3 (docs/03-operations.md) introduces
// the reference triple loop and a simple cache-blocked kernel; chapter 10
// (docs/10-speed.md) builds the fast one below them: packed panels, a 6x16
// register-blocked micro-kernel, AVX2 + FMA picked at run time, OpenMP.
// tutorials/10-speed times all three side by side.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <memory>
#include <new>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "attend/kernels.hpp"
#include "instruction_sets.hpp"

namespace attend::kernels {

using namespace detail;  // instruction_sets.hpp

// ===========================================================================
// Chapter 3: the reference loop and the simple blocked kernel
// ===========================================================================

void matmul_reference(const float* a, const float* b, float* c, int64_t M, int64_t K, int64_t N) {
  // c[i][j] = sum_k a[i][k] * b[k][j]
  for (int64_t i = 0; i < M; ++i) {
    for (int64_t j = 0; j < N; ++j) {
      float s = 0.0f;
      for (int64_t k = 0; k < K; ++k) s += a[i * K + k] * b[k * N + j];
      c[i * N + j] = s;
    }
  }
}

namespace {
// Tile sizes of the simple kernel: a (kRowBlock x kInnerBlock) piece of a and
// a (kInnerBlock x N) band of b are reused while they sit in cache.
constexpr int64_t kRowBlock = 16;
constexpr int64_t kInnerBlock = 128;
}  // namespace

void matmul_blocked_simple(const float* a, const int64_t* a_offsets, const float* b,
                           const int64_t* b_offsets, float* c, int64_t batch, int64_t M, int64_t K,
                           int64_t N) {
  // Why this is faster than the reference loop:
  //  - loop order i, k, j: the innermost loop walks a row of b and a row of c
  //    with stride 1, so it reads whole cache lines and the compiler can use
  //    SIMD; the reference loop walks a column of b (stride N) instead.
  //  - blocking over k keeps a band of b in cache while a block of rows of a
  //    is multiplied with it.
  //  - the (batch, row block) pairs are independent and shared among threads.
  //    Each element of c is summed by one thread in a fixed order, so the
  //    result does not depend on the number of threads.
  // Why it is still far from the machine's peak: see "the fast kernel" below.
  const int64_t row_blocks = (M + kRowBlock - 1) / kRowBlock;
  const int64_t work = batch * M * N * K;
#pragma omp parallel for collapse(2) schedule(static) if (work >= 32768)
  for (int64_t p = 0; p < batch; ++p) {
    for (int64_t rb = 0; rb < row_blocks; ++rb) {
      const float* A = a + a_offsets[p];
      const float* B = b + b_offsets[p];
      float* C = c + p * M * N;
      const int64_t i0 = rb * kRowBlock, i1 = std::min(M, i0 + kRowBlock);
      for (int64_t i = i0; i < i1; ++i) std::fill(C + i * N, C + (i + 1) * N, 0.0f);
      for (int64_t k0 = 0; k0 < K; k0 += kInnerBlock) {
        const int64_t k1 = std::min(K, k0 + kInnerBlock);
        for (int64_t i = i0; i < i1; ++i) {
          float* c_row = C + i * N;
          for (int64_t k = k0; k < k1; ++k) {
            const float a_ik = A[i * K + k];
            const float* b_row = B + k * N;
#pragma omp simd
            for (int64_t j = 0; j < N; ++j) c_row[j] += a_ik * b_row[j];
          }
        }
      }
    }
  }
}

// ===========================================================================
// Chapter 10: the fast kernel
// ===========================================================================
//
// Why the simple kernel is slow. Its inner loop, c_row[j] += a_ik * b_row[j],
// loads a piece of c, does one multiply-add on it and stores it back. A core
// can start two 8-wide fused multiply-adds (FMA) per cycle but only about two
// loads and one store, so that loop is bound by moving c between the cache
// and the registers, at well under one FMA per cycle.
//
// The fast kernel follows the GotoBLAS / BLIS recipe, in four layers:
//
// 1. Register blocking (micro_kernel). A 6x16 tile of c is kept in 12 vector
//    registers (6 rows x 2 registers of 8 floats) for the whole k loop. Each
//    step k loads 16 floats of b (2 registers), broadcasts 6 floats of a and
//    does 12 vector FMAs: 96 multiply-adds for 8 loads, and c is read and
//    written once per tile instead of once per k. 12 accumulators + 2 for b +
//    1 for a broadcast = 15 of the 16 AVX2 registers.
//
// 2. Packing (pack_a, pack_b). The micro-kernel wants, at each step k, 6
//    consecutive floats of a and 16 consecutive floats of b. So blocks of a
//    and b are first copied into buffers laid out in exactly that order; the
//    micro-kernel then reads both strictly sequentially, which the hardware
//    prefetcher streams in with no TLB misses or cache-set conflicts from
//    large strides. The copy costs O(mk + kn) against the O(mkn) work that
//    reuses it. Packing also reads any layout: a transposed view is packed as
//    fast as a row-major matrix, so the backward pass's A^T and B^T need no
//    transposed copies. Edges are padded with zeros, so the micro-kernel
//    always runs a full 6x16 tile.
//
// 3. Cache blocking (gemm_serial). K is cut into blocks of at most kKC so that
//    one packed b micro-panel (kc x 16 floats, 16 KiB) stays in the 32 KiB L1
//    cache while every a micro-panel of the block streams past it; the packed
//    a block (mc x kc, up to 144 KiB) stays in the 512 KiB L2; the packed b
//    panel (kc x nc, up to 4 MiB) in L3.
//
// 4. Instruction set and threads (pick_macro_kernel, matmul_strided). The
//    build targets plain x86-64, whose vectors are 4-wide SSE with no FMA; the
//    hot loop is therefore also compiled for AVX2 + FMA (8-wide vectors, a
//    fused multiply-add per instruction) and the CPU is asked once, at run
//    time, which one it can run. Threads take whole matrices of a batch, or
//    slices of one big matrix, and never wait for each other.
//
// Determinism: element c[i][j] is the sum over the k blocks in order, each
// block's partial sum accumulated k by k in one register lane. That order
// depends on K alone, never on how rows or batches are shared among threads,
// so the result is bit-for-bit the same with any number of threads.

namespace {

// --- sizes -----------------------------------------------------------------

constexpr int64_t kMR = 6;     // rows of the register tile
constexpr int64_t kNR = 16;    // columns of the register tile (2 AVX2 vectors)
constexpr int64_t kKC = 256;   // k block: a b micro-panel is kKC x kNR floats = 16 KiB (L1)
constexpr int64_t kMC = 144;   // row block: a packed a block is kMC x kKC floats = 144 KiB (L2)
constexpr int64_t kNC = 4096;  // column block: a packed b panel is kKC x kNC floats = 4 MiB (L3)

// Products with fewer multiply-adds than this run on one thread: starting a
// parallel region and splitting the work costs a few microseconds.
constexpr int64_t kParallelWork = int64_t{1} << 18;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t round_up(int64_t a, int64_t multiple) { return ceil_div(a, multiple) * multiple; }

// Cuts n into the fewest blocks of at most max_block, of equal size rounded
// up to a multiple of `multiple` (K = 257 gives blocks of 129 and 128, not of
// 256 and 1). Returns the block size.
int64_t even_block(int64_t n, int64_t max_block, int64_t multiple) {
  const int64_t blocks = ceil_div(n, max_block);
  return round_up(ceil_div(n, blocks), multiple);
}

int64_t max_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

// --- one matrix read through strides ----------------------------------------

// Element (r, c) is data[r * row_stride + c * col_stride].
struct MatrixView {
  const float* data;
  int64_t row_stride, col_stride;
};

// --- packing buffers ----------------------------------------------------------

// A float buffer aligned to 64 bytes (a cache line), grown on demand and kept
// for the next call: one pair per thread (thread_local), so packing does not
// allocate once the sizes have been seen.
class PackBuffer {
 public:
  float* get(int64_t floats) {
    const auto n = static_cast<size_t>(floats);
    if (n > size_) {
      data_.reset(static_cast<float*>(::operator new[](n * sizeof(float), std::align_val_t{64})));
      size_ = n;
    }
    return data_.get();
  }

 private:
  struct Free {
    void operator()(float* p) const { ::operator delete[](p, std::align_val_t{64}); }
  };
  std::unique_ptr<float[], Free> data_;
  size_t size_ = 0;
};

thread_local PackBuffer t_a_pack;
thread_local PackBuffer t_b_pack;

// --- packing -----------------------------------------------------------------

// Copies rows [i0, i0 + mc) x columns [k0, k0 + kc) of A into a_pack, laid out
// as ceil(mc / kMR) micro-panels of kMR rows each:
//   a_pack: (ceil(mc / kMR), kc, kMR)
//   a_pack[(r / kMR) * kc * kMR + p * kMR + r % kMR] = A(i0 + r, k0 + p)
// Within a panel the kMR values of one column sit side by side: exactly what
// the micro-kernel broadcasts at step p. Rows past the edge are zeros.
void pack_a(MatrixView A, int64_t i0, int64_t mc, int64_t k0, int64_t kc, float* a_pack) {
  const int64_t rs = A.row_stride, cs = A.col_stride;
  for (int64_t q = 0; q < mc; q += kMR) {
    const int64_t rows = std::min(kMR, mc - q);
    const float* src = A.data + (i0 + q) * rs + k0 * cs;  // A(i0 + q, k0)
    float* panel = a_pack + q * kc;  // (kc, kMR): after q / kMR panels of kc * kMR floats
    if (rows == kMR) {
      // The common case: at each step p, one float from each of the 6 rows
      // to 6 consecutive places. The constant trip count lets the compiler
      // unroll it (the pragma asks for that at -O2).
      for (int64_t p = 0; p < kc; ++p) {
        const float* column = src + p * cs;  // A(i0 + q, k0 + p)
#pragma GCC unroll 6
        for (int64_t i = 0; i < kMR; ++i) panel[p * kMR + i] = column[i * rs];
      }
    } else {
      // The last, partial panel: zeros, then the rows that exist.
      std::fill(panel, panel + kc * kMR, 0.0f);
      for (int64_t i = 0; i < rows; ++i) {
        for (int64_t p = 0; p < kc; ++p) panel[p * kMR + i] = src[i * rs + p * cs];
      }
    }
  }
}

// Copies one micro-panel of B, rows [k0, k0 + kc) x columns [j0, j0 + cols)
// with cols <= kNR, into
//   panel: (kc, kNR)   panel[p * kNR + j] = B(k0 + p, j0 + j), zero for j >= cols.
// A row-major B is copied row by row, any other layout column by column, so
// that the reads are consecutive floats whichever way B lies in memory.
void pack_b_panel(MatrixView B, int64_t k0, int64_t kc, int64_t j0, int64_t cols, float* panel) {
  const int64_t rs = B.row_stride, cs = B.col_stride;
  const float* src = B.data + k0 * rs + j0 * cs;  // B(k0, j0)
  if (cs == 1 && cols == kNR) {
    // Row-major B, a whole panel: row p is 16 consecutive floats of row
    // k0 + p, copied with a few vector moves. (`omp simd` promises that
    // panel and src do not overlap; without it the compiler would not
    // vectorize at -O2.)
    for (int64_t p = 0; p < kc; ++p) {
#pragma omp simd
      for (int64_t j = 0; j < kNR; ++j) panel[p * kNR + j] = src[p * rs + j];
    }
  } else if (cs == 1) {
    // Row-major, the last, partial panel: the columns that exist, then zeros
    // (the pragma vectorizes a copy whose length the compiler cannot know).
    for (int64_t p = 0; p < kc; ++p) {
#pragma omp simd
      for (int64_t j = 0; j < cols; ++j) panel[p * kNR + j] = src[p * rs + j];
      for (int64_t j = cols; j < kNR; ++j) panel[p * kNR + j] = 0.0f;
    }
  } else {
    // Any other layout, e.g. a transposed view (row stride 1): walk down each
    // column, which is contiguous there; the strided writes land in a 16 KiB
    // panel that sits in L1.
    if (cols < kNR) std::fill(panel, panel + kc * kNR, 0.0f);
    for (int64_t j = 0; j < cols; ++j) {
      for (int64_t p = 0; p < kc; ++p) panel[p * kNR + j] = src[p * rs + j * cs];
    }
  }
}

// Copies rows [k0, k0 + kc) x columns [j0, j0 + nc) of B into b_pack, laid
// out as ceil(nc / kNR) micro-panels of kNR columns each:
//   b_pack: (ceil(nc / kNR), kc, kNR)
//   b_pack[(j / kNR) * kc * kNR + p * kNR + j % kNR] = B(k0 + p, j0 + j)
void pack_b(MatrixView B, int64_t k0, int64_t kc, int64_t j0, int64_t nc, float* b_pack) {
  for (int64_t q = 0; q < nc; q += kNR) {
    pack_b_panel(B, k0, kc, j0 + q, std::min(kNR, nc - q), b_pack + q * kc);
  }
}

// --- the micro-kernel and the macro-kernel -----------------------------------

// The register tile: c (mr x nr of a kMR x kNR tile, row stride ldc)
//   = a_panel (kc, kMR) read as a column per step  @  b_panel (kc, kNR)
// plus the old c when `accumulate` (every k block after the first).
// acc[6][16] is small and indexed by constants only once the i loop is
// unrolled and the j loop vectorized (2 x 8 floats), so the compiler keeps it
// in 12 registers for the whole k loop: at -O2 that is what `#pragma GCC
// unroll` and `#pragma omp simd` ask for.
template <bool kFma>
ATTEND_INLINE void micro_kernel(int64_t kc, const float* __restrict a_panel,
                                const float* __restrict b_panel, float* __restrict c, int64_t ldc,
                                int64_t mr, int64_t nr, bool accumulate) {
  float acc[kMR][kNR] = {};
  for (int64_t p = 0; p < kc; ++p) {
    const float* a = a_panel + p * kMR;  // column p of the a tile: kMR floats
    const float* b = b_panel + p * kNR;  // row p of the b tile: kNR floats
#pragma GCC unroll 6
    for (int64_t i = 0; i < kMR; ++i) {
#pragma omp simd
      for (int64_t j = 0; j < kNR; ++j) acc[i][j] = multiply_add<kFma>(a[i], b[j], acc[i][j]);
    }
  }
  // Write the tile back: whole rows of 16 in the common case, else only the
  // part inside c (the zero padding computed zeros there).
  if (mr == kMR && nr == kNR) {
    for (int64_t i = 0; i < kMR; ++i) {
      float* c_row = c + i * ldc;
      if (accumulate) {
#pragma omp simd
        for (int64_t j = 0; j < kNR; ++j) c_row[j] += acc[i][j];
      } else {
#pragma omp simd
        for (int64_t j = 0; j < kNR; ++j) c_row[j] = acc[i][j];
      }
    }
  } else {
    for (int64_t i = 0; i < mr; ++i) {
      float* c_row = c + i * ldc;
      if (accumulate) {
        for (int64_t j = 0; j < nr; ++j) c_row[j] += acc[i][j];
      } else {
        for (int64_t j = 0; j < nr; ++j) c_row[j] = acc[i][j];
      }
    }
  }
}

// c block (mc, nc), row stride ldc, (+)= packed a block (mc, kc) @ packed b
// panel (kc, nc), one register tile at a time. The j loop is outside: one b
// micro-panel (16 KiB) stays in L1 while all a micro-panels of the block
// (from L2) pass by it.
template <bool kFma>
ATTEND_INLINE void macro_kernel(const float* a_pack, const float* b_pack, float* c, int64_t ldc,
                                int64_t mc, int64_t kc, int64_t nc, bool accumulate) {
  for (int64_t j = 0; j < nc; j += kNR) {
    for (int64_t i = 0; i < mc; i += kMR) {
      micro_kernel<kFma>(kc, a_pack + i * kc, b_pack + j * kc, c + i * ldc + j, ldc,
                         std::min(kMR, mc - i), std::min(kNR, nc - j), accumulate);
    }
  }
}

using MacroKernel = void (*)(const float*, const float*, float*, int64_t, int64_t, int64_t, int64_t,
                             bool);

// The portable version: compiled for the build's baseline instruction set
// (with FMA where the C library says fmaf is one fast instruction). On baseline
// x86-64 (SSE2: 16 registers of 4 floats) the 6x16 tile would need 24
// registers, so GCC keeps acc in memory instead: every step loads, multiplies,
// adds and stores it (seen in the disassembly), which is most of why this
// version is several times slower than the AVX2 one.

void macro_kernel_portable(const float* a_pack, const float* b_pack, float* c, int64_t ldc,
                           int64_t mc, int64_t kc, int64_t nc, bool accumulate) {
  macro_kernel<kBaselineHasFma>(a_pack, b_pack, c, ldc, mc, kc, nc, accumulate);
}

// Function multiversioning by hand (instruction_sets.hpp): the same template,
// compiled a second time with AVX2 and FMA allowed, and chosen at run time
// only if the CPU has them.
#ifdef ATTEND_HAVE_AVX2_KERNEL
ATTEND_TARGET_AVX2 void macro_kernel_avx2(const float* a_pack, const float* b_pack, float* c, int64_t ldc,
                                          int64_t mc, int64_t kc, int64_t nc, bool accumulate) {
  macro_kernel<true>(a_pack, b_pack, c, ldc, mc, kc, nc, accumulate);
}
#endif

std::atomic<bool> g_force_portable{false};

MacroKernel pick_macro_kernel() {
#ifdef ATTEND_HAVE_AVX2_KERNEL
  if (use_avx2_kernels()) return macro_kernel_avx2;
#endif
  return macro_kernel_portable;
}

// --- the loops around the macro-kernel -----------------------------------------

// C (M, N), row stride ldc, = A (M, K) @ B (K, N), on the calling thread, with
// its own packing buffers. The block sizes: kc decides the order of the sums,
// so it depends on K alone; mc and nc only decide which tiles are computed
// together.
void gemm_serial(MacroKernel kernel, MatrixView A, MatrixView B, float* C, int64_t ldc, int64_t M,
                 int64_t K, int64_t N) {
  const int64_t kc_max = even_block(K, kKC, 1);
  const int64_t mc_max = even_block(M, kMC, kMR);
  const int64_t nc_max = even_block(N, kNC, kNR);
  float* a_pack = t_a_pack.get(mc_max * kc_max);  // (mc / kMR, kc, kMR)
  float* b_pack = t_b_pack.get(nc_max * kc_max);  // (nc / kNR, kc, kNR)
  for (int64_t j0 = 0; j0 < N; j0 += nc_max) {
    const int64_t nc = std::min(nc_max, N - j0);
    for (int64_t k0 = 0; k0 < K; k0 += kc_max) {
      const int64_t kc = std::min(kc_max, K - k0);
      pack_b(B, k0, kc, j0, nc, b_pack);  // reused by every row block below
      for (int64_t i0 = 0; i0 < M; i0 += mc_max) {
        const int64_t mc = std::min(mc_max, M - i0);
        pack_a(A, i0, mc, k0, kc, a_pack);
        kernel(a_pack, b_pack, C + i0 * ldc + j0, ldc, mc, kc, nc, /*accumulate=*/k0 > 0);
      }
    }
  }
}

// Greatest common divisor, for balancing tasks among threads.
int64_t gcd(int64_t a, int64_t b) { return b == 0 ? a : gcd(b, a % b); }

}  // namespace

void matmul_strided(StridedMatrices a, StridedMatrices b, float* c, int64_t batch, int64_t M,
                    int64_t K, int64_t N) {
  if (batch <= 0 || M <= 0 || N <= 0) return;
  if (K <= 0) {  // an empty sum
    std::fill(c, c + batch * M * N, 0.0f);
    return;
  }
  // Every matrix of b the same and those of a stacked one after another (as
  // for (B, T, D) @ (D, N)): that is one (batch * M, K) @ (K, N) product,
  // whose packed blocks of b serve all batch * M rows.
  const int64_t a0 = a.offsets[0], b0 = b.offsets[0];
  bool fold = batch > 1;
  for (int64_t p = 0; p < batch && fold; ++p) {
    fold = b.offsets[p] == b0 && a.offsets[p] == a0 + p * M * a.row_stride;
  }
  if (fold) {
    M *= batch;
    batch = 1;
  }

  // Threads. The work is cut into independent tasks, each a whole product
  // (or a slice of one) that one thread computes alone with gemm_serial, so
  // the threads never wait for each other until the end. A matrix is cut
  // into `slices` when there are fewer matrices than threads: the fewest
  // slices that make the number of tasks a multiple of the thread count (so
  // each thread gets as many), in rows of whole tiles or, with few rows,
  // in columns. Each slice packs its own copy of b's blocks: O(K N) extra
  // copying against the O(M K N / slices) work of the slice.
  const int64_t threads = max_threads();
  const int64_t work = M * K * N;  // multiply-adds per matrix
  int64_t slices = 1;
  if (threads > 1 && batch < 4 * threads && work >= kParallelWork) {
    slices = threads / gcd(batch, threads);
  }
  const bool by_rows = M >= slices * 2 * kMR || M >= N;
  const int64_t slice_size = round_up(ceil_div(by_rows ? M : N, slices), by_rows ? kMR : kNR);
  slices = ceil_div(by_rows ? M : N, slice_size);  // small sizes may give fewer

  const MacroKernel kernel = pick_macro_kernel();
  const int64_t tasks = batch * slices;
#pragma omp parallel for schedule(static) if (tasks > 1 && batch * work >= kParallelWork)
  for (int64_t t = 0; t < tasks; ++t) {
    const int64_t p = t / slices, s = t % slices;
    MatrixView A{a.data + a.offsets[p], a.row_stride, a.col_stride};
    MatrixView B{b.data + b.offsets[p], b.row_stride, b.col_stride};
    float* C = c + p * M * N;
    if (by_rows) {  // rows [r0, r0 + rows) of C: the same rows of A, all of B
      const int64_t r0 = s * slice_size, rows = std::min(slice_size, M - r0);
      A.data += r0 * a.row_stride;
      gemm_serial(kernel, A, B, C + r0 * N, N, rows, K, N);
    } else {  // columns [c0, c0 + cols) of C: all of A, the same columns of B
      const int64_t c0 = s * slice_size, cols = std::min(slice_size, N - c0);
      B.data += c0 * b.col_stride;
      gemm_serial(kernel, A, B, C + c0, N, M, K, cols);
    }
  }
}

void matmul_batched(const float* a, const int64_t* a_offsets, const float* b,
                    const int64_t* b_offsets, float* c, int64_t batch, int64_t M, int64_t K,
                    int64_t N) {
  matmul_strided({a, a_offsets, K, 1}, {b, b_offsets, N, 1}, c, batch, M, K, N);
}

const char* matmul_kernel_name() {
  return pick_macro_kernel() == macro_kernel_portable ? "portable" : "avx2+fma";
}

void matmul_force_portable(bool force) { g_force_portable.store(force, std::memory_order_relaxed); }

bool detail::use_avx2_kernels() {
#ifdef ATTEND_HAVE_AVX2_KERNEL
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has && !g_force_portable.load(std::memory_order_relaxed);
#else
  return false;
#endif
}

}  // namespace attend::kernels

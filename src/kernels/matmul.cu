// The SGEMM ladder: four CUDA kernels for c = a @ b, each one step faster on
// a GPU than the one before, each tested against matmul_reference (its CPU
// twin is matmul.cpp beside it). Chapter 11 (docs/11-cuda.md). The same
// source runs on a GPU (make CUDA=1) and on the emulator (the default build).
//
// Every kernel: batch on the grid's z, any M, K, N (threads that fall off an
// edge load zeros and store nothing), a and b read through their strides
// (StridedMatrices, as matmul_strided reads them), c contiguous (batch, M, N).
#include "attend/cuda_or_emulator.hpp"
#include "attend/gpu_kernels.hpp"

namespace attend::kernels {

// Element (row, col) of matrix `batch` of m, read through its strides.
__device__ __forceinline__ float element(const StridedMatrices& m, int64_t batch, int64_t row,
                                         int64_t col) {
  return m.data[m.offsets[batch] + row * m.row_stride + col * m.col_stride];
}

// ===========================================================================
// 1. Naive: one thread per element of c
// ===========================================================================
// Block (32, 32); threadIdx.x runs down the rows of c. Correct and slow: the
// 32 threads of a warp (consecutive threadIdx.x) read 32 different rows of a,
// K floats apart, so each load of the warp needs 32 memory transactions where
// one would do, and they write c down a column, 32 transactions again.
__global__ void sgemm_1_naive_kernel(StridedMatrices a, StridedMatrices b, float* c, int64_t M,
                                     int64_t K, int64_t N) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t col = static_cast<int64_t>(blockIdx.y) * blockDim.y + threadIdx.y;
  const int64_t batch = blockIdx.z;
  if (row >= M || col >= N) return;  // the last blocks overhang the edges of c
  // exercise 11.1 begin: c[row][col] = sum over k of a[row][k] * b[k][col]
  float sum = 0.0f;
  for (int64_t k = 0; k < K; ++k) sum += element(a, batch, row, k) * element(b, batch, k, col);
  c[(batch * M + row) * N + col] = sum;
  // exercise 11.1 end
}

// ===========================================================================
// 2. Coalesced: consecutive threads along a row of c
// ===========================================================================
// The only change: threadIdx.x now runs along a row of c. The 32 threads of a
// warp read the same a[row][k] (one broadcast load) and 32 consecutive floats
// of a row of b, which the hardware merges into one 128-byte transaction
// ("coalesced"); their stores to c are consecutive too. (A transposed b, col
// stride != 1, loses this: then a is the operand to lay out well.)
__global__ void sgemm_2_coalesced_kernel(StridedMatrices a, StridedMatrices b, float* c, int64_t M,
                                         int64_t K, int64_t N) {
  const int64_t col = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t row = static_cast<int64_t>(blockIdx.y) * blockDim.y + threadIdx.y;
  const int64_t batch = blockIdx.z;
  if (row >= M || col >= N) return;
  float sum = 0.0f;
  for (int64_t k = 0; k < K; ++k) sum += element(a, batch, row, k) * element(b, batch, k, col);
  c[(batch * M + row) * N + col] = sum;
}

// ===========================================================================
// 3. Shared-memory tiles
// ===========================================================================
// Versions 1 and 2 read every element of a N times and of b M times from
// global memory (slow, far away DRAM, shared by every SM). Here a block of
// 32x32 threads computes a 32x32 tile of c by walking k in steps of 32: the
// block copies a 32x32 tile of a and one of b into shared memory (on-chip,
// about as fast as L1), waits until both are complete, and every thread then
// reads its row of the a tile and its column of the b tile from there. Each
// global element is loaded once per tile instead of once per thread: 32
// times less traffic. This is chapter 10's cache blocking, one level up.
constexpr int kTile = 32;

__global__ void sgemm_3_shared_tiles_kernel(StridedMatrices a, StridedMatrices b, float* c,
                                            int64_t M, int64_t K, int64_t N) {
  __shared__ float a_tile[kTile][kTile];  // a_tile[r][k] = a[tile row + r][k0 + k]
  __shared__ float b_tile[kTile][kTile];  // b_tile[k][j] = b[k0 + k][tile col + j]
  const int tx = static_cast<int>(threadIdx.x), ty = static_cast<int>(threadIdx.y);
  const int64_t row = static_cast<int64_t>(blockIdx.y) * kTile + ty;
  const int64_t col = static_cast<int64_t>(blockIdx.x) * kTile + tx;
  const int64_t batch = blockIdx.z;
  // No early return for threads off the edge of c: every thread must load its
  // part of the tiles and reach every __syncthreads.
  float sum = 0.0f;
  for (int64_t k0 = 0; k0 < K; k0 += kTile) {
    // Each thread loads one element of each tile (zero outside the matrices,
    // so the loop below needs no bounds checks).
    // exercise 11.2 begin: load one element of each tile, wait, multiply the tiles, wait
    a_tile[ty][tx] = row < M && k0 + tx < K ? element(a, batch, row, k0 + tx) : 0.0f;
    b_tile[ty][tx] = k0 + ty < K && col < N ? element(b, batch, k0 + ty, col) : 0.0f;
    __syncthreads();  // the tiles are complete before anyone reads them
    for (int k = 0; k < kTile; ++k) sum += a_tile[ty][k] * b_tile[k][tx];
    __syncthreads();  // everyone has finished with the tiles before they are overwritten
    // exercise 11.2 end
  }
  if (row < M && col < N) c[(batch * M + row) * N + col] = sum;
}

// ===========================================================================
// 4. Register tiles (2D block tiling)
// ===========================================================================
// Version 3 still does one multiply-add per two shared-memory loads, and
// shared memory, though fast, is slower than registers. Here each of 256
// threads computes an 8x8 block of c, so a block covers a 128x128 tile. For
// each k the thread loads 8 values of a and 8 of b from shared memory into
// registers and does 8 x 8 = 64 multiply-adds with them: 16 loads for 64 FMAs
// instead of 2 for 1. The tile of a is stored transposed (a_tile[k][row]) so
// that a thread's 8 values of a for one k sit side by side. This is chapter
// 10's 6x16 register-blocked micro-kernel on a GPU.
constexpr int kBlockRows = 128;   // rows of c per block
constexpr int kBlockCols = 128;   // columns of c per block
constexpr int kBlockK = 8;        // k per shared tile
constexpr int kThreadRows = 8;    // rows of c per thread
constexpr int kThreadCols = 8;    // columns of c per thread
constexpr int kRegisterTileThreads = (kBlockRows / kThreadRows) * (kBlockCols / kThreadCols);  // 256

__global__ void __launch_bounds__(kRegisterTileThreads)
    sgemm_4_register_tiles_kernel(StridedMatrices a, StridedMatrices b, float* c, int64_t M,
                                  int64_t K, int64_t N) {
  __shared__ float a_tile[kBlockK][kBlockRows];  // a_tile[k][r] = a[row0 + r][k0 + k]
  __shared__ float b_tile[kBlockK][kBlockCols];  // b_tile[k][j] = b[k0 + k][col0 + j]
  const int thread = static_cast<int>(threadIdx.x);
  const int thread_row = thread / (kBlockCols / kThreadCols);  // its rows: thread_row * 8 + 0..7
  const int thread_col = thread % (kBlockCols / kThreadCols);  // its columns: thread_col * 8 + 0..7
  const int64_t row0 = static_cast<int64_t>(blockIdx.y) * kBlockRows;
  const int64_t col0 = static_cast<int64_t>(blockIdx.x) * kBlockCols;
  const int64_t batch = blockIdx.z;

  float sums[kThreadRows][kThreadCols] = {};  // the thread's block of c, in registers
  float a_column[kThreadRows];
  float b_row[kThreadCols];
  for (int64_t k0 = 0; k0 < K; k0 += kBlockK) {
    // 256 threads load the 128x8 tile of a and the 8x128 tile of b, 4
    // elements each. Consecutive threads take consecutive k of a row of a
    // and consecutive columns of a row of b: contiguous in memory.
    for (int i = thread; i < kBlockRows * kBlockK; i += kRegisterTileThreads) {
      const int r = i / kBlockK, k = i % kBlockK;
      a_tile[k][r] = row0 + r < M && k0 + k < K ? element(a, batch, row0 + r, k0 + k) : 0.0f;
    }
    for (int i = thread; i < kBlockK * kBlockCols; i += kRegisterTileThreads) {
      const int k = i / kBlockCols, j = i % kBlockCols;
      b_tile[k][j] = k0 + k < K && col0 + j < N ? element(b, batch, k0 + k, col0 + j) : 0.0f;
    }
    __syncthreads();  // the tiles are complete
    // exercise 11.3 begin: for each k: 8 values of a and 8 of b into registers, then the 8x8 products
    for (int k = 0; k < kBlockK; ++k) {
      for (int i = 0; i < kThreadRows; ++i) a_column[i] = a_tile[k][thread_row * kThreadRows + i];
      for (int j = 0; j < kThreadCols; ++j) b_row[j] = b_tile[k][thread_col * kThreadCols + j];
      for (int i = 0; i < kThreadRows; ++i) {
        for (int j = 0; j < kThreadCols; ++j) sums[i][j] += a_column[i] * b_row[j];
      }
    }
    // exercise 11.3 end
    __syncthreads();  // everyone is done with the tiles
  }
  for (int i = 0; i < kThreadRows; ++i) {
    const int64_t row = row0 + thread_row * kThreadRows + i;
    for (int j = 0; j < kThreadCols; ++j) {
      const int64_t col = col0 + thread_col * kThreadCols + j;
      if (row < M && col < N) c[(batch * M + row) * N + col] = sums[i][j];
    }
  }
}

// ===========================================================================
// The host side: check the arguments, choose the grid, launch
// ===========================================================================

namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// A grid's y and z may not exceed 65535 blocks (CUDA's limit).
constexpr int64_t kMaxGridYZ = 65535;

void check_matmul_arguments(const char* op, StridedMatrices a, StridedMatrices b, const float* c,
                            int64_t batch, int64_t M, int64_t K, int64_t N) {
  const std::string shapes = std::string(op) + ": " + std::to_string(batch) + " x a (" +
                             std::to_string(M) + ", " + std::to_string(K) + ") @ b (" +
                             std::to_string(K) + ", " + std::to_string(N) + ")";
  if (batch < 0 || M < 0 || K < 0 || N < 0) throw Error(shapes + ": sizes must be >= 0");
  if (batch * M * N == 0) return;
  if (c == nullptr || (K > 0 && (a.data == nullptr || b.data == nullptr || a.offsets == nullptr ||
                                 b.offsets == nullptr))) {
    throw Error(shapes + ": a null device pointer");
  }
}

// Checks the arguments, then calls launch(a, b, c, matrices) once per chunk
// of at most 65535 matrices of the batch (the grid's z), with a and b's
// offsets and c advanced to the chunk's first matrix.
template <typename Launch>
void run_sgemm(const char* op, StridedMatrices a, StridedMatrices b, float* c, int64_t batch,
               int64_t M, int64_t K, int64_t N, Launch launch) {
  check_matmul_arguments(op, a, b, c, batch, M, K, N);
  for (int64_t first = 0; first < batch && M * N > 0; first += kMaxGridYZ) {
    const int64_t matrices = batch - first < kMaxGridYZ ? batch - first : kMaxGridYZ;
    StridedMatrices a_chunk = a, b_chunk = b;
    a_chunk.offsets += first;
    b_chunk.offsets += first;
    launch(a_chunk, b_chunk, c + first * M * N, static_cast<unsigned>(matrices));
  }
}

// The grid of `tile_rows` x `tile_cols` tiles covering c, with the tiles of
// rows on the grid's y and those of columns on x (which has no 65535 limit).
dim3 tile_grid(const char* op, int64_t M, int64_t N, int64_t tile_rows, int64_t tile_cols,
               unsigned matrices) {
  if (ceil_div(M, tile_rows) > kMaxGridYZ) {
    throw Error(std::string(op) + ": " + std::to_string(ceil_div(M, tile_rows)) +
                " blocks on the grid's y (" + std::to_string(M) + " / " +
                std::to_string(tile_rows) + "); at most 65535");
  }
  return dim3(static_cast<unsigned>(ceil_div(N, tile_cols)),
              static_cast<unsigned>(ceil_div(M, tile_rows)), matrices);
}

}  // namespace

void sgemm_1_naive(StridedMatrices a, StridedMatrices b, float* c, int64_t batch, int64_t M,
                   int64_t K, int64_t N) {
  run_sgemm("sgemm_1_naive", a, b, c, batch, M, K, N,
            [&](StridedMatrices a_, StridedMatrices b_, float* c_, unsigned matrices) {
              // M and N swapped: tiles of rows on the grid's x (threadIdx.x runs
              // down a column of c), tiles of columns on y.
              const dim3 grid = tile_grid("sgemm_1_naive", N, M, 32, 32, matrices);
              ATTEND_LAUNCH(sgemm_1_naive_kernel, grid, dim3(32, 32), 0, a_, b_, c_, M, K, N);
            });
}

void sgemm_2_coalesced(StridedMatrices a, StridedMatrices b, float* c, int64_t batch, int64_t M,
                       int64_t K, int64_t N) {
  run_sgemm("sgemm_2_coalesced", a, b, c, batch, M, K, N,
            [&](StridedMatrices a_, StridedMatrices b_, float* c_, unsigned matrices) {
              const dim3 grid = tile_grid("sgemm_2_coalesced", M, N, 32, 32, matrices);
              ATTEND_LAUNCH(sgemm_2_coalesced_kernel, grid, dim3(32, 32), 0, a_, b_, c_, M, K, N);
            });
}

void sgemm_3_shared_tiles(StridedMatrices a, StridedMatrices b, float* c, int64_t batch, int64_t M,
                          int64_t K, int64_t N) {
  run_sgemm("sgemm_3_shared_tiles", a, b, c, batch, M, K, N,
            [&](StridedMatrices a_, StridedMatrices b_, float* c_, unsigned matrices) {
              const dim3 grid = tile_grid("sgemm_3_shared_tiles", M, N, kTile, kTile, matrices);
              ATTEND_LAUNCH(sgemm_3_shared_tiles_kernel, grid, dim3(kTile, kTile), 0, a_, b_, c_,
                            M, K, N);
            });
}

void sgemm_4_register_tiles(StridedMatrices a, StridedMatrices b, float* c, int64_t batch,
                            int64_t M, int64_t K, int64_t N) {
  run_sgemm("sgemm_4_register_tiles", a, b, c, batch, M, K, N,
            [&](StridedMatrices a_, StridedMatrices b_, float* c_, unsigned matrices) {
              const dim3 grid =
                  tile_grid("sgemm_4_register_tiles", M, N, kBlockRows, kBlockCols, matrices);
              ATTEND_LAUNCH(sgemm_4_register_tiles_kernel, grid, dim3(kRegisterTileThreads), 0,
                            a_, b_, c_, M, K, N);
            });
}

const std::vector<SgemmVersion>& sgemm_ladder() {
  static const std::vector<SgemmVersion> ladder{
      {1, "sgemm_1_naive", "one thread per element of c, a warp down a column", sgemm_1_naive},
      {2, "sgemm_2_coalesced", "a warp along a row of c: coalesced loads and stores",
       sgemm_2_coalesced},
      {3, "sgemm_3_shared_tiles", "32x32 tiles of a and b in shared memory", sgemm_3_shared_tiles},
      {4, "sgemm_4_register_tiles", "128x128 per block, 8x8 of c per thread in registers",
       sgemm_4_register_tiles},
  };
  return ladder;
}

}  // namespace attend::kernels

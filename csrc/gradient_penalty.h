// The gradient-penalty ops over (N, D) contiguous tensors of `dtype` (a sample is D consecutive elements), with
// float32 arithmetic, as the Triton kernels (fastgan/kernels/gradient_penalty.py) compute them:
//
//   interpolate            out = fake + eps_n (real - fake)               reads 2|x|, writes |x|
//   interpolate backward   d_real = eps_n g, d_fake = (1 - eps_n) g        reads |g|, writes 2|g| (one read of g)
//   squared norms          partials  one sum of g^2 per tile              part (N, n_tiles)
//                          row sums  sum of a sample's partials           norms (N,)
//   scale rows             out = coef_n g                                 reads |g|, writes |g|
//
// eps, coef, part and norms are float32. The squared norms are summed in a fixed order (within a thread, then
// shuffles and shared memory over the block, then one warp per sample over its partials), never with atomics: they
// are reproducible run to run; the rounding depends on the dtype and on whether the vector path applies, not on
// the device.
//
// Work decomposition. Block b of a 1-D grid takes tile b % n_tiles of sample b / n_tiles: TILE_BYTES of the
// sample (THREADS threads, each UNROLL 16-byte vectors, THREADS vectors apart, so that each access of the block is
// contiguous; or as many scalars, THREADS elements apart, where a vector would not be aligned). A sample shorter
// than a tile gets one block of as few warps as cover it. The vector path needs D a multiple of a vector and every
// tensor of `dtype` 16-byte aligned (then so is every tile). A tile's start is an int64 offset, offsets within it
// int. n_tiles = ceil(D * sizeof(T) / TILE_BYTES), which the host code of the squared norms passes as the row length
// of part (checked).
//
// Files: this header (launch constants, GpParams), gradient_penalty.cu (the kernels, their launchers and the entry
// points of ops.h).
#pragma once

#include <cstdint>

#include "common.cuh"

namespace fastgan {
namespace gp {

constexpr int THREADS = 256;
// Two resident blocks per SM at least (<= 128 registers): with no minimum ptxas aims at a higher occupancy for the
// scalar paths of 16-bit types (16 elements a thread, each with its own bound check) and spills to reach it.
constexpr int MIN_BLOCKS = 2;
constexpr int UNROLL = 2;                          // 16-byte vectors (or as many scalars) a thread holds at once
constexpr int TILE_BYTES = THREADS * UNROLL * 16;  // of a sample per block: fastgan/ops/gradient_penalty_cuda.py
constexpr int SUM_THREADS = 256;                   // row sums: one warp per sample

// Elements of a tile one thread holds.
template <typename T>
constexpr int thread_len() {
  return UNROLL * vec_width<T>();
}

// One call of an entry point of ops.h, filled once from its arguments and passed to the launchers. The fields a
// call does not use stay 0.
struct GpParams {
  // (N, D) tensors of `dtype`: device addresses, typed where the dtype is dispatched
  uintptr_t a = 0;     // real (interpolate) or g
  uintptr_t b = 0;     // fake (interpolate)
  uintptr_t out = 0;   // out, d_real (interpolate backward)
  uintptr_t out2 = 0;  // d_fake (interpolate backward)
  // float32 buffers
  const float* per_sample = nullptr;  // (N,) eps or coef
  float* part = nullptr;              // (N, n_tiles) squared-norm partials
  float* norms = nullptr;             // (N,) squared norms
  int64_t n_tiles = 0;                // the row length of part, as the host code allocated it
  int64_t N = 0, D = 0;
  int dtype = kFloat32;  // a DType code, checked where it is dispatched
  int device = 0;
  uintptr_t stream = 0;

  bool empty() const { return N <= 0 || D <= 0; }
};

}  // namespace gp
}  // namespace fastgan

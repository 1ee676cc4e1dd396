// Conditional batch norm over x of logical shape (N, C, HW), NCHW or NHWC, with per-sample or per-channel affine
// parameters and a fused ReLU / leaky ReLU. Every cross-thread and cross-block reduction is combined in a fixed
// order (shuffles, shared memory, and the small float32 buffers the host passes: part, sums), never with atomics:
// results are reproducible run to run. The decomposition, hence the rounding, depends on the shapes, on whether the
// pointers are 16-byte aligned and on the number of SMs.
//
// Forward (training):  partial stats  one (mean, M2) per (n, c)      part  (N, C, 2)
//                      finalize       mean and invstd per channel    stats (2, C), running statistics
//                      apply          y = act(x * scale + shift)     scale and shift per (n, c)
// Backward:            reduce         A = sum g, B = sum g * xhat    sums  (N, C, 2)
//                      finalize       S1, S2, dweight, dbias         k     (4, C)
//                      dx             invstd * (gamma g - (S1 + xhat S2) / m)
//
// Work decomposition. NCHW: a (n, c) pair is a contiguous row of HW elements, rows are in (n, c) order; a group of
// G threads (a power of two: part of a warp, a warp or several) takes one row, so small rows keep many rows per
// block and large ones spread over the block. NHWC: a block takes one sample n and a band of channels, each thread
// a 16-byte vector of channels (or as many scalars, CX apart) and every RY-th hw row; the per-thread results are
// combined per channel by shuffles within each warp, then over the warps in shared memory. The elementwise passes
// also split rows (NCHW) or hw (NHWC) over blocks.
//
// Files: this header (activation codes, launch constants, Affine and CbnParams), cond_batch_norm.cuh (the device
// code the passes share), cond_batch_norm_plan.h (launch plans, the params of an entry point, the setup of the
// reduction passes); cond_batch_norm_stats.cu (partial stats, finalize), cond_batch_norm_eltwise.cu (apply, dx) and
// cond_batch_norm_backward.cu (backward reduce, finalize).
#pragma once

#include <cstdint>

#include "common.cuh"

namespace fastgan {

// The fused activation: the codes of fastgan/activations.py (checked by tests/test_activations.py).
enum Activation : int { ACT_NONE = 0, ACT_RELU = 1, ACT_LEAKY_RELU = 2 };

namespace cbn {

constexpr int THREADS = 256;
// Two resident blocks per SM at least (<= 128 registers): with no minimum ptxas aims at a higher occupancy for
// some of these kernels and spills to reach it.
constexpr int MIN_BLOCKS = 2;
constexpr int MAX_LOG2_GROUP = 8;  // G <= THREADS
constexpr int MAX_LOG2_CX = 5;     // at most 32 vectors of channels (512 bytes) per band
constexpr int RESIDENT_THREADS_PER_SM = 2048;
constexpr int COL_ROWS = 4;       // hw rows a thread holds at once in the NHWC kernels
constexpr int COL_ROWS_GRAD = 2;  // ... when it also holds dy (keeps registers in check)

// What the kernels read per channel (a kernel argument): the statistics, the affine parameters, the activation.
struct Affine {
  const float* mean;
  const float* istd_or_var;  // invstd, or running_var when eval
  const float* weight;       // nullptr: gamma = 1
  const float* bias;         // nullptr: beta = 0
  int64_t w_stride_n;        // C for per-sample parameters, 0 for per-channel ones
  float eps;
  float slope;
  Activation act;
  bool eval;
};

// One call of an entry point of ops.h, filled once from its arguments and passed to the launchers. The fields a
// pass does not use stay 0.
struct CbnParams {
  // (N, C, HW) tensors of `dtype`, NCHW or NHWC: device addresses, typed where the dtype is dispatched
  uintptr_t x = 0;
  uintptr_t dy = 0;
  uintptr_t out = 0;  // y (apply) or dx (backward dx)
  // float32 buffers
  float* part = nullptr;          // (N, C, 2) partial (mean, M2)
  float* stats = nullptr;         // (2, C) mean and invstd (or M2 when raw)
  float* running_mean = nullptr;  // nullptr: not updated
  float* running_var = nullptr;
  float* sums = nullptr;  // (N, C, 2) backward (A, B)
  float* k = nullptr;     // (4, C) S1, S2, sum B, sum A
  // apply, backward reduce and dx: the statistics and affine parameters (float32), as Affine has them
  const float* mean = nullptr;
  const float* istd_or_var = nullptr;
  const float* weight = nullptr;
  const float* bias = nullptr;
  int64_t w_stride_n = 0;
  Activation act = ACT_NONE;
  float slope = 0.f;
  bool eval = false;
  float eps = 0.f;
  int64_t N = 0, C = 0, HW = 0;
  bool channels_last = false;
  int dtype = kFloat32;  // a DType code, checked where it is dispatched
  float momentum = 0.f;  // finalize: of the running statistics
  bool raw = false;      // finalize: M2 instead of invstd, no running statistics
  float inv_m = 0.f;     // dx: 1 / (N * HW)
  int device = 0;
  uintptr_t stream = 0;

  bool empty() const { return N <= 0 || C <= 0 || HW <= 0; }
  Affine affine() const { return {mean, istd_or_var, weight, bias, w_stride_n, eps, slope, act, eval}; }
};

}  // namespace cbn
}  // namespace fastgan

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
#include <algorithm>
#include <atomic>
#include <climits>
#include <type_traits>

#include "common.cuh"
#include "ops.h"

namespace fastgan {
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

// Elements of a row one thread of an NCHW group holds at once: two 16-byte vectors.
template <typename T>
constexpr int tile_len() {
  return 2 * vec_width<T>();
}

// ---------------------------------------------------------------------------------------------------------------
// Per-channel coefficients and activation

struct Affine {
  const float* mean;
  const float* istd_or_var;  // invstd, or running_var when eval
  const float* weight;       // nullptr: gamma = 1
  const float* bias;         // nullptr: beta = 0
  int64_t w_stride_n;        // C for per-sample parameters, 0 for per-channel ones
  float eps;
  float slope;
  int act;
  bool eval;
};

struct ChanCoef {
  float mean, invstd, scale, shift;
};

__device__ __forceinline__ float invstd_of(const Affine& p, int64_t c) {
  return p.eval ? 1.f / sqrtf(p.istd_or_var[c] + p.eps) : p.istd_or_var[c];
}

// The forward and every backward pass derive z = x * scale + shift from this one function with the same fmaf,
// so the sign of z the backward sees is the one the forward activated.
__device__ __forceinline__ ChanCoef chan_coef(const Affine& p, int64_t n, int64_t c) {
  const float mean = p.mean[c];
  const float invstd = invstd_of(p, c);
  const int64_t wi = n * p.w_stride_n + c;
  const float gamma = p.weight ? p.weight[wi] : 1.f;
  const float beta = p.bias ? p.bias[wi] : 0.f;
  const float scale = gamma * invstd;
  return {mean, invstd, scale, fmaf(-mean, scale, beta)};
}

__device__ __forceinline__ float activate(float z, int act, float slope) {
  // !(z <= 0) keeps a NaN, as torch.relu does
  return (act == 0 || !(z <= 0.f)) ? z : (act == 1 ? 0.f : z * slope);
}

// dy * act'(z) as torch computes it: a ReLU passes dy unless z <= 0 (so at z = NaN too) and gives 0 there even for
// a non-finite dy; a leaky ReLU scales dy unless z > 0.
__device__ __forceinline__ float act_grad(float dy, float z, int act, float slope) {
  if (act == 1) return z <= 0.f ? 0.f : dy;
  return (act == 0 || z > 0.f) ? dy : dy * slope;
}

// ---------------------------------------------------------------------------------------------------------------
// Reductions

struct Moments {
  float n, mean, m2;  // count, mean, sum of squared deviations
};

// Chan et al.'s pairwise combination; an empty side leaves the other unchanged. d (d (n_a r)), not d d n_a r: where
// d * d overflows (|x| ~ 1e30) and a side is empty, inf * 0 would be NaN.
__device__ __forceinline__ void merge(Moments& a, const Moments& b) {
  const float n = a.n + b.n;
  const float r = n > 0.f ? b.n / n : 0.f;
  const float d = b.mean - a.mean;
  a.mean = fmaf(d, r, a.mean);
  a.m2 += b.m2 + d * (d * (a.n * r));
  a.n = n;
}

__device__ __forceinline__ void merge(float2& a, const float2& b) {
  a.x += b.x;
  a.y += b.y;
}

__device__ __forceinline__ Moments shfl_xor(const Moments& m, int off) {
  return {__shfl_xor_sync(0xffffffffu, m.n, off), __shfl_xor_sync(0xffffffffu, m.mean, off),
          __shfl_xor_sync(0xffffffffu, m.m2, off)};
}

__device__ __forceinline__ float2 shfl_xor(const float2& v, int off) {
  return make_float2(__shfl_xor_sync(0xffffffffu, v.x, off), __shfl_xor_sync(0xffffffffu, v.y, off));
}

// Two-pass moments of v[0, cnt) (cnt >= 1); the entries past cnt are 0.
template <int L>
__device__ __forceinline__ Moments tile_moments(const float (&v)[L], int cnt) {
  float s = 0.f;
#pragma unroll
  for (int i = 0; i < L; ++i) s += v[i];
  const float mean = s / static_cast<float>(cnt);
  float m2 = 0.f;
#pragma unroll
  for (int i = 0; i < L; ++i) {
    const float d = v[i] - mean;
    m2 = i < cnt ? fmaf(d, d, m2) : m2;
  }
  return {static_cast<float>(cnt), mean, m2};
}

// Combines the values of each aligned group of G threads (G a power of two <= THREADS) in a fixed order; the
// group's first thread gets the result. Every thread of the block must call it. `smem` holds one V per warp.
template <typename V>
__device__ __forceinline__ V group_reduce(V v, int G, V* smem) {
  for (int off = (G < 32 ? G : 32) >> 1; off > 0; off >>= 1) merge(v, shfl_xor(v, off));
  if (G > 32) {  // uniform over the block
    const int warp = threadIdx.x >> 5;
    if ((threadIdx.x & 31) == 0) smem[warp] = v;
    __syncthreads();
    if ((threadIdx.x & (G - 1)) == 0) {
      for (int w = 1; w < G / 32; ++w) merge(v, smem[warp + w]);
    }
  }
  return v;
}

// Active lanes of the warp (blocks smaller than a warp have one, partial, warp) and their mask.
__device__ __forceinline__ int warp_lanes() { return blockDim.x < 32 ? blockDim.x : 32; }
__device__ __forceinline__ unsigned lanes_mask(int lanes) { return lanes == 32 ? 0xffffffffu : (1u << lanes) - 1; }

// Sum over the lanes whose index differs from this one only in bits >= lbits (the lanes of a warp that share a
// channel when the channel is the low lbits of the thread index), in a fixed order.
__device__ __forceinline__ float lane_sum(float v, int lbits) {
  const int lanes = warp_lanes();
  const unsigned mask = lanes_mask(lanes);
  for (int off = 1 << lbits; off < lanes; off <<= 1) v += __shfl_xor_sync(mask, v, off);
  return v;
}

// ---------------------------------------------------------------------------------------------------------------
// Loads and stores

// NCHW rows. In each step a group of G threads covers G * tile_len elements of a row from `base`: thread g holds
// two vectors G vectors apart (VEC) or scalars G elements apart, so that each access of the group is contiguous.
template <typename T, bool VEC>
__device__ __forceinline__ int64_t tile_offset(int64_t base, int i, int g, int G) {
  constexpr int VW = vec_width<T>();
  if (VEC) return base + static_cast<int64_t>((i / VW) * G + g) * VW + i % VW;
  return base + static_cast<int64_t>(i) * G + g;
}

// Loads this thread's tile of `row` (len elements). Returns cnt: v[i] is an element for i < cnt, 0 after.
// VEC requires len % vec_width == 0 and a 16-byte aligned row.
template <typename T, bool VEC>
__device__ __forceinline__ int load_row_tile(const T* __restrict__ row, int64_t len, int64_t base, int g, int G,
                                             float (&v)[tile_len<T>()]) {
  constexpr int VW = vec_width<T>(), L = tile_len<T>();
  int cnt = 0;
  if constexpr (VEC) {
#pragma unroll
    for (int j = 0; j < L / VW; ++j) {
      const int64_t off = tile_offset<T, true>(base, j * VW, g, G);
      if (off < len) {
        const Vec<T> q = *reinterpret_cast<const Vec<T>*>(row + off);
#pragma unroll
        for (int k = 0; k < VW; ++k) v[j * VW + k] = to_float(q.v[k]);
        cnt += VW;
      } else {
#pragma unroll
        for (int k = 0; k < VW; ++k) v[j * VW + k] = 0.f;
      }
    }
  } else {
#pragma unroll
    for (int i = 0; i < L; ++i) {
      const int64_t off = tile_offset<T, false>(base, i, g, G);
      v[i] = off < len ? to_float(row[off]) : 0.f;
      cnt += off < len;
    }
  }
  return cnt;
}

template <typename T, bool VEC>
__device__ __forceinline__ void store_row_tile(T* __restrict__ row, int64_t len, int64_t base, int g, int G,
                                               const float (&v)[tile_len<T>()]) {
  constexpr int VW = vec_width<T>(), L = tile_len<T>();
  if constexpr (VEC) {
#pragma unroll
    for (int j = 0; j < L / VW; ++j) {
      const int64_t off = tile_offset<T, true>(base, j * VW, g, G);
      if (off < len) {
        Vec<T> q;
#pragma unroll
        for (int k = 0; k < VW; ++k) q.v[k] = from_float<T>(v[j * VW + k]);
        *reinterpret_cast<Vec<T>*>(row + off) = q;
      }
    }
  } else {
#pragma unroll
    for (int i = 0; i < L; ++i) {
      const int64_t off = tile_offset<T, false>(base, i, g, G);
      if (off < len) row[off] = from_float<T>(v[i]);
    }
  }
}

// NHWC. Channel of entry k of thread tx in a band: consecutive per thread (VEC) or CX apart (coalesced scalars).
template <typename T, bool VEC>
__device__ __forceinline__ int band_channel(int tx, int k, int CX) {
  return VEC ? tx * vec_width<T>() + k : k * CX + tx;
}

// This thread's channels of one (n, hw) row (C elements), as stored (converted where used, which keeps a tile of
// rows in half the registers for 16-bit types); channels >= C read as 0.
// VEC requires C % vec_width == 0 and a 16-byte aligned tensor.
template <typename T, bool VEC>
__device__ __forceinline__ Vec<T> load_band(const T* __restrict__ row, int64_t C, int64_t cb, int tx, int CX) {
  constexpr int VW = vec_width<T>();
  Vec<T> q;
  if constexpr (VEC) {
    const int64_t c = cb + static_cast<int64_t>(tx) * VW;
    if (c < C) return *reinterpret_cast<const Vec<T>*>(row + c);
#pragma unroll
    for (int k = 0; k < VW; ++k) q.v[k] = from_float<T>(0.f);
  } else {
#pragma unroll
    for (int k = 0; k < VW; ++k) {
      const int64_t c = cb + band_channel<T, false>(tx, k, CX);
      q.v[k] = c < C ? row[c] : from_float<T>(0.f);
    }
  }
  return q;
}

template <typename T>
__device__ __forceinline__ Vec<T> zero_vec() {
  Vec<T> q;
#pragma unroll
  for (int k = 0; k < vec_width<T>(); ++k) q.v[k] = from_float<T>(0.f);
  return q;
}

template <typename T, bool VEC>
__device__ __forceinline__ void store_band(T* __restrict__ row, int64_t C, int64_t cb, int tx, int CX,
                                           const float (&v)[vec_width<T>()]) {
  constexpr int VW = vec_width<T>();
  if constexpr (VEC) {
    const int64_t c = cb + static_cast<int64_t>(tx) * VW;
    if (c < C) {
      Vec<T> q;
#pragma unroll
      for (int k = 0; k < VW; ++k) q.v[k] = from_float<T>(v[k]);
      *reinterpret_cast<Vec<T>*>(row + c) = q;
    }
  } else {
#pragma unroll
    for (int k = 0; k < VW; ++k) {
      const int64_t c = cb + band_channel<T, false>(tx, k, CX);
      if (c < C) row[c] = from_float<T>(v[k]);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Forward statistics

// part[row] = (mean, M2) of each NCHW row (row = n * C + c), groups of 2^lg threads per row.
template <typename T, bool VEC>
__global__ void __launch_bounds__(THREADS, MIN_BLOCKS)
    stats_nchw_kernel(const T* __restrict__ x, float* __restrict__ part, int64_t rows, int64_t hw, int lg) {
  __shared__ Moments smem[THREADS / 32];
  constexpr int L = tile_len<T>();
  const int G = 1 << lg, g = threadIdx.x & (G - 1);
  const int64_t row = static_cast<int64_t>(blockIdx.x) * (THREADS >> lg) + (threadIdx.x >> lg);
  Moments m{0.f, 0.f, 0.f};
  if (row < rows) {
    const T* xr = x + row * hw;
    for (int64_t base = 0; base < hw; base += static_cast<int64_t>(G) * L) {
      float v[L];
      const int cnt = load_row_tile<T, VEC>(xr, hw, base, g, G, v);
      if (cnt > 0) merge(m, tile_moments(v, cnt));
    }
  }
  m = group_reduce(m, G, smem);
  if (g == 0 && row < rows) {
    part[2 * row] = m.mean;
    part[2 * row + 1] = m.m2;
  }
}

// part[n, c] for NHWC: block (band, n) of 2^lcx x RY threads; thread (tx, ty) takes rows ty, ty + RY, ...
template <typename T, bool VEC>
__global__ void __launch_bounds__(THREADS, MIN_BLOCKS)
    stats_nhwc_kernel(const T* __restrict__ x, float* __restrict__ part, int64_t C, int64_t hw, uint32_t nbands,
                      int lcx) {
  constexpr int VW = vec_width<T>();
  __shared__ float s_mean[THREADS * VW], s_m2[THREADS * VW], s_n[THREADS / 32];
  const int CX = 1 << lcx, RY = blockDim.x >> lcx, BW = CX * VW;
  const int tx = threadIdx.x & (CX - 1), ty = threadIdx.x >> lcx;
  const uint32_t n32 = blockIdx.x / nbands;
  const int64_t n = n32, cb = static_cast<int64_t>(blockIdx.x - n32 * nbands) * BW;
  const T* xn = x + n * hw * C;
  float cnt = 0.f, mean[VW], m2[VW];
#pragma unroll
  for (int k = 0; k < VW; ++k) mean[k] = m2[k] = 0.f;
  for (int64_t h0 = ty; h0 < hw; h0 += static_cast<int64_t>(RY) * COL_ROWS) {
    Vec<T> v[COL_ROWS];
    int nr = 0;  // rows of this tile inside hw: a prefix, at least the first
#pragma unroll
    for (int r = 0; r < COL_ROWS; ++r) {
      const int64_t h = h0 + static_cast<int64_t>(r) * RY;
      v[r] = h < hw ? load_band<T, VEC>(xn + h * C, C, cb, tx, CX) : zero_vec<T>();
      nr += h < hw;
    }
    const float inv_nr = 1.f / static_cast<float>(nr);
    const float total = cnt + static_cast<float>(nr), ratio = static_cast<float>(nr) / total;
#pragma unroll
    for (int k = 0; k < VW; ++k) {
      float s = 0.f;
#pragma unroll
      for (int r = 0; r < COL_ROWS; ++r) s += to_float(v[r].v[k]);
      const float tm = s * inv_nr;
      float q = 0.f;
#pragma unroll
      for (int r = 0; r < COL_ROWS; ++r) {
        const float d = to_float(v[r].v[k]) - tm;
        q = r < nr ? fmaf(d, d, q) : q;
      }
      const float d = tm - mean[k];
      mean[k] = fmaf(d, ratio, mean[k]);
      m2[k] += q + d * (d * (cnt * ratio));  // as merge(): not inf * 0 at the first tile
    }
    cnt = total;
  }
  // The lanes of a warp that share tx (every CX-th) by shuffles, then the warps' partials per channel. The count
  // depends on ty only, so one per warp serves all channels.
  const int lanes = warp_lanes();
  const unsigned mask = lanes_mask(lanes);
  for (int off = CX; off < lanes; off <<= 1) {
    const float other_n = __shfl_xor_sync(mask, cnt, off);
#pragma unroll
    for (int k = 0; k < VW; ++k) {
      Moments m{cnt, mean[k], m2[k]};
      merge(m, Moments{other_n, __shfl_xor_sync(mask, mean[k], off), __shfl_xor_sync(mask, m2[k], off)});
      mean[k] = m.mean;
      m2[k] = m.m2;
    }
    cnt += other_n;
  }
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nwarps = (blockDim.x + 31) >> 5;
  if (lane < CX) {
#pragma unroll
    for (int k = 0; k < VW; ++k) {
      const int l = warp * BW + band_channel<T, VEC>(tx, k, CX);
      s_mean[l] = mean[k];
      s_m2[l] = m2[k];
    }
    if (tx == 0) s_n[warp] = cnt;
  }
  __syncthreads();
  for (int l = threadIdx.x; l < BW; l += blockDim.x) {
    const int64_t c = cb + l;
    if (c >= C) break;
    Moments m{s_n[0], s_mean[l], s_m2[l]};
    for (int w = 1; w < nwarps; ++w) merge(m, Moments{s_n[w], s_mean[w * BW + l], s_m2[w * BW + l]});
    part[2 * (n * C + c)] = m.mean;
    part[2 * (n * C + c) + 1] = m.m2;
  }
}

// Per channel: mean and M2 over all n from part, then invstd (or M2 when raw) and the running statistics.
// Block: 2^lcb channels x (THREADS >> lcb) lanes over n; the lanes' partials are added by shuffles within each warp,
// then over the warps in order.
__global__ void __launch_bounds__(THREADS, MIN_BLOCKS)
    finalize_stats_kernel(const float* __restrict__ part, float* __restrict__ stats, float* __restrict__ run_mean,
                          float* __restrict__ run_var, int64_t N, int64_t C, float hw, float count, float momentum,
                          float eps, bool raw, int lcb) {
  constexpr int NW = THREADS / 32;
  __shared__ float s_a[NW][32], s_b[NW][32], s_mean[32], s_m2[32];
  const int CB = 1 << lcb, NY = THREADS >> lcb;
  const int tc = threadIdx.x & (CB - 1), tn = threadIdx.x >> lcb, warp = threadIdx.x >> 5;
  const bool first_lanes = static_cast<int>(threadIdx.x & 31) < CB;  // one per channel in each warp (lane == tc)
  const int64_t c = static_cast<int64_t>(blockIdx.x) * CB + tc;
  const bool valid = c < C;
  float sm = 0.f, s2 = 0.f;
  if (valid) {
    for (int64_t n = tn; n < N; n += NY) {
      sm += part[2 * (n * C + c)];
      s2 += part[2 * (n * C + c) + 1];
    }
  }
  sm = lane_sum(sm, lcb);
  s2 = lane_sum(s2, lcb);
  if (first_lanes) {
    s_a[warp][tc] = sm;
    s_b[warp][tc] = s2;
  }
  __syncthreads();
  if (tn == 0) {
    float a = 0.f, b = 0.f;
    for (int w = 0; w < NW; ++w) {
      a += s_a[w][tc];
      b += s_b[w][tc];
    }
    s_mean[tc] = a / static_cast<float>(N);
    s_m2[tc] = b;
  }
  __syncthreads();
  const float mean = s_mean[tc];
  float q = 0.f;
  if (valid) {
    for (int64_t n = tn; n < N; n += NY) {
      const float d = part[2 * (n * C + c)] - mean;
      q = fmaf(d, d, q);
    }
  }
  q = lane_sum(q, lcb);
  if (first_lanes) s_a[warp][tc] = q;  // the reads of s_a above finished before the last barrier
  __syncthreads();
  if (tn == 0 && valid) {
    float b = 0.f;
    for (int w = 0; w < NW; ++w) b += s_a[w][tc];
    const float m2 = fmaf(hw, b, s_m2[tc]);
    stats[c] = mean;
    if (raw) {
      stats[C + c] = m2;
    } else {
      stats[C + c] = 1.f / sqrtf(m2 / count + eps);
      if (run_mean) run_mean[c] = (1.f - momentum) * run_mean[c] + momentum * mean;
      if (run_var) run_var[c] = (1.f - momentum) * run_var[c] + momentum * (m2 / (count - 1.f));
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Elementwise passes: y = act(z), dx

struct ApplyOp {
  static constexpr bool kGrad = false;
  Affine p;
  struct Coef {
    float scale, shift;
  };
  __device__ __forceinline__ Coef coef(int64_t n, int64_t c) const {
    const ChanCoef q = chan_coef(p, n, c);
    return {q.scale, q.shift};
  }
  __device__ __forceinline__ float operator()(const Coef& q, float x, float) const {
    return activate(fmaf(x, q.scale, q.shift), p.act, p.slope);
  }
};

// dx = invstd * (gamma * g - (S1 + xhat * S2) * inv_m) = scale * g - (b * (x - mean) + c0) in training,
// scale * g in eval.
struct DxOp {
  static constexpr bool kGrad = true;
  Affine p;
  const float* k;  // (4, C): S1, S2, ... (unused in eval)
  int64_t C;
  float inv_m;
  struct Coef {
    float mean, scale, shift, b, c0;
  };
  __device__ __forceinline__ Coef coef(int64_t n, int64_t c) const {
    const ChanCoef q = chan_coef(p, n, c);
    if (p.eval) return {q.mean, q.scale, q.shift, 0.f, 0.f};
    const float u = inv_m * q.invstd;
    return {q.mean, q.scale, q.shift, k[C + c] * u * q.invstd, k[c] * u};
  }
  __device__ __forceinline__ float operator()(const Coef& q, float x, float dy) const {
    const float g = act_grad(dy, fmaf(x, q.scale, q.shift), p.act, p.slope);
    return p.eval ? q.scale * g : fmaf(q.scale, g, -fmaf(q.b, x - q.mean, q.c0));
  }
};

// NCHW: block (row band, chunk): 2^lg threads per row, each row cut into chunks of `chunk` elements (a multiple of
// 2^lg * tile_len, so that no step crosses a chunk end).
template <typename T, bool VEC, typename Op>
__global__ void __launch_bounds__(THREADS, MIN_BLOCKS)
    eltwise_nchw_kernel(const T* __restrict__ x, const T* __restrict__ dy, T* __restrict__ out, Op op, int64_t rows,
                        int64_t C, int64_t hw, int lg, int64_t chunk, uint32_t nchunks) {
  constexpr int L = tile_len<T>();
  const int G = 1 << lg, g = threadIdx.x & (G - 1);
  const uint32_t band = blockIdx.x / nchunks;
  const int64_t ch = blockIdx.x - band * nchunks;
  const int64_t row = static_cast<int64_t>(band) * (THREADS >> lg) + (threadIdx.x >> lg);
  if (row >= rows) return;
  const uint32_t n = static_cast<uint32_t>(row) / static_cast<uint32_t>(C);  // rows < 2^32
  const auto q = op.coef(n, row - static_cast<int64_t>(n) * C);
  const int64_t off = row * hw, end = min(hw, (ch + 1) * chunk);
  for (int64_t base = ch * chunk; base < end; base += static_cast<int64_t>(G) * L) {
    float v[L], d[L];
    load_row_tile<T, VEC>(x + off, hw, base, g, G, v);
    if constexpr (Op::kGrad) {
      load_row_tile<T, VEC>(dy + off, hw, base, g, G, d);
    } else {
#pragma unroll
      for (int i = 0; i < L; ++i) d[i] = 0.f;
    }
#pragma unroll
    for (int i = 0; i < L; ++i) v[i] = op(q, v[i], d[i]);
    store_row_tile<T, VEC>(out + off, hw, base, g, G, v);
  }
}

// NHWC: block (hw chunk, band, n) of 2^lcx x RY threads; the chunk is `rch` rows (a multiple of RY * rows per tile).
template <typename T, bool VEC, typename Op>
__global__ void __launch_bounds__(THREADS, MIN_BLOCKS)
    eltwise_nhwc_kernel(const T* __restrict__ x, const T* __restrict__ dy, T* __restrict__ out, Op op, int64_t C,
                        int64_t hw, uint32_t nbands, uint32_t nrch, int64_t rch, int lcx) {
  constexpr int VW = vec_width<T>(), R = Op::kGrad ? COL_ROWS_GRAD : COL_ROWS;
  const int CX = 1 << lcx, RY = blockDim.x >> lcx;
  const int tx = threadIdx.x & (CX - 1), ty = threadIdx.x >> lcx;
  const uint32_t rest = blockIdx.x / nrch, n32 = rest / nbands;
  const int64_t rc = blockIdx.x - rest * nrch, n = n32;
  const int64_t cb = static_cast<int64_t>(rest - n32 * nbands) * CX * VW;
  if (cb + band_channel<T, VEC>(tx, 0, CX) >= C) return;  // none of this thread's channels exists
  typename Op::Coef q[VW];
#pragma unroll
  for (int k = 0; k < VW; ++k) q[k] = op.coef(n, min(cb + band_channel<T, VEC>(tx, k, CX), C - 1));
  const int64_t nrow0 = n * hw, end = min(hw, (rc + 1) * rch);
  for (int64_t h0 = rc * rch + ty; h0 < end; h0 += static_cast<int64_t>(RY) * R) {
    Vec<T> xv[R], dv[R];
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const int64_t h = h0 + static_cast<int64_t>(r) * RY;
      if (h < end) {
        xv[r] = load_band<T, VEC>(x + (nrow0 + h) * C, C, cb, tx, CX);
        if constexpr (Op::kGrad) dv[r] = load_band<T, VEC>(dy + (nrow0 + h) * C, C, cb, tx, CX);
      }
    }
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const int64_t h = h0 + static_cast<int64_t>(r) * RY;
      if (h < end) {
        float v[VW];
#pragma unroll
        for (int k = 0; k < VW; ++k) v[k] = op(q[k], to_float(xv[r].v[k]), Op::kGrad ? to_float(dv[r].v[k]) : 0.f);
        store_band<T, VEC>(out + (nrow0 + h) * C, C, cb, tx, CX, v);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Backward reductions

// sums[row] = (A, B) of each NCHW row, B = invstd * sum g * (x - mean); groups of 2^lg threads per row.
template <typename T, bool VEC>
__global__ void __launch_bounds__(THREADS, MIN_BLOCKS)
    grad_sums_nchw_kernel(const T* __restrict__ dy, const T* __restrict__ x, Affine p, float* __restrict__ sums,
                          int64_t rows, int64_t C, int64_t hw, int lg) {
  __shared__ float2 smem[THREADS / 32];
  constexpr int L = tile_len<T>();
  const int G = 1 << lg, g = threadIdx.x & (G - 1);
  const int64_t row = static_cast<int64_t>(blockIdx.x) * (THREADS >> lg) + (threadIdx.x >> lg);
  float2 acc = make_float2(0.f, 0.f);
  float invstd = 0.f;
  if (row < rows) {
    const uint32_t n = static_cast<uint32_t>(row) / static_cast<uint32_t>(C);  // rows < 2^32
    const ChanCoef q = chan_coef(p, n, row - static_cast<int64_t>(n) * C);
    invstd = q.invstd;
    const T* dyr = dy + row * hw;
    const T* xr = x + row * hw;
    for (int64_t base = 0; base < hw; base += static_cast<int64_t>(G) * L) {
      float dv[L], xv[L];  // past the row end both are 0, so g = 0 there
      load_row_tile<T, VEC>(dyr, hw, base, g, G, dv);
      load_row_tile<T, VEC>(xr, hw, base, g, G, xv);
#pragma unroll
      for (int i = 0; i < L; ++i) {
        const float gi = act_grad(dv[i], fmaf(xv[i], q.scale, q.shift), p.act, p.slope);
        acc.x += gi;
        acc.y = fmaf(gi, xv[i] - q.mean, acc.y);
      }
    }
  }
  acc = group_reduce(acc, G, smem);
  if (g == 0 && row < rows) {
    sums[2 * row] = acc.x;
    sums[2 * row + 1] = acc.y * invstd;
  }
}

// sums[n, c] for NHWC, decomposed as stats_nhwc_kernel.
template <typename T, bool VEC>
__global__ void __launch_bounds__(THREADS, MIN_BLOCKS)
    grad_sums_nhwc_kernel(const T* __restrict__ dy, const T* __restrict__ x, Affine p, float* __restrict__ sums,
                          int64_t C, int64_t hw, uint32_t nbands, int lcx) {
  constexpr int VW = vec_width<T>(), R = COL_ROWS_GRAD;
  __shared__ float s_a[THREADS * VW], s_b[THREADS * VW];
  const int CX = 1 << lcx, RY = blockDim.x >> lcx, BW = CX * VW;
  const int tx = threadIdx.x & (CX - 1), ty = threadIdx.x >> lcx;
  const uint32_t n32 = blockIdx.x / nbands;
  const int64_t n = n32, cb = static_cast<int64_t>(blockIdx.x - n32 * nbands) * BW;
  float mean[VW], scale[VW], shift[VW], a[VW], b[VW];
#pragma unroll
  for (int k = 0; k < VW; ++k) {
    const ChanCoef q = chan_coef(p, n, min(cb + band_channel<T, VEC>(tx, k, CX), C - 1));
    mean[k] = q.mean;
    scale[k] = q.scale;
    shift[k] = q.shift;
    a[k] = b[k] = 0.f;
  }
  const T* dyn = dy + n * hw * C;
  const T* xn = x + n * hw * C;
  for (int64_t h0 = ty; h0 < hw; h0 += static_cast<int64_t>(RY) * R) {
    Vec<T> dv[R], xv[R];  // rows past hw are 0, so g = 0 there
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const int64_t h = h0 + static_cast<int64_t>(r) * RY;
      dv[r] = h < hw ? load_band<T, VEC>(dyn + h * C, C, cb, tx, CX) : zero_vec<T>();
      xv[r] = h < hw ? load_band<T, VEC>(xn + h * C, C, cb, tx, CX) : zero_vec<T>();
    }
#pragma unroll
    for (int r = 0; r < R; ++r) {
#pragma unroll
      for (int k = 0; k < VW; ++k) {
        const float xf = to_float(xv[r].v[k]);
        const float gi = act_grad(to_float(dv[r].v[k]), fmaf(xf, scale[k], shift[k]), p.act, p.slope);
        a[k] += gi;
        b[k] = fmaf(gi, xf - mean[k], b[k]);
      }
    }
  }
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nwarps = (blockDim.x + 31) >> 5;
#pragma unroll
  for (int k = 0; k < VW; ++k) {
    a[k] = lane_sum(a[k], lcx);
    b[k] = lane_sum(b[k], lcx);
  }
  if (lane < CX) {
#pragma unroll
    for (int k = 0; k < VW; ++k) {
      const int l = warp * BW + band_channel<T, VEC>(tx, k, CX);
      s_a[l] = a[k];
      s_b[l] = b[k];
    }
  }
  __syncthreads();
  for (int l = threadIdx.x; l < BW; l += blockDim.x) {
    const int64_t c = cb + l;
    if (c >= C) break;
    float sa = 0.f, sb = 0.f;
    for (int w = 0; w < nwarps; ++w) {
      sa += s_a[w * BW + l];
      sb += s_b[w * BW + l];
    }
    sums[2 * (n * C + c)] = sa;
    sums[2 * (n * C + c) + 1] = sb * invstd_of(p, c);
  }
}

// k = (S1, S2, sum B, sum A) per channel, decomposed as finalize_stats_kernel.
__global__ void __launch_bounds__(THREADS, MIN_BLOCKS)
    finalize_grad_kernel(const float* __restrict__ sums, const float* __restrict__ weight, float* __restrict__ k,
                         int64_t N, int64_t C, int64_t w_stride_n, int lcb) {
  constexpr int NW = THREADS / 32;
  __shared__ float s[4][NW][32];
  const int CB = 1 << lcb, NY = THREADS >> lcb;
  const int tc = threadIdx.x & (CB - 1), tn = threadIdx.x >> lcb, warp = threadIdx.x >> 5;
  const int64_t c = static_cast<int64_t>(blockIdx.x) * CB + tc;
  float acc[4] = {0.f, 0.f, 0.f, 0.f};  // S1, S2, sum B, sum A
  if (c < C) {
    for (int64_t n = tn; n < N; n += NY) {
      const float a = sums[2 * (n * C + c)], b = sums[2 * (n * C + c) + 1];
      const float gamma = weight ? weight[n * w_stride_n + c] : 1.f;
      acc[0] = fmaf(gamma, a, acc[0]);
      acc[1] = fmaf(gamma, b, acc[1]);
      acc[2] += b;
      acc[3] += a;
    }
  }
#pragma unroll
  for (int j = 0; j < 4; ++j) acc[j] = lane_sum(acc[j], lcb);
  if (static_cast<int>(threadIdx.x & 31) < CB) {  // lane == tc
#pragma unroll
    for (int j = 0; j < 4; ++j) s[j][warp][tc] = acc[j];
  }
  __syncthreads();
  if (tn == 0 && c < C) {
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      float t = 0.f;
      for (int w = 0; w < NW; ++w) t += s[j][w][tc];
      k[j * C + c] = t;
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Host side: launch plans

int sm_count(int device) {
  static std::atomic<int> cache[64];
  const bool cached = device >= 0 && device < 64;
  int v = cached ? cache[device].load(std::memory_order_relaxed) : 0;
  if (v == 0) {
    check_cuda(cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, device), "cudaDeviceGetAttribute");
    if (cached) cache[device].store(v, std::memory_order_relaxed);
  }
  return v;
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Smallest l with 2^l >= v (v >= 1).
int ceil_log2(int64_t v) {
  int l = 0;
  while ((int64_t{1} << l) < v) ++l;
  return l;
}

unsigned grid_x(int64_t blocks) {
  if (blocks > INT_MAX) throw std::invalid_argument("fastgan CUDA: conditional batch norm grid too large");
  return static_cast<unsigned>(blocks);
}

// The NCHW kernels split a row index into (n, c) with 32-bit division.
int64_t nchw_rows(int64_t N, int64_t C) {
  if (N * C > UINT32_MAX) throw std::invalid_argument("fastgan CUDA: conditional batch norm N * C must be < 2^32");
  return N * C;
}

bool aligned(uintptr_t p) { return p % 16 == 0; }

template <typename F>
void dispatch_vec(bool vec, F&& f) {
  if (vec)
    f(std::true_type{});
  else
    f(std::false_type{});
}

int64_t wave_threads(int sms) { return static_cast<int64_t>(sms) * RESIDENT_THREADS_PER_SM; }

// More threads per NCHW row (log2 of G, from lg) while the grid is short of one full wave and every thread still
// gets at least one vector of the row.
int grow_rows_lg(int lg, int64_t rows, int64_t hw, int vw, int sms) {
  while (lg < MAX_LOG2_GROUP && (rows << lg) < wave_threads(sms) && (static_cast<int64_t>(vw) << (lg + 1)) <= hw) ++lg;
  return lg;
}

// Threads per NCHW row for a reduction (log2): enough for at most about 4 tiles per thread, more for a full wave.
int rows_reduce_lg(int64_t rows, int64_t hw, int vw, int tile, int sms) {
  const int lg = std::min(MAX_LOG2_GROUP, ceil_log2(ceil_div(hw, 4 * static_cast<int64_t>(tile))));
  return grow_rows_lg(lg, rows, hw, vw, sms);
}

// NHWC: bands of 2^lcx vectors of channels (at most 512 bytes of each row), ry threads over hw.
struct ColsPlan {
  int lcx;
  int64_t ry, nbands;
  int threads() const { return static_cast<int>(ry << lcx); }
};

// The widest band, and thread rows for one tile of `rows_per_tile` rows each (fewer if the rows run out).
ColsPlan cols_plan(int64_t C, int64_t hw, int vw, int rows_per_tile) {
  const int lcx = std::min(MAX_LOG2_CX, ceil_log2(ceil_div(C, vw)));
  const int64_t ry = std::min<int64_t>(THREADS >> lcx, int64_t{1} << ceil_log2(ceil_div(hw, rows_per_tile)));
  return {lcx, ry, ceil_div(C, static_cast<int64_t>(vw) << lcx)};
}

// For the NHWC reductions hw cannot be split over blocks. While the grid is short of a wave: more thread rows
// (down to one hw row per thread), and once a block is full, narrower bands (down to 32 bytes) for more blocks.
ColsPlan cols_reduce_plan(int64_t N, int64_t C, int64_t hw, int vw, int rows_per_tile, int sms) {
  ColsPlan p = cols_plan(C, hw, vw, rows_per_tile);
  const int64_t max_ry = int64_t{1} << ceil_log2(hw);
  while (N * p.nbands * p.threads() < wave_threads(sms)) {
    if (p.ry < std::min<int64_t>(THREADS >> p.lcx, max_ry)) {
      p.ry *= 2;
    } else if (p.lcx > 1 && p.ry < max_ry) {
      --p.lcx;
      p.ry *= 2;
      p.nbands = ceil_div(C, static_cast<int64_t>(vw) << p.lcx);
    } else {
      break;
    }
  }
  return p;
}

// Channels per block (log2) of the finalize kernels: narrower when few blocks would each loop over many n.
int finalize_lcb(int64_t N, int64_t C, int sms) {
  int lcb = std::min(5, ceil_log2(C));
  while (lcb > 3 && ceil_div(C, int64_t{1} << lcb) < sms && N > (THREADS >> lcb)) --lcb;
  return lcb;
}

Affine make_affine(uintptr_t mean, uintptr_t istd_or_var, uintptr_t weight, uintptr_t bias, int64_t w_stride_n, int act,
                   double slope, bool eval, double eps) {
  if (act < 0 || act > 2) throw std::invalid_argument("fastgan CUDA: activation code must be 0, 1 or 2");
  return {reinterpret_cast<const float*>(mean),
          reinterpret_cast<const float*>(istd_or_var),
          reinterpret_cast<const float*>(weight),
          reinterpret_cast<const float*>(bias),
          w_stride_n,
          static_cast<float>(eps),
          static_cast<float>(slope),
          act,
          eval};
}

template <typename T, typename Op>
void launch_eltwise(const Op& op, uintptr_t x, uintptr_t dy, uintptr_t out, int64_t N, int64_t C, int64_t HW,
                    bool channels_last, int sms, cudaStream_t s, const char* what) {
  constexpr int VW = vec_width<T>(), L = tile_len<T>();
  const bool ptrs_aligned = aligned(x) && aligned(out) && (!Op::kGrad || aligned(dy));
  const T* xp = reinterpret_cast<const T*>(x);
  const T* dp = reinterpret_cast<const T*>(dy);
  T* op_ = reinterpret_cast<T*>(out);
  if (!channels_last) {
    const int64_t rows = nchw_rows(N, C);
    // one step of the group covers the row where it can; long rows are cut into chunks of up to 8 steps
    const int lg = grow_rows_lg(std::min(MAX_LOG2_GROUP, ceil_log2(ceil_div(HW, L))), rows, HW, VW, sms);
    const int64_t row_bands = ceil_div(rows, THREADS >> lg), step = static_cast<int64_t>(L) << lg;
    int64_t steps = 8;
    while (steps > 1 && row_bands * ceil_div(HW, step * steps) * THREADS < wave_threads(sms)) steps /= 2;
    const int64_t chunk = step * steps, nchunks = ceil_div(HW, chunk);
    dispatch_vec(HW % VW == 0 && ptrs_aligned, [&](auto vec) {
      eltwise_nchw_kernel<T, decltype(vec)::value, Op><<<grid_x(row_bands * nchunks), THREADS, 0, s>>>(
          xp, dp, op_, op, rows, C, HW, lg, chunk, static_cast<uint32_t>(nchunks));
    });
  } else {
    constexpr int R = Op::kGrad ? COL_ROWS_GRAD : COL_ROWS;
    // chunks of up to 8 tiles per thread along hw; with few rows, more thread rows (down to one row each)
    ColsPlan p = cols_plan(C, HW, VW, R);
    int64_t steps = 8;
    auto total = [&] { return N * p.nbands * ceil_div(HW, p.ry * R * steps) * p.threads(); };
    while (steps > 1 && total() < wave_threads(sms)) steps /= 2;
    const int64_t max_ry = std::min<int64_t>(THREADS >> p.lcx, int64_t{1} << ceil_log2(HW));
    while (p.ry < max_ry && total() < wave_threads(sms)) p.ry *= 2;
    const int64_t rch = p.ry * R * steps, nrch = ceil_div(HW, rch);
    dispatch_vec(C % VW == 0 && ptrs_aligned, [&](auto vec) {
      eltwise_nhwc_kernel<T, decltype(vec)::value, Op><<<grid_x(N * p.nbands * nrch), p.threads(), 0, s>>>(
          xp, dp, op_, op, C, HW, static_cast<uint32_t>(p.nbands), static_cast<uint32_t>(nrch), rch, p.lcx);
    });
  }
  check_launch(what);
}

// With one channel or one hw position the NCHW and NHWC layouts are the same; the NCHW kernels take both.
bool use_nhwc(bool channels_last, int64_t C, int64_t HW) { return channels_last && C > 1 && HW > 1; }

}  // namespace cbn

void cbn_partial_stats(uintptr_t x, uintptr_t part, int64_t N, int64_t C, int64_t HW, bool channels_last, int dtype,
                       int device, uintptr_t stream) {
  using namespace cbn;
  if (N <= 0 || C <= 0 || HW <= 0) return;
  set_device(device);
  auto s = reinterpret_cast<cudaStream_t>(stream);
  const int sms = sm_count(device);
  auto* pp = reinterpret_cast<float*>(part);
  dispatch_dtype(dtype, [&](auto zero) {
    using T = decltype(zero);
    constexpr int VW = vec_width<T>();
    const T* xp = reinterpret_cast<const T*>(x);
    if (!use_nhwc(channels_last, C, HW)) {
      const int64_t rows = nchw_rows(N, C);
      const int lg = rows_reduce_lg(rows, HW, VW, tile_len<T>(), sms);
      dispatch_vec(HW % VW == 0 && aligned(x), [&](auto vec) {
        stats_nchw_kernel<T, decltype(vec)::value>
            <<<grid_x(ceil_div(rows, THREADS >> lg)), THREADS, 0, s>>>(xp, pp, rows, HW, lg);
      });
    } else {
      const ColsPlan p = cols_reduce_plan(N, C, HW, VW, COL_ROWS, sms);
      dispatch_vec(C % VW == 0 && aligned(x), [&](auto vec) {
        stats_nhwc_kernel<T, decltype(vec)::value>
            <<<grid_x(N * p.nbands), p.threads(), 0, s>>>(xp, pp, C, HW, static_cast<uint32_t>(p.nbands), p.lcx);
      });
    }
    check_launch("conditional batch norm partial statistics");
  });
}

void cbn_finalize_stats(uintptr_t part, uintptr_t stats, uintptr_t running_mean, uintptr_t running_var, int64_t N,
                        int64_t C, int64_t HW, double momentum, double eps, bool update, bool raw, int device,
                        uintptr_t stream) {
  using namespace cbn;
  if (N <= 0 || C <= 0 || HW <= 0) return;
  set_device(device);
  auto s = reinterpret_cast<cudaStream_t>(stream);
  const int lcb = finalize_lcb(N, C, sm_count(device));
  const bool upd = update && !raw;
  finalize_stats_kernel<<<grid_x(ceil_div(C, int64_t{1} << lcb)), THREADS, 0, s>>>(
      reinterpret_cast<const float*>(part), reinterpret_cast<float*>(stats),
      upd ? reinterpret_cast<float*>(running_mean) : nullptr, upd ? reinterpret_cast<float*>(running_var) : nullptr, N,
      C, static_cast<float>(HW), static_cast<float>(N * HW), static_cast<float>(momentum), static_cast<float>(eps), raw,
      lcb);
  check_launch("conditional batch norm finalize statistics");
}

void cbn_apply(uintptr_t x, uintptr_t y, uintptr_t mean, uintptr_t istd_or_var, uintptr_t weight, uintptr_t bias,
               int64_t N, int64_t C, int64_t HW, int64_t w_stride_n, bool channels_last, int act, double slope,
               bool eval, double eps, int dtype, int device, uintptr_t stream) {
  using namespace cbn;
  const ApplyOp op{make_affine(mean, istd_or_var, weight, bias, w_stride_n, act, slope, eval, eps)};
  if (N <= 0 || C <= 0 || HW <= 0) return;
  set_device(device);
  auto s = reinterpret_cast<cudaStream_t>(stream);
  const int sms = sm_count(device);
  dispatch_dtype(dtype, [&](auto zero) {
    using T = decltype(zero);
    launch_eltwise<T>(op, x, 0, y, N, C, HW, use_nhwc(channels_last, C, HW), sms, s, "conditional batch norm apply");
  });
}

void cbn_backward_reduce(uintptr_t dy, uintptr_t x, uintptr_t mean, uintptr_t istd_or_var, uintptr_t weight,
                         uintptr_t bias, uintptr_t sums, int64_t N, int64_t C, int64_t HW, int64_t w_stride_n,
                         bool channels_last, int act, double slope, bool eval, double eps, int dtype, int device,
                         uintptr_t stream) {
  using namespace cbn;
  const Affine p = make_affine(mean, istd_or_var, weight, bias, w_stride_n, act, slope, eval, eps);
  if (N <= 0 || C <= 0 || HW <= 0) return;
  set_device(device);
  auto s = reinterpret_cast<cudaStream_t>(stream);
  const int sms = sm_count(device);
  auto* sp = reinterpret_cast<float*>(sums);
  dispatch_dtype(dtype, [&](auto zero) {
    using T = decltype(zero);
    constexpr int VW = vec_width<T>();
    const T* dyp = reinterpret_cast<const T*>(dy);
    const T* xp = reinterpret_cast<const T*>(x);
    const bool ptrs_aligned = aligned(dy) && aligned(x);
    if (!use_nhwc(channels_last, C, HW)) {
      const int64_t rows = nchw_rows(N, C);
      const int lg = rows_reduce_lg(rows, HW, VW, tile_len<T>(), sms);
      dispatch_vec(HW % VW == 0 && ptrs_aligned, [&](auto vec) {
        grad_sums_nchw_kernel<T, decltype(vec)::value>
            <<<grid_x(ceil_div(rows, THREADS >> lg)), THREADS, 0, s>>>(dyp, xp, p, sp, rows, C, HW, lg);
      });
    } else {
      const ColsPlan cp = cols_reduce_plan(N, C, HW, VW, COL_ROWS_GRAD, sms);
      dispatch_vec(C % VW == 0 && ptrs_aligned, [&](auto vec) {
        grad_sums_nhwc_kernel<T, decltype(vec)::value><<<grid_x(N * cp.nbands), cp.threads(), 0, s>>>(
            dyp, xp, p, sp, C, HW, static_cast<uint32_t>(cp.nbands), cp.lcx);
      });
    }
    check_launch("conditional batch norm backward reduce");
  });
}

void cbn_backward_finalize(uintptr_t sums, uintptr_t weight, uintptr_t k, int64_t N, int64_t C, int64_t w_stride_n,
                           int device, uintptr_t stream) {
  using namespace cbn;
  if (N <= 0 || C <= 0) return;
  set_device(device);
  auto s = reinterpret_cast<cudaStream_t>(stream);
  const int lcb = finalize_lcb(N, C, sm_count(device));
  finalize_grad_kernel<<<grid_x(ceil_div(C, int64_t{1} << lcb)), THREADS, 0, s>>>(
      reinterpret_cast<const float*>(sums), reinterpret_cast<const float*>(weight), reinterpret_cast<float*>(k), N, C,
      w_stride_n, lcb);
  check_launch("conditional batch norm backward finalize");
}

void cbn_backward_dx(uintptr_t dy, uintptr_t x, uintptr_t mean, uintptr_t istd_or_var, uintptr_t weight, uintptr_t bias,
                     uintptr_t k, uintptr_t dx, int64_t N, int64_t C, int64_t HW, int64_t w_stride_n,
                     bool channels_last, int act, double slope, bool eval, double eps, double inv_m, int dtype,
                     int device, uintptr_t stream) {
  using namespace cbn;
  const DxOp op{make_affine(mean, istd_or_var, weight, bias, w_stride_n, act, slope, eval, eps),
                reinterpret_cast<const float*>(k), C, static_cast<float>(inv_m)};
  if (N <= 0 || C <= 0 || HW <= 0) return;
  set_device(device);
  auto s = reinterpret_cast<cudaStream_t>(stream);
  const int sms = sm_count(device);
  dispatch_dtype(dtype, [&](auto zero) {
    using T = decltype(zero);
    launch_eltwise<T>(op, x, dy, dx, N, C, HW, use_nhwc(channels_last, C, HW), sms, s,
                      "conditional batch norm backward dx");
  });
}

}  // namespace fastgan

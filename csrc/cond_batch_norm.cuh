// Device code that the passes of conditional batch norm share: per-channel coefficients and the activation, the
// reductions (Chan's merge of moments, shuffles within groups of threads) and the NCHW-row and NHWC-band loads and
// stores. cond_batch_norm.h describes the work decomposition.
#pragma once

#include "cond_batch_norm.h"

namespace fastgan {
namespace cbn {

// Elements of a row one thread of an NCHW group holds at once: two 16-byte vectors.
template <typename T>
constexpr int tile_len() {
  return 2 * vec_width<T>();
}

// ---------------------------------------------------------------------------------------------------------------
// Per-channel coefficients and activation

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

__device__ __forceinline__ float activate(float z, Activation act, float slope) {
  // !(z <= 0) keeps a NaN, as torch.relu does
  return (act == ACT_NONE || !(z <= 0.f)) ? z : (act == ACT_RELU ? 0.f : z * slope);
}

// dy * act'(z) as torch computes it: a ReLU passes dy unless z <= 0 (so at z = NaN too) and gives 0 there even for
// a non-finite dy; a leaky ReLU scales dy unless z > 0.
__device__ __forceinline__ float act_grad(float dy, float z, Activation act, float slope) {
  if (act == ACT_RELU) return z <= 0.f ? 0.f : dy;
  return (act == ACT_NONE || z > 0.f) ? dy : dy * slope;
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
        // indexed in vectors: from an element offset nvcc 13 splits the 16-byte store into 4- or 2-byte ones
        reinterpret_cast<Vec<T>*>(row)[off / VW] = q;
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
      reinterpret_cast<Vec<T>*>(row)[c / VW] = q;  // in vectors (see store_row_tile)
    }
  } else {
#pragma unroll
    for (int k = 0; k < VW; ++k) {
      const int64_t c = cb + band_channel<T, false>(tx, k, CX);
      if (c < C) row[c] = from_float<T>(v[k]);
    }
  }
}

}  // namespace cbn
}  // namespace fastgan

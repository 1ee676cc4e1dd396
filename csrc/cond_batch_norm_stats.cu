// Conditional batch norm, forward statistics: one (mean, M2) per (n, c) from x (two-pass moments per tile, merged
// by Chan's rule), then per channel the mean, invstd (or M2) and the running statistics. The op's passes and work
// decomposition are described in cond_batch_norm.h.
#include "cond_batch_norm_plan.h"
#include "ops.h"

namespace fastgan {
namespace cbn {

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

}  // namespace cbn

void cond_batch_norm_partial_stats(uintptr_t x, uintptr_t part, int64_t N, int64_t C, int64_t HW, bool channels_last,
                                   int dtype, int device, uintptr_t stream) {
  using namespace cbn;
  CbnParams p = make_params(N, C, HW, channels_last, dtype, device, stream);
  p.x = x;
  p.part = dev_ptr<float>(part);
  if (p.empty()) return;
  launch_reduction(p, COL_ROWS, aligned16(x), "conditional batch norm partial statistics",
                   [&](auto zero, auto vec, const ReducePlan& rp, cudaStream_t s) {
                     using T = decltype(zero);
                     constexpr bool VEC = decltype(vec)::value;
                     const T* xp = dev_ptr<const T>(p.x);
                     if (!rp.nhwc)
                       stats_nchw_kernel<T, VEC><<<rp.grid, THREADS, 0, s>>>(xp, p.part, rp.rows, p.HW, rp.lg);
                     else
                       stats_nhwc_kernel<T, VEC><<<rp.grid, rp.threads, 0, s>>>(
                           xp, p.part, p.C, p.HW, static_cast<uint32_t>(rp.cols.nbands), rp.cols.lcx);
                   });
}

void cond_batch_norm_finalize_stats(uintptr_t part, uintptr_t stats, uintptr_t running_mean, uintptr_t running_var,
                                    int64_t N, int64_t C, int64_t HW, double momentum, double eps, bool update,
                                    bool raw, int device, uintptr_t stream) {
  using namespace cbn;
  CbnParams p = make_params(N, C, HW, false, kFloat32, device, stream);
  p.part = dev_ptr<float>(part);
  p.stats = dev_ptr<float>(stats);
  if (update && !raw) {
    p.running_mean = dev_ptr<float>(running_mean);
    p.running_var = dev_ptr<float>(running_var);
  }
  p.momentum = static_cast<float>(momentum);
  p.eps = static_cast<float>(eps);
  p.raw = raw;
  if (p.empty()) return;
  const cudaStream_t s = launch_stream(p.device, p.stream);
  const int lcb = finalize_lcb(p.N, p.C, sm_count(p.device));
  finalize_stats_kernel<<<grid_x(ceil_div(p.C, int64_t{1} << lcb), kOp), THREADS, 0, s>>>(
      p.part, p.stats, p.running_mean, p.running_var, p.N, p.C, static_cast<float>(p.HW),
      static_cast<float>(p.N * p.HW), p.momentum, p.eps, p.raw, lcb);
  check_launch("conditional batch norm finalize statistics");
}

}  // namespace fastgan

// Conditional batch norm, backward reductions: per (n, c) the sums A = sum g and B = invstd * sum g (x - mean) of
// g = dy act'(z), then per channel S1, S2, dweight and dbias (k), which cond_batch_norm_eltwise.cu's dx takes. The
// decomposition is the one of the statistics pass (cond_batch_norm.h).
#include "cond_batch_norm_plan.h"
#include "ops.h"

namespace fastgan {
namespace cbn {

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

}  // namespace cbn

void cond_batch_norm_backward_reduce(uintptr_t dy, uintptr_t x, uintptr_t mean, uintptr_t istd_or_var, uintptr_t weight,
                                     uintptr_t bias, uintptr_t sums, int64_t N, int64_t C, int64_t HW,
                                     int64_t w_stride_n, bool channels_last, int act, double slope, bool eval,
                                     double eps, int dtype, int device, uintptr_t stream) {
  using namespace cbn;
  CbnParams p = make_params(N, C, HW, channels_last, dtype, device, stream);
  set_affine(p, mean, istd_or_var, weight, bias, w_stride_n, act, slope, eval, eps);
  p.dy = dy;
  p.x = x;
  p.sums = dev_ptr<float>(sums);
  if (p.empty()) return;
  const Affine a = p.affine();
  launch_reduction(p, COL_ROWS_GRAD, aligned16(dy) && aligned16(x), "conditional batch norm backward reduce",
                   [&](auto zero, auto vec, const ReducePlan& rp, cudaStream_t s) {
                     using T = decltype(zero);
                     constexpr bool VEC = decltype(vec)::value;
                     const T* dyp = dev_ptr<const T>(p.dy);
                     const T* xp = dev_ptr<const T>(p.x);
                     if (!rp.nhwc)
                       grad_sums_nchw_kernel<T, VEC>
                           <<<rp.grid, THREADS, 0, s>>>(dyp, xp, a, p.sums, rp.rows, p.C, p.HW, rp.lg);
                     else
                       grad_sums_nhwc_kernel<T, VEC><<<rp.grid, rp.threads, 0, s>>>(
                           dyp, xp, a, p.sums, p.C, p.HW, static_cast<uint32_t>(rp.cols.nbands), rp.cols.lcx);
                   });
}

void cond_batch_norm_backward_finalize(uintptr_t sums, uintptr_t weight, uintptr_t k, int64_t N, int64_t C,
                                       int64_t w_stride_n, int device, uintptr_t stream) {
  using namespace cbn;
  CbnParams p = make_params(N, C, 1, false, kFloat32, device, stream);  // per (n, c): no hw extent
  p.sums = dev_ptr<float>(sums);
  p.weight = dev_ptr<const float>(weight);
  p.w_stride_n = w_stride_n;
  p.k = dev_ptr<float>(k);
  if (p.empty()) return;
  const cudaStream_t s = launch_stream(p.device, p.stream);
  const int lcb = finalize_lcb(p.N, p.C, sm_count(p.device));
  finalize_grad_kernel<<<grid_x(ceil_div(p.C, int64_t{1} << lcb), kOp), THREADS, 0, s>>>(p.sums, p.weight, p.k, p.N,
                                                                                         p.C, p.w_stride_n, lcb);
  check_launch("conditional batch norm backward finalize");
}

}  // namespace fastgan

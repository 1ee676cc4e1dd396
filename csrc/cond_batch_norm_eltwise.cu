// Conditional batch norm: the elementwise passes, y = act(x * scale + shift) forward and dx backward, one kernel per
// layout for both (the pass is its Op), rows (NCHW) or hw (NHWC) split over blocks. The decomposition is described
// in cond_batch_norm.h.
#include "cond_batch_norm_plan.h"
#include "ops.h"

namespace fastgan {
namespace cbn {

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

// Plans and launches an elementwise pass over p (not empty): out = op(x, dy).
template <typename Op>
void launch_eltwise(const Op& op, const CbnParams& p, const char* what) {
  const cudaStream_t s = launch_stream(p.device, p.stream);
  const int sms = sm_count(p.device);
  const int64_t N = p.N, C = p.C, HW = p.HW;
  dispatch_dtype(p.dtype, [&](auto zero) {
    using T = decltype(zero);
    constexpr int VW = vec_width<T>(), L = tile_len<T>();
    const bool ptrs_aligned = aligned16(p.x) && aligned16(p.out) && (!Op::kGrad || aligned16(p.dy));
    const T* xp = dev_ptr<const T>(p.x);
    const T* dp = dev_ptr<const T>(p.dy);
    T* op_ = dev_ptr<T>(p.out);
    if (!use_nhwc(p)) {
      const int64_t rows = nchw_rows(N, C);
      // one step of the group covers the row where it can; long rows are cut into chunks of up to 8 steps
      const int lg = grow_rows_lg(std::min(MAX_LOG2_GROUP, ceil_log2(ceil_div(HW, L))), rows, HW, VW, sms);
      const int64_t row_bands = ceil_div(rows, THREADS >> lg), step = static_cast<int64_t>(L) << lg;
      int64_t steps = 8;
      while (steps > 1 && row_bands * ceil_div(HW, step * steps) * THREADS < wave_threads(sms)) steps /= 2;
      const int64_t chunk = step * steps, nchunks = ceil_div(HW, chunk);
      dispatch_vec(HW % VW == 0 && ptrs_aligned, [&](auto vec) {
        eltwise_nchw_kernel<T, decltype(vec)::value, Op><<<grid_x(row_bands * nchunks, kOp), THREADS, 0, s>>>(
            xp, dp, op_, op, rows, C, HW, lg, chunk, static_cast<uint32_t>(nchunks));
      });
    } else {
      constexpr int R = Op::kGrad ? COL_ROWS_GRAD : COL_ROWS;
      // chunks of up to 8 tiles per thread along hw; with few rows, more thread rows (down to one row each)
      ColsPlan cp = cols_plan(C, HW, VW, R);
      int64_t steps = 8;
      auto total = [&] { return N * cp.nbands * ceil_div(HW, cp.ry * R * steps) * cp.threads(); };
      while (steps > 1 && total() < wave_threads(sms)) steps /= 2;
      const int64_t max_ry = std::min<int64_t>(THREADS >> cp.lcx, int64_t{1} << ceil_log2(HW));
      while (cp.ry < max_ry && total() < wave_threads(sms)) cp.ry *= 2;
      const int64_t rch = cp.ry * R * steps, nrch = ceil_div(HW, rch);
      dispatch_vec(C % VW == 0 && ptrs_aligned, [&](auto vec) {
        eltwise_nhwc_kernel<T, decltype(vec)::value, Op><<<grid_x(N * cp.nbands * nrch, kOp), cp.threads(), 0, s>>>(
            xp, dp, op_, op, C, HW, static_cast<uint32_t>(cp.nbands), static_cast<uint32_t>(nrch), rch, cp.lcx);
      });
    }
    check_launch(what);
  });
}

}  // namespace cbn

void cond_batch_norm_apply(uintptr_t x, uintptr_t y, uintptr_t mean, uintptr_t istd_or_var, uintptr_t weight,
                           uintptr_t bias, int64_t N, int64_t C, int64_t HW, int64_t w_stride_n, bool channels_last,
                           int act, double slope, bool eval, double eps, int dtype, int device, uintptr_t stream) {
  using namespace cbn;
  CbnParams p = make_params(N, C, HW, channels_last, dtype, device, stream);
  set_affine(p, mean, istd_or_var, weight, bias, w_stride_n, act, slope, eval, eps);
  p.x = x;
  p.out = y;
  if (p.empty()) return;
  launch_eltwise(ApplyOp{p.affine()}, p, "conditional batch norm apply");
}

void cond_batch_norm_backward_dx(uintptr_t dy, uintptr_t x, uintptr_t mean, uintptr_t istd_or_var, uintptr_t weight,
                                 uintptr_t bias, uintptr_t k, uintptr_t dx, int64_t N, int64_t C, int64_t HW,
                                 int64_t w_stride_n, bool channels_last, int act, double slope, bool eval, double eps,
                                 double inv_m, int dtype, int device, uintptr_t stream) {
  using namespace cbn;
  CbnParams p = make_params(N, C, HW, channels_last, dtype, device, stream);
  set_affine(p, mean, istd_or_var, weight, bias, w_stride_n, act, slope, eval, eps);
  p.x = x;
  p.dy = dy;
  p.out = dx;
  p.k = dev_ptr<float>(k);
  p.inv_m = static_cast<float>(inv_m);
  if (p.empty()) return;
  launch_eltwise(DxOp{p.affine(), p.k, p.C, p.inv_m}, p, "conditional batch norm backward dx");
}

}  // namespace fastgan

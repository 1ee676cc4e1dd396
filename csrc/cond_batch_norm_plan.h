// Host side of conditional batch norm that the passes share: the launch plans (threads per NCHW row, NHWC bands),
// the params of an entry point, and the setup of the two reduction passes.
#pragma once

#include <algorithm>
#include <climits>
#include <stdexcept>

#include "cond_batch_norm.cuh"

namespace fastgan {
namespace cbn {

constexpr const char* kOp = "conditional batch norm";

// The NCHW kernels split a row index into (n, c) with 32-bit division.
inline int64_t nchw_rows(int64_t N, int64_t C) {
  if (N * C > UINT32_MAX) throw std::invalid_argument("fastgan CUDA: conditional batch norm N * C must be < 2^32");
  return N * C;
}

// With one channel or one hw position the NCHW and NHWC layouts are the same; the NCHW kernels take both.
inline bool use_nhwc(const CbnParams& p) { return p.channels_last && p.C > 1 && p.HW > 1; }

inline int64_t wave_threads(int sms) { return static_cast<int64_t>(sms) * RESIDENT_THREADS_PER_SM; }

// More threads per NCHW row (log2 of G, from lg) while the grid is short of one full wave and every thread still
// gets at least one vector of the row.
inline int grow_rows_lg(int lg, int64_t rows, int64_t hw, int vw, int sms) {
  while (lg < MAX_LOG2_GROUP && (rows << lg) < wave_threads(sms) && (static_cast<int64_t>(vw) << (lg + 1)) <= hw) ++lg;
  return lg;
}

// Threads per NCHW row for a reduction (log2): enough for at most about 4 tiles per thread, more for a full wave.
inline int rows_reduce_lg(int64_t rows, int64_t hw, int vw, int tile, int sms) {
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
inline ColsPlan cols_plan(int64_t C, int64_t hw, int vw, int rows_per_tile) {
  const int lcx = std::min(MAX_LOG2_CX, ceil_log2(ceil_div(C, vw)));
  const int64_t ry = std::min<int64_t>(THREADS >> lcx, int64_t{1} << ceil_log2(ceil_div(hw, rows_per_tile)));
  return {lcx, ry, ceil_div(C, static_cast<int64_t>(vw) << lcx)};
}

// For the NHWC reductions hw cannot be split over blocks. While the grid is short of a wave: more thread rows
// (down to one hw row per thread), and once a block is full, narrower bands (down to 32 bytes) for more blocks.
inline ColsPlan cols_reduce_plan(int64_t N, int64_t C, int64_t hw, int vw, int rows_per_tile, int sms) {
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
inline int finalize_lcb(int64_t N, int64_t C, int sms) {
  int lcb = std::min(5, ceil_log2(C));
  while (lcb > 3 && ceil_div(C, int64_t{1} << lcb) < sms && N > (THREADS >> lcb)) --lcb;
  return lcb;
}

// ---------------------------------------------------------------------------------------------------------------
// Params of an entry point

inline CbnParams make_params(int64_t N, int64_t C, int64_t HW, bool channels_last, int dtype, int device,
                             uintptr_t stream) {
  CbnParams p;
  p.N = N;
  p.C = C;
  p.HW = HW;
  p.channels_last = channels_last;
  p.dtype = dtype;
  p.device = device;
  p.stream = stream;
  return p;
}

// The statistics, affine parameters and activation of the passes that take them.
inline void set_affine(CbnParams& p, uintptr_t mean, uintptr_t istd_or_var, uintptr_t weight, uintptr_t bias,
                       int64_t w_stride_n, int act, double slope, bool eval, double eps) {
  if (act != ACT_NONE && act != ACT_RELU && act != ACT_LEAKY_RELU) {
    throw std::invalid_argument("fastgan CUDA: activation code must be 0, 1 or 2");
  }
  p.mean = dev_ptr<const float>(mean);
  p.istd_or_var = dev_ptr<const float>(istd_or_var);
  p.weight = dev_ptr<const float>(weight);
  p.bias = dev_ptr<const float>(bias);
  p.w_stride_n = w_stride_n;
  p.act = static_cast<Activation>(act);
  p.slope = static_cast<float>(slope);
  p.eval = eval;
  p.eps = static_cast<float>(eps);
}

// ---------------------------------------------------------------------------------------------------------------
// The reduction passes (partial statistics, backward sums): one (n, c) result per NCHW row or NHWC band

struct ReducePlan {
  bool nhwc;
  int64_t rows;  // NCHW: N * C rows of 2^lg threads each
  int lg;
  ColsPlan cols;  // NHWC
  unsigned grid;
  int threads;
};

// The setup both reduction passes share: the device and stream, the plan for the dtype (NHWC bands of tiles of
// `rows_per_tile` hw rows), whether the 16-byte vector path applies (`ptrs_aligned`: the tensors it reads are),
// then launch(T{}, std::bool_constant<vec>, plan, stream) and the launch check. p is not empty.
template <typename Launch>
void launch_reduction(const CbnParams& p, int rows_per_tile, bool ptrs_aligned, const char* what, Launch&& launch) {
  const cudaStream_t s = launch_stream(p.device, p.stream);
  const int sms = sm_count(p.device);
  dispatch_dtype(p.dtype, [&](auto zero) {
    using T = decltype(zero);
    constexpr int VW = vec_width<T>();
    ReducePlan rp{use_nhwc(p), 0, 0, {}, 0, THREADS};
    if (!rp.nhwc) {
      rp.rows = nchw_rows(p.N, p.C);
      rp.lg = rows_reduce_lg(rp.rows, p.HW, VW, tile_len<T>(), sms);
      rp.grid = grid_x(ceil_div(rp.rows, THREADS >> rp.lg), kOp);
    } else {
      rp.cols = cols_reduce_plan(p.N, p.C, p.HW, VW, rows_per_tile, sms);
      rp.grid = grid_x(p.N * rp.cols.nbands, kOp);
      rp.threads = rp.cols.threads();
    }
    dispatch_vec((rp.nhwc ? p.C : p.HW) % VW == 0 && ptrs_aligned, [&](auto vec) { launch(zero, vec, rp, s); });
    check_launch(what);
  });
}

}  // namespace cbn
}  // namespace fastgan

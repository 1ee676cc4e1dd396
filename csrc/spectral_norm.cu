// Grouped spectral norm in CUDA C++: the same work decomposition and tables as the Triton kernels
// (fastgan/kernels/spectral_norm.py and fastgan/ops/spectral_norm_plan.py, whose docstrings describe them).
//
// One power iteration over every weight of a group is three launches:
//   rows pass      y = W v          one block per band of rows, one warp per row, all columns;
//   column pass    z = W^T y        one block per COLS_TILE columns x one block of rows, a partial z per block
//                                   (of y scaled by the block's largest |y|, the scale stored after the partials);
//   finalize       u, v, sigma      one block per weight, partial z summed in a fixed order (deterministic).
// The normalisation W/sigma and its backward are grouped elementwise kernels over ELEM_TILE-element tiles.
#include "ops.h"
#include "spectral_norm.h"

namespace fastgan {
namespace sn {

template <typename T>
__device__ __forceinline__ const T* as_ptr(int64_t p) {
  return reinterpret_cast<const T*>(static_cast<uintptr_t>(p));
}

// Offset of column c of a weight whose columns are (c / Q, c % Q) with strides (SO, SC).
template <bool HAS_OUTER>
__device__ __forceinline__ int64_t col_offset(int64_t c, int64_t q, int64_t so, int64_t sc) {
  if (HAS_OUTER) {
    const int64_t a = c / q;
    return a * so + (c - a * q) * sc;
  }
  return c * sc;
}

template <typename T, bool HAS_OUTER, bool UNIT_SC>
__global__ void __launch_bounds__(ROWS_THREADS)
    rows_kernel(const int64_t* __restrict__ meta, const int64_t* __restrict__ tiles, float* __restrict__ scratch) {
  const int64_t* m = meta + tiles[2 * blockIdx.x] * NF;
  const int64_t r0 = tiles[2 * blockIdx.x + 1];
  const T* w = as_ptr<T>(m[W_PTR]);
  const float* x = as_ptr<float>(m[V_PTR]);
  const int64_t rows = m[R], cols = m[C], sr = m[SR], sc = m[SC], q = m[Q], so = m[SO];
  const int64_t r_end = min(r0 + m[ROWS_PER_TILE], rows);
  float* y = scratch + m[Y_OFF];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  constexpr int VW = vec_width<T>();
  for (int64_t r = r0 + warp; r < r_end; r += ROWS_THREADS / 32) {
    const T* row = w + r * sr;
    float acc = 0.f;
    int64_t c0 = 0;
    if (UNIT_SC && !HAS_OUTER && aligned16(row)) {
      const int64_t cv = cols / VW * VW;
      for (int64_t c = lane * VW; c < cv; c += 32 * VW) {
        const Vec<T> wv = *reinterpret_cast<const Vec<T>*>(row + c);
        // x (float32, freshly allocated) at a multiple of VW elements: 16-byte aligned, read as float4
#pragma unroll
        for (int j = 0; j < VW; j += 4) {
          const float4 xv = __ldg(reinterpret_cast<const float4*>(x + c + j));
          acc += to_float(wv.v[j]) * xv.x + to_float(wv.v[j + 1]) * xv.y + to_float(wv.v[j + 2]) * xv.z +
                 to_float(wv.v[j + 3]) * xv.w;
        }
      }
      c0 = cv;
    }
    for (int64_t c = c0 + lane; c < cols; c += 32) {
      acc += to_float(row[UNIT_SC && !HAS_OUTER ? c : col_offset<HAS_OUTER>(c, q, so, sc)]) * __ldg(x + c);
    }
    acc = warp_sum(acc);
    if (lane == 0) y[r] = acc;
  }
}

template <typename T, bool HAS_OUTER, bool UNIT_SC>
__global__ void __launch_bounds__(COLS_TX* COLS_TY)
    cols_kernel(const int64_t* __restrict__ meta, const int64_t* __restrict__ tiles, float* __restrict__ scratch) {
  __shared__ float red[COLS_TY][COLS_TILE];
  __shared__ float smax[COLS_TY];
  const int64_t* m = meta + tiles[3 * blockIdx.x] * NF;
  const int64_t c0 = tiles[3 * blockIdx.x + 1], rb = tiles[3 * blockIdx.x + 2];
  const T* w = as_ptr<T>(m[W_PTR]);
  const int64_t rows = m[R], cols = m[C], sr = m[SR], sc = m[SC], q = m[Q], so = m[SO], rpc = m[ROWS_PER_CTILE];
  const float* y = scratch + m[Y_OFF];
  float* zp = scratch + m[ZP_OFF] + rb * cols;
  float* zs = scratch + m[ZP_OFF] + m[N_RB] * cols + rb;  // this row block's scale of y
  const int64_t r_start = rb * rpc, r_end = min(r_start + rpc, rows);
  const int tx = threadIdx.x, ty = threadIdx.y;
  // y / max|y| of this row block (y is small and in L2): the partial z cannot overflow where W^T u does not
  float ymax = 0.f;
  for (int64_t r = r_start + ty * COLS_TX + tx; r < r_end; r += COLS_TX * COLS_TY) ymax = fmaxf(ymax, fabsf(y[r]));
  ymax = warp_max(ymax);  // one warp per threadIdx.y (blockDim.x is 32)
  if (tx == 0) smax[ty] = ymax;
  __syncthreads();
  float scale = 0.f;
#pragma unroll
  for (int k = 0; k < COLS_TY; ++k) scale = fmaxf(scale, smax[k]);
  const float inv = scale > 0.f ? 1.f / scale : 0.f;
  if (c0 == 0 && tx == 0 && ty == 0) *zs = scale;
  const int64_t cbase = c0 + tx * COLS_PER_THREAD;  // this thread's COLS_PER_THREAD consecutive columns
  int64_t coff[COLS_PER_THREAD];
#pragma unroll
  for (int j = 0; j < COLS_PER_THREAD; ++j) coff[j] = col_offset<HAS_OUTER>(cbase + j, q, so, sc);
  float acc[COLS_PER_THREAD] = {};
  const bool full = cbase + COLS_PER_THREAD <= cols;
  for (int64_t r = r_start + ty; r < r_end; r += COLS_TY) {
    const float yr = y[r] * inv;
    const T* row = w + r * sr;
    if (UNIT_SC && !HAS_OUTER && full && sizeof(T) * COLS_PER_THREAD >= 8 &&
        (reinterpret_cast<uintptr_t>(row + cbase) & (sizeof(T) * COLS_PER_THREAD - 1)) == 0) {
      // COLS_PER_THREAD consecutive values in one 8- or 16-byte load
      struct alignas(sizeof(T) * COLS_PER_THREAD) Pack {
        T v[COLS_PER_THREAD];
      };
      const Pack p = *reinterpret_cast<const Pack*>(row + cbase);
#pragma unroll
      for (int j = 0; j < COLS_PER_THREAD; ++j) acc[j] += to_float(p.v[j]) * yr;
    } else {
#pragma unroll
      for (int j = 0; j < COLS_PER_THREAD; ++j) {
        if (cbase + j < cols) acc[j] += to_float(row[coff[j]]) * yr;
      }
    }
  }
#pragma unroll
  for (int j = 0; j < COLS_PER_THREAD; ++j) red[ty][tx * COLS_PER_THREAD + j] = acc[j];
  __syncthreads();
  const int t = ty * COLS_TX + tx;
  if (t < COLS_TILE) {
    float s = 0.f;
#pragma unroll
    for (int k = 0; k < COLS_TY; ++k) s += red[k][t];
    if (c0 + t < cols) zp[c0 + t] = s;
  }
}

// (The 2-norm of x[0, n) as torch's float32 norm gives it, max |x|), computed by the whole block: the sum of squares
// is taken of x / max|x|, so nothing underflows on the way, and the result is what the plain sum gives: NaN if x
// holds a NaN, inf if it holds an infinity or the plain sum of squares overflows float32 (except for one value,
// whose norm torch takes as its absolute value). Threads read back what they wrote: x may be written just before.
struct Norm {
  float norm, vmax;
};

__device__ __forceinline__ Norm torch_norm(const float* x, int64_t n, float* smem) {
  float vmax = 0.f;
  int nan = 0;
  for (int64_t i = threadIdx.x; i < n; i += FIN_THREADS) {
    vmax = fmaxf(vmax, fabsf(x[i]));  // fmaxf ignores NaN
    nan |= isnan(x[i]);
  }
  vmax = block_max(vmax, smem);
  nan = __syncthreads_or(nan);
  const float inv = vmax > 0.f ? 1.f / vmax : 0.f;
  float acc = 0.f;
  for (int64_t i = threadIdx.x; i < n; i += FIN_THREADS) {
    const float t = x[i] * inv;
    acc += t * t;
  }
  float norm = vmax * sqrtf(block_sum(acc, smem));
  if ((norm > 1.8446742974197924e19f && n > 1) || vmax == INFINITY) norm = INFINITY;
  return {nan ? NAN : norm, vmax};
}

// max(n, eps) as torch's clamp_min: NaN stays NaN (a NaN weight gives NaN u, v and sigma, as in torch).
__device__ __forceinline__ float floor_eps(float n, float eps) { return isnan(n) ? n : fmaxf(n, eps); }

template <bool EVAL>
__global__ void __launch_bounds__(FIN_THREADS)
    finalize_kernel(const int64_t* __restrict__ meta, float* __restrict__ scratch, float* __restrict__ state,
                    float eps) {
  __shared__ float smem[32];
  const int64_t g = blockIdx.x;
  const int64_t* m = meta + g * NF;
  float* u = reinterpret_cast<float*>(static_cast<uintptr_t>(m[U_PTR]));
  float* v = reinterpret_cast<float*>(static_cast<uintptr_t>(m[V_PTR]));
  const int64_t rows = m[R], cols = m[C], n_rb = m[N_RB];
  const float* y = scratch + m[Y_OFF];
  float* zp = scratch + m[ZP_OFF];
  float* su = state + m[SU_OFF];
  float* sv = state + m[SV_OFF];
  if constexpr (EVAL) {
    float acc = 0.f;
    for (int64_t r = threadIdx.x; r < rows; r += FIN_THREADS) {
      acc += u[r] * y[r];
      su[r] = u[r];
    }
    for (int64_t c = threadIdx.x; c < cols; c += FIN_THREADS) sv[c] = v[c];
    const float sigma = block_sum(acc, smem);
    if (threadIdx.x == 0) state[g] = sigma;
  } else {
    // u = y / max(|y|, eps); z' = W^T u; v = z' / max(|z'|, eps); sigma = u . W v = |z'| (|z'| / max(|z'|, eps)),
    // which underflows only where sigma itself does. Overflow, NaN and infinities come out as torch's.
    const float s_y = floor_eps(torch_norm(y, rows, smem).norm, eps);
    for (int64_t r = threadIdx.x; r < rows; r += FIN_THREADS) {
      const float ur = y[r] / s_y;
      u[r] = ur;
      su[r] = ur;
    }
    // z' = sum over row blocks of partial_b * (scale_b / s_y): 0 where |y| overflowed from finite values
    // (scale_b / inf), as torch's u is 0 there; NaN where y holds an infinity (inf / inf), as torch's u does
    const float* zs = zp + n_rb * cols;
    for (int64_t c = threadIdx.x; c < cols; c += FIN_THREADS) {
      float z = 0.f;
      for (int64_t b = 0; b < n_rb; ++b) z += zp[b * cols + c] * (zs[b] / s_y);
      zp[c] = z;  // the first partial row now holds z'
    }
    __syncthreads();
    const Norm nz = torch_norm(zp, cols, smem);
    const float s_z = floor_eps(nz.norm, eps);
    for (int64_t c = threadIdx.x; c < cols; c += FIN_THREADS) {
      const float vc = zp[c] / s_z;
      v[c] = vc;
      sv[c] = vc;
    }
    // where |z'| overflowed from finite values, v is 0 (as torch's) and so is u . W v; an infinite z' gives NaN
    if (threadIdx.x == 0) {
      state[g] = nz.norm == INFINITY ? (nz.vmax == INFINITY ? NAN : 0.f) : nz.norm * (nz.norm / s_z);
    }
  }
}

template <typename T>
__global__ void __launch_bounds__(ELEM_THREADS)
    scale_kernel(const int64_t* __restrict__ emeta, const int64_t* __restrict__ tiles, const float* __restrict__ state,
                 T* __restrict__ out) {
  const int64_t g = tiles[2 * blockIdx.x], start = tiles[2 * blockIdx.x + 1];
  const int64_t* m = emeta + g * NE;
  const T* w = as_ptr<T>(m[E_W_PTR]);
  const int64_t numel = m[E_NUMEL];
  T* o = out + m[E_FLAT_OFF];
  const float sigma = state[g];
  const int64_t padded = (numel + FLAT_ALIGN - 1) / FLAT_ALIGN * FLAT_ALIGN;
  const int64_t end = min(start + ELEM_TILE, padded);
  constexpr int VW = vec_width<T>();
  if (m[E_ALIGNED] && aligned16(o) && start + ELEM_TILE <= numel) {  // a full tile: 16-byte accesses
    for (int64_t i = start + threadIdx.x * VW; i < end; i += ELEM_THREADS * VW) {
      const Vec<T> wv = *reinterpret_cast<const Vec<T>*>(w + i);
      Vec<T> ov;
#pragma unroll
      for (int j = 0; j < VW; ++j) ov.v[j] = from_float<T>(to_float(wv.v[j]) / sigma);
      *reinterpret_cast<Vec<T>*>(o + i) = ov;
    }
    return;
  }
  for (int64_t i = start + threadIdx.x; i < end; i += ELEM_THREADS) {  // padding up to the next weight: zeros
    o[i] = i < numel ? from_float<T>(to_float(w[i]) / sigma) : from_float<T>(0.f);
  }
}

template <typename T>
__global__ void __launch_bounds__(ELEM_THREADS)
    dot_kernel(const int64_t* __restrict__ emeta, const int64_t* __restrict__ tiles, const T* __restrict__ grad,
               float* __restrict__ partials) {
  __shared__ float smem[32];
  const int64_t g = tiles[2 * blockIdx.x], start = tiles[2 * blockIdx.x + 1];
  const int64_t* m = emeta + g * NE;
  const T* w = as_ptr<T>(m[E_W_PTR]);
  const T* gr = grad + m[E_FLAT_OFF];
  const int64_t end = min(start + ELEM_TILE, m[E_NUMEL]);
  float acc = 0.f;
  for (int64_t i = start + threadIdx.x; i < end; i += ELEM_THREADS) acc += to_float(w[i]) * to_float(gr[i]);
  acc = block_sum(acc, smem);
  if (threadIdx.x == 0) partials[blockIdx.x] = acc;
}

template <typename T>
__global__ void __launch_bounds__(ELEM_THREADS)
    grad_kernel(const int64_t* __restrict__ emeta, const int64_t* __restrict__ tiles, const T* __restrict__ grad,
                const float* __restrict__ partials, const float* __restrict__ state, T* __restrict__ dw) {
  __shared__ float smem[32];
  const int64_t t = gridDim.x - 1 - blockIdx.x;  // reverse of the dot pass: reuse what L2 still holds
  const int64_t g = tiles[2 * t], start = tiles[2 * t + 1];
  const int64_t* m = emeta + g * NE;
  const int64_t numel = m[E_NUMEL], tile0 = m[E_TILE0], n_tiles = m[E_NTILES];
  const uint32_t h = static_cast<uint32_t>(m[E_H]), q = static_cast<uint32_t>(m[E_Q]);  // numel < 2^31
  const float* su = state + m[E_SU_OFF];
  const float* sv = state + m[E_SV_OFF];
  const T* gr = grad + m[E_FLAT_OFF];
  T* d = dw + m[E_FLAT_OFF];
  float acc = 0.f;
  for (int64_t p = threadIdx.x; p < n_tiles; p += ELEM_THREADS) acc += partials[tile0 + p];
  const float gw = block_sum(acc, smem);
  const float inv = 1.f / state[g];
  const float coef = gw * inv * inv;
  const bool outer = static_cast<int64_t>(h) * q != numel;
  const int64_t padded = (numel + FLAT_ALIGN - 1) / FLAT_ALIGN * FLAT_ALIGN;
  const int64_t end = min(start + ELEM_TILE, padded);
  for (int64_t i = start + threadIdx.x; i < end; i += ELEM_THREADS) {
    float val = 0.f;
    if (i < numel) {
      const uint32_t i32 = static_cast<uint32_t>(i), a = i32 / q;
      uint32_t r = a, c = i32 - a * q;  // dim 0 (one outer block): row a, column i % q
      if (outer) {
        r = a % h;
        c += (a / h) * q;
      }
      val = to_float(gr[i]) * inv - coef * su[r] * sv[c];
    }
    d[i] = from_float<T>(val);
  }
}

void launch_finalize(const SnParams& p) {
  const unsigned grid = grid_x(p.groups, "spectral norm");
  if (p.n_iter == 0)
    finalize_kernel<true><<<grid, FIN_THREADS, 0, p.stream>>>(p.meta, p.scratch, p.state, p.eps);
  else
    finalize_kernel<false><<<grid, FIN_THREADS, 0, p.stream>>>(p.meta, p.scratch, p.state, p.eps);
  check_launch("spectral norm finalize");
}

// One power-iteration sequence over the group, for one weight dtype and column layout.
template <typename T, bool HAS_OUTER, bool UNIT_SC>
void power_iterations(const SnParams& p) {
  for (int64_t it = 0; it < (p.n_iter > 0 ? p.n_iter : 1); ++it) {
    if (p.n_rows_tiles > 0) {  // none when every weight has no rows (empty weights)
      rows_kernel<T, HAS_OUTER, UNIT_SC>
          <<<grid_x(p.n_rows_tiles, "spectral norm"), ROWS_THREADS, 0, p.stream>>>(p.meta, p.rows_tiles, p.scratch);
      check_launch("spectral norm rows pass");
    }
    if (p.n_iter > 0 && p.n_cols_tiles > 0) {
      cols_kernel<T, HAS_OUTER, UNIT_SC>
          <<<grid_x(p.n_cols_tiles, "spectral norm"), dim3(COLS_TX, COLS_TY), 0, p.stream>>>(p.meta, p.cols_tiles,
                                                                                             p.scratch);
      check_launch("spectral norm column pass");
    }
    launch_finalize(p);
  }
}

// The params of the normalisation and its backward: the device made current first, as the power iteration does.
SnParams elementwise_params(uintptr_t emeta, uintptr_t tiles, int64_t n_tiles, uintptr_t state, int dtype, int device,
                            uintptr_t stream) {
  SnParams p;
  p.stream = launch_stream(device, stream);
  p.emeta = dev_ptr<const int64_t>(emeta);
  p.tiles = dev_ptr<const int64_t>(tiles);
  p.n_tiles = n_tiles;
  p.state = dev_ptr<float>(state);
  p.dtype = dtype;
  p.device = device;
  return p;
}

}  // namespace sn

void spectral_norm_power_iteration(uintptr_t meta, uintptr_t rows_tiles, int64_t n_rows_tiles, uintptr_t cols_tiles,
                                   int64_t n_cols_tiles, int64_t groups, uintptr_t scratch, uintptr_t state,
                                   int64_t n_iter, double eps, int dtype, bool has_outer, bool unit_sc, int device,
                                   uintptr_t stream) {
  using namespace sn;
  SnParams p;
  p.stream = launch_stream(device, stream);
  p.meta = dev_ptr<const int64_t>(meta);
  p.rows_tiles = dev_ptr<const int64_t>(rows_tiles);
  p.n_rows_tiles = n_rows_tiles;
  p.cols_tiles = dev_ptr<const int64_t>(cols_tiles);
  p.n_cols_tiles = n_cols_tiles;
  p.groups = groups;
  p.scratch = dev_ptr<float>(scratch);
  p.state = dev_ptr<float>(state);
  p.n_iter = n_iter;
  p.eps = static_cast<float>(eps);
  p.dtype = dtype;
  p.device = device;
  dispatch_dtype(p.dtype, [&](auto zero) {
    using T = decltype(zero);
    if (has_outer)
      power_iterations<T, true, true>(p);
    else if (unit_sc)
      power_iterations<T, false, true>(p);
    else
      power_iterations<T, false, false>(p);
  });
}

void spectral_norm_normalize(uintptr_t emeta, uintptr_t tiles, int64_t n_tiles, uintptr_t state, uintptr_t out,
                             int dtype, int device, uintptr_t stream) {
  using namespace sn;
  SnParams p = elementwise_params(emeta, tiles, n_tiles, state, dtype, device, stream);
  p.out = out;
  if (p.n_tiles == 0) return;  // every weight is empty
  dispatch_dtype(p.dtype, [&](auto zero) {
    using T = decltype(zero);
    scale_kernel<T><<<grid_x(p.n_tiles, "spectral norm"), ELEM_THREADS, 0, p.stream>>>(p.emeta, p.tiles, p.state,
                                                                                       dev_ptr<T>(p.out));
    check_launch("spectral norm normalise");
  });
}

void spectral_norm_normalize_backward(uintptr_t emeta, uintptr_t tiles, int64_t n_tiles, uintptr_t grad,
                                      uintptr_t partials, uintptr_t state, uintptr_t dw, int dtype, int device,
                                      uintptr_t stream) {
  using namespace sn;
  SnParams p = elementwise_params(emeta, tiles, n_tiles, state, dtype, device, stream);
  p.grad = grad;
  p.partials = dev_ptr<float>(partials);
  p.dw = dw;
  if (p.n_tiles == 0) return;
  dispatch_dtype(p.dtype, [&](auto zero) {
    using T = decltype(zero);
    const unsigned grid = grid_x(p.n_tiles, "spectral norm");
    const T* gr = dev_ptr<const T>(p.grad);
    dot_kernel<T><<<grid, ELEM_THREADS, 0, p.stream>>>(p.emeta, p.tiles, gr, p.partials);
    check_launch("spectral norm backward dot");
    grad_kernel<T><<<grid, ELEM_THREADS, 0, p.stream>>>(p.emeta, p.tiles, gr, p.partials, p.state, dev_ptr<T>(p.dw));
    check_launch("spectral norm backward");
  });
}

int cuda_runtime_version() { return CUDART_VERSION; }

std::map<std::string, int64_t> spectral_norm_layout() {
  using namespace sn;
  return {{"NF", NF},
          {"W_PTR", W_PTR},
          {"U_PTR", U_PTR},
          {"V_PTR", V_PTR},
          {"R", R},
          {"C", C},
          {"SR", SR},
          {"SC", SC},
          {"Q", Q},
          {"SO", SO},
          {"Y_OFF", Y_OFF},
          {"ZP_OFF", ZP_OFF},
          {"N_RB", N_RB},
          {"ROWS_PER_TILE", ROWS_PER_TILE},
          {"ROWS_PER_CTILE", ROWS_PER_CTILE},
          {"SU_OFF", SU_OFF},
          {"SV_OFF", SV_OFF},
          {"NE", NE},
          {"E_W_PTR", E_W_PTR},
          {"E_NUMEL", E_NUMEL},
          {"E_FLAT_OFF", E_FLAT_OFF},
          {"E_H", E_H},
          {"E_Q", E_Q},
          {"E_SU_OFF", E_SU_OFF},
          {"E_SV_OFF", E_SV_OFF},
          {"E_TILE0", E_TILE0},
          {"E_NTILES", E_NTILES},
          {"E_ALIGNED", E_ALIGNED},
          {"COLS_TILE", COLS_TILE},
          {"ELEM_TILE", ELEM_TILE},
          {"FLAT_ALIGN", FLAT_ALIGN}};
}

}  // namespace fastgan

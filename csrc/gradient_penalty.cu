// The gradient-penalty ops: interpolation and its backward, the per-sample squared norms in two deterministic
// stages, the scaling of rows. gradient_penalty.h describes the work decomposition.
#include <algorithm>
#include <stdexcept>
#include <string>

#include "gradient_penalty.h"
#include "ops.h"

namespace fastgan {
namespace gp {

// ---------------------------------------------------------------------------------------------------------------
// Device code: a block's tile of a sample, its loads and stores

struct Tile {
  uint32_t n;     // the sample
  int64_t start;  // offset of the tile's first element in the tensor
  int len;        // elements of the sample in the tile: blockDim.x * len_per_thread, less in a sample's last tile
};

__device__ __forceinline__ Tile tile_of(int64_t D, uint32_t n_tiles, int len_per_thread) {
  const uint32_t n = blockIdx.x / n_tiles, t = blockIdx.x - n * n_tiles;
  const int64_t size = static_cast<int64_t>(blockDim.x) * len_per_thread, base = t * size;
  return {n, static_cast<int64_t>(n) * D + base, static_cast<int>(min(D - base, size))};
}

// This thread's elements of a tile (len elements from `tile`) as float32, 0 past the end: UNROLL vectors, the
// block's threads' vectors side by side (VEC), or scalars blockDim.x apart. VEC requires a 16-byte aligned tile and
// len % VW == 0; it indexes the tile in vectors (from offsets in elements nvcc 13 splits the 16-byte stores into
// 4-byte ones).
template <typename T, bool VEC>
__device__ __forceinline__ void load_tile(const T* __restrict__ tile, int len, float (&v)[thread_len<T>()]) {
  constexpr int VW = vec_width<T>(), L = thread_len<T>();
  const int threads = static_cast<int>(blockDim.x), tx = static_cast<int>(threadIdx.x);
  if constexpr (VEC) {
    const Vec<T>* tv = reinterpret_cast<const Vec<T>*>(tile);
#pragma unroll
    for (int u = 0; u < UNROLL; ++u) {
      const int vi = u * threads + tx;
      if (vi < len / VW) {
        const Vec<T> q = tv[vi];
#pragma unroll
        for (int k = 0; k < VW; ++k) v[u * VW + k] = to_float(q.v[k]);
      } else {
#pragma unroll
        for (int k = 0; k < VW; ++k) v[u * VW + k] = 0.f;
      }
    }
  } else {
#pragma unroll
    for (int i = 0; i < L; ++i) {
      const int off = i * threads + tx;
      v[i] = off < len ? to_float(tile[off]) : 0.f;
    }
  }
}

template <typename T, bool VEC>
__device__ __forceinline__ void store_tile(T* __restrict__ tile, int len, const float (&v)[thread_len<T>()]) {
  constexpr int VW = vec_width<T>(), L = thread_len<T>();
  const int threads = static_cast<int>(blockDim.x), tx = static_cast<int>(threadIdx.x);
  if constexpr (VEC) {
    Vec<T>* tv = reinterpret_cast<Vec<T>*>(tile);
#pragma unroll
    for (int u = 0; u < UNROLL; ++u) {
      const int vi = u * threads + tx;
      if (vi < len / VW) {
        Vec<T> q;
#pragma unroll
        for (int k = 0; k < VW; ++k) q.v[k] = from_float<T>(v[u * VW + k]);
        tv[vi] = q;
      }
    }
  } else {
#pragma unroll
    for (int i = 0; i < L; ++i) {
      const int off = i * threads + tx;
      if (off < len) tile[off] = from_float<T>(v[i]);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Kernels

template <typename T, bool VEC>
__global__ void __launch_bounds__(THREADS, MIN_BLOCKS)
    interpolate_kernel(const T* __restrict__ real, const T* __restrict__ fake, const float* __restrict__ eps,
                       T* __restrict__ out, int64_t D, uint32_t n_tiles) {
  constexpr int L = thread_len<T>();
  const Tile t = tile_of(D, n_tiles, L);
  const float e = __ldg(eps + t.n);
  float r[L], f[L];
  load_tile<T, VEC>(real + t.start, t.len, r);
  load_tile<T, VEC>(fake + t.start, t.len, f);
#pragma unroll
  for (int i = 0; i < L; ++i) r[i] = fmaf(e, r[i] - f[i], f[i]);
  store_tile<T, VEC>(out + t.start, t.len, r);
}

template <typename T, bool VEC>
__global__ void __launch_bounds__(THREADS, MIN_BLOCKS)
    interpolate_backward_kernel(const T* __restrict__ g, const float* __restrict__ eps, T* __restrict__ d_real,
                                T* __restrict__ d_fake, int64_t D, uint32_t n_tiles) {
  constexpr int L = thread_len<T>();
  const Tile t = tile_of(D, n_tiles, L);
  const float e = __ldg(eps + t.n), ce = 1.f - e;
  float v[L], w[L];
  load_tile<T, VEC>(g + t.start, t.len, v);
#pragma unroll
  for (int i = 0; i < L; ++i) {
    w[i] = ce * v[i];
    v[i] = e * v[i];
  }
  store_tile<T, VEC>(d_real + t.start, t.len, v);
  store_tile<T, VEC>(d_fake + t.start, t.len, w);
}

// part[n * n_tiles + tile] (= part[blockIdx.x]): the sum of g^2 over the tile, in a fixed order.
template <typename T, bool VEC>
__global__ void __launch_bounds__(THREADS, MIN_BLOCKS)
    squared_norm_partials_kernel(const T* __restrict__ g, float* __restrict__ part, int64_t D, uint32_t n_tiles) {
  __shared__ float smem[32];
  constexpr int L = thread_len<T>();
  const Tile t = tile_of(D, n_tiles, L);
  float v[L];
  load_tile<T, VEC>(g + t.start, t.len, v);
  float s = 0.f;
#pragma unroll
  for (int i = 0; i < L; ++i) s = fmaf(v[i], v[i], s);
  s = block_sum(s, smem);
  if (threadIdx.x == 0) part[blockIdx.x] = s;
}

// norms[n] = the sum of row n of part (N, n_tiles): one warp per sample, lanes n_tiles / 32 partials each in
// order, then a fixed butterfly (a row of one partial is copied: its lanes add zeros).
__global__ void __launch_bounds__(SUM_THREADS)
    row_sums_kernel(const float* __restrict__ part, float* __restrict__ norms, int64_t N, int64_t n_tiles) {
  const int64_t n = static_cast<int64_t>(blockIdx.x) * (SUM_THREADS / 32) + (threadIdx.x >> 5);
  if (n >= N) return;  // whole warps
  const int lane = threadIdx.x & 31;
  const float* row = part + n * n_tiles;
  float s = 0.f;
  for (int64_t i = lane; i < n_tiles; i += 32) s += row[i];
  s = warp_sum(s);
  if (lane == 0) norms[n] = s;
}

template <typename T, bool VEC>
__global__ void __launch_bounds__(THREADS, MIN_BLOCKS)
    scale_rows_kernel(const T* __restrict__ g, const float* __restrict__ coef, T* __restrict__ out, int64_t D,
                      uint32_t n_tiles) {
  constexpr int L = thread_len<T>();
  const Tile t = tile_of(D, n_tiles, L);
  const float c = __ldg(coef + t.n);
  float v[L];
  load_tile<T, VEC>(g + t.start, t.len, v);
#pragma unroll
  for (int i = 0; i < L; ++i) v[i] *= c;
  store_tile<T, VEC>(out + t.start, t.len, v);
}

// ---------------------------------------------------------------------------------------------------------------
// Host side

// The tiles of a sample of D elements of T: ceil(D * sizeof(T) / TILE_BYTES) (0 for D = 0).
template <typename T>
int64_t tiles_per_sample(int64_t D) {
  return ceil_div(D, int64_t{THREADS} * thread_len<T>());
}

struct Launch {
  unsigned grid;
  int threads;  // THREADS, or as few warps as cover a sample shorter than a tile
  uint32_t n_tiles;
};

template <typename T>
Launch plan(const GpParams& p, const char* what) {
  const int64_t n_tiles = tiles_per_sample<T>(p.D);
  const int64_t warps = ceil_div(ceil_div(p.D, thread_len<T>()), 32);
  const int threads = static_cast<int>(std::min<int64_t>(THREADS, 32 * warps));
  return {grid_x(p.N * n_tiles, what), threads, static_cast<uint32_t>(n_tiles)};
}

GpParams make_params(int64_t N, int64_t D, int dtype, int device, uintptr_t stream, const char* what) {
  if (N < 0 || D < 0) {
    throw std::invalid_argument(std::string("fastgan CUDA: ") + what + ": negative size (N " + std::to_string(N) +
                                ", D " + std::to_string(D) + ")");
  }
  GpParams p;
  p.N = N;
  p.D = D;
  p.dtype = dtype;
  p.device = device;
  p.stream = stream;
  return p;
}

// The vector path: D a multiple of a vector and every tensor of `dtype` (0: unused) 16-byte aligned.
template <typename T>
bool use_vec(const GpParams& p) {
  return p.D % vec_width<T>() == 0 && aligned16(p.a) && aligned16(p.b) && aligned16(p.out) && aligned16(p.out2);
}

void launch_interpolate(const GpParams& p) {
  constexpr const char* what = "gradient penalty interpolate";
  const cudaStream_t s = launch_stream(p.device, p.stream);
  dispatch_dtype(p.dtype, [&](auto zero) {
    using T = decltype(zero);
    const Launch l = plan<T>(p, what);
    dispatch_vec(use_vec<T>(p), [&](auto vec) {
      interpolate_kernel<T, decltype(vec)::value><<<l.grid, l.threads, 0, s>>>(
          dev_ptr<const T>(p.a), dev_ptr<const T>(p.b), p.per_sample, dev_ptr<T>(p.out), p.D, l.n_tiles);
    });
    check_launch(what);
  });
}

void launch_interpolate_backward(const GpParams& p) {
  constexpr const char* what = "gradient penalty interpolate backward";
  const cudaStream_t s = launch_stream(p.device, p.stream);
  dispatch_dtype(p.dtype, [&](auto zero) {
    using T = decltype(zero);
    const Launch l = plan<T>(p, what);
    dispatch_vec(use_vec<T>(p), [&](auto vec) {
      interpolate_backward_kernel<T, decltype(vec)::value><<<l.grid, l.threads, 0, s>>>(
          dev_ptr<const T>(p.a), p.per_sample, dev_ptr<T>(p.out), dev_ptr<T>(p.out2), p.D, l.n_tiles);
    });
    check_launch(what);
  });
}

void launch_squared_norms(const GpParams& p) {
  constexpr const char* what = "gradient penalty squared norms";
  const cudaStream_t s = launch_stream(p.device, p.stream);
  dispatch_dtype(p.dtype, [&](auto zero) {
    using T = decltype(zero);
    if (p.n_tiles != tiles_per_sample<T>(p.D)) {
      throw std::invalid_argument(std::string("fastgan CUDA: ") + what + ": the partials have " +
                                  std::to_string(p.n_tiles) + " columns, D = " + std::to_string(p.D) + " needs " +
                                  std::to_string(tiles_per_sample<T>(p.D)));
    }
    if (p.n_tiles > 0) {  // D = 0: no partials, the norms are 0
      const Launch l = plan<T>(p, what);
      dispatch_vec(use_vec<T>(p), [&](auto vec) {
        squared_norm_partials_kernel<T, decltype(vec)::value>
            <<<l.grid, l.threads, 0, s>>>(dev_ptr<const T>(p.a), p.part, p.D, l.n_tiles);
      });
      check_launch(what);
    }
    row_sums_kernel<<<grid_x(ceil_div(p.N, SUM_THREADS / 32), what), SUM_THREADS, 0, s>>>(p.part, p.norms, p.N,
                                                                                          p.n_tiles);
    check_launch(what);
  });
}

void launch_scale_rows(const GpParams& p) {
  constexpr const char* what = "gradient penalty scale rows";
  const cudaStream_t s = launch_stream(p.device, p.stream);
  dispatch_dtype(p.dtype, [&](auto zero) {
    using T = decltype(zero);
    const Launch l = plan<T>(p, what);
    dispatch_vec(use_vec<T>(p), [&](auto vec) {
      scale_rows_kernel<T, decltype(vec)::value>
          <<<l.grid, l.threads, 0, s>>>(dev_ptr<const T>(p.a), p.per_sample, dev_ptr<T>(p.out), p.D, l.n_tiles);
    });
    check_launch(what);
  });
}

}  // namespace gp

void gradient_penalty_interpolate(uintptr_t real, uintptr_t fake, uintptr_t eps, uintptr_t out, int64_t N, int64_t D,
                                  int dtype, int device, uintptr_t stream) {
  using namespace gp;
  GpParams p = make_params(N, D, dtype, device, stream, "gradient penalty interpolate");
  p.a = real;
  p.b = fake;
  p.per_sample = dev_ptr<const float>(eps);
  p.out = out;
  if (p.empty()) return;
  launch_interpolate(p);
}

void gradient_penalty_interpolate_backward(uintptr_t g, uintptr_t eps, uintptr_t d_real, uintptr_t d_fake, int64_t N,
                                           int64_t D, int dtype, int device, uintptr_t stream) {
  using namespace gp;
  GpParams p = make_params(N, D, dtype, device, stream, "gradient penalty interpolate backward");
  p.a = g;
  p.per_sample = dev_ptr<const float>(eps);
  p.out = d_real;
  p.out2 = d_fake;
  if (p.empty()) return;
  launch_interpolate_backward(p);
}

void gradient_penalty_squared_norms(uintptr_t g, uintptr_t part, int64_t n_tiles, uintptr_t norms, int64_t N, int64_t D,
                                    int dtype, int device, uintptr_t stream) {
  using namespace gp;
  GpParams p = make_params(N, D, dtype, device, stream, "gradient penalty squared norms");
  p.a = g;
  p.part = dev_ptr<float>(part);
  p.n_tiles = n_tiles;
  p.norms = dev_ptr<float>(norms);
  if (p.N <= 0) return;
  launch_squared_norms(p);
}

void gradient_penalty_scale_rows(uintptr_t g, uintptr_t coef, uintptr_t out, int64_t N, int64_t D, int dtype,
                                 int device, uintptr_t stream) {
  using namespace gp;
  GpParams p = make_params(N, D, dtype, device, stream, "gradient penalty scale rows");
  p.a = g;
  p.per_sample = dev_ptr<const float>(coef);
  p.out = out;
  if (p.empty()) return;
  launch_scale_rows(p);
}

}  // namespace fastgan

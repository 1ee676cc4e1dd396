// Shared helpers of fastgan's CUDA kernels. The extension takes raw device pointers and a stream handle from
// Python and never links against PyTorch, so it survives torch upgrades.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <atomic>
#include <climits>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>

namespace fastgan {

enum DType : int { kFloat32 = 0, kFloat16 = 1, kBFloat16 = 2 };

inline void check_cuda(cudaError_t err, const char* what) {
  if (err != cudaSuccess) {
    throw std::runtime_error(std::string("fastgan CUDA: ") + what + ": " + cudaGetErrorString(err));
  }
}

// Make `device` current for this runtime (the extension has its own static cudart) before launching.
inline void set_device(int device) { check_cuda(cudaSetDevice(device), "cudaSetDevice"); }

inline void check_launch(const char* kernel) { check_cuda(cudaGetLastError(), kernel); }

// The stream of an entry point's launches, with `device` made current first.
inline cudaStream_t launch_stream(int device, uintptr_t stream) {
  set_device(device);
  return reinterpret_cast<cudaStream_t>(stream);
}

// A device address passed from Python as an integer (0: nullptr).
template <typename T>
T* dev_ptr(uintptr_t p) {
  return reinterpret_cast<T*>(p);
}

// Streaming multiprocessors of `device`, looked up once per device and process.
inline int sm_count(int device) {
  static std::atomic<int> cache[64];
  const bool cached = device >= 0 && device < 64;
  int v = cached ? cache[device].load(std::memory_order_relaxed) : 0;
  if (v == 0) {
    check_cuda(cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, device), "cudaDeviceGetAttribute");
    if (cached) cache[device].store(v, std::memory_order_relaxed);
  }
  return v;
}

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Smallest l with 2^l >= v (v >= 1).
inline int ceil_log2(int64_t v) {
  int l = 0;
  while ((int64_t{1} << l) < v) ++l;
  return l;
}

// A 1-D grid of `blocks` blocks; more than a grid holds is refused with an error naming `what`.
inline unsigned grid_x(int64_t blocks, const char* what) {
  if (blocks > INT_MAX) throw std::invalid_argument(std::string("fastgan CUDA: ") + what + " grid too large");
  return static_cast<unsigned>(blocks);
}

inline bool aligned16(uintptr_t p) { return p % 16 == 0; }

// f(std::true_type) where the 16-byte vector path applies (`vec`: the sizes are a multiple of a vector and the
// pointers aligned), f(std::false_type) otherwise.
template <typename F>
void dispatch_vec(bool vec, F&& f) {
  if (vec)
    f(std::true_type{});
  else
    f(std::false_type{});
}

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ float from_float<float>(float x) {
  return x;
}
template <>
__device__ __forceinline__ __half from_float<__half>(float x) {
  return __float2half_rn(x);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}

// Elements of T in 16 bytes.
template <typename T>
constexpr int vec_width() {
  return 16 / sizeof(T);
}

// 16 bytes of T, loaded or stored at once.
template <typename T>
struct alignas(16) Vec {
  T v[vec_width<T>()];
};

__device__ __forceinline__ bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

// Sum over the block in a fixed order (deterministic). `smem` holds 32 floats; every thread gets the result.
__device__ __forceinline__ float block_sum(float v, float* smem) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = (blockDim.x + 31) >> 5;
  v = warp_sum(v);
  __syncthreads();  // smem may still be read by a previous call
  if (lane == 0) smem[warp] = v;
  __syncthreads();
  float total = 0.f;
  for (int w = 0; w < nwarps; ++w) total += smem[w];
  return total;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
  return v;
}

// Maximum over the block; `smem` holds 32 floats; every thread gets the result.
__device__ __forceinline__ float block_max(float v, float* smem) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = (blockDim.x + 31) >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) smem[warp] = v;
  __syncthreads();
  float m = 0.f;
  for (int w = 0; w < nwarps; ++w) m = fmaxf(m, smem[w]);
  return m;
}

template <typename F>
void dispatch_dtype(int dtype, F&& f) {
  switch (dtype) {
    case kFloat32:
      f(float{});
      break;
    case kFloat16:
      f(__half{});
      break;
    case kBFloat16:
      f(__nv_bfloat16{});
      break;
    default:
      throw std::invalid_argument("fastgan CUDA: unsupported dtype code " + std::to_string(dtype));
  }
}

}  // namespace fastgan

// Host emulation of the CUDA features fastgan's kernels use (csrc/cond_batch_norm_*.cu, csrc/spectral_norm.cu,
// csrc/gradient_penalty.cu), so that the kernels and host entry points compile with g++ (-std=c++20 -pthread) and
// run on the CPU.
// tests/cuda_emulation/emulate.py builds the translation unit: this header, then the .cu files of an op with every
// `kernel<<<grid, block, smem, stream>>>(args);` rewritten into `emu::launch<&kernel>(dim3(grid), dim3(block), smem,
// stream, args);`, then extern "C" wrappers of the entry points.
//
// What it emulates:
//   - Launches: the blocks of a 1-D grid run one after another; each block (1-D or 2-D) runs one std::thread per
//     CUDA thread. The arguments are converted to the kernel's parameter types once per launch, as a launch copies
//     them. threadIdx and blockIdx are per thread, blockDim and gridDim are set for the launch; warps are formed
//     from consecutive linear thread indices (x fastest), as on the GPU.
//   - __syncthreads and __syncthreads_or: a barrier over the block's threads. Checked: at each barrier every thread
//     of the block that has not exited waits at the same call (source line and column), and no thread exits while
//     others wait.
//   - __ldg: a plain load.
//   - __shfl_xor_sync (values of up to 8 bytes, width 32): an exchange through a per-warp buffer and a barrier
//     over the warp.
//     Checked: the mask is exactly the lanes of the warp (all 32, or those of a block's last, partial warp), the
//     partner lane lies inside the warp, it takes part in the same call, and every lane of the warp that has not
//     exited takes part in it.
//   - __shared__ variables: function-local statics, one instance shared by the threads of the running block.
//   - A block whose threads wait at barriers that cannot complete (some at __syncthreads, others at a shuffle)
//     aborts the process after kDeadlockSeconds with a message, rather than hanging.
//   - The runtime calls the host code makes: cudaSetDevice, cudaGetLastError (an emulation error, or a bad launch
//     configuration, is reported as a launch failure with its message), cudaGetErrorString, and
//     cudaDeviceGetAttribute for cudaDevAttrMultiProcessorCount, which returns the SM count of the emulated device
//     (emu_set_sm_count; a device's count must not change once the host code has cached it).
//   - __half / __nv_bfloat16 and their conversions: the host implementations of cuda_fp16.h and cuda_bf16.h.
//     fmaf and sqrtf are the C library's (both correctly rounded, as on the GPU).
//
// What it does not emulate:
//   - No memory model beyond the barriers: the threads of a block run concurrently on the host and nothing orders
//     their accesses except __syncthreads and the shuffles' barriers, so a missing barrier is a data race that
//     shows only by chance. Global memory is host memory; out-of-bounds accesses are not detected (the test puts
//     guard bytes around its buffers).
//   - No real warp scheduling: the lanes of a warp are independent threads that meet only in shuffles; there is
//     no lockstep execution, and code that relies on implicit warp synchrony is not checked.
//   - Shared memory is not cleared or poisoned between blocks: a block that reads shared memory before writing it
//     may see the previous block's values.
//   - No streams (everything is synchronous), no 2-D or 3-D grids, no 3-D blocks, no dynamic shared memory, no
//     device atomics, no register or occupancy limits (__launch_bounds__ is dropped), no timing.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <source_location>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#undef __global__
#undef __device__
#undef __host__
#undef __forceinline__
#undef __shared__
#undef __launch_bounds__
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(...)

using std::max;
using std::isinf;
using std::isnan;
using std::min;

inline thread_local uint3 threadIdx;
inline thread_local uint3 blockIdx;
inline thread_local int emu_thread;  // the linear index of this thread in its block
inline dim3 blockDim;
inline dim3 gridDim;

namespace emu {

// ----------------------------------------------------------------------------------------------------------------
// Errors: the first broken rule is kept (later ones only counted) and reported by cudaGetLastError.

inline std::mutex error_mutex;
inline std::string error_message;
inline int error_count = 0;

inline void fail(const char* fmt, ...) noexcept {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  std::lock_guard<std::mutex> lock(error_mutex);
  if (error_count++ == 0) error_message = buf;
}

// The pending error ("" if none), cleared.
inline std::string take_error() {
  std::lock_guard<std::mutex> lock(error_mutex);
  std::string m;
  if (error_count > 0) m = error_message;
  if (error_count > 1) m += " (and " + std::to_string(error_count - 1) + " more)";
  error_count = 0;
  error_message.clear();
  return m;
}

// ----------------------------------------------------------------------------------------------------------------
// Barriers that check who arrives.

struct Site {
  int line = 0, column = 0;
  bool operator==(const Site&) const = default;
};

inline Site site_of(const std::source_location& loc) {
  return {static_cast<int>(loc.line()), static_cast<int>(loc.column())};
}

// A barrier over n emulated threads (a block, or a warp). A thread waits with the call site and, for a shuffle,
// the partner it reads; it leaves with exit() when it returns from the kernel. When a phase completes, every thread
// still running is waiting (or exiting) and the checks run before any is released.
class CheckedBarrier {
 public:
  CheckedBarrier(int n, const char* what)
      : bar_(n, Completion{this}), state_(n, kRunning), site_(n), partner_(n, -1), what_(what) {}

  void wait(int i, Site site, int partner = -1) {
    state_[i] = kWaiting;
    site_[i] = site;
    partner_[i] = partner;
    bar_.arrive_and_wait();
  }
  void exit(int i) {
    state_[i] = kExiting;
    bar_.arrive_and_drop();
  }

 private:
  enum State : uint8_t { kRunning, kWaiting, kExiting, kExited };
  struct Completion {
    CheckedBarrier* self;
    void operator()() noexcept { self->complete(); }
  };

  void complete() noexcept {
    const int n = static_cast<int>(state_.size());
    int first = -1, exiting = -1;
    for (int i = 0; i < n; ++i) {
      if (state_[i] == kExiting) exiting = i;
      if (state_[i] != kWaiting) continue;
      if (first < 0) {
        first = i;
      } else if (!(site_[i] == site_[first])) {
        fail("%s: threads %d and %d wait at different calls (line %d:%d and line %d:%d)", what_, first, i,
             site_[first].line, site_[first].column, site_[i].line, site_[i].column);
      }
      const int p = partner_[i];
      if (p >= 0 && state_[p] != kWaiting) {
        fail("%s: lane %d reads lane %d, which %s (line %d)", what_, i, p,
             state_[p] == kExited || state_[p] == kExiting ? "has exited" : "is not in the call", site_[i].line);
      }
    }
    if (first >= 0 && exiting >= 0) {
      fail("%s: thread %d exited while others wait (line %d:%d)", what_, exiting, site_[first].line,
           site_[first].column);
    }
    for (auto& s : state_) {
      if (s == kWaiting) s = kRunning;
      if (s == kExiting) s = kExited;
    }
  }

  std::barrier<Completion> bar_;
  std::vector<State> state_;  // each entry written by its thread before it arrives, by complete() otherwise
  std::vector<Site> site_;
  std::vector<int> partner_;
  const char* what_;
};

struct Warp {
  explicit Warp(int lanes) : lanes(lanes), bar(lanes, "__shfl_xor_sync") {}
  int lanes;
  CheckedBarrier bar;
  // Two buffers, used alternately: a lane can write the next shuffle's value only after every lane arrived at this
  // shuffle's barrier, and it cannot get past the next barrier before every lane has read this one's value.
  uint64_t buf[2][32] = {};
};

struct Block {
  explicit Block(int threads) : bar(threads, "__syncthreads") {
    for (int w = 0; w * 32 < threads; ++w) warps.push_back(std::make_unique<Warp>(std::min(32, threads - 32 * w)));
  }
  CheckedBarrier bar;
  std::vector<std::unique_ptr<Warp>> warps;
  std::atomic<int> vote{0};  // __syncthreads_or
};

inline Block* current_block = nullptr;  // blocks run one at a time
inline thread_local unsigned shuffles = 0;

// ----------------------------------------------------------------------------------------------------------------
// Emulated devices

constexpr int kMaxDevices = 8;
inline int sm_counts[kMaxDevices] = {132, 132, 132, 132, 132, 132, 132, 132};
inline int current_device = 0;

// ----------------------------------------------------------------------------------------------------------------
// Launches

// One line per launch while enabled: "kernel|grid|block|arguments", the integral arguments in order, "-" for the
// others.
inline bool log_launches = false;
inline std::string launch_log;

// The kernel's name with its template arguments, from the signature the compiler prints: GCC's
// "... [with auto Kernel = fastgan::cbn::stats_nchw_kernel<float, true>; ...]", Clang's "[Kernel = &...]".
template <auto Kernel>
const std::string& kernel_name() {
  static const std::string name = [](std::string_view f) {
    auto b = f.find("Kernel = ");
    if (b == std::string_view::npos) return std::string(f);
    b += 9;
    if (f[b] == '&') ++b;
    return std::string(f.substr(b, f.find_first_of(";]", b) - b));
  }(__PRETTY_FUNCTION__);
  return name;
}

template <typename V>
void log_value(std::string& s, const V& v) {
  if constexpr (std::is_integral_v<V>)
    s += std::to_string(v);
  else
    s += '-';
}

// A block still running after this long waits at barriers that cannot complete (say, some of its threads at
// __syncthreads and others at a shuffle): the process is aborted rather than left hanging.
constexpr int kDeadlockSeconds = 60;

template <typename Body>
void run_block(const std::string& kernel, unsigned b, const Body& body) {
  const int n = static_cast<int>(blockDim.x * blockDim.y);
  Block block(n);
  current_block = &block;
  std::mutex m;
  std::condition_variable cv;
  int finished = 0;
  std::vector<std::thread> threads;
  threads.reserve(n);
  for (int t = 0; t < n; ++t) {
    threads.emplace_back([&, b, t] {
      threadIdx = make_uint3(t % blockDim.x, t / blockDim.x, 0);
      emu_thread = t;
      blockIdx = make_uint3(b, 0, 0);
      shuffles = 0;
      body();
      block.warps[t >> 5]->bar.exit(t & 31);
      block.bar.exit(t);
      {
        std::lock_guard<std::mutex> lock(m);
        ++finished;
      }
      cv.notify_one();
    });
  }
  {
    std::unique_lock<std::mutex> lock(m);
    if (!cv.wait_for(lock, std::chrono::seconds(kDeadlockSeconds), [&] { return finished == n; })) {
      std::fprintf(stderr, "CUDA emulation: block %u of %s still runs after %d s (%d of %d threads finished): "
                   "deadlocked at barriers that cannot complete\n", b, kernel.c_str(), kDeadlockSeconds, finished, n);
      std::abort();
    }
  }
  for (auto& t : threads) t.join();
  current_block = nullptr;
}

template <typename... P, typename... A>
void launch_kernel(void (*kernel)(P...), const std::string& name, dim3 grid, dim3 block, size_t smem, A&&... args) {
  if (grid.x < 1 || grid.y != 1 || grid.z != 1 || block.x < 1 || block.y < 1 || block.x * block.y > 1024 ||
      block.z != 1) {
    fail("%s: launch configuration grid (%u, %u, %u) block (%u, %u, %u) is not emulated or invalid", name.c_str(),
         grid.x, grid.y, grid.z, block.x, block.y, block.z);
    return;
  }
  if (smem != 0) {
    fail("%s: dynamic shared memory (%zu bytes) is not emulated", name.c_str(), smem);
    return;
  }
  const std::tuple<std::decay_t<P>...> params(std::forward<A>(args)...);
  if (log_launches) {
    std::string line = name + "|" + std::to_string(grid.x) + "|" + std::to_string(block.x * block.y) + "|";
    std::apply([&](const auto&... p) { ((log_value(line, p), line += ','), ...); }, params);
    if (line.back() == ',') line.pop_back();
    launch_log += line + "\n";
  }
  gridDim = grid;
  blockDim = block;
  for (unsigned b = 0; b < grid.x; ++b) run_block(name, b, [&] { std::apply(kernel, params); });
}

// The stream is ignored: a launch runs to completion before it returns.
template <auto Kernel, typename... A>
void launch(dim3 grid, dim3 block, size_t smem, cudaStream_t /*stream*/, A&&... args) {
  launch_kernel(Kernel, kernel_name<Kernel>(), grid, block, smem, std::forward<A>(args)...);
}

// The message of the last failure: a launch failure's for cudaGetErrorString, a failed wrapper call's for the test.
inline char message[1024];

inline void set_message(const std::string& m) { std::snprintf(message, sizeof message, "%s", m.c_str()); }

// Runs a host entry point for an extern "C" wrapper: 0, or 1 with `message` set to what it threw (or to an
// emulation error that nothing reported).
template <typename F>
int guard(F&& f) noexcept {
  try {
    f();
    const std::string m = take_error();
    if (m.empty()) return 0;
    set_message(m);
  } catch (const std::exception& e) {
    set_message(e.what());
    take_error();
  }
  return 1;
}

}  // namespace emu

// ------------------------------------------------------------------------------------------------------------------
// Device built-ins

inline void __syncthreads(std::source_location loc = std::source_location::current()) {
  emu::current_block->bar.wait(emu_thread, emu::site_of(loc));
}

// Three barriers: the previous call's reads are done before the vote is cleared, and every vote is in before any
// is read.
inline int __syncthreads_or(int predicate, std::source_location loc = std::source_location::current()) {
  emu::Block& block = *emu::current_block;
  block.bar.wait(emu_thread, emu::site_of(loc));
  if (emu_thread == 0) block.vote = 0;
  block.bar.wait(emu_thread, emu::site_of(loc));
  if (predicate) block.vote = 1;
  block.bar.wait(emu_thread, emu::site_of(loc));
  return block.vote.load();
}

template <typename T>
T __ldg(const T* p) {
  return *p;
}

template <typename T>
T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32,
                  std::source_location loc = std::source_location::current()) {
  static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= sizeof(uint64_t), "not a shuffle type");
  emu::Warp& warp = *emu::current_block->warps[emu_thread >> 5];
  const int lane = emu_thread & 31;
  const unsigned lanes = warp.lanes == 32 ? 0xffffffffu : (1u << warp.lanes) - 1;
  int partner = lane ^ lane_mask;
  if (width != 32) emu::fail("__shfl_xor_sync: width %d is not emulated (line %d)", width, loc.line());
  if (mask != lanes) {
    emu::fail("__shfl_xor_sync: mask %#x, but the warp's lanes are %#x (thread %d, line %d)", mask, lanes,
              emu_thread, loc.line());
  }
  if (lane_mask < 0 || partner >= warp.lanes) {
    emu::fail("__shfl_xor_sync: lane %d ^ %d is outside the warp of %d lanes (thread %d, line %d)", lane, lane_mask,
              warp.lanes, emu_thread, loc.line());
    partner = lane;
  }
  const unsigned b = emu::shuffles++ & 1;
  std::memcpy(&warp.buf[b][lane], &v, sizeof v);
  warp.bar.wait(lane, emu::site_of(loc), partner);
  std::memcpy(&v, &warp.buf[b][partner], sizeof v);
  return v;
}

// ------------------------------------------------------------------------------------------------------------------
// Runtime API

extern "C" {

cudaError_t cudaSetDevice(int device) {
  if (device < 0 || device >= emu::kMaxDevices) return cudaErrorInvalidDevice;
  emu::current_device = device;
  return cudaSuccess;
}

cudaError_t cudaGetLastError(void) {
  const std::string m = emu::take_error();
  if (m.empty()) return cudaSuccess;
  emu::set_message(m);
  return cudaErrorLaunchFailure;
}

const char* cudaGetErrorString(cudaError_t err) {
  switch (err) {
    case cudaSuccess: return "no error";
    case cudaErrorLaunchFailure: return emu::message;
    case cudaErrorInvalidDevice: return "invalid device ordinal (the emulation has devices 0 to 7)";
    case cudaErrorInvalidValue: return "invalid argument (the emulation answers cudaDevAttrMultiProcessorCount only)";
    default: return "unexpected error code in the CUDA emulation";
  }
}

cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
  if (device < 0 || device >= emu::kMaxDevices) return cudaErrorInvalidDevice;
  if (attr != cudaDevAttrMultiProcessorCount) return cudaErrorInvalidValue;
  *value = emu::sm_counts[device];
  return cudaSuccess;
}

// For the test: the SM count of an emulated device, the launch log, the message of a failed wrapper call.
void emu_set_sm_count(int device, int sms) {
  if (device >= 0 && device < emu::kMaxDevices) emu::sm_counts[device] = sms;
}
void emu_log_launches(bool on) {
  emu::log_launches = on;
  emu::launch_log.clear();
}
const char* emu_launch_log(void) { return emu::launch_log.c_str(); }
const char* emu_last_message(void) { return emu::message; }

}  // extern "C"

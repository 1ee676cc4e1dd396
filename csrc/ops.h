// Host entry points of the CUDA kernels, bound to Python in bindings.cpp. Every pointer is a device address
// passed as an integer, `stream` is a cudaStream_t, `dtype` a fastgan::DType code.
#pragma once

#include <cstdint>
#include <map>
#include <string>

namespace fastgan {

void spectral_norm_power_iteration(uintptr_t meta, uintptr_t rows_tiles, int64_t n_rows_tiles, uintptr_t cols_tiles,
                                   int64_t n_cols_tiles, int64_t groups, uintptr_t scratch, uintptr_t state,
                                   int64_t n_iter, double eps, int dtype, bool has_outer, bool unit_sc, int device,
                                   uintptr_t stream);
void spectral_norm_normalize(uintptr_t emeta, uintptr_t tiles, int64_t n_tiles, uintptr_t state, uintptr_t out,
                             int dtype, int device, uintptr_t stream);
void spectral_norm_normalize_backward(uintptr_t emeta, uintptr_t tiles, int64_t n_tiles, uintptr_t grad,
                                      uintptr_t partials, uintptr_t state, uintptr_t dw, int dtype, int device,
                                      uintptr_t stream);
std::map<std::string, int64_t> spectral_norm_layout();
int cuda_runtime_version();

// Conditional batch norm (cond_batch_norm_*.cu, described in cond_batch_norm.h). x, y, dy, dx: (N, C, HW) of
// `dtype`, NCHW or NHWC (channels_last); everything else float32. weight and bias (0: absent) are indexed
// n * w_stride_n + c.
void cond_batch_norm_partial_stats(uintptr_t x, uintptr_t part, int64_t N, int64_t C, int64_t HW, bool channels_last,
                                   int dtype, int device, uintptr_t stream);
void cond_batch_norm_finalize_stats(uintptr_t part, uintptr_t stats, uintptr_t running_mean, uintptr_t running_var,
                                    int64_t N, int64_t C, int64_t HW, double momentum, double eps, bool update,
                                    bool raw, int device, uintptr_t stream);
void cond_batch_norm_apply(uintptr_t x, uintptr_t y, uintptr_t mean, uintptr_t istd_or_var, uintptr_t weight,
                           uintptr_t bias, int64_t N, int64_t C, int64_t HW, int64_t w_stride_n, bool channels_last,
                           int act, double slope, bool eval, double eps, int dtype, int device, uintptr_t stream);
void cond_batch_norm_backward_reduce(uintptr_t dy, uintptr_t x, uintptr_t mean, uintptr_t istd_or_var, uintptr_t weight,
                                     uintptr_t bias, uintptr_t sums, int64_t N, int64_t C, int64_t HW,
                                     int64_t w_stride_n, bool channels_last, int act, double slope, bool eval,
                                     double eps, int dtype, int device, uintptr_t stream);
void cond_batch_norm_backward_finalize(uintptr_t sums, uintptr_t weight, uintptr_t k, int64_t N, int64_t C,
                                       int64_t w_stride_n, int device, uintptr_t stream);
void cond_batch_norm_backward_dx(uintptr_t dy, uintptr_t x, uintptr_t mean, uintptr_t istd_or_var, uintptr_t weight,
                                 uintptr_t bias, uintptr_t k, uintptr_t dx, int64_t N, int64_t C, int64_t HW,
                                 int64_t w_stride_n, bool channels_last, int act, double slope, bool eval, double eps,
                                 double inv_m, int dtype, int device, uintptr_t stream);

// Gradient penalties (gradient_penalty.cu, described in gradient_penalty.h). real, fake, out, g, d_real, d_fake: (N, D)
// contiguous of `dtype`; eps, coef (N,), part (N, n_tiles) and norms (N,) float32.
void gradient_penalty_interpolate(uintptr_t real, uintptr_t fake, uintptr_t eps, uintptr_t out, int64_t N, int64_t D,
                                  int dtype, int device, uintptr_t stream);
void gradient_penalty_interpolate_backward(uintptr_t g, uintptr_t eps, uintptr_t d_real, uintptr_t d_fake, int64_t N,
                                           int64_t D, int dtype, int device, uintptr_t stream);
void gradient_penalty_squared_norms(uintptr_t g, uintptr_t part, int64_t n_tiles, uintptr_t norms, int64_t N, int64_t D,
                                    int dtype, int device, uintptr_t stream);
void gradient_penalty_scale_rows(uintptr_t g, uintptr_t coef, uintptr_t out, int64_t N, int64_t D, int dtype,
                                 int device, uintptr_t stream);

}  // namespace fastgan

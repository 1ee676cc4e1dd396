// Host entry points of the CUDA kernels, bound to Python in bindings.cpp. Every pointer is a device address
// passed as an integer, `stream` is a cudaStream_t, `dtype` a fastgan::DType code.
#pragma once

#include <cstdint>
#include <map>
#include <string>

namespace fastgan {

void sn_power_iteration(uintptr_t meta, uintptr_t rows_tiles, int64_t n_rows_tiles, uintptr_t cols_tiles,
                        int64_t n_cols_tiles, int64_t groups, uintptr_t scratch, uintptr_t state, int64_t n_iter,
                        double eps, int dtype, bool has_outer, bool unit_sc, int device, uintptr_t stream);
void sn_normalize(uintptr_t emeta, uintptr_t tiles, int64_t n_tiles, uintptr_t state, uintptr_t out, int dtype,
                  int device, uintptr_t stream);
void sn_normalize_backward(uintptr_t emeta, uintptr_t tiles, int64_t n_tiles, uintptr_t grad, uintptr_t partials,
                           uintptr_t state, uintptr_t dw, int dtype, int device, uintptr_t stream);
std::map<std::string, int64_t> sn_layout();
int cuda_runtime_version();

}  // namespace fastgan

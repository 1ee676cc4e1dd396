// Grouped spectral norm: the layout of the tables the plan (fastgan/ops/spectral_norm_plan.py) passes, the launch
// constants, and SnParams, one call of an entry point as spectral_norm.cu's launchers take it.
#pragma once

#include <cstdint>

#include "common.cuh"

namespace fastgan {
namespace sn {

// Field indices of the tables; must match fastgan/ops/spectral_norm_plan.py (checked by tests/test_activations.py and
// spectral_norm_layout()).
enum Meta : int {
  W_PTR,
  U_PTR,
  V_PTR,
  R,
  C,
  SR,
  SC,
  Q,
  SO,
  Y_OFF,
  ZP_OFF,
  N_RB,
  ROWS_PER_TILE,
  ROWS_PER_CTILE,
  SU_OFF,
  SV_OFF,
  NF
};
enum EMeta : int { E_W_PTR, E_NUMEL, E_FLAT_OFF, E_H, E_Q, E_SU_OFF, E_SV_OFF, E_TILE0, E_NTILES, E_ALIGNED, NE };
constexpr int COLS_TILE = 128;
constexpr int ELEM_TILE = 8192;
constexpr int FLAT_ALIGN = 16;

constexpr int ROWS_THREADS = 256;  // 8 warps, one row each at a time
constexpr int COLS_TX = 32, COLS_TY = 8, COLS_PER_THREAD = COLS_TILE / COLS_TX;
constexpr int FIN_THREADS = 512;
constexpr int ELEM_THREADS = 256;

// One call of an entry point of ops.h, filled once from its arguments. The fields a call does not use stay 0.
struct SnParams {
  // power iteration: per weight a row of NF fields (meta), the tiles of the rows and column passes
  const int64_t* meta = nullptr;
  const int64_t* rows_tiles = nullptr;
  int64_t n_rows_tiles = 0;
  const int64_t* cols_tiles = nullptr;
  int64_t n_cols_tiles = 0;
  int64_t groups = 0;
  float* scratch = nullptr;  // y, the partial z and their scales
  int64_t n_iter = 0;        // 0: eval (sigma from the stored u and v, no update)
  float eps = 0.f;
  // normalisation and its backward: per weight a row of NE fields (emeta), ELEM_TILE-element tiles
  const int64_t* emeta = nullptr;
  const int64_t* tiles = nullptr;
  int64_t n_tiles = 0;
  uintptr_t out = 0;          // W / sigma, of `dtype`
  uintptr_t grad = 0;         // backward: dL/d(W / sigma), of `dtype`
  uintptr_t dw = 0;           // backward: dL/dW, of `dtype`
  float* partials = nullptr;  // backward: one sum(W * grad) per tile
  float* state = nullptr;     // sigma per weight, then the copies of u and v
  int dtype = kFloat32;
  int device = 0;
  cudaStream_t stream = nullptr;
};

}  // namespace sn
}  // namespace fastgan

// pybind11 module fastgan._C: raw pointers and a stream in, no PyTorch types (no dependency on its C++ ABI).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "ops.h"

namespace py = pybind11;

PYBIND11_MODULE(_C, m) {
  m.doc() = "fastgan CUDA kernels (raw-pointer interface; use fastgan's Python API)";
  m.attr("archs") = FASTGAN_CUDA_ARCHS;
  m.def("cuda_runtime_version", &fastgan::cuda_runtime_version, "CUDA runtime version the extension was built with");
  m.def("spectral_norm_power_iteration", &fastgan::spectral_norm_power_iteration,
        "grouped spectral-norm power iteration", py::arg("meta"), py::arg("rows_tiles"), py::arg("n_rows_tiles"),
        py::arg("cols_tiles"), py::arg("n_cols_tiles"), py::arg("groups"), py::arg("scratch"), py::arg("state"),
        py::arg("n_iter"), py::arg("eps"), py::arg("dtype"), py::arg("has_outer"), py::arg("unit_sc"),
        py::arg("device"), py::arg("stream"));
  m.def("spectral_norm_normalize", &fastgan::spectral_norm_normalize, "grouped W / sigma", py::arg("emeta"),
        py::arg("tiles"), py::arg("n_tiles"), py::arg("state"), py::arg("out"), py::arg("dtype"), py::arg("device"),
        py::arg("stream"));
  m.def("spectral_norm_normalize_backward", &fastgan::spectral_norm_normalize_backward, "grouped backward of W / sigma",
        py::arg("emeta"), py::arg("tiles"), py::arg("n_tiles"), py::arg("grad"), py::arg("partials"), py::arg("state"),
        py::arg("dw"), py::arg("dtype"), py::arg("device"), py::arg("stream"));
  m.def("cond_batch_norm_partial_stats", &fastgan::cond_batch_norm_partial_stats,
        "conditional batch norm: (mean, M2) per (n, c)", py::arg("x"), py::arg("part"), py::arg("N"), py::arg("C"),
        py::arg("HW"), py::arg("channels_last"), py::arg("dtype"), py::arg("device"), py::arg("stream"));
  m.def("cond_batch_norm_finalize_stats", &fastgan::cond_batch_norm_finalize_stats,
        "conditional batch norm: per-channel mean and invstd (or M2) and running statistics", py::arg("part"),
        py::arg("stats"), py::arg("running_mean"), py::arg("running_var"), py::arg("N"), py::arg("C"), py::arg("HW"),
        py::arg("momentum"), py::arg("eps"), py::arg("update"), py::arg("raw"), py::arg("device"), py::arg("stream"));
  m.def("cond_batch_norm_apply", &fastgan::cond_batch_norm_apply, "conditional batch norm: y = act(x * scale + shift)",
        py::arg("x"), py::arg("y"), py::arg("mean"), py::arg("istd_or_var"), py::arg("weight"), py::arg("bias"),
        py::arg("N"), py::arg("C"), py::arg("HW"), py::arg("w_stride_n"), py::arg("channels_last"), py::arg("act"),
        py::arg("slope"), py::arg("eval"), py::arg("eps"), py::arg("dtype"), py::arg("device"), py::arg("stream"));
  m.def("cond_batch_norm_backward_reduce", &fastgan::cond_batch_norm_backward_reduce,
        "conditional batch norm backward: (sum g, sum g * xhat) per (n, c)", py::arg("dy"), py::arg("x"),
        py::arg("mean"), py::arg("istd_or_var"), py::arg("weight"), py::arg("bias"), py::arg("sums"), py::arg("N"),
        py::arg("C"), py::arg("HW"), py::arg("w_stride_n"), py::arg("channels_last"), py::arg("act"), py::arg("slope"),
        py::arg("eval"), py::arg("eps"), py::arg("dtype"), py::arg("device"), py::arg("stream"));
  m.def("cond_batch_norm_backward_finalize", &fastgan::cond_batch_norm_backward_finalize,
        "conditional batch norm backward: per-channel sums over n of the (n, c) sums", py::arg("sums"),
        py::arg("weight"), py::arg("k"), py::arg("N"), py::arg("C"), py::arg("w_stride_n"), py::arg("device"),
        py::arg("stream"));
  m.def("cond_batch_norm_backward_dx", &fastgan::cond_batch_norm_backward_dx, "conditional batch norm backward: dx",
        py::arg("dy"), py::arg("x"), py::arg("mean"), py::arg("istd_or_var"), py::arg("weight"), py::arg("bias"),
        py::arg("k"), py::arg("dx"), py::arg("N"), py::arg("C"), py::arg("HW"), py::arg("w_stride_n"),
        py::arg("channels_last"), py::arg("act"), py::arg("slope"), py::arg("eval"), py::arg("eps"), py::arg("inv_m"),
        py::arg("dtype"), py::arg("device"), py::arg("stream"));
  m.def("gradient_penalty_interpolate", &fastgan::gradient_penalty_interpolate,
        "gradient penalty: out = fake + eps (real - fake) per sample", py::arg("real"), py::arg("fake"), py::arg("eps"),
        py::arg("out"), py::arg("N"), py::arg("D"), py::arg("dtype"), py::arg("device"), py::arg("stream"));
  m.def("gradient_penalty_interpolate_backward", &fastgan::gradient_penalty_interpolate_backward,
        "gradient penalty: d_real = eps g, d_fake = (1 - eps) g per sample", py::arg("g"), py::arg("eps"),
        py::arg("d_real"), py::arg("d_fake"), py::arg("N"), py::arg("D"), py::arg("dtype"), py::arg("device"),
        py::arg("stream"));
  m.def("gradient_penalty_squared_norms", &fastgan::gradient_penalty_squared_norms,
        "gradient penalty: per-sample sums of squares (partials per tile, then their fixed-order sum)", py::arg("g"),
        py::arg("part"), py::arg("n_tiles"), py::arg("norms"), py::arg("N"), py::arg("D"), py::arg("dtype"),
        py::arg("device"), py::arg("stream"));
  m.def("gradient_penalty_scale_rows", &fastgan::gradient_penalty_scale_rows,
        "gradient penalty: out = coef g per sample", py::arg("g"), py::arg("coef"), py::arg("out"), py::arg("N"),
        py::arg("D"), py::arg("dtype"), py::arg("device"), py::arg("stream"));
  m.def("spectral_norm_layout", &fastgan::spectral_norm_layout,
        "table field indices and tile sizes the kernels were compiled with");
}

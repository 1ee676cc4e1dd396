// pybind11 module fastgan._C: raw pointers and a stream in, no PyTorch types (no dependency on its C++ ABI).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "ops.h"

namespace py = pybind11;

PYBIND11_MODULE(_C, m) {
  m.doc() = "fastgan CUDA kernels (raw-pointer interface; use fastgan's Python API)";
  m.attr("archs") = FASTGAN_CUDA_ARCHS;
  m.def("cuda_runtime_version", &fastgan::cuda_runtime_version, "CUDA runtime version the extension was built with");
  m.def("sn_power_iteration", &fastgan::sn_power_iteration, "grouped spectral-norm power iteration", py::arg("meta"),
        py::arg("rows_tiles"), py::arg("n_rows_tiles"), py::arg("cols_tiles"), py::arg("n_cols_tiles"),
        py::arg("groups"), py::arg("scratch"), py::arg("state"), py::arg("n_iter"), py::arg("eps"), py::arg("dtype"),
        py::arg("has_outer"), py::arg("unit_sc"), py::arg("device"), py::arg("stream"));
  m.def("sn_normalize", &fastgan::sn_normalize, "grouped W / sigma", py::arg("emeta"), py::arg("tiles"),
        py::arg("n_tiles"), py::arg("state"), py::arg("out"), py::arg("dtype"), py::arg("device"), py::arg("stream"));
  m.def("sn_normalize_backward", &fastgan::sn_normalize_backward, "grouped backward of W / sigma", py::arg("emeta"),
        py::arg("tiles"), py::arg("n_tiles"), py::arg("grad"), py::arg("partials"), py::arg("state"), py::arg("dw"),
        py::arg("dtype"), py::arg("device"), py::arg("stream"));
  m.def("sn_layout", &fastgan::sn_layout, "table field indices and tile sizes the kernels were compiled with");
}

"""Benchmark suites of ``fastgan bench``.

A suite is a module of this package with ``SUITE`` (its name), ``cases(device, dtypes)`` (its list of
:class:`fastgan.bench.runner.Case`; cheap: tensors are only made by each case's ``setup(with_compile)``) and
``describe()`` (a JSON-able dict for the report, e.g. the weight sets and their parameter counts).
"""
from __future__ import annotations

import importlib

SUITES = ("spectral_norm", "cond_batch_norm", "conv_transpose2d", "gradient_penalty", "codebook_search",
          "masked_conv2d", "pixelcnn_sampling", "train_step", "convert",
          "fid", "host_overhead")
DEFAULT_SUITES = SUITES  # what runs without --suite (without a GPU, the cases timed on the CPU need --suite)


def load(name: str):
    """The suite module called ``name``."""
    if name not in SUITES:
        raise ValueError(f"unknown benchmark suite {name!r}; choose from {', '.join(SUITES)}")
    return importlib.import_module(f"{__name__}.{name}")

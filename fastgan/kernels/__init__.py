"""Triton kernels (one file per op) and the host-side launch plans shared with the CUDA extension.

Modules here that import Triton are imported only when the triton backend runs.
"""

"""Fixes to Triton's interpreter (TRITON_INTERPRET=1), which the CPU tests run the kernels under.

* NumPy >= 2.4: the interpreter turns a scalar loaded from memory (a one-element array) into a Python int with
  ``int(array)``, which NumPy 2.4 refuses for arrays that are not 0-dimensional; loop bounds read from a table then
  fail. This installs an equivalent conversion that NumPy accepts.
* bfloat16 ``tl.dot``: the interpreter stores bfloat16 as uint16 (NumPy has no bfloat16) and multiplies those
  integers; this converts bfloat16 operands to float32 first, which is what the GPU's bfloat16 dot computes (exact
  products, float32 accumulation).
* float ``tl.dot``: the interpreter's ``np.matmul`` in float32 may round identical columns of B differently by
  their position (BLAS handles edge columns with other code), so equal codes in a codebook get unequal distances;
  this computes the products and sums in float64, rounded once to the accumulator's dtype: equal columns give equal
  results, as on the GPU, where every column of a tile is summed in the same order.

Nothing changes when the interpreter is not used or does not have the bug.
"""
import numpy as np


def _install_index(interpreter) -> None:
    try:
        int(np.array([1]))
        return
    except TypeError:
        pass
    original = getattr(interpreter, "_patch_lang_tensor", None)
    if original is None or getattr(original, "_fastgan_compat", False):
        return

    def patch_lang_tensor(tensor, scope):
        original(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.reshape(-1)[0]))

    patch_lang_tensor._fastgan_compat = True
    interpreter._patch_lang_tensor = patch_lang_tensor


def _install_bf16_dot(interpreter) -> None:
    import triton.language as tl

    builder = getattr(interpreter, "InterpreterBuilder", None)
    original = getattr(builder, "create_dot", None)
    if original is None or getattr(original, "_fastgan_compat", False) or not hasattr(builder, "cast_impl"):
        return

    def create_dot(self, a, b, d, *args, **kwargs):
        if a.dtype.scalar == tl.bfloat16:
            a = self.cast_impl(a, tl.float32)
        if b.dtype.scalar == tl.bfloat16:
            b = self.cast_impl(b, tl.float32)
        if a.dtype.scalar in (tl.float32, tl.float16) and b.dtype.scalar in (tl.float32, tl.float16) \
                and d.data.dtype == np.float32:
            out = np.matmul(a.data.astype(np.float64), b.data.astype(np.float64)).astype(np.float32) + d.data
            return interpreter.TensorHandle(out, d.dtype.scalar)
        return original(self, a, b, d, *args, **kwargs)

    create_dot._fastgan_compat = True
    builder.create_dot = create_dot


def install() -> None:
    try:
        from triton.runtime import interpreter
    except ImportError:
        return
    _install_index(interpreter)
    _install_bf16_dot(interpreter)

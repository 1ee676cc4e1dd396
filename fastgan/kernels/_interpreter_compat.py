"""Compatibility of Triton's interpreter (TRITON_INTERPRET=1) with NumPy >= 2.4.

The interpreter turns a scalar loaded from memory (a one-element array) into a Python int with ``int(array)``,
which NumPy 2.4 refuses for arrays that are not 0-dimensional; loop bounds read from a table then fail. This
installs an equivalent conversion that NumPy accepts. It changes nothing when the interpreter is not used or
when NumPy still accepts the old conversion.
"""
import numpy as np


def install() -> None:
    try:
        int(np.array([1]))
        return
    except TypeError:
        pass
    try:
        from triton.runtime import interpreter
    except ImportError:
        return
    original = getattr(interpreter, "_patch_lang_tensor", None)
    if original is None or getattr(original, "_fastgan_compat", False):
        return

    def patch_lang_tensor(tensor, scope):
        original(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.reshape(-1)[0]))

    patch_lang_tensor._fastgan_compat = True
    interpreter._patch_lang_tensor = patch_lang_tensor

"""CUDA backend: numba.cuda kernels on NVIDIA GPUs (or numba's simulator).

Import it through :func:`sparse_deep.backends.get_backend`; importing this
package imports ``numba.cuda``.
"""

from .backend import CUDABackend

__all__ = ["CUDABackend"]

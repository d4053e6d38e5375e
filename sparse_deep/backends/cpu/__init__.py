"""CPU backend: numba ``njit`` kernels, parallel over rows with ``prange``."""

from .backend import CPUBackend

__all__ = ["CPUBackend"]

"""CPU backend: numba ``njit`` kernels, parallel over rows with ``prange``.

Which kernels run on one thread: those whose work in a step is a scalar per
non-zero or a row per batch row (a draw, a loss term, a copy, a batch's
hidden rows normalised), next to the products that cost a row of ``d`` per
non-zero. numba compiles each kernel on a machine's first fit, and a
parallel loop roughly doubles the time its body takes to compile: on two
cores the recommender's first fit on MovieLens-100K compiled 11.5 s of
kernels before the serial ones and the GEMM's plan (:func:`.blas._tasks`)
were moved out of parallel loops, 7.5 s after, for an epoch within the
noise of the same (``benchmarks/bench_first_fit.py``).
"""

from .backend import CPUBackend

__all__ = ["CPUBackend"]

"""CPU backend: numba ``njit`` kernels, parallel over rows with ``prange``.

Which kernels run on one thread: those whose work in a step is a scalar per
non-zero or a row per batch row (a loss term, a copy of the batch, a batch's
hidden rows normalised), next to the products that cost a row of ``d`` per
non-zero. numba compiles each kernel on a machine's first fit, and a
parallel loop costs about 0.25 s more to compile than the same loop run
serially, and about twice its body's serial cost. On two cores the
recommender's first fit on MovieLens-100K compiled 11.5 s of kernels before
those kernels and the GEMM's plan (:func:`.blas._tasks`) were moved out of
parallel loops, 7.2-7.8 s after, for an epoch within the noise of the same
(``benchmarks/bench_first_fit.py``). The denoising draws stayed parallel:
on one thread they and the product after them cost 2-5 % of an epoch.
"""

from .backend import CPUBackend

__all__ = ["CPUBackend"]

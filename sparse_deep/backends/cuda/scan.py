"""Prefix sums on the device: CSR row pointers of compacted batches and the
bucket offsets of the input layer's transpose."""

from numba import cuda, int64

from . import launch

_KERNELS = {}


def _scan_kernel(threads):
    """A one-block exclusive scan for ``threads`` threads (a power of two).

    The block walks the input in chunks of ``threads``; each chunk is scanned
    with Hillis and Steele's doubling steps and offset by the running total.
    Integer sums, so the order of additions cannot change the result.
    """

    @cuda.jit
    def scan(values, n, out):
        buf = cuda.shared.array(threads, int64)
        tid = cuda.threadIdx.x
        if tid == 0:
            out[0] = 0
        carry = int64(0)
        for base in range(0, n, threads):
            i = base + tid
            v = int64(0)
            if i < n:
                v = int64(values[i])
            buf[tid] = v
            cuda.syncthreads()
            offset = 1
            while offset < threads:
                add = int64(0)
                if tid >= offset:
                    add = buf[tid - offset]
                cuda.syncthreads()
                buf[tid] += add
                cuda.syncthreads()
                offset *= 2
            if i < n:
                out[i + 1] = carry + buf[tid]
            carry += buf[threads - 1]
            cuda.syncthreads()

    return scan


def exclusive_scan(values, n, out, stream):
    """``out[0] = 0`` and ``out[i + 1] = values[0] + ... + values[i]`` for i < n."""
    threads = launch.SCAN_THREADS
    launch.check_power_of_two(threads, "SCAN_THREADS")
    kernel = _KERNELS.get(threads)
    if kernel is None:
        kernel = _KERNELS[threads] = _scan_kernel(threads)
    kernel[1, threads, stream](values, int(n), out)

"""What the host pays per GPU call: numba-cuda's against PyTorch's.

A training step on Last.fm or ML-100K is a dozen small kernels, a few
products and a dozen small copies; at those sizes the host's cost of issuing
them, not the GPU's work, sets the pace (docs/gpu.md, "Launches and waits per
step"). This times each kind of call the CUDA backend makes, on the host
(the work each call queues is small, so the GPU keeps up and no call waits
for it):

    launch, 1 array     a numba kernel launch with one array argument
    launch, 8 arrays    ... with eight (the size of the backend's kernels)
    prepared, 8 arrays  the same kernel through a PreparedKernel, as the
                        backend launches its kernels (cuda/prepared.py)
    view                x[:n] of a device array
    head                CUDABackend.head(x, n), the kept view
    upload, slice       1 KB from pinned memory through copy_to_device on x[:n]
    upload, driver      the same through numba's driver copy (CUDABackend.upload)
    event record        cuda.event().record(stream)
    event query         .query() of a recorded event
    cuBLAS gemm         CUDABackend.gemm, 128 x 256 x 4,489 (Last.fm's output layer)
    torch launch        an in-place add on a small CUDA tensor
    torch matmul        torch.matmul of the same shapes

Each figure is the median over blocks of 100 calls (2,000 calls, 300 for the
products, after 200 warm-up calls), in µs of host time per call. The GPU's
own time of the product, by CUDA events, is reported too.

Usage
    python benchmarks/bench_cuda_overheads.py [--output FILE]

Needs an NVIDIA GPU that numba.cuda can use (not the simulator) and a CUDA
build of torch.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from numba import cuda
from numba.cuda.cudadrv import driver

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _results import write_json  # noqa: E402

CALLS = 2000
WARM_UP = 200


@cuda.jit
def _one(a):
    i = cuda.grid(1)
    if i < a.shape[0]:
        a[i] += 1.0


@cuda.jit
def _eight(a, b, c, d, e, f, g, h):
    i = cuda.grid(1)
    if i < a.shape[0]:
        a[i] += b[i] + c[i] + d[i] + e[i] + f[i] + g[i] + h[i]


def per_call_us(call, calls=CALLS):
    """Median host time of ``call()`` in µs, over blocks of 100 calls."""
    for _ in range(WARM_UP):
        call()
    times = []
    for _ in range(calls // 100):
        start = time.perf_counter()
        for _ in range(100):
            call()
        times.append((time.perf_counter() - start) / 100 * 1e6)
    return statistics.median(times)


def numba_figures():
    from sparse_deep.backends import get_backend
    from sparse_deep.backends.cuda import prepared

    bk = get_backend("cuda")
    stream = bk.stream
    arrays = [cuda.to_device(np.zeros(4096, np.float32), stream=stream) for _ in range(8)]
    pinned = cuda.pinned_array(256, np.float32)
    pinned[:] = 1.0
    event = cuda.event(timing=False)
    event.record(stream)
    if prepared._CORE is None:
        sys.exit("prepared launches need numba-cuda, which launches through cuda.core")
    eight_prepared = prepared.PreparedKernel(_eight, prepared._CORE)
    rng = np.random.default_rng(0)
    h = cuda.to_device(rng.normal(size=(128, 256)).astype(np.float32), stream=stream)
    w = cuda.to_device(rng.normal(size=(4489, 256)).astype(np.float32), stream=stream)
    z = cuda.device_array((128, 4489), np.float32, stream=stream)
    figures = {
        "launch, 1 array": per_call_us(lambda: _one[16, 256, stream](arrays[0])),
        "launch, 8 arrays": per_call_us(lambda: _eight[16, 256, stream](*arrays)),
        "prepared, 8 arrays": per_call_us(
            lambda: eight_prepared[16, 256, stream](*arrays)),
        "view": per_call_us(lambda: arrays[0][:1000]),
        "head": per_call_us(lambda: bk.head(arrays[0], 1000)),
        "upload, slice": per_call_us(
            lambda: arrays[1][:256].copy_to_device(pinned, stream=stream)),
        "upload, driver": per_call_us(
            lambda: driver.host_to_device(arrays[1], pinned, pinned.nbytes, stream=stream)),
        "event record": per_call_us(lambda: event.record(stream)),
        "event query": per_call_us(event.query),
        "cuBLAS gemm": per_call_us(lambda: bk.gemm(h, w, z, trans_b=True), calls=300),
    }
    stream.synchronize()
    start, end = cuda.event(), cuda.event()
    start.record(stream)
    for _ in range(100):
        bk.gemm(h, w, z, trans_b=True)
    end.record(stream)
    end.synchronize()
    figures["cuBLAS gemm, GPU time"] = cuda.event_elapsed_time(start, end) * 1000 / 100
    return figures, bk.gemm_report


def torch_figures():
    import torch

    x = torch.zeros(4096, device="cuda")
    h = torch.randn(128, 256, device="cuda")
    w = torch.randn(4489, 256, device="cuda")
    figures = {
        "torch launch": per_call_us(lambda: x.add_(1.0)),
        "torch matmul": per_call_us(lambda: torch.matmul(h, w.T), calls=300),
    }
    torch.cuda.synchronize()
    return figures, torch.cuda.get_device_name(0)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="benchmarks/results/cuda_overheads.json")
    args = parser.parse_args(argv)
    from sparse_deep.backends import cuda_device_status

    usable, simulated, report = cuda_device_status()
    if not usable or simulated:
        sys.exit(f"needs a GPU that numba.cuda can use; found {report}")
    ours, products = numba_figures()
    theirs, gpu = torch_figures()
    figures = {**ours, **theirs}
    for name, value in figures.items():
        print(f"{name:24s} {value:9.1f} µs")
    write_json(args.output, {"gpu": gpu, "dense_products": products,
                             "calls": CALLS, "us_per_call": figures})


if __name__ == "__main__":
    main()

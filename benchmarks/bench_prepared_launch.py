"""The host's Python per kernel launch: numba-cuda's dispatcher against a
prepared launch (sparse_deep/backends/cuda/prepared.py), without a GPU.

Both paths end in the same call, cuda.core's ``launch``; this times what each
does before it. The GPU is stood in for as in ``tests/_prepared_launch.py``
(kernels compiled for an H100 through NVVM, device arrays over made-up
addresses, ``launch`` a no-op), so the figures leave out the driver's own
cost of a launch, which both paths pay alike (bench_cuda_overheads.py times
whole launches on a GPU). Kernels: some of the engine's, with the arguments
they take in training (the optimizer kernel's are nine tuples of four).

Each figure is the median over blocks of 100 launches (2,000 launches after
200 warm-up ones), in µs per launch.

Usage
    python benchmarks/bench_prepared_launch.py [--output FILE]

Needs numba-cuda (the ``cuda`` extra) and the CUDA compiler (NVVM, NVRTC);
runs with the simulator off, and needs no GPU.
"""

import argparse
import os
import platform
import sys
import warnings
from pathlib import Path

os.environ["NUMBA_ENABLE_CUDASIM"] = "0"
ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT / "tests"), str(ROOT)]
from _prepared_launch import Unavailable, dispatcher_of, engine_calls, offline  # noqa: E402
from _results import cpu_model, write_json  # noqa: E402
from bench_cuda_overheads import per_call_us  # noqa: E402


class _Stream:
    handle = 1


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="benchmarks/results/prepared_launch_host.json")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")  # numba's low-occupancy warnings, for tiny grids
    try:
        core = offline()
    except Unavailable as exc:
        sys.exit(str(exc))
    from numba_cuda import __version__ as numba_cuda_version

    from sparse_deep.backends.cuda.prepared import PreparedKernel

    stream = _Stream()
    results = []
    for kernel, (grid, block), call_args in engine_calls():
        dispatcher = dispatcher_of(kernel)
        handle = PreparedKernel(dispatcher, core)
        numba_us = per_call_us(lambda: dispatcher[grid, block, stream](*call_args))
        prepared_us = per_call_us(lambda: handle[grid, block, stream](*call_args))
        name = dispatcher.py_func.__name__
        results.append({"kernel": name, "numba_us": numba_us, "prepared_us": prepared_us,
                        "speedup": numba_us / prepared_us})
        print(f"{name:26s} numba {numba_us:7.1f} µs   prepared {prepared_us:6.1f} µs   "
              f"{numba_us / prepared_us:5.1f}x")
    write_json(args.output, {"machine": platform.platform(), "cpu": cpu_model(),
                             "numba_cuda": numba_cuda_version,
                             "what": "host µs per launch before cuda.core's launch, "
                                     "GPU stood in for", "results": results})


if __name__ == "__main__":
    main()

"""The host's side of a GPU training epoch, measured without a GPU.

On Last.fm and ML-100K a GPU step is small enough that the host's work for
it, not the GPU's, can set the pace (docs/gpu.md). This runs the CUDA
backend in numba's simulator with every kernel's work stood in for (a launch
returns at once), and times ``partial_fit`` epochs of the default
recommender, as ``bench_epoch_vs_pytorch.py --device cuda`` runs them: what
remains is the engine's Python for each step, the batches prepared on the
host, and the simulator's array calls (numpy operations, cheaper than
numba-cuda's). numba-cuda's own cost per launch and per copy is not in it
(``bench_prepared_launch.py`` and, on a GPU, ``bench_cuda_overheads.py``
time those), nor is the GPU's work. It is a floor for a GPU epoch, not a
speed: the peer is the CPU backend's epoch in the same run, to show the
scale.

Usage
    python benchmarks/bench_gpu_host_side.py [--data-dir DIR] [--output FILE]
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _results import cpu_model, write_json  # noqa: E402

from bench_epoch_vs_pytorch import load  # noqa: E402

CALLS = 10


def epoch_ms(X, device):
    """Median ms of a partial_fit epoch, after two untimed ones."""
    from sparse_deep import SparseAutoencoderRecommender

    est = SparseAutoencoderRecommender(device=device, random_state=0)
    est.partial_fit(X).partial_fit(X)
    times = []
    for _ in range(CALLS):
        start = time.perf_counter()
        est.partial_fit(X)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3, est.batch_size


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--output", default="benchmarks/results/gpu_host_side.json")
    args = parser.parse_args(argv)
    from numba import cuda
    from numba.cuda.simulator import kernel
    from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray

    kernel.FakeCUDAKernel.__call__ = lambda self, *a, **k: None  # the GPU's work, stood in for

    def zeroed(shape, dtype=np.float64, strides=None, order="C", stream=0):
        # What no kernel writes is read as losses and sums: zeros, not a divergence.
        return FakeCUDAArray(np.zeros(shape, dtype=dtype, order=order), stream=stream)

    cuda.device_array = zeroed
    results = []
    for dataset in ("lastfm", "ml100k"):
        X = load(dataset, args.data_dir)[0].astype(np.float32)
        host_ms, batch = epoch_ms(X, "cuda")
        cpu_ms, _ = epoch_ms(X, "cpu")
        steps = -(-X.shape[0] // batch)
        results.append({"dataset": dataset, "steps": steps, "gpu_host_side_ms": host_ms,
                        "gpu_host_side_ms_per_step": host_ms / steps, "cpu_epoch_ms": cpu_ms})
        print(f"{dataset:8s} {steps:3d} steps: GPU epoch's host side {host_ms:6.1f} ms "
              f"({host_ms / steps:.2f} ms a step); CPU epoch {cpu_ms:6.1f} ms")
    write_json(args.output, {"cpu": cpu_model(), "network": "default recommender",
                             "what": "partial_fit epochs on the CUDA backend in numba's "
                                     "simulator, kernels stood in for", "results": results})


if __name__ == "__main__":
    main()

"""How many kernels a training step launches on the CUDA backend, and how
often it waits for the GPU: counted in numba's simulator, step by step.

On a GPU each launch costs numba-cuda tens of microseconds of Python, and
so does each view of a device array (a slice) that the host makes; each
wait stops the host from queueing the next kernels (docs/gpu.md, "Launches
and waits per step"). The figures of the default recommender, of DSSTNE's
MovieLens network and of the benchmark's full SoftMax network are pinned
here, so that a change that adds launches, views or waits shows; the
default network's step must stay within 12 launches and no wait (issue 20).
"""

import re
import statistics
import sys

import numpy as np
import pytest
import scipy.sparse as sp

from sparse_deep import SparseAutoencoderRecommender
from sparse_deep.backends import cuda_device_status
from sparse_deep.engine.runner import Runner
from sparse_deep.network.samples import movielens_config

usable, simulated, _ = cuda_device_status()
pytestmark = pytest.mark.skipif(not (usable and simulated),
                                reason="counts launches in numba's CUDA simulator")


def interactions(n_users=24, n_items=12, seed=0):
    rng = np.random.default_rng(seed)
    dense = rng.random((n_users, n_items)) < 0.3
    dense[np.arange(n_users), rng.integers(0, n_items, n_users)] = True
    return sp.csr_matrix(dense.astype(np.float32))


# The code a training step runs on the host, outside the kernels.
HOST_CODE = re.compile(r"sparse_deep[/\\](engine|distributed|estimators)[/\\]"
                       r"|sparse_deep[/\\]backends[/\\](base|cuda[/\\]backend)\.py$")


def per_step_counts(monkeypatch, estimator, X):
    """Median launches, device-to-host copies, synchronisations and views
    (slices, reshapes) of device arrays made on the host, of the training
    steps after the first (which uploads and sizes buffers)."""
    from numba.cuda.simulator import api
    from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray
    from numba.cuda.simulator.kernel import FakeCUDAKernel

    counts = {"launches": 0, "copies to host": 0, "synchronisations": 0, "views": 0}

    def counting(method, what, only=None):
        def counted(self, *args, **kwargs):
            if only is None or only(self):
                counts[what] += 1
            return method(self, *args, **kwargs)
        return counted

    getitem, reshape = FakeCUDAArray.__getitem__, FakeCUDAArray.reshape

    def by_the_host():
        return HOST_CODE.search(sys._getframe(2).f_code.co_filename) is not None

    def viewed(self, index):
        """Counts the slices the step's host code makes (kernels index too)."""
        slices = index if isinstance(index, tuple) else (index,)
        if any(isinstance(i, slice) for i in slices) and by_the_host():
            counts["views"] += 1
        return getitem(self, index)

    def reshaped(self, *args, **kwargs):
        if by_the_host():
            counts["views"] += 1
        return reshape(self, *args, **kwargs)

    monkeypatch.setattr(FakeCUDAKernel, "__call__",
                        counting(FakeCUDAKernel.__call__, "launches", lambda k: not k._device))
    monkeypatch.setattr(FakeCUDAArray, "copy_to_host",
                        counting(FakeCUDAArray.copy_to_host, "copies to host"))
    monkeypatch.setattr(api.stream, "synchronize",
                        counting(api.stream.synchronize, "synchronisations"))
    monkeypatch.setattr(api.Event, "synchronize",
                        counting(api.Event.synchronize, "synchronisations"))
    monkeypatch.setattr(FakeCUDAArray, "__getitem__", viewed)
    monkeypatch.setattr(FakeCUDAArray, "reshape", reshaped)
    steps = []
    train_step = Runner.train_step

    def recorded(self, *args, **kwargs):
        before = dict(counts)
        result = train_step(self, *args, **kwargs)
        steps.append({k: counts[k] - before[k] for k in counts})
        return result

    monkeypatch.setattr(Runner, "train_step", recorded)
    estimator.fit(X)
    assert len(steps) >= 3
    return {k: statistics.median(step[k] for step in steps[1:]) for k in counts}


DEFAULT = dict(hidden_layer_sizes=(4,), n_negatives=4, batch_size=8, epochs=1,
               random_state=0, device="cuda")
# The figures of docs/gpu.md ("Launches and waits per step"), measured with
# the settings above and the simulator's small launches, whose GEMMs split
# their inner dimension by the GPU's rule (not below GEMM_SPLIT_MIN_K, which
# these products are); lower is better: update them when a change lowers them.
PINNED = {
    "default": {"launches": 10, "copies to host": 0, "synchronisations": 0, "views": 2},
    "movielens": {"launches": 11, "copies to host": 0, "synchronisations": 0, "views": 1},
    "softmax": {"launches": 10, "copies to host": 0, "synchronisations": 0, "views": 0},
}
# benchmarks/bench_epoch_vs_pytorch.py's "softmax" network: a full SoftMax
# output and the dense input update (every row steps), as PyTorch's Adam does.
SOFTMAX = dict(hidden_layer_sizes=(4,), activation="tanh", loss="cross_entropy",
               learning_rate_decay=0.0, sparse_input_update=False, batch_size=8, epochs=1,
               random_state=0, device="cuda")


@pytest.fixture(scope="module")
def measured():
    """Both networks' counts, measured once with the simulator's small launches
    and quick thread switches (as tests/test_kernels_cuda.py sets them)."""
    from sparse_deep.backends.cuda import launch

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)
    with pytest.MonkeyPatch.context() as monkeypatch:
        for name, value in dict(THREADS=4, MAX_BLOCKS=3, ROW_THREADS=4,
                                GEMM_THREADS=2, GEMM_WORK=2, GEMM_TILE_K=2).items():
            monkeypatch.setattr(launch, name, value)
        estimators = {
            "default": SparseAutoencoderRecommender(**DEFAULT),
            "movielens": SparseAutoencoderRecommender(network=movielens_config(), batch_size=8,
                                                      epochs=1, random_state=0, device="cuda"),
            "softmax": SparseAutoencoderRecommender(**SOFTMAX),
        }
        try:
            return {name: per_step_counts(monkeypatch, estimator, interactions())
                    for name, estimator in estimators.items()}
        finally:
            sys.setswitchinterval(old)


@pytest.mark.parametrize("name", sorted(PINNED))
def test_launches_and_waits_per_step_do_not_grow(name, measured):
    for what, pinned in PINNED[name].items():
        assert measured[name][what] <= pinned, (what, measured[name])


def test_the_default_network_meets_the_launch_target(measured):
    counts = measured["default"]
    assert counts["launches"] <= 12 and counts["synchronisations"] == 0

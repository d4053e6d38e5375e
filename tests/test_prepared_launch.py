"""Prepared kernel launches (sparse_deep/backends/cuda/prepared.py).

The tests here stand in for numba-cuda's dispatcher and cuda.core, so they
run in CI, in the simulator: they check which launches are prepared, what is
kept and for how long. ``tests/_prepared_launch.py`` checks, against numba-cuda
itself, that a prepared launch hands cuda.core what numba's own launch does;
on a GPU (SPARSE_DEEP_REAL_GPU=1) every kernel test launches through it.
"""

import ctypes
import gc
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from numba import typeof, types

from sparse_deep.backends.cuda import prepared
from sparse_deep.backends.cuda._device import SIMULATED


class FakeDeviceArray:
    """A numba device array, as far as a launch looks at it."""

    __cuda_memory__ = True
    __cuda_array_interface__ = {}

    def __init__(self, ndim=1):
        self._numba_type_ = types.Array(types.float32, ndim, "C")


class FakeOverload:
    """A compiled kernel: its argument types, and numba's way of making an
    array's parameters (counted)."""

    debug = cooperative = False

    def __init__(self, argument_types, name):
        self.argument_types = argument_types
        self.extensions = []
        self.made = []
        function = type("Function", (), {"kernel": f"kernel {name}"})
        self._codelibrary = type("Library", (), {"get_cufunc": lambda _: function})()

    def _prepare_args(self, ty, value, stream, retr, params):
        assert isinstance(ty, types.Array), "only arrays are made by numba here"
        self.made.append(id(value))
        params.extend([0, 0, id(value), ty.ndim])


def numba_type(value):
    kind = getattr(value, "_numba_type_", None)
    return kind if kind is not None else typeof(value)


class FakeDispatcher:
    """numba's dispatcher: each launch compiles (once per argument types) and
    is recorded."""

    def __init__(self, name="k"):
        self.name = name
        self.overloads = {}
        self.launches = []

    def typeof_pyval(self, value):
        return numba_type(value)

    def __getitem__(self, config):
        def launch(*args):
            argtypes = tuple(map(numba_type, args))
            self.overloads.setdefault(argtypes, FakeOverload(argtypes, self.name))
            self.launches.append((config, tuple(map(id, args))))
        return launch


class Device:
    id = 0


class Context:
    device = Device()


class FakeCore:
    """cuda.core's launch and configuration, numba's stream conversion and
    context, all recorded."""

    def __init__(self):
        self.launches, self.configs, self.streams = [], [], []
        self.core = prepared.CoreLaunch(
            lambda stream, config, kernel, *params: self.launches.append(
                (stream, config, kernel, params)),
            lambda **config: self.configs.append(config) or tuple(sorted(config.items())),
            lambda stream: self.streams.append(id(stream)) or ("core", id(stream)),
            lambda grid, block: (grid, block), lambda: Context, types)


class Stream:
    pass


@pytest.fixture
def core():
    Device.id = 0
    return FakeCore()


def values(params):
    return [(type(p), p.value) if isinstance(p, ctypes._SimpleCData) else p for p in params]


def test_a_repeated_kind_of_call_skips_the_dispatcher(core):
    dispatcher = FakeDispatcher()
    kernel = prepared.PreparedKernel(dispatcher, core.core)
    a, b, stream = FakeDeviceArray(), FakeDeviceArray(2), Stream()
    args = (a, b, 7, np.float32(0.5), 0.25, True, np.uint64(2 ** 63 + 1))
    for _ in range(3):
        kernel[4, 256, stream](*args)
    assert len(dispatcher.launches) == 1  # numba compiles and launches the first
    assert len(core.launches) == 2
    stream_seen, config, function, params = core.launches[-1]
    assert function == "kernel k" and stream_seen == ("core", id(stream))
    assert values(params) == [0, 0, id(a), 1, 0, 0, id(b), 2,
                              (ctypes.c_int64, 7), (ctypes.c_float, 0.5),
                              (ctypes.c_double, 0.25), True, (ctypes.c_uint64, 2 ** 63 + 1)]
    overload = next(iter(dispatcher.overloads.values()))
    assert overload.made == [id(a), id(b)]  # each array's parameters made once
    # The key holds the arrays' types by id; the call keeps the types alive.
    assert next(iter(kernel._calls.values())).array_types == [a._numba_type_, b._numba_type_]
    assert core.configs == [{"grid": 4, "block": 256, "shmem_size": 0}]
    assert core.streams == [id(stream)]


def test_tuples_of_arguments_become_their_items_parameters_in_order(core):
    dispatcher = FakeDispatcher()
    kernel = prepared.PreparedKernel(dispatcher, core.core)
    arrays = tuple(FakeDeviceArray() for _ in range(3))
    for _ in range(2):
        kernel[1, 32, 0](arrays, (1, 2, 3), ((0.5, 1.5), (2.5, 3.5)))
    params = values(core.launches[-1][3])
    assert params[:12] == [p for a in arrays for p in (0, 0, id(a), 1)]
    assert params[12:] == [(ctypes.c_int64, i) for i in (1, 2, 3)] + [
        (ctypes.c_double, x) for x in (0.5, 1.5, 2.5, 3.5)]


def test_each_kind_of_call_is_prepared_on_its_own(core):
    dispatcher = FakeDispatcher()
    kernel = prepared.PreparedKernel(dispatcher, core.core)
    a = FakeDeviceArray()
    kinds = [(a, 1.0), (a, np.float32(1.0)), (a, 2 ** 63), (a, 5), (FakeDeviceArray(2), 5)]
    for args in kinds:
        kernel[1, 32, 0](*args)
        kernel[1, 32, 0](*args)
    assert len(dispatcher.launches) == len(kinds) and len(core.launches) == len(kinds)
    Device.id = 1  # another GPU: the kernel is loaded there anew
    kernel[1, 32, 0](a, 5)
    assert len(dispatcher.launches) == len(kinds) + 1


def test_calls_numba_launches_some_other_way_go_through_the_dispatcher(core, monkeypatch):
    host = np.zeros(3, np.float32)  # numba copies it to the GPU and back each launch
    complex_scalar = (FakeDeviceArray(), 1 + 2j)  # no conversion here for its type
    for args in [(host,), complex_scalar]:
        dispatcher = FakeDispatcher()
        kernel = prepared.PreparedKernel(dispatcher, core.core)
        for _ in range(3):
            kernel[1, 32, 0](*args)
        assert len(dispatcher.launches) == 3 and not core.launches

    debug = FakeDispatcher()
    kernel = prepared.PreparedKernel(debug, core.core)
    kernel[1, 32, 0](FakeDeviceArray())
    next(iter(debug.overloads.values())).debug = True
    kernel._calls.clear()
    for _ in range(2):
        kernel[1, 32, 0](FakeDeviceArray())
    assert len(debug.launches) == 3 and not core.launches

    monkeypatch.setattr(prepared, "PREPARED", False)
    dispatcher = FakeDispatcher()
    kernel = prepared.PreparedKernel(dispatcher, core.core)
    for _ in range(3):
        kernel[1, 32, 0](FakeDeviceArray(), 1)
    assert len(dispatcher.launches) == 3 and not core.launches


def test_an_arrays_parameters_are_kept_while_it_lives(core):
    kernel = prepared.PreparedKernel(FakeDispatcher(), core.core)
    a = FakeDeviceArray()
    kernel[1, 32, 0](a)
    kernel[1, 32, 0](a)
    key = id(a)
    assert key in prepared._ARRAY_PARAMS
    del a
    gc.collect()
    assert key not in prepared._ARRAY_PARAMS
    stream = Stream()
    kernel[1, 32, stream](FakeDeviceArray())
    key = id(stream)
    assert key in prepared._CORE_STREAMS
    del stream
    gc.collect()
    assert key not in prepared._CORE_STREAMS


def test_reports_say_how_kernels_are_launched(core, monkeypatch):
    monkeypatch.setattr(prepared, "_CORE", core.core)
    assert prepared.describe().startswith("prepared, through cuda.core")
    monkeypatch.setattr(prepared, "PREPARED", False)
    assert prepared.describe() == "numba's dispatcher (SPARSE_DEEP_PREPARED_LAUNCHES=0)"


def test_every_other_attribute_is_the_dispatchers(core):
    dispatcher = FakeDispatcher("named")
    assert prepared.PreparedKernel(dispatcher, core.core).name == "named"


@pytest.mark.skipif(not SIMULATED, reason="the simulator's kernels")
def test_the_simulator_launches_through_numbas_dispatcher():
    def kernel(x):
        x[0] = 1.0

    assert not isinstance(prepared.jit(kernel), prepared.PreparedKernel)
    assert prepared.describe() == "numba's dispatcher (the simulator)"


@pytest.mark.skipif(SIMULATED or prepared._CORE is None,
                    reason="needs a GPU and numba-cuda (SPARSE_DEEP_REAL_GPU=1)")
def test_on_a_gpu_a_prepared_launch_computes_what_the_dispatchers_does():
    from numba import cuda

    from sparse_deep.backends.cuda import dense

    stream = cuda.stream()
    rng = np.random.default_rng(0)
    out_host, other_host = rng.normal(size=(2, 37, 19)).astype(np.float32)
    out = cuda.to_device(out_host, stream=stream)
    other = cuda.to_device(other_host, stream=stream)
    expected = out_host.copy()
    for _ in range(3):  # numba's launch, then two prepared ones
        dense.add(out, other, stream)
        expected += other_host
    assert isinstance(next(iter(dense._add._calls.values())), prepared._Call)
    np.testing.assert_array_equal(out.copy_to_host(stream=stream), expected)


def test_prepared_launches_pass_what_numba_cuda_passes():
    """Runs tests/_prepared_launch.py without the simulator; skipped where
    numba.cuda is not numba-cuda (CI's numba bundles its own) or the CUDA
    compiler is missing."""
    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    env["PYTHONPATH"] = os.pathsep.join([str(root)] + [p for p in [env.get("PYTHONPATH")] if p])
    result = subprocess.run([sys.executable, "-W", "ignore",
                             str(root / "tests" / "_prepared_launch.py")],
                            env=env, capture_output=True, text=True, timeout=900)
    if result.returncode == 3:
        pytest.skip(result.stdout.strip())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "checked 6 kernels" in result.stdout, result.stdout

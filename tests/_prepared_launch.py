"""Prepared launches pass what numba-cuda's own launch passes, without a GPU.

``tests/test_prepared_launch.py`` runs this file in a subprocess with the
simulator off. It compiles some of the engine's kernels for compute capability
9.0 (as ``tests/_cuda_compile.py`` does), makes numba device arrays over
made-up addresses, and stands in for the four places that would reach a GPU:
cuda.core's ``launch`` (it records), the stream conversion, the loaded kernel
and the current context. Then, for each kernel, it launches the same arguments
through numba's dispatcher and through a :class:`PreparedKernel`, and checks
that both hand cuda.core the same kernel, configuration, stream and
parameters. Prints "checked N kernels"; exit status 3 means this numba.cuda
is not numba-cuda launching through cuda.core, or NVVM is missing (nothing to
check on this machine).
"""

import ctypes
import sys

import numpy as np
from numba import cuda, types

CC = (9, 0)


class _Device:
    compute_capability = CC
    id = 0


class _Context:
    device = _Device


class _Memory:
    """A numba device array's memory at a made-up address."""

    _next = 0x7F0000000000

    def __init__(self, nbytes):
        self.device_ctypes_pointer = ctypes.c_void_p(_Memory._next)
        _Memory._next += max(256, nbytes)


def device_array(shape, dtype):
    from numba.cuda.cudadrv.devicearray import DeviceNDArray

    dtype = np.dtype(dtype)
    strides = np.empty(shape, dtype).strides
    return DeviceNDArray(shape, strides, dtype,
                         gpu_data=_Memory(int(np.prod(shape)) * dtype.itemsize))


class _Module:
    initialized = True


class _Function:
    """A loaded kernel: its module (loaded already) and cuda.core's handle."""

    module = _Module

    def __init__(self, name):
        self.kernel = f"cuda.core kernel of {name}"


def _stand_ins(dispatcher_module, driver, codegen, devices, launches):
    """Patch numba-cuda's ways to the GPU; cuda.core's launch appends what it
    is given to ``launches`` (a list, or None to drop it)."""
    devices.get_context = lambda devnum=None: _Context
    if launches is None:
        dispatcher_module.launch = lambda stream, config, kernel, *params: None
    else:
        dispatcher_module.launch = lambda stream, config, kernel, *params: launches.append(
            (stream, config, kernel, params))
    driver._to_core_stream = lambda stream: ("cuda.core stream", stream.handle if stream else 0)
    codegen.CUDACodeLibrary.get_cufunc = lambda self: _Function(self.name)


class Unavailable(Exception):
    """numba.cuda is not numba-cuda launching through cuda.core, or the CUDA
    compiler is missing."""


def offline(launches=None):
    """numba-cuda compiling for an H100 that is not there, its launches
    stood in for (see :func:`_stand_ins`); the prepared launches' CoreLaunch."""
    from numba.cuda import codegen
    from numba.cuda import compiler as cuda_compiler
    from numba.cuda import dispatcher as cuda_dispatcher
    from numba.cuda.cudadrv import devices, driver

    from sparse_deep.backends.cuda import prepared

    if prepared._CORE is None:
        raise Unavailable("this numba.cuda does not launch through cuda.core (not numba-cuda)")
    cuda_compiler.get_current_device = cuda_dispatcher.get_current_device = _Device
    try:
        cuda.compile_ptx(lambda x: None, (types.float32[:],), cc=CC)
    except Exception as exc:  # no libNVVM or NVRTC: the CUDA toolkit is not installed
        raise Unavailable(f"NVVM unavailable: {exc}") from None
    _stand_ins(cuda_dispatcher, driver, codegen, devices, launches)
    return prepared.CoreLaunch(cuda_dispatcher.launch, cuda_dispatcher.LaunchConfig,
                               driver._to_core_stream,
                               cuda_dispatcher.normalize_kernel_dimensions,
                               lambda: _Context, cuda_dispatcher.types)


def engine_calls():
    """Some of the engine's kernels, each with a launch's geometry and
    arguments of every kind they take (arrays, tuples of them, Python and
    numpy scalars, booleans)."""
    from sparse_deep.backends.cuda import dense, optim, sparse
    from sparse_deep.core.optimizers import OPTIMIZERS

    f32 = np.float32
    z, out = device_array((6, 5), f32), device_array((6, 5), f32)
    bias, rows = device_array((5,), f32), device_array((4,), np.int64)
    indptr, indices, data = (device_array((7,), np.int64), device_array((9,), np.int32),
                             device_array((9,), f32))
    weights, grad = device_array((8, 5), f32), device_array((8, 5), f32)
    slots = device_array((8,), np.int64)
    groups = optim.GROUPS

    def per_group(shape, dtype=f32):  # each group its own array, so that order shows
        return tuple(device_array(shape, dtype) for _ in range(groups))

    optimizer_args = (per_group((8, 5)), per_group((8, 5)), per_group((8,), np.int64),
                      tuple(range(1, groups + 1)), per_group((8, 5)), per_group((8, 5)),
                      tuple((0.001 * g,) * 15 for g in range(groups)),
                      per_group((4,), np.int64), tuple(range(8, 8 + groups)))
    return [
        (dense._fill_rows, (3, 256), (z, bias)),
        (dense._fill, (3, 256), (z, f32(0.5))),
        (dense._dropout, (2, 128), (z, out, np.uint64(2 ** 63 + 7), rows, 0.25, 1 / 0.75)),
        (sparse._sparse_matmul_add, (6, 64), (indptr, indices, data, weights, z, bias, True)),
        (sparse._sparse_weight_gradient, (6, 64),
         (indptr, indices, data, 3, z, f32(0.5), grad, bias, False, rows, slots, 7, True)),
        (optim._kernel(OPTIMIZERS.info("adam").code), ((4, 2), (8, 32)), optimizer_args),
    ]


def dispatcher_of(kernel):
    from sparse_deep.backends.cuda import prepared

    return kernel.dispatcher if isinstance(kernel, prepared.PreparedKernel) else kernel


class _Counted:
    """A dispatcher that counts the launches it is asked for."""

    def __init__(self, dispatcher):
        self.dispatcher, self.launches = dispatcher, 0

    def __getattr__(self, name):
        return getattr(self.dispatcher, name)

    def __getitem__(self, config):
        self.launches += 1
        return self.dispatcher[config]


class _Stream:
    handle = 12345

    def __bool__(self):
        return True


def _comparable(params):
    return [(type(p).__name__, p.value if isinstance(p, ctypes._SimpleCData) else p)
            for p in params]


def _config(config):
    return config.grid, config.block, config.shmem_size, config.is_cooperative


def main():
    from sparse_deep.backends.cuda import prepared

    launches = []
    try:
        core = offline(launches)
    except Unavailable as exc:
        print(exc)
        return 3
    calls = engine_calls()
    stream = _Stream()
    for kernel, (grid, block), args in calls:
        dispatcher = dispatcher_of(kernel)
        counted = _Counted(dispatcher)
        handle = prepared.PreparedKernel(counted, core)
        for _ in range(2):  # the first launch goes through numba, the second is prepared
            handle[grid, block, stream](*args)
        name = dispatcher.py_func.__name__
        assert counted.launches == 1, f"{name}: not prepared"
        dispatcher[grid, block, stream](*args)  # numba's own launch, for reference
        (ours_stream, ours_config, ours_kernel, ours), theirs_launch = launches[-2], launches[-1]
        theirs_stream, theirs_config, theirs_kernel, theirs = theirs_launch
        assert ours_kernel == theirs_kernel, (name, ours_kernel, theirs_kernel)
        assert _config(ours_config) == _config(theirs_config), (name, ours_config, theirs_config)
        assert ours_stream == theirs_stream, (name, ours_stream, theirs_stream)
        assert _comparable(ours) == _comparable(theirs), (name, ours, theirs)
        launches.clear()
    print(f"checked {len(calls)} kernels")
    return 0


if __name__ == "__main__":
    sys.exit(main())

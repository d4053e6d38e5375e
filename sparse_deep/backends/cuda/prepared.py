"""Kernels launched through prepared handles.

numba-cuda spends tens of µs of Python on every launch: it types each
argument, looks up the compiled overload, builds a launch configuration
(warning when the grid is small), converts the stream and flattens each array
into the kernel's parameters. A training step launches the same few kernels on
the same buffers every time, so a :class:`PreparedKernel` lets numba do that
work once per kind of call, and afterwards hands the compiled kernel straight
to ``cuda.core.launch`` with what it kept:

- per kind of call (the argument types, the device): the compiled kernel and
  how each scalar argument becomes a kernel parameter;
- per array (while it lives): its parameters, made by numba's own code;
- per grid and block: the launch configuration; per stream: cuda.core's view
  of it.

The first launch of each kind goes through numba's dispatcher, which compiles
the kernel and checks the arguments as usual. A call numba-cuda would launch
differently (debug or cooperative kernels, argument extensions, kernels that
specialise on their launch configuration, host arrays, arguments of types
this module does not convert) always goes through the dispatcher.

Only numba-cuda's launch through cuda.core can be prepared; in the simulator,
and with the ``numba.cuda`` bundled with older numba, :func:`jit` returns the
plain dispatcher. ``SPARSE_DEEP_PREPARED_LAUNCHES=0`` in the environment (or
``PREPARED = False``) sends every launch through the dispatcher.
"""

import ctypes
import os

import numpy as np
from numba import cuda

from ._cache import kept
from ._device import SIMULATED

#: Whether prepared kinds of call skip the dispatcher (read at each launch).
PREPARED = os.environ.get("SPARSE_DEEP_PREPARED_LAUNCHES", "1") != "0"


class CoreLaunch:
    """What a prepared launch takes from numba-cuda: cuda.core's ``launch``
    and ``LaunchConfig``, and numba's ``to_core_stream``,
    ``normalize_kernel_dimensions``, ``get_context`` and ``types`` (the tests
    stand in for the GPU's)."""

    def __init__(self, launch, launch_config, to_core_stream, normalize, get_context, types):
        self.launch = launch
        self.launch_config = launch_config
        self.to_core_stream = to_core_stream
        self.normalize = normalize
        self.get_context = get_context
        self.types = types


def _numba_cuda_core_launch():
    """numba-cuda's :class:`CoreLaunch`, or None where numba launches some
    other way (the simulator, the ``numba.cuda`` bundled with older numba)."""
    if SIMULATED:
        return None
    from numba.cuda import dispatcher
    from numba.cuda.cudadrv import driver

    names = ("launch", "LaunchConfig", "normalize_kernel_dimensions", "get_context", "types")
    if not all(hasattr(dispatcher, name) for name in names) or not hasattr(
            driver, "_to_core_stream"):
        return None
    return CoreLaunch(dispatcher.launch, dispatcher.LaunchConfig, driver._to_core_stream,
                      dispatcher.normalize_kernel_dimensions, dispatcher.get_context,
                      dispatcher.types)


_CORE = _numba_cuda_core_launch()


def describe():
    """How the backend's kernels are launched, in words (for reports)."""
    if _CORE is None:
        return ("numba's dispatcher (" + ("the simulator" if SIMULATED else
                "this numba.cuda does not launch through cuda.core") + ")")
    if not PREPARED:
        return "numba's dispatcher (SPARSE_DEEP_PREPARED_LAUNCHES=0)"
    return "prepared, through cuda.core (numba's dispatcher for each first kind of call)"


def jit(function):
    """``numba.cuda.jit(function)``, launched through prepared handles where
    numba-cuda launches through cuda.core (the dispatcher itself elsewhere)."""
    dispatcher = cuda.jit(function)
    return dispatcher if _CORE is None else PreparedKernel(dispatcher, _CORE)


class PreparedKernel:
    """A kernel dispatcher whose repeated kinds of call skip its Python.

    ``kernel[grid, block, stream](*args)`` launches as the dispatcher would;
    every other attribute is the dispatcher's.
    """

    def __init__(self, dispatcher, core):
        self.dispatcher = dispatcher
        self._core = core
        self._calls = {}  # (device id, argument kinds) -> _Call, or None: not preparable
        self._configs = {}  # (grid, block, shared memory) -> cuda.core's LaunchConfig

    def __getattr__(self, name):
        return getattr(self.dispatcher, name)

    def __getitem__(self, config):
        return _Launch(self, *config)

    def launch(self, grid, block, stream, shared, args):
        core = self._core
        key = core.get_context().device.id, tuple(map(_kind, args))
        call = self._calls.get(key, _NEW)
        if call is _NEW or call is None or not PREPARED:
            self.dispatcher[grid, block, stream, shared](*args)
            if call is _NEW:
                self._calls[key] = self._prepare(args)
            return
        params = []
        for convert, value in zip(call.converters, args):
            convert(value, params, call.kernel)
        core.launch(_core_stream(core, stream), self._config(grid, block, shared),
                    call.function, *params)

    def _prepare(self, args):
        """The kind of call ``args`` is, once numba has compiled it; None where
        numba-cuda would launch it in a way this class does not repeat."""
        dispatcher = self.dispatcher
        if getattr(dispatcher, "_launch_config_sensitive", False) or not all(
                map(_on_device, args)):
            return None
        kernel = dispatcher.overloads.get(tuple(dispatcher.typeof_pyval(a) for a in args))
        if (kernel is None or kernel.debug or kernel.cooperative or kernel.extensions
                or getattr(kernel, "launch_config_sensitive", False)):
            return None
        converters = [_converter(t, self._core.types) for t in kernel.argument_types]
        if None in converters:
            return None
        return _Call(kernel, kernel._codelibrary.get_cufunc().kernel, converters,
                     _array_types(args))

    def _config(self, grid, block, shared):
        key = grid, block, shared
        config = self._configs.get(key)
        if config is None:
            grid3, block3 = self._core.normalize(grid, block)
            config = self._configs[key] = self._core.launch_config(
                grid=grid3, block=block3, shmem_size=shared)
        return config


class _Launch:
    __slots__ = ("kernel", "grid", "block", "stream", "shared")

    def __init__(self, kernel, grid, block, stream=0, shared=0):
        self.kernel, self.grid, self.block = kernel, grid, block
        self.stream, self.shared = stream, shared

    def __call__(self, *args):
        self.kernel.launch(self.grid, self.block, self.stream, self.shared, args)


class _Call:
    """A prepared kind of call: numba's compiled kernel, cuda.core's handle to
    it, how each argument becomes parameters, and the arrays' numba types it
    was made for (kept, so that the ids in its key stay theirs)."""

    __slots__ = ("kernel", "function", "converters", "array_types")

    def __init__(self, kernel, function, converters, array_types):
        self.kernel, self.function, self.converters = kernel, function, converters
        self.array_types = array_types


_NEW = object()
_INT64 = -(2 ** 63), 2 ** 63
_PLAIN_SCALARS = frozenset({float, bool, np.float32, np.float64, np.int32, np.int64, np.uint32,
                            np.uint64, np.bool_})
_ARRAY_PARAMS = {}  # id(device array) -> its kernel parameters, while it lives
_CORE_STREAMS = {}  # id(numba stream) -> cuda.core's stream, while it lives


def _kind(value):
    """What picks a compiled overload, cheaply: a tuple's kinds, a scalar's
    Python type (an int beyond int64 types differently, so it is its own
    kind), a device array's numba type, which numba-cuda keeps on the array,
    by its id (numba hashes types in Python; a prepared call keeps the types
    it was made for alive, so their ids are not reused)."""
    cls = type(value)
    if cls is tuple:
        return tuple(map(_kind, value))
    if cls is int:
        return int if _INT64[0] <= value < _INT64[1] else (int, "wide")
    if cls in _PLAIN_SCALARS:
        return cls
    kind = getattr(value, "_numba_type_", None)
    return cls if kind is None else id(kind)


def _array_types(args):
    """The numba types :func:`_kind` took the ids of in ``args``."""
    found = []
    for value in args:
        if type(value) is tuple:
            found += _array_types(value)
        elif type(value) not in _PLAIN_SCALARS and hasattr(value, "_numba_type_"):
            found.append(value._numba_type_)
    return found


def _core_stream(core, stream):
    if not stream:  # the default stream, which is not an object that goes away
        return core.to_core_stream(stream)
    return kept(_CORE_STREAMS, stream, lambda: core.to_core_stream(stream))


def _array_params(kernel, ty, array):
    """``array``'s kernel parameters, made by numba's own code once while the
    array lives (a device array's address, shape and strides never change)."""
    def make():
        params = []
        kernel._prepare_args(ty, array, 0, [], params)
        return params
    return kept(_ARRAY_PARAMS, array, make)


def _converter(ty, types):
    """How a value of numba type ``ty`` becomes kernel parameters, as
    numba-cuda's ``_Kernel._prepare_args`` makes them; None for types not
    handled here."""
    if isinstance(ty, types.Array):
        def array(value, params, kernel):
            params.extend(_array_params(kernel, ty, value))
        return array
    if isinstance(ty, types.BaseTuple):
        items = [_converter(t, types) for t in ty]
        if None in items:
            return None

        def items_of(value, params, kernel):
            for convert, item in zip(items, value):
                convert(item, params, kernel)
        return items_of
    make = _scalar_maker(ty, types)
    if make is None:
        return None

    def scalar(value, params, kernel):
        params.append(make(value))
    return scalar


def _scalar_maker(ty, types):
    if isinstance(ty, types.Integer):
        return getattr(ctypes, f"c_{ty}", None)
    if ty == types.float64:
        return ctypes.c_double
    if ty == types.float32:
        return ctypes.c_float
    if ty == types.boolean:
        return _as_is
    return None


def _as_is(value):
    return value


def _on_device(value):
    """Whether ``value`` holds no array but numba's device arrays (numba
    copies a host array to the device at each launch, and back)."""
    if type(value) is tuple:
        return all(map(_on_device, value))
    if isinstance(value, np.ndarray):
        return False
    if hasattr(value, "__cuda_array_interface__"):  # numba's own, or another library's
        return bool(getattr(value, "__cuda_memory__", False)) and hasattr(
            value, "_numba_type_")
    return True

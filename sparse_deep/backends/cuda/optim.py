"""Optimizer updates and the weight-norm cap on the GPU.

Each registered optimizer (:mod:`sparse_deep.core.optimizers`) gets one
kernel, compiled the first time a fit uses it, with the optimizer's ``step``
as a device function: the definition the CPU's loops compile too. One thread
per (row, unit) of the rows being updated, of up to GROUPS parameters in one
launch (a step's weights and biases).
"""

import math

from numba import cuda, float64

from ...core.codes import H_L1, H_L2
from ...core.optimizers import coefficients as coefficients_of
from ...core.optimizers import get_optimizer
from ...core.registry import with_globals
from . import launch
from ._device import regularised_gradient


# Parameters one update launch steps together; a step of more runs several.
GROUPS = 4


def _update_body(params, grads, rows, n_rows, states1, states2, coefficients):
    """The update kernel of the optimizer whose ``step`` and ``n_states``
    :func:`_kernel` binds as globals, over GROUPS parameters at once: thread
    ``idx`` finds its parameter g, then its (row, unit). Each parameter's
    coefficients are a tuple of scalars (an array would be one more copy to
    the device per call)."""
    total = 0
    for g in range(len(params)):
        total += n_rows[g] * params[g].shape[1]
    for idx in range(cuda.grid(1), total, cuda.gridsize(1)):
        g = 0
        start = 0
        while idx >= start + n_rows[g] * params[g].shape[1]:
            start += n_rows[g] * params[g].shape[1]
            g += 1
        param, grad, s1, s2, k = params[g], grads[g], states1[g], states2[g], coefficients[g]
        n = param.shape[1]
        r = (idx - start) // n
        j = idx - start - r * n
        row = rows[g][r]
        w = param[row, j]
        grad_value = regularised_gradient(grad[r, j], w, k[H_L2], k[H_L1])
        a = s1[row, j] if n_states >= 1 else 0.0
        b = s2[row, j] if n_states >= 2 else 0.0
        w, a, b = step(w, grad_value, a, b, k)
        param[row, j] = w
        if n_states >= 1:
            s1[row, j] = a
        if n_states >= 2:
            s2[row, j] = b


_KERNELS = {}  # (optimizer name, fingerprint) -> its kernel


def _kernel(code):
    optimizer = get_optimizer(code)
    key = optimizer.name, optimizer.fingerprint  # computed once per registration
    kernel = _KERNELS.get(key)
    if kernel is None:
        kernel = _KERNELS[key] = cuda.jit(with_globals(
            _update_body, n_states=optimizer.n_states, step=cuda.jit(device=True)(optimizer.step)))
    return kernel


def update_params(steps, code, stream):
    """One optimizer step of each ``(param, grad, rows, n_rows, state1, state2,
    hyper)`` in ``steps`` (the CPU kernel's contract: ``grad[r]`` belongs to
    row ``rows[r]``; states an optimizer does not keep may be one-row dummies
    and are never touched), GROUPS parameters a launch. Parameters whose
    arrays differ in type (dtype, layout) go in separate launches."""
    by_type = {}
    for s in steps:
        if s.n_rows:
            key = tuple((a.dtype, a.ndim, a.is_c_contiguous())
                        for a in (s.param, s.grad, s.rows, s.state1, s.state2))
            by_type.setdefault(key, []).append(s)
    for group in by_type.values():
        for first in range(0, len(group), GROUPS):
            _launch(group[first:first + GROUPS], code, stream)


def _launch(steps, code, stream):
    pad = steps[0]._replace(n_rows=0)  # fills the unused slots; steps nothing
    steps = steps + [pad] * (GROUPS - len(steps))
    total = sum(s.n_rows * s.param.shape[1] for s in steps)
    blocks, threads = launch.elementwise(total)
    fields = list(zip(*steps))
    coefficients = tuple(tuple(float(x) for x in coefficients_of(s.hyper, "float64"))
                         for s in steps)
    _kernel(code)[blocks, threads, stream](
        tuple(fields[0]), tuple(fields[1]), tuple(fields[2]),
        tuple(int(n) for n in fields[3]), tuple(fields[4]), tuple(fields[5]), coefficients)


@cuda.jit
def _cap_column_norms(weights, max_norm):
    n_in = weights.shape[0]
    for j in range(cuda.grid(1), weights.shape[1], cuda.gridsize(1)):
        s = float64(0.0)
        for i in range(n_in):
            s += weights[i, j] * weights[i, j]
        norm = math.sqrt(s)
        if norm > max_norm:
            scale = max_norm / norm
            for i in range(n_in):
                weights[i, j] = float64(weights[i, j]) * scale


def cap_column_norms(weights, max_norm, stream):
    """DSSTNE's WeightNorm: one thread per output unit rescales its column."""
    blocks, threads = launch.elementwise(weights.shape[1])
    _cap_column_norms[blocks, threads, stream](weights, float(max_norm))

"""Optimizer updates over whole parameters or over a list of their rows.

Each registered optimizer (:mod:`sparse_deep.core.optimizers`) gets one
loop, compiled the first time a fit uses it with the optimizer's ``step``
inlined and its coefficients held in locals of the parameter's dtype: this
is what lets LLVM vectorise the inner loop. The kernel tests compare each
loop with a numpy reference of docs/engine.md.
"""

import math

import numpy as np
from numba import njit, prange

from ...core.codes import H_L1, H_L2
from ...core.optimizers import coefficients, get_optimizer
from ...core.registry import with_globals


@njit(inline="always")
def _penalised(g, w, l2, l1):
    """g + l2 * w + l1 * sign(w), in g's dtype (selects, so the loop vectorises)."""
    zero = l1 - l1
    return g + l2 * w + (l1 if w > zero else (-l1 if w < zero else zero))


@njit(inline="always")
def _slot(slots, r):
    """Row of the gradient for the r-th row updated: ``r``, or, given
    ``slots``, ``slots[r]`` (-1: a row no example of the batch touched)."""
    return np.int64(r) if slots.shape[0] == 0 else slots[r]


@njit(inline="always")
def _grad(grad, slot, j, l2, l1, w):
    """Element j of the gradient row ``slot`` (zero if -1), penalised."""
    g = grad[slot, j] if slot >= 0 else l1 - l1
    return _penalised(g, w, l2, l1)


# Element by element on 2-D indices, not through row views: the views made
# each kernel compile twice as long (a second of a user's first fit) and run
# half as fast (Adam on 4,489 x 256: 0.72 ms against 0.37 ms).


def _update_body(param, grad, rows, slots, n_rows, s1, s2, c):
    """The update loop of the optimizer whose ``step`` and ``n_states``
    :func:`_kernel` binds as globals (compile-time constants, so the unused
    state reads fold away)."""
    l2, l1 = c[H_L2], c[H_L1]
    zero = l1 - l1
    for r in prange(n_rows):
        row, slot = rows[r], _slot(slots, r)
        for j in range(param.shape[1]):
            w = param[row, j]
            a = s1[row, j] if n_states >= 1 else zero
            b = s2[row, j] if n_states >= 2 else zero
            w, a, b = step(w, _grad(grad, slot, j, l2, l1, w), a, b, c)
            param[row, j] = w
            if n_states >= 1:
                s1[row, j] = a
            if n_states >= 2:
                s2[row, j] = b


_KERNELS = {}  # (optimizer name, fingerprint) -> its compiled loop


def _kernel(code):
    """The compiled loop of the optimizer ``code``, made on first use.

    Its step and state count are bound as globals, and its name carries the
    step's fingerprint (see :func:`~sparse_deep.core.registry.with_globals`).
    """
    optimizer = get_optimizer(code)
    key = optimizer.name, optimizer.fingerprint  # computed once per registration
    kernel = _KERNELS.get(key)
    if kernel is None:
        body = with_globals(_update_body, f"update_{optimizer.name}_{optimizer.fingerprint}",
                            step=njit(inline="always")(optimizer.step),
                            n_states=optimizer.n_states)
        kernel = _KERNELS[key] = njit(parallel=True, cache=True)(body)
    return kernel


_NO_SLOTS = np.zeros(0, dtype=np.int64)  # gradient row r belongs to rows[r]


def update_rows(param, grad, rows, n_rows, state1, state2, code, hyper):
    """Apply one optimizer step to rows ``rows[:n_rows]`` of ``param``.

    ``grad[r]`` is the gradient of row ``rows[r]``: dense parameters pass every
    row; a lazy (``sparse_input_update``) input layer only the rows of
    features seen in the batch, leaving the others untouched.
    ``hyper`` = (lr, mu, rho, beta1, beta2, eps, c1, c2, l2, l1). States an
    optimizer does not keep may be one-row dummies; they are never touched.
    """
    _kernel(code)(param, grad, rows, _NO_SLOTS, n_rows, state1, state2,
                  coefficients(hyper, param.dtype))


def update_all_rows(param, row_grads, rows, all_rows, slots, state1, state2, code, hyper):
    """One optimizer step for every row of ``param``, where only ``rows`` have
    a gradient (``row_grads[r]`` for ``rows[r]``) and every other row a zero one.

    The same arithmetic as scattering the rows into a zero full-size gradient
    and updating every row, without that gradient: ``slots`` (one int64 per
    row of ``param``, all -1) maps each row to its gradient for the call, and
    is all -1 again on return. ``all_rows`` is ``arange(len(param))``.
    """
    _mark_slots(slots, rows, True)
    try:
        _kernel(code)(param, row_grads, all_rows, slots, param.shape[0], state1, state2,
                      coefficients(hyper, param.dtype))
    finally:
        _mark_slots(slots, rows, False)


@njit(cache=True)
def _mark_slots(slots, rows, mark):
    """``slots[rows[r]] = r`` (``mark``), or back to -1."""
    for r in range(rows.shape[0]):
        slots[rows[r]] = r if mark else -1


@njit(parallel=True, cache=True)
def cap_column_norms(weights, max_norm):
    """DSSTNE's WeightNorm: rescale each output unit's incoming weight vector
    (a column here) whose L2 norm exceeds ``max_norm``."""
    n_in, n_out = weights.shape
    for j in prange(n_out):
        s = 0.0
        for i in range(n_in):
            s += weights[i, j] * weights[i, j]
        norm = math.sqrt(s)
        if norm > max_norm:
            scale = max_norm / norm
            for i in range(n_in):
                weights[i, j] *= scale

"""Optimizer updates over whole parameters or over a list of their rows.

One plain loop per optimizer, with every coefficient computed once per call in
the parameter's dtype: this is what lets LLVM vectorise the inner loop (the
generic per-element step, :func:`sparse_deep.core.scalar.optimizer_step`,
kept as the definition other backends compile, ran 15x slower here). The
kernel tests compare each loop with a numpy reference of docs/engine.md.
"""

import math

import numpy as np
from numba import njit, prange

from ...core.codes import (
    ADADELTA,
    ADAGRAD,
    ADAM,
    C_INV_SQRT_C2,
    C_ONE_MINUS_BETA1,
    C_ONE_MINUS_BETA2,
    C_ONE_MINUS_RHO,
    C_STEP,
    H_BETA1,
    H_BETA2,
    H_C1,
    H_C2,
    H_EPS,
    H_L1,
    H_L2,
    H_LR,
    H_MU,
    H_RHO,
    MOMENTUM,
    NESTEROV,
    RMSPROP,
    SGD,
)


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


@njit(parallel=True, cache=True)
def _sgd(param, grad, rows, slots, n_rows, s1, s2, c):
    lr, l2, l1 = c[H_LR], c[H_L2], c[H_L1]
    for r in prange(n_rows):
        row, slot = rows[r], _slot(slots, r)
        for j in range(param.shape[1]):
            param[row, j] -= lr * _grad(grad, slot, j, l2, l1, param[row, j])


@njit(parallel=True, cache=True)
def _momentum(param, grad, rows, slots, n_rows, s1, s2, c):
    lr, mu, l2, l1 = c[H_LR], c[H_MU], c[H_L2], c[H_L1]
    for r in prange(n_rows):
        row, slot = rows[r], _slot(slots, r)
        for j in range(param.shape[1]):
            vj = mu * s1[row, j] - lr * _grad(grad, slot, j, l2, l1, param[row, j])
            s1[row, j] = vj
            param[row, j] += vj


@njit(parallel=True, cache=True)
def _nesterov(param, grad, rows, slots, n_rows, s1, s2, c):
    lr, mu, l2, l1 = c[H_LR], c[H_MU], c[H_L2], c[H_L1]
    for r in prange(n_rows):
        row, slot = rows[r], _slot(slots, r)
        for j in range(param.shape[1]):
            old = s1[row, j]
            vj = mu * old - lr * _grad(grad, slot, j, l2, l1, param[row, j])
            s1[row, j] = vj
            param[row, j] += vj + mu * (vj - old)


@njit(parallel=True, cache=True)
def _adagrad(param, grad, rows, slots, n_rows, s1, s2, c):
    lr, eps, l2, l1 = c[H_LR], c[H_EPS], c[H_L2], c[H_L1]
    for r in prange(n_rows):
        row, slot = rows[r], _slot(slots, r)
        for j in range(param.shape[1]):
            gj = _grad(grad, slot, j, l2, l1, param[row, j])
            sj = s1[row, j] + gj * gj
            s1[row, j] = sj
            param[row, j] -= lr * gj / (np.sqrt(sj) + eps)


@njit(parallel=True, cache=True)
def _rmsprop(param, grad, rows, slots, n_rows, s1, s2, c):
    lr, rho, one_minus_rho = c[H_LR], c[H_RHO], c[C_ONE_MINUS_RHO]
    eps, l2, l1 = c[H_EPS], c[H_L2], c[H_L1]
    for r in prange(n_rows):
        row, slot = rows[r], _slot(slots, r)
        for j in range(param.shape[1]):
            gj = _grad(grad, slot, j, l2, l1, param[row, j])
            sj = rho * s1[row, j] + one_minus_rho * gj * gj
            s1[row, j] = sj
            param[row, j] -= lr * gj / (np.sqrt(sj) + eps)


@njit(parallel=True, cache=True)
def _adadelta(param, grad, rows, slots, n_rows, s1, s2, c):
    rho, one_minus_rho, eps, l2, l1 = c[H_RHO], c[C_ONE_MINUS_RHO], c[H_EPS], c[H_L2], c[H_L1]
    for r in prange(n_rows):
        row, slot = rows[r], _slot(slots, r)
        for j in range(param.shape[1]):
            gj = _grad(grad, slot, j, l2, l1, param[row, j])
            sj = rho * s1[row, j] + one_minus_rho * gj * gj
            dx = -np.sqrt(s2[row, j] + eps) / np.sqrt(sj + eps) * gj
            s1[row, j] = sj
            s2[row, j] = rho * s2[row, j] + one_minus_rho * dx * dx
            param[row, j] += dx


@njit(parallel=True, cache=True)
def _adam(param, grad, rows, slots, n_rows, s1, s2, c):
    beta1, beta2, eps, l2, l1 = c[H_BETA1], c[H_BETA2], c[H_EPS], c[H_L2], c[H_L1]
    one_minus_b1, one_minus_b2 = c[C_ONE_MINUS_BETA1], c[C_ONE_MINUS_BETA2]
    step, inv_sqrt_c2 = c[C_STEP], c[C_INV_SQRT_C2]
    for r in prange(n_rows):
        row, slot = rows[r], _slot(slots, r)
        for j in range(param.shape[1]):
            gj = _grad(grad, slot, j, l2, l1, param[row, j])
            mj = beta1 * s1[row, j] + one_minus_b1 * gj
            vj = beta2 * s2[row, j] + one_minus_b2 * gj * gj
            s1[row, j] = mj
            s2[row, j] = vj
            param[row, j] -= step * mj / (np.sqrt(vj) * inv_sqrt_c2 + eps)


_NO_SLOTS = np.zeros(0, dtype=np.int64)  # gradient row r belongs to rows[r]

_KERNELS = {SGD: _sgd, MOMENTUM: _momentum, NESTEROV: _nesterov, ADAGRAD: _adagrad,
            RMSPROP: _rmsprop, ADADELTA: _adadelta, ADAM: _adam}


def coefficients(hyper, dtype):
    """``hyper`` (positions H_* of core/codes.py) plus the derived constants the
    loops use (C_*), computed in float64 and cast once to ``dtype``."""
    c = np.empty(C_INV_SQRT_C2 + 1, dtype=np.float64)
    c[:H_L1 + 1] = hyper
    c[C_ONE_MINUS_RHO] = 1.0 - c[H_RHO]
    c[C_ONE_MINUS_BETA1] = 1.0 - c[H_BETA1]
    c[C_ONE_MINUS_BETA2] = 1.0 - c[H_BETA2]
    c[C_STEP] = c[H_LR] / c[H_C1]
    c[C_INV_SQRT_C2] = 1.0 / math.sqrt(c[H_C2])
    return c.astype(dtype)


def update_rows(param, grad, rows, n_rows, state1, state2, code, hyper):
    """Apply one optimizer step to rows ``rows[:n_rows]`` of ``param``.

    ``grad[r]`` is the gradient of row ``rows[r]``: dense parameters pass every
    row; a lazy (``sparse_input_update``) input layer only the rows of
    features seen in the batch, leaving the others untouched.
    ``hyper`` = (lr, mu, rho, beta1, beta2, eps, c1, c2, l2, l1). States an
    optimizer does not keep may be one-row dummies; they are never touched.
    """
    _KERNELS[code](param, grad, rows, _NO_SLOTS, n_rows, state1, state2,
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
        _KERNELS[code](param, row_grads, all_rows, slots, param.shape[0], state1, state2,
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

"""Optimizer updates over whole parameters or over a list of their rows."""

import math

from numba import njit, prange

from ...engine.codes import OPTIMIZER_CODES
from ._scalar import optimizer_step, regularised_gradient


def _make_update_rows(code):
    # One kernel per optimizer: ``code`` is a compile-time constant inside, so
    # the optimizer's branch folds away and the inner loop vectorises.
    @njit(parallel=True, cache=True)
    def update_rows(param, grad, rows, n_rows, state1, state2, hyper):
        lr, mu, rho, beta1, beta2, eps, c1, c2, l2, l1 = (
            hyper[0], hyper[1], hyper[2], hyper[3], hyper[4],
            hyper[5], hyper[6], hyper[7], hyper[8], hyper[9],
        )
        n_cols = param.shape[1]
        # Optimizers without a state get a one-row dummy array in its place.
        full1 = state1.shape[0] == param.shape[0]
        full2 = state2.shape[0] == param.shape[0]
        for r in prange(n_rows):
            row = rows[r]
            w, g = param[row], grad[r]
            s1 = state1[row if full1 else 0]
            s2 = state2[row if full2 else 0]
            for j in range(n_cols):
                gj = regularised_gradient(g[j], w[j], l2, l1)
                w[j], s1[j], s2[j] = optimizer_step(
                    code, w[j], gj, s1[j], s2[j], lr, mu, rho, beta1, beta2, eps, c1, c2
                )

    return update_rows


_UPDATE_KERNELS = {code: _make_update_rows(code) for code in OPTIMIZER_CODES.values()}


def update_rows(param, grad, rows, n_rows, state1, state2, code, hyper):
    """Apply one optimizer step to rows ``rows[:n_rows]`` of ``param``.

    ``grad[r]`` is the gradient of row ``rows[r]``: dense parameters pass every
    row, the sparse input layer only the rows of features seen in the batch
    (a "lazy" update, as in sparse Adam: unseen rows are left untouched).
    ``hyper`` = (lr, mu, rho, beta1, beta2, eps, c1, c2, l2, l1).
    """
    _UPDATE_KERNELS[code](param, grad, rows, n_rows, state1, state2, hyper)


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

"""Kernels of a sampled output layer: the scores, losses and gradients of each
row's target items and of the step's shared negatives.

The layer's weight is item-major (one row of ``d`` weights per item, see
``engine/model.py:is_item_major``), so every kernel reads and writes whole
rows of the items a step touches and nothing in proportion to the catalogue.
Rows are summed by one thread each, in a fixed order: the results are the
same on every run and for any number of threads. docs/engine.md gives the
maths ("Sampled output layers").
"""

import math

import numpy as np
from numba import njit, prange

from ...core.codes import COSINE_CONTRASTIVE
from ._scalar import bpr_pair, sampled_negative, sampled_positive
from .dense import specialise

# Norms below this count as this (cosine scores of an all-zero vector are 0).
NORM_FLOOR = 1e-12

_KERNELS = {}  # (body, constants) -> its compiled kernel


def _specialised(body, **constants):
    """``body`` compiled as a parallel kernel with ``constants`` bound as
    globals, on first use: the branches of the other values fold away before
    compiling, which takes 0.1 s off a user's first fit per kernel (see the
    package's note). Cached under a name that carries the values."""
    key = body, tuple(sorted(constants.items()))
    kernel = _KERNELS.get(key)
    if kernel is None:
        name = body.__name__.lstrip("_") + "".join(f"_{k}_{v}" for k, v in key[1])
        kernel = _KERNELS[key] = specialise(body, name, fastmath=False, **constants)
    return kernel


@njit(cache=True)
def touched_rows(t_indptr, t_indices, neg_ids, slot, rows, neg_slot, g_indptr, g_entries):
    """The compact set of weight rows a step touches, and who touches them.

    ``rows[:n_rows]`` lists the items of the batch's targets in order of first
    appearance, then the negatives that are not among them; ``neg_slot[j]``
    is negative j's place in that list. For each target item ``u < n_pos``,
    ``g_entries[g_indptr[u]:g_indptr[u + 1]]`` are the target entries that
    hold it, in entry order. ``slot`` (one int per item, all -1) is scratch
    and is all -1 again on return. Returns ``(n_rows, n_pos)``.
    """
    nnz = t_indptr[t_indptr.shape[0] - 1]
    n_rows = 0
    for e in range(nnz):
        item = t_indices[e]
        if slot[item] < 0:
            slot[item] = n_rows
            rows[n_rows] = item
            g_indptr[n_rows + 1] = 0
            n_rows += 1
        g_indptr[slot[item] + 1] += 1
    n_pos = n_rows
    g_indptr[0] = 0
    for u in range(n_pos):
        g_indptr[u + 1] += g_indptr[u]
    fill = g_indptr[:n_pos].copy()
    for e in range(nnz):
        u = slot[t_indices[e]]
        g_entries[fill[u]] = e
        fill[u] += 1
    for j in range(neg_ids.shape[0]):
        item = neg_ids[j]
        if slot[item] < 0:
            slot[item] = n_rows
            rows[n_rows] = item
            n_rows += 1
        neg_slot[j] = slot[item]
    for u in range(n_rows):
        slot[rows[u]] = -1
    return n_rows, n_pos


@njit(parallel=True, cache=True)
def gather_rows_dense(source, ids, out):
    """``out[j] = source[ids[j]]``."""
    # Element by element: a row assignment compiles numba's array-setitem
    # machinery, about a second of a user's first fit.
    for j in prange(ids.shape[0]):
        row = ids[j]
        for k in range(out.shape[1]):
            out[j, k] = source[row, k]


@njit(parallel=True, cache=True)
def gather_unit_rows(source, ids, out, norms):
    """``out[j] = source[ids[j]] / |source[ids[j]]|`` and ``norms[j]`` that norm
    (floored at NORM_FLOOR): :func:`gather_rows_dense` and
    :func:`normalize_rows` in one parallel pass over the negatives' rows."""
    for j in prange(ids.shape[0]):
        _unit_row(source, ids[j], out, j, norms)


@njit(cache=True)
def normalize_rows(x, out, norms):
    """``out[r] = x[r] / |x[r]|`` and ``norms[r] = |x[r]|`` (floored at NORM_FLOOR).
    On one thread (a batch's hidden rows; see the package's note)."""
    for r in range(x.shape[0]):
        _unit_row(x, r, out, r, norms)


@njit(inline="always")
def _unit_row(x, r, out, j, norms):
    """``out[j] = x[r] / |x[r]|`` and ``norms[j]`` that norm (floored at NORM_FLOOR)."""
    s = 0.0
    for k in range(x.shape[1]):
        s += x[r, k] * x[r, k]
    norm = max(math.sqrt(s), NORM_FLOOR)
    norms[j] = norm
    inv = 1.0 / norm
    for k in range(x.shape[1]):
        out[j, k] = x[r, k] * inv


def positive_scores(h, t_indptr, t_indices, weights, bias, cosine, out):
    """Score of every target entry: ``h[r] . w[i] + bias[i]``, or with
    ``cosine`` the cosine (``h`` is then already row-normalised)."""
    _specialised(_positive_scores, COSINE=bool(cosine))(h, t_indptr, t_indices, weights, bias,
                                                        out)


def _positive_scores(h, t_indptr, t_indices, weights, bias, out):
    """:func:`positive_scores`, for the value of ``COSINE`` bound as a global."""
    d = h.shape[1]
    for r in prange(t_indptr.shape[0] - 1):
        for e in range(t_indptr[r], t_indptr[r + 1]):
            item = t_indices[e]
            w = weights[item]
            dot = 0.0
            ww = 0.0
            for k in range(d):
                dot += h[r, k] * w[k]
                if COSINE:
                    ww += w[k] * w[k]
            if COSINE:
                out[e] = dot / max(math.sqrt(ww), NORM_FLOOR)
            else:
                out[e] = dot + bias[item]


@njit(parallel=True, cache=True)
def negative_logsumexp(z_neg, corrections, inv_tau, stats):
    """Each row's ``(max, sum exp(x - max))`` of ``x_j = z_j / tau - corrections[j]``
    over its negatives, in float64, into ``stats[:, 0:2]``."""
    for r in prange(z_neg.shape[0]):
        m = -np.inf
        for j in range(z_neg.shape[1]):
            x = z_neg[r, j] * inv_tau - corrections[j]
            if x > m:
                m = x
        s = 0.0
        for j in range(z_neg.shape[1]):
            s += math.exp(z_neg[r, j] * inv_tau - corrections[j] - m)
        stats[r, 0] = m
        stats[r, 1] = s


@njit(cache=True)
def positive_pass(err, z_pos, t_indptr, t_data, anchors, inv_tau, row_scale, d_pos, row_error,
                  pulls):
    """The targets' part of a sampled loss (SampledSoftmax, CosineContrastive).

    ``z_pos`` are the targets' scores (dot or cosine), the logits ``z / tau``;
    each target's term is weighted by its value (1 for an interaction).
    ``anchors[r]`` is SampledSoftmax's log-sum-exp over the row's negatives
    (every rank's). ``row_scale[r]`` (the row's loss weight over the batch
    size) multiplies the gradients ``d_pos``. Writes each row's error
    (unscaled) and its ``pull``: the sum over its targets of weight *
    |dE/dz|, which :func:`negative_pass` spreads over the negatives (summed
    over ranks first, in a sharded layer).

    On one thread (a scalar per target entry; see the package's note).
    """
    for r in range(t_indptr.shape[0] - 1):
        lo, hi = t_indptr[r], t_indptr[r + 1]
        scale = row_scale[r]
        error = 0.0
        pull = 0.0
        for e in range(lo, hi):
            weight = t_data[e]
            loss, g = sampled_positive(err, z_pos[e] * inv_tau, anchors[r])
            error += weight * loss
            pull -= weight * g
            d_pos[e] = weight * g * inv_tau * scale
        row_error[r] = error
        pulls[r] = pull


@njit(parallel=True, cache=True)
def negative_pass(err, z_neg, corrections, anchors, pulls, inv_tau, margin, neg_scale,
                  row_scale, d_neg, row_error):
    """The negatives' part of a sampled loss: their gradients ``d_neg`` (rows
    x negatives), and CosineContrastive's error added to ``row_error``.

    SampledSoftmax: negative j of row r gets ``pull[r] * share_j / tau``, its
    share of the row's corrected exponential sum. CosineContrastive: every
    target brings the row's negatives' hinge terms (``pull[r]``, the targets'
    summed weight, times ``neg_scale``: NegativeWeight / M, M the negatives
    over all ranks).
    """
    for r in prange(z_neg.shape[0]):
        scale = row_scale[r]
        pull = pulls[r]
        error = 0.0
        for j in range(z_neg.shape[1]):
            loss, g = sampled_negative(err, z_neg[r, j] * inv_tau, anchors[r], corrections[j],
                                       margin)
            if err == COSINE_CONTRASTIVE:
                error += pull * neg_scale * loss
                d_neg[r, j] = pull * neg_scale * g * scale
            else:
                d_neg[r, j] = pull * g * inv_tau * scale
        row_error[r] += error


@njit(parallel=True, cache=True)
def bpr_pass(z_pos, t_indptr, t_data, z_neg, inv_tau, neg_scale, row_scale, d_pos, d_neg,
             row_error):
    """BPR over every (target, negative) pair of each row: errors and both
    gradients (``neg_scale`` is 1 / M). Every pair is on one process: BPR is
    not split over ranks."""
    n_neg = z_neg.shape[1]
    for r in prange(t_indptr.shape[0] - 1):
        lo, hi = t_indptr[r], t_indptr[r + 1]
        scale = row_scale[r]
        error = 0.0
        for j in range(n_neg):
            d_neg[r, j] = 0.0
        for e in range(lo, hi):
            weight = t_data[e] * neg_scale
            g_pos = 0.0
            for j in range(n_neg):
                loss, g = bpr_pair(z_neg[r, j] * inv_tau, z_pos[e] * inv_tau)
                error += weight * loss
                g_pos -= g
                d_neg[r, j] += weight * g * inv_tau * scale
            d_pos[e] = weight * g_pos * inv_tau * scale
        row_error[r] = error


def add_positive_deltas(d_pos, t_indptr, t_indices, weights, cosine, dh):
    """``dh[r] += sum_e d_pos[e] * w[i_e]`` over row r's target entries (with
    ``cosine``, the unit vectors ``w / |w|``)."""
    _specialised(_add_positive_deltas, COSINE=bool(cosine))(d_pos, t_indptr, t_indices, weights,
                                                            dh)


def _add_positive_deltas(d_pos, t_indptr, t_indices, weights, dh):
    """:func:`add_positive_deltas`, for the value of ``COSINE`` bound as a global."""
    d = dh.shape[1]
    for r in prange(t_indptr.shape[0] - 1):
        for e in range(t_indptr[r], t_indptr[r + 1]):
            w = weights[t_indices[e]]
            scale = d_pos[e]
            if COSINE:
                ww = 0.0
                for k in range(d):
                    ww += w[k] * w[k]
                scale = scale / max(math.sqrt(ww), NORM_FLOOR)
            for k in range(d):
                dh[r, k] += scale * w[k]


@njit(parallel=True, cache=True)
def compact_gradient(d_pos, t_indptr, g_indptr, g_entries, n_pos, h, d_negatives, neg_slot,
                     grad):
    """The gradient of every touched weight row, one compact row each.

    Target items (``u < n_pos``): ``sum_e d_pos[e] * h[row(e)]`` over their
    entries; then each negative j adds its row ``d_negatives[j]`` (that of
    ``d_neg.T @ h``) to ``grad[neg_slot[j]]``, in j order.
    """
    d = h.shape[1]
    n_rows = t_indptr.shape[0] - 1
    nnz = t_indptr[n_rows]
    # One parallel loop, over the rows (see the package's note).
    entry_row = np.empty(nnz, np.int64)
    for r in range(n_rows):
        for e in range(t_indptr[r], t_indptr[r + 1]):
            entry_row[e] = r
    for u in prange(grad.shape[0]):
        g = grad[u]
        for k in range(d):
            g[k] = 0.0
        if u >= n_pos:
            continue
        for q in range(g_indptr[u], g_indptr[u + 1]):
            e = g_entries[q]
            v = d_pos[e]
            row = h[entry_row[e]]
            for k in range(d):
                g[k] += v * row[k]
    for j in range(neg_slot.shape[0]):
        g = grad[neg_slot[j]]
        src = d_negatives[j]
        for k in range(d):
            g[k] += src[k]


@njit(parallel=True, cache=True)
def project_out_radial(grad, vectors, ids, norms_floor):
    """The chain rule of normalisation, row by row: ``grad[u]`` holds dE/d(x/|x|)
    for ``x = vectors[ids[u]]``; it becomes dE/dx = ``(g - (g . x^) x^) / |x|``."""
    d = grad.shape[1]
    for u in prange(grad.shape[0]):
        x = vectors[ids[u]]
        s = 0.0
        for k in range(d):
            s += x[k] * x[k]
        norm = max(math.sqrt(s), norms_floor)
        inv = 1.0 / norm
        dot = 0.0
        for k in range(d):
            dot += grad[u, k] * x[k] * inv
        for k in range(d):
            grad[u, k] = (grad[u, k] - dot * x[k] * inv) * inv


@njit(cache=True)
def project_hidden(dh_unit, h_unit, norms, dh, accumulate):
    """``dh (+)= (g - (g . h^) h^) / |h|`` for ``g = dh_unit`` (dE/d(h/|h|)), on
    one thread (a batch's hidden rows; see the package's note)."""
    d = dh.shape[1]
    for r in range(dh.shape[0]):
        dot = 0.0
        for k in range(d):
            dot += dh_unit[r, k] * h_unit[r, k]
        inv = 1.0 / norms[r]
        for k in range(d):
            v = (dh_unit[r, k] - dot * h_unit[r, k]) * inv
            if accumulate:
                dh[r, k] += v
            else:
                dh[r, k] = v


@njit(parallel=True, cache=True)
def compact_bias_gradient(d_pos, g_indptr, g_entries, n_pos, d_neg, neg_slot, grad):
    """Output-bias gradient of every touched row: the targets' ``d_pos`` summed
    per item, plus each negative's column sum of ``d_neg`` (in row order)."""
    for u in range(grad.shape[0]):
        s = 0.0
        if u < n_pos:
            for q in range(g_indptr[u], g_indptr[u + 1]):
                s += d_pos[g_entries[q]]
        grad[u] = s
    sums = np.zeros(d_neg.shape[1], d_neg.dtype)
    for j in prange(d_neg.shape[1]):
        s = 0.0
        for r in range(d_neg.shape[0]):
            s += d_neg[r, j]
        sums[j] = s
    for j in range(neg_slot.shape[0]):
        grad[neg_slot[j]] += sums[j]


@njit(parallel=True, cache=True)
def add_row_bias(z, bias, ids):
    """``z[r, j] += bias[ids[j]]``."""
    for r in prange(z.shape[0]):
        for j in range(z.shape[1]):
            z[r, j] += bias[ids[j]]


@njit(parallel=True, cache=True)
def scale_columns(z, scales):
    """``z[r, j] *= scales[j]`` (inference: cosine scores and the temperature)."""
    for r in prange(z.shape[0]):
        for j in range(z.shape[1]):
            z[r, j] *= scales[j]


@njit(parallel=True, cache=True)
def row_norms(x, out):
    """``out[r] = max(|x[r]|, NORM_FLOOR)``."""
    for r in prange(x.shape[0]):
        s = 0.0
        for k in range(x.shape[1]):
            s += x[r, k] * x[r, k]
        out[r] = max(math.sqrt(s), NORM_FLOOR)


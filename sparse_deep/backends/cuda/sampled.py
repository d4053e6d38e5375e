"""CUDA kernels of a sampled output layer (the CPU's ``backends/cpu/sampled.py``).

Each output is computed by one thread in a fixed order, as on the CPU, so
results repeat exactly; no float atomics. The grouping of the batch's target
entries by item (``touched_rows``) is done on the host, where the batch is
prepared, so that the host knows how many rows each kernel covers.
"""

import math

from numba import cuda

from ...core.codes import COSINE_CONTRASTIVE, SAMPLED_SOFTMAX
from . import launch, prepared
from ._device import bpr_pair, first_at_least, row_of, sampled_negative, sampled_positive

NORM_FLOOR = 1e-12


@cuda.jit(device=True)
def _norm(sum_of_squares):
    """``sqrt(sum_of_squares)`` floored at NORM_FLOOR (a conditional: numba's
    CUDA target fails on two-argument max, numba issue #10753)."""
    norm = math.sqrt(sum_of_squares)
    return norm if norm > NORM_FLOOR else NORM_FLOOR


@prepared.jit
def _gather_rows_dense(source, ids, out):
    n, d = out.shape
    for p in range(cuda.grid(1), n * d, cuda.gridsize(1)):
        j, k = p // d, p % d
        out[j, k] = source[ids[j], k]


def gather_rows_dense(source, ids, out, stream):
    if out.size:
        _gather_rows_dense[launch.elementwise(out.size) + (stream,)](source, ids, out)


@cuda.jit(device=True)
def _unit_row(x, row, out, r, norms):
    """``out[r] = x[row] / |x[row]|``, ``norms[r] = |x[row]|``."""
    s = 0.0
    for k in range(x.shape[1]):
        s += x[row, k] * x[row, k]
    norm = _norm(s)
    norms[r] = norm
    inv = 1.0 / norm
    for k in range(x.shape[1]):
        out[r, k] = x[row, k] * inv


@prepared.jit
def _normalize_rows(x, out, norms):
    for r in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        _unit_row(x, r, out, r, norms)


@prepared.jit
def _unit_operands(h, h_unit, h_norms, source, ids, out, norms):
    """The negatives' unit rows, then the batch's, in one launch."""
    m = ids.shape[0]
    for i in range(cuda.grid(1), m + h.shape[0], cuda.gridsize(1)):
        if i < m:
            _unit_row(source, ids[i], out, i, norms)
        else:
            _unit_row(h, i - m, h_unit, i - m, h_norms)


def unit_operands(h, h_unit, h_norms, source, ids, out, norms, stream):
    n = ids.shape[0] + h.shape[0]
    if n:
        _unit_operands[launch.elementwise(n) + (stream,)](h, h_unit, h_norms, source, ids, out,
                                                          norms)


def normalize_rows(x, out, norms, stream):
    if x.shape[0]:
        _normalize_rows[launch.elementwise(x.shape[0]) + (stream,)](x, out, norms)


@prepared.jit
def _row_norms(x, out):
    for r in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        s = 0.0
        for k in range(x.shape[1]):
            s += x[r, k] * x[r, k]
        out[r] = _norm(s)


def row_norms(x, out, stream):
    if x.shape[0]:
        _row_norms[launch.elementwise(x.shape[0]) + (stream,)](x, out)


@prepared.jit
def _reciprocal_scaled(x, factor):
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        x[i] = 1.0 / (x[i] * factor)


def reciprocal_scaled(x, factor, stream):
    if x.shape[0]:
        _reciprocal_scaled[launch.elementwise(x.shape[0]) + (stream,)](x, factor)


@cuda.jit(device=True)
def _positive_score(h, r, item, weights, bias, cosine):
    dot = 0.0
    ww = 0.0
    for k in range(h.shape[1]):
        w = weights[item, k]
        dot += h[r, k] * w
        ww += w * w
    if cosine:
        return dot / _norm(ww)
    return dot + bias[item]


@prepared.jit
def _positive_scores(h, t_indptr, n_rows, t_indices, weights, bias, cosine, out):
    for e in range(cuda.grid(1), t_indptr[n_rows], cuda.gridsize(1)):
        out[e] = _positive_score(h, row_of(t_indptr, n_rows, e), t_indices[e], weights, bias,
                                 cosine)


def positive_scores(h, t_indptr, t_indices, weights, bias, cosine, out, stream):
    capacity = t_indices.shape[0]
    _positive_scores[launch.elementwise(capacity) + (stream,)](
        h, t_indptr, t_indptr.shape[0] - 1, t_indices, weights, bias, cosine, out)


@prepared.jit
def _add_row_bias(z, bias, ids):
    n, m = z.shape
    for p in range(cuda.grid(1), n * m, cuda.gridsize(1)):
        r, j = p // m, p % m
        z[r, j] += bias[ids[j]]


def add_row_bias(z, bias, ids, stream):
    if z.size:
        _add_row_bias[launch.elementwise(z.size) + (stream,)](z, bias, ids)


@prepared.jit
def _scale_columns(z, scales):
    n, m = z.shape
    for p in range(cuda.grid(1), n * m, cuda.gridsize(1)):
        r, j = p // m, p % m
        z[r, j] *= scales[j]


def scale_columns(z, scales, stream):
    if z.size:
        _scale_columns[launch.elementwise(z.size) + (stream,)](z, scales)


@cuda.jit(device=True)
def _row_logsumexp(z_neg, r, corrections, inv_tau, stats, anchors):
    m = -math.inf
    for j in range(z_neg.shape[1]):
        x = z_neg[r, j] * inv_tau - corrections[j]
        if x > m:
            m = x
    s = 0.0
    for j in range(z_neg.shape[1]):
        s += math.exp(z_neg[r, j] * inv_tau - corrections[j] - m)
    stats[r, 0] = m
    stats[r, 1] = s
    if anchors.shape[0] > 0:  # one process's anchors, written here: no copy to the host
        anchors[r] = m + math.log(s) if s > 0.0 else -math.inf


@prepared.jit
def _negative_logsumexp(z_neg, corrections, inv_tau, stats, anchors):
    for r in range(cuda.grid(1), z_neg.shape[0], cuda.gridsize(1)):
        _row_logsumexp(z_neg, r, corrections, inv_tau, stats, anchors)


def negative_logsumexp(z_neg, corrections, inv_tau, stats, anchors, stream):
    """``anchors``: empty, or one float64 per row to receive its log-sum-exp."""
    if z_neg.shape[0]:
        _negative_logsumexp[launch.elementwise(z_neg.shape[0]) + (stream,)](
            z_neg, corrections, inv_tau, stats, anchors)


@cuda.jit(device=True)
def _positive_row(err, z_pos, t_indptr, r, t_data, anchors, inv_tau, row_scale, d_pos,
                  row_error, pulls):
    scale = row_scale[r]
    error = 0.0
    pull = 0.0
    for e in range(t_indptr[r], t_indptr[r + 1]):
        weight = t_data[e]
        loss, g = sampled_positive(err, z_pos[e] * inv_tau, anchors[r])
        error += weight * loss
        pull -= weight * g
        d_pos[e] = weight * g * inv_tau * scale
    row_error[r] = error
    pulls[r] = pull


@prepared.jit
def _positive_pass(err, z_pos, t_indptr, n_rows, t_data, anchors, inv_tau, row_scale, d_pos,
                   row_error, pulls):
    for r in range(cuda.grid(1), n_rows, cuda.gridsize(1)):
        _positive_row(err, z_pos, t_indptr, r, t_data, anchors, inv_tau, row_scale, d_pos,
                      row_error, pulls)


def positive_pass(err, z_pos, t_indptr, t_data, anchors, inv_tau, row_scale, d_pos, row_error,
                  pulls, stream):
    n_rows = t_indptr.shape[0] - 1
    if n_rows:
        _positive_pass[launch.elementwise(n_rows) + (stream,)](
            err, z_pos, t_indptr, n_rows, t_data, anchors, inv_tau, row_scale, d_pos, row_error,
            pulls)


@cuda.jit(device=True)
def _negative_row(err, z_neg, r, corrections, anchors, pulls, inv_tau, margin, neg_scale,
                  row_scale, d_neg, row_error):
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


@prepared.jit
def _negative_pass(err, z_neg, corrections, anchors, pulls, inv_tau, margin, neg_scale,
                   row_scale, d_neg, row_error):
    for r in range(cuda.grid(1), z_neg.shape[0], cuda.gridsize(1)):
        _negative_row(err, z_neg, r, corrections, anchors, pulls, inv_tau, margin, neg_scale,
                      row_scale, d_neg, row_error)


def negative_pass(err, z_neg, corrections, anchors, pulls, inv_tau, margin, neg_scale, row_scale,
                  d_neg, row_error, stream):
    if z_neg.shape[0]:
        _negative_pass[launch.elementwise(z_neg.shape[0]) + (stream,)](
            err, z_neg, corrections, anchors, pulls, inv_tau, margin, neg_scale, row_scale,
            d_neg, row_error)


@prepared.jit
def _sampled_rows(err, h, t_indptr, n_rows, t_indices, t_data, weights, bias, cosine, z_pos,
                  z_neg, corrections, inv_tau, margin, neg_scale, row_scale, stats, anchors,
                  d_pos, d_neg, row_error, pulls):
    """A row's targets' scores, anchor, positive and negative pass: each is
    row-local, so one thread takes a row through all four."""
    for r in range(cuda.grid(1), n_rows, cuda.gridsize(1)):
        for e in range(t_indptr[r], t_indptr[r + 1]):
            z_pos[e] = _positive_score(h, r, t_indices[e], weights, bias, cosine)
        if err == SAMPLED_SOFTMAX:
            _row_logsumexp(z_neg, r, corrections, inv_tau, stats, anchors)
        _positive_row(err, z_pos, t_indptr, r, t_data, anchors, inv_tau, row_scale, d_pos,
                      row_error, pulls)
        _negative_row(err, z_neg, r, corrections, anchors, pulls, inv_tau, margin, neg_scale,
                      row_scale, d_neg, row_error)


def sampled_rows(err, h, t_indptr, t_indices, t_data, weights, bias, cosine, z_pos, z_neg,
                 corrections, inv_tau, margin, neg_scale, row_scale, stats, anchors, d_pos, d_neg,
                 row_error, pulls, stream):
    n_rows = t_indptr.shape[0] - 1
    if n_rows:
        _sampled_rows[launch.elementwise(n_rows) + (stream,)](
            err, h, t_indptr, n_rows, t_indices, t_data, weights, bias, cosine, z_pos, z_neg,
            corrections, inv_tau, margin, neg_scale, row_scale, stats, anchors, d_pos, d_neg,
            row_error, pulls)


@prepared.jit
def _bpr_pass(z_pos, t_indptr, n_rows, t_data, z_neg, inv_tau, neg_scale, row_scale, d_pos,
              d_neg, row_error):
    n_neg = z_neg.shape[1]
    for r in range(cuda.grid(1), n_rows, cuda.gridsize(1)):
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


def bpr_pass(z_pos, t_indptr, t_data, z_neg, inv_tau, neg_scale, row_scale, d_pos, d_neg,
             row_error, stream):
    n_rows = t_indptr.shape[0] - 1
    if n_rows:
        _bpr_pass[launch.elementwise(n_rows) + (stream,)](
            z_pos, t_indptr, n_rows, t_data, z_neg, inv_tau, neg_scale, row_scale, d_pos, d_neg,
            row_error)


@prepared.jit
def _positive_deltas(d_pos, t_indptr, n_rows, t_indices, weights, cosine, dh, entry_norms, into,
                     h_unit, norms, target, accumulate):
    """Row by row: ``dh[r] += sum_e d_pos[e] w[item_e]`` (``w`` over its norm
    with cosine scores, each norm computed once into ``entry_norms``), then,
    with ``into``, the row's delta into ``target`` (``_into_hidden_row``)."""
    d = dh.shape[1]
    for r in range(cuda.grid(1), n_rows, cuda.gridsize(1)):
        lo, hi = t_indptr[r], t_indptr[r + 1]
        if cosine:
            for e in range(lo, hi):
                ww = 0.0
                for q in range(d):
                    ww += weights[t_indices[e], q] * weights[t_indices[e], q]
                entry_norms[e] = _norm(ww)
        for k in range(d):
            total = dh[r, k]
            for e in range(lo, hi):
                scale = d_pos[e]
                if cosine:
                    scale = scale / entry_norms[e]
                total += scale * weights[t_indices[e], k]
            dh[r, k] = total
        if into:
            _into_hidden_row(dh, r, cosine, h_unit, norms, target, accumulate)


@cuda.jit(device=True)
def _into_hidden_row(dh, r, cosine, h_unit, norms, target, accumulate):
    """``target[r] (+)= dh[r]``, projected off ``h_unit[r]`` and over the
    norm with cosine scores (dh is then dE/d(h/|h|))."""
    d = dh.shape[1]
    dot = 0.0
    inv = 1.0
    if cosine:
        for k in range(d):
            dot += dh[r, k] * h_unit[r, k]
        inv = 1.0 / norms[r]
    for k in range(d):
        v = (dh[r, k] - dot * h_unit[r, k]) * inv if cosine else dh[r, k]
        if accumulate:
            target[r, k] += v
        else:
            target[r, k] = v


def positive_deltas(d_pos, t_indptr, t_indices, weights, cosine, dh, entry_norms, stream,
                    into=None, accumulate=False):
    """``dh += `` the targets' share; with ``into = (h_unit, norms, target)``
    the rows then go into the hidden delta ``target`` in the same launch."""
    n_rows = t_indptr.shape[0] - 1
    if n_rows and dh.shape[1]:
        h_unit, norms, target = (dh, entry_norms, dh) if into is None else into
        _positive_deltas[launch.elementwise(n_rows) + (stream,)](
            d_pos, t_indptr, n_rows, t_indices, weights, cosine, dh, entry_norms,
            into is not None, h_unit, norms, target, accumulate)


@prepared.jit
def _into_hidden(dh, cosine, h_unit, norms, target, accumulate):
    for r in range(cuda.grid(1), dh.shape[0], cuda.gridsize(1)):
        _into_hidden_row(dh, r, cosine, h_unit, norms, target, accumulate)


def into_hidden(dh, cosine, h_unit, norms, target, accumulate, stream):
    if dh.shape[0]:
        _into_hidden[launch.elementwise(dh.shape[0]) + (stream,)](dh, cosine, h_unit, norms,
                                                                  target, accumulate)


@cuda.jit(device=True)
def _positive_total(d_pos, t_indptr, n_rows, g_indptr, g_entries, n_pos, u, h, k):
    """Column k of touched row u's gradient from the targets holding it."""
    total = 0.0
    if u < n_pos:
        for q in range(g_indptr[u], g_indptr[u + 1]):
            e = g_entries[q]
            total += d_pos[e] * h[row_of(t_indptr, n_rows, e), k]
    return total


@prepared.jit
def _positive_gradient(d_pos, t_indptr, n_rows, g_indptr, g_entries, n_pos, h, grad):
    n_touched, d = grad.shape
    for p in range(cuda.grid(1), n_touched * d, cuda.gridsize(1)):
        u, k = p // d, p % d
        grad[u, k] = _positive_total(d_pos, t_indptr, n_rows, g_indptr, g_entries, n_pos, u, h,
                                     k)


@prepared.jit
def _add_negative_rows(d_negatives, neg_slot, grad):
    """Each column k by one thread, negatives in j order."""
    d = grad.shape[1]
    for k in range(cuda.grid(1), d, cuda.gridsize(1)):
        for j in range(neg_slot.shape[0]):
            grad[neg_slot[j], k] += d_negatives[j, k]


def compact_gradient(d_pos, t_indptr, g_indptr, g_entries, n_pos, h, d_negatives, neg_slot, grad,
                     stream):
    if grad.size:
        _positive_gradient[launch.elementwise(grad.size) + (stream,)](
            d_pos, t_indptr, t_indptr.shape[0] - 1, g_indptr, g_entries, n_pos, h, grad)
        if neg_slot.shape[0]:
            _add_negative_rows[launch.elementwise(grad.shape[1]) + (stream,)](d_negatives, neg_slot,
                                                                          grad)


@cuda.jit(device=True)
def _project_out_row(grad, u, vectors, row):
    d = grad.shape[1]
    s = 0.0
    for k in range(d):
        s += vectors[row, k] * vectors[row, k]
    inv = 1.0 / _norm(s)
    dot = 0.0
    for k in range(d):
        dot += grad[u, k] * vectors[row, k] * inv
    for k in range(d):
        grad[u, k] = (grad[u, k] - dot * vectors[row, k] * inv) * inv


@prepared.jit
def _project_out_radial(grad, vectors, ids):
    for u in range(cuda.grid(1), grad.shape[0], cuda.gridsize(1)):
        _project_out_row(grad, u, vectors, ids[u])


def project_out_radial(grad, vectors, ids, stream):
    if grad.shape[0]:
        _project_out_radial[launch.elementwise(grad.shape[0]) + (stream,)](grad, vectors, ids)


@prepared.jit
def _compact_unit_gradient(d_pos, t_indptr, n_rows, g_indptr, g_entries, n_pos, h, d_negatives,
                           neg_ids, weights, rows, grad):
    """Touched row by touched row: the targets' share, the negatives' rows
    (the sorted ids hold a row's draws side by side, found by bisection, added
    in draw order as ``_add_negative_rows`` does), then the radial part out."""
    d = grad.shape[1]
    for u in range(cuda.grid(1), grad.shape[0], cuda.gridsize(1)):
        for k in range(d):
            grad[u, k] = _positive_total(d_pos, t_indptr, n_rows, g_indptr, g_entries, n_pos, u,
                                         h, k)
        item = rows[u]
        j = first_at_least(neg_ids, 0, neg_ids.shape[0], item)
        while j < neg_ids.shape[0] and neg_ids[j] == item:
            for k in range(d):
                grad[u, k] += d_negatives[j, k]
            j += 1
        _project_out_row(grad, u, weights, item)


def compact_unit_gradient(d_pos, t_indptr, g_indptr, g_entries, n_pos, h, d_negatives, neg_ids,
                          weights, rows, grad, stream):
    if grad.shape[0]:
        _compact_unit_gradient[launch.elementwise(grad.shape[0]) + (stream,)](
            d_pos, t_indptr, t_indptr.shape[0] - 1, g_indptr, g_entries, n_pos, h, d_negatives,
            neg_ids, weights, rows, grad)


@prepared.jit
def _positive_bias_gradient(d_pos, g_indptr, g_entries, n_pos, grad):
    for u in range(cuda.grid(1), grad.shape[0], cuda.gridsize(1)):
        total = 0.0
        if u < n_pos:
            for q in range(g_indptr[u], g_indptr[u + 1]):
                total += d_pos[g_entries[q]]
        grad[u] = total


@prepared.jit
def _negative_column_sums(d_neg, sums):
    for j in range(cuda.grid(1), d_neg.shape[1], cuda.gridsize(1)):
        total = 0.0
        for r in range(d_neg.shape[0]):
            total += d_neg[r, j]
        sums[j] = total


@prepared.jit
def _add_negative_bias(sums, neg_slot, grad):
    if cuda.grid(1) != 0:
        return
    for j in range(neg_slot.shape[0]):
        grad[neg_slot[j]] += sums[j]


def compact_bias_gradient(d_pos, g_indptr, g_entries, n_pos, d_neg, neg_slot, grad, sums,
                          stream):
    """As the CPU kernel; ``sums`` is scratch of one value per negative."""
    if grad.shape[0]:
        _positive_bias_gradient[launch.elementwise(grad.shape[0]) + (stream,)](
            d_pos, g_indptr, g_entries, n_pos, grad)
    if neg_slot.shape[0]:
        _negative_column_sums[launch.elementwise(d_neg.shape[1]) + (stream,)](d_neg, sums)
        _add_negative_bias[1, 1, stream](sums, neg_slot, grad)


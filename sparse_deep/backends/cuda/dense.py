"""CUDA kernels over dense ``batch x units`` blocks: fills and copies,
activations, the fused output pass, dropout, the hidden-layer delta, column
sums, the sparseness penalty and per-row scaling.

Elementwise kernels use grid-stride loops over the block's entries. Row-wise
work (SoftMax, the output pass) takes one block per row and reduces with the
fixed-tree block reductions of :mod:`._device`; column-wise sums give one
thread per column that adds the rows in order. Either way no floating-point
atomics are used, so every result repeats exactly from run to run.
"""

import math

import numpy as np
from numba import cuda, float64, uint64

from ...core.codes import (
    HP_ALPHA,
    HP_BOOST_ONE,
    HP_BOOST_ZERO,
    HP_LAMBDA,
    HP_SLOPE,
    SIGMOID,
    SOFTMAX,
)
from ...core.registry import with_globals
from ...core.scalar import is_unit_interval_error
from . import launch, prepared
from ._device import (
    activation_functions,
    column_sum,
    error_function,
    block_max,
    block_sum,
    kl_sparseness,
    output_element,
    uniform,
)


def _grid(n):
    return launch.elementwise(n)


# -- fills and copies --------------------------------------------------------------
@prepared.jit
def _fill_rows(out, bias):
    n = out.shape[1]
    for idx in range(cuda.grid(1), out.shape[0] * n, cuda.gridsize(1)):
        i = idx // n
        j = idx - i * n
        out[i, j] = bias[j]


@prepared.jit
def _fill(out, value):
    n = out.shape[1]
    for idx in range(cuda.grid(1), out.shape[0] * n, cuda.gridsize(1)):
        i = idx // n
        out[i, idx - i * n] = value


@prepared.jit
def _scale(out, factor):
    n = out.shape[1]
    for idx in range(cuda.grid(1), out.shape[0] * n, cuda.gridsize(1)):
        i = idx // n
        out[i, idx - i * n] *= factor


@prepared.jit
def _copy(dst, src):
    n = dst.shape[1]
    for idx in range(cuda.grid(1), dst.shape[0] * n, cuda.gridsize(1)):
        i = idx // n
        j = idx - i * n
        dst[i, j] = src[i, j]


@prepared.jit
def _add(out, other):
    n = out.shape[1]
    for idx in range(cuda.grid(1), out.shape[0] * n, cuda.gridsize(1)):
        i = idx // n
        j = idx - i * n
        out[i, j] += other[i, j]


def _as_2d(x):
    return x.reshape(1, x.shape[0]) if x.ndim == 1 else x


def fill_rows(out, bias, stream):
    """Every row of ``out`` becomes ``bias``."""
    blocks, threads = _grid(out.size)
    _fill_rows[blocks, threads, stream](out, bias)


def fill(out, value, stream):
    """Every entry of ``out`` (1-D or 2-D) becomes ``value``."""
    out = _as_2d(out)
    if out.size:
        blocks, threads = _grid(out.size)
        _fill[blocks, threads, stream](out, out.dtype.type(value))


def scale(out, factor, stream):
    """Every entry of ``out`` (1-D or 2-D) times ``factor``."""
    out = _as_2d(out)
    if out.size:
        blocks, threads = _grid(out.size)
        _scale[blocks, threads, stream](out, out.dtype.type(factor))


def copy(dst, src, stream):
    """``dst[...] = src`` for arrays of one shape (1-D or 2-D, any strides)."""
    dst, src = _as_2d(dst), _as_2d(src)
    if dst.size:
        blocks, threads = _grid(dst.size)
        _copy[blocks, threads, stream](dst, src)


def add(out, other, stream):
    blocks, threads = _grid(out.size)
    _add[blocks, threads, stream](out, other)


# -- activations -------------------------------------------------------------------
def _activate_body(z, slope, alpha, lam):
    """The activation kernel of the activation whose ``forward``
    :func:`specialised` binds as a global."""
    n = z.shape[1]
    for idx in range(cuda.grid(1), z.shape[0] * n, cuda.gridsize(1)):
        i = idx // n
        j = idx - i * n
        z[i, j] = forward(z[i, j], slope, alpha, lam)


def specialised(body, kernels, act, **names):
    """``body`` as a kernel of the activation ``act``, whose ``forward`` and
    ``derivative`` device functions (and ``names``) it reads as globals; one
    per activation definition, kept in ``kernels``."""
    forward, derivative, tag = activation_functions(act)
    kernel = kernels.get(tag)
    if kernel is None:
        kernel = kernels[tag] = prepared.jit(
            with_globals(body, forward=forward, derivative=derivative, **names))
    return kernel


_ACTIVATE_KERNELS = {}  # activation tag -> kernel


@cuda.jit(device=True)
def _row_max(z, i, buf, tid, threads):
    """Max of row ``i`` (-inf when empty), reduced over the whole block."""
    m = float64(-math.inf)
    for j in range(tid, z.shape[1], threads):
        if z[i, j] > m:
            m = float64(z[i, j])
    return block_max(buf, m, tid, threads)


@cuda.jit(device=True)
def _softmax_row(z, i, buf, tid, threads):
    """SoftMax of row ``i`` in place by the whole block; returns nothing."""
    n = z.shape[1]
    m = _row_max(z, i, buf, tid, threads)
    s = float64(0.0)
    for j in range(tid, n, threads):
        e = math.exp(z[i, j] - m)
        z[i, j] = e
        s += e
    s = block_sum(buf, s, tid, threads)
    inv = 1.0 / s
    for j in range(tid, n, threads):
        z[i, j] = z[i, j] * inv


_SOFTMAX = {}


def _softmax_kernel(threads):
    kernel = _SOFTMAX.get(threads)
    if kernel is None:
        @prepared.jit
        def softmax(z):
            buf = cuda.shared.array(threads, float64)
            for i in range(cuda.blockIdx.x, z.shape[0], cuda.gridDim.x):
                _softmax_row(z, i, buf, cuda.threadIdx.x, threads)

        kernel = _SOFTMAX[threads] = softmax
    return kernel


def activate_rows(z, act, slope, alpha, lam, stream):
    """Replace pre-activations ``z`` by activations, in place."""
    if z.shape[0] == 0:
        return
    if act == SOFTMAX:
        blocks, threads = launch.rows(z.shape[0])
        _softmax_kernel(threads)[blocks, threads, stream](z)
        return
    blocks, threads = _grid(z.size)
    kernel = specialised(_activate_body, _ACTIVATE_KERNELS, act)
    kernel[blocks, threads, stream](z, float(slope), float(alpha), float(lam))


# -- the output pass ---------------------------------------------------------------
def _make_output_pass(act, err, threads, sharded=False):
    """The fused output kernel for one (activation, error) pair and block size.

    ``act`` and ``err`` are compile-time constants inside, so the branches of
    the shared scalar functions fold away. One block per row: activation, a
    raw sweep that treats every output as a missing target, the fix-ups at the
    row's target entries, then (SoftMax) the Jacobian sweep, as on the CPU.
    ``sharded``: the CPU kernel's sharded SoftMax form (``row_stats``).
    """
    unit = is_unit_interval_error(err)
    softmax, sigmoid = act == SOFTMAX, act == SIGMOID
    forward, derivative, _ = activation_functions(act)
    error, _ = error_function(err)

    @cuda.jit(device=True)
    def element(a, t, is_one, hp):
        """(error, delta-or-h) of one output; h = a * dE/da for SoftMax."""
        dfdz = derivative(a, hp[HP_SLOPE], hp[HP_ALPHA], hp[HP_LAMBDA])
        e, g = error(a, t, is_one)
        return output_element(softmax, sigmoid, err, a, t, is_one, hp, dfdz, e, g)

    @prepared.jit
    def output_pass(z, t_indptr, t_indices, t_data, hp, inv_batch, delta, row_error,
                    row_stats):
        buf = cuda.shared.array(threads, float64)
        tid = cuda.threadIdx.x
        n = z.shape[1]
        boost_one, boost_zero = hp[HP_BOOST_ONE], hp[HP_BOOST_ZERO]
        for i in range(cuda.blockIdx.x, z.shape[0], cuda.gridDim.x):
            if softmax and sharded:
                m, inv = row_stats[i, 0], 1.0 / row_stats[i, 1]
                for j in range(tid, n, threads):
                    z[i, j] = math.exp(z[i, j] - m) * inv
            elif softmax:
                _softmax_row(z, i, buf, tid, threads)
            else:
                for j in range(tid, n, threads):
                    z[i, j] = forward(z[i, j], hp[HP_SLOPE], hp[HP_ALPHA], hp[HP_LAMBDA])
            total = float64(0.0)
            for j in range(tid, n, threads):  # raw sweep: no target anywhere
                e, g = element(z[i, j], 0.0, False, hp)
                delta[i, j] = boost_zero * g
                total += boost_zero * e
            start, end = t_indptr[i], t_indptr[i + 1]
            t_scale = 1.0
            if softmax and unit:  # multinomial: a row's targets form one distribution
                t_sum = float64(0.0)
                for p in range(start + tid, end, threads):
                    t_sum += t_data[p]
                t_sum = block_sum(buf, t_sum, tid, threads)
                if sharded:
                    t_sum = row_stats[i, 2]
                t_scale = 1.0 / t_sum if t_sum != 0.0 else 0.0
            else:
                cuda.syncthreads()  # the raw sweep is done before any fix-up
            for p in range(start + tid, end, threads):  # fix-ups at the target entries
                j, t = t_indices[p], t_data[p]
                if t != 0.0:
                    e0, _ = element(z[i, j], 0.0, False, hp)
                    e1, g1 = element(z[i, j], t * t_scale, True, hp)
                    total += boost_one * e1 - boost_zero * e0
                    delta[i, j] = boost_one * g1
            total = block_sum(buf, total, tid, threads)
            if tid == 0:
                row_error[i] = total
            if softmax and sharded:  # the Jacobian waits for every slice's sum of h
                h_sum = float64(0.0)
                for j in range(tid, n, threads):
                    h_sum += delta[i, j]
                h_sum = block_sum(buf, h_sum, tid, threads)
                if tid == 0:
                    row_stats[i, 3] = h_sum
            elif softmax:
                # dE/dz_j = a_j * (g_j - sum_k a_k g_k) = h_j - a_j * sum_k h_k.
                h_sum = float64(0.0)
                for j in range(tid, n, threads):
                    h_sum += delta[i, j]
                h_sum = block_sum(buf, h_sum, tid, threads)
                for j in range(tid, n, threads):
                    delta[i, j] = (delta[i, j] - z[i, j] * h_sum) * inv_batch
            else:
                for j in range(tid, n, threads):
                    delta[i, j] = delta[i, j] * inv_batch
            cuda.syncthreads()

    return output_pass


_OUTPUT_KERNELS = {}


def output_pass(z, t_indptr, t_indices, t_data, act, err, hp, inv_batch, delta, row_error,
                stream, row_stats=None):
    """Fused output step (see :func:`sparse_deep.backends.cpu.dense.output_pass`).

    ``hp`` is a device array of the nine hyper-parameters in ``z``'s dtype;
    ``row_stats`` a device (rows x 4) float64 array for the sharded SoftMax form.
    """
    if z.shape[0] == 0:
        return
    sharded = row_stats is not None and act == SOFTMAX
    blocks, threads = launch.rows(z.shape[0])
    key = activation_functions(act)[2], error_function(err)[1], threads, sharded
    kernel = _OUTPUT_KERNELS.get(key)
    if kernel is None:
        kernel = _OUTPUT_KERNELS[key] = _make_output_pass(act, err, threads, sharded)
    if row_stats is None:
        row_stats = _no_stats()
    kernel[blocks, threads, stream](z, t_indptr, t_indices, t_data, hp, float(inv_batch), delta,
                                    row_error, row_stats)


_NO_STATS = []


def _no_stats():
    """A one-row placeholder for ``row_stats`` when the pass is not sharded."""
    if not _NO_STATS:
        _NO_STATS.append(cuda.to_device(np.zeros((1, 4), dtype=np.float64)))
    return _NO_STATS[0]


# -- the sharded SoftMax (model parallelism) ---------------------------------------
_PARTIALS = {}


def _partials_kernel(threads):
    kernel = _PARTIALS.get(threads)
    if kernel is None:
        @prepared.jit
        def partials(z, t_indptr, t_data, row_stats):
            buf = cuda.shared.array(threads, float64)
            tid = cuda.threadIdx.x
            n = z.shape[1]
            for i in range(cuda.blockIdx.x, z.shape[0], cuda.gridDim.x):
                m = _row_max(z, i, buf, tid, threads)
                s = float64(0.0)
                for j in range(tid, n, threads):
                    s += math.exp(z[i, j] - m)
                s = block_sum(buf, s, tid, threads)
                t = float64(0.0)
                for p in range(t_indptr[i] + tid, t_indptr[i + 1], threads):
                    t += t_data[p]
                t = block_sum(buf, t, tid, threads)
                if tid == 0:
                    row_stats[i, 0] = m
                    row_stats[i, 1] = s
                    row_stats[i, 2] = t
                cuda.syncthreads()

        kernel = _PARTIALS[threads] = partials
    return kernel


def softmax_partials(z, t_indptr, t_data, row_stats, stream):
    """This slice's (max, exp sum, target sum) of each row (CPU kernel's contract)."""
    if z.shape[0] == 0:
        return
    blocks, threads = launch.rows(z.shape[0])
    _partials_kernel(threads)[blocks, threads, stream](z, t_indptr, t_data, row_stats)


@prepared.jit
def _softmax_apply(z, row_stats):
    n = z.shape[1]
    for idx in range(cuda.grid(1), z.shape[0] * n, cuda.gridsize(1)):
        i = idx // n
        j = idx - i * n
        z[i, j] = math.exp(z[i, j] - row_stats[i, 0]) / row_stats[i, 1]


def softmax_apply(z, row_stats, stream):
    if z.size == 0:
        return
    blocks, threads = _grid(z.size)
    _softmax_apply[blocks, threads, stream](z, row_stats)


@prepared.jit
def _softmax_jacobian(delta, a, h_sum, inv_batch):
    n = delta.shape[1]
    for idx in range(cuda.grid(1), delta.shape[0] * n, cuda.gridsize(1)):
        i = idx // n
        j = idx - i * n
        delta[i, j] = (delta[i, j] - a[i, j] * h_sum[i]) * inv_batch


def softmax_jacobian(delta, a, h_sum, inv_batch, stream):
    if delta.size == 0:
        return
    blocks, threads = _grid(delta.size)
    _softmax_jacobian[blocks, threads, stream](delta, a, h_sum, float(inv_batch))


# -- dropout and the hidden delta --------------------------------------------------
@prepared.jit
def _dropout(a, out, key, row_ids, p, scale):
    n = a.shape[1]
    for idx in range(cuda.grid(1), a.shape[0] * n, cuda.gridsize(1)):
        i = idx // n
        j = idx - i * n
        if uniform(key, uint64(row_ids[i]) * uint64(n) + uint64(j)) < p:
            out[i, j] = 0.0
        else:
            out[i, j] = float64(a[i, j]) * scale


def dropout_forward(a, out, key, row_ids, p, stream):
    """Inverted dropout with the CPU kernel's counter-keyed mask."""
    blocks, threads = _grid(a.size)
    _dropout[blocks, threads, stream](a, out, np.uint64(key), row_ids, float(p), 1.0 / (1.0 - p))


def _hidden_delta_body(delta, a, slope, alpha, lam, key, row_ids, p_dropout, scale, penalty):
    """The hidden-layer delta kernel of the activation whose ``derivative``
    :func:`specialised` binds as a global."""
    n = a.shape[1]
    for idx in range(cuda.grid(1), a.shape[0] * n, cuda.gridsize(1)):
        i = idx // n
        j = idx - i * n
        g = float64(delta[i, j])
        if p_dropout > 0.0:
            if uniform(key, uint64(row_ids[i]) * uint64(n) + uint64(j)) < p_dropout:
                g = 0.0
            else:
                g *= scale
        g += penalty[j]
        delta[i, j] = g * derivative(a[i, j], slope, alpha, lam)


def hidden_delta(delta, a, act, slope, alpha, lam, key, row_ids, p_dropout, penalty, stream):
    """dL/d(output) -> dL/dz through dropout, the penalty and f' (as the CPU)."""
    scale = 1.0 / (1.0 - p_dropout) if p_dropout > 0.0 else 1.0
    blocks, threads = _grid(a.size)
    kernel = specialised(_hidden_delta_body, _HIDDEN_DELTA_KERNELS, act)
    kernel[blocks, threads, stream](delta, a, float(slope), float(alpha), float(lam),
                                    np.uint64(key), row_ids, float(p_dropout), scale, penalty)


_HIDDEN_DELTA_KERNELS = {}  # activation tag -> kernel


# -- column-wise -------------------------------------------------------------------
@prepared.jit
def _column_sums(x, zero, out):
    for j in range(cuda.grid(1), x.shape[1], cuda.gridsize(1)):
        out[j] = column_sum(x, j, zero)


def column_sums(x, out, stream):
    """``out[j] = sum_i x[i, j]``, rows added in order by one thread per column."""
    blocks, threads = _grid(x.shape[1])
    _column_sums[blocks, threads, stream](x, out.dtype.type(0), out)


_PENALTY = {}


def _penalty_kernel(threads):
    kernel = _PENALTY.get(threads)
    if kernel is None:
        @prepared.jit
        def penalty(a, p, beta, inv_batch, grad_out, loss_out):
            """One block: each thread a set of units (their columns summed in
            row order), then the block's fixed-tree sum of their terms."""
            buf = cuda.shared.array(threads, float64)
            tid = cuda.threadIdx.x
            total = float64(0.0)
            for j in range(tid, a.shape[1], threads):
                s = float64(0.0)
                for i in range(a.shape[0]):
                    s += a[i, j]
                term, slope = kl_sparseness(s * inv_batch, p)
                total += term
                grad_out[j] = beta * slope * inv_batch
            total = block_sum(buf, total, tid, threads)
            if tid == 0:
                loss_out[0] = beta * total

        kernel = _PENALTY[threads] = penalty
    return kernel


def sparseness_penalty(a, p, beta, inv_batch, grad_out, loss_out, stream):
    """KL sparseness penalty: each unit's gradient, and the loss into
    ``loss_out[0]`` on the device (one block sums the units' terms)."""
    threads = launch.rows(1)[1]
    _penalty_kernel(threads)[1, threads, stream](a, float(p), float(beta), float(inv_batch),
                                                 grad_out, loss_out)


@prepared.jit
def _scale_rows(x, weights):
    n = x.shape[1]
    for idx in range(cuda.grid(1), weights.shape[0] * n, cuda.gridsize(1)):
        r = idx // n
        j = idx - r * n
        x[r, j] = x[r, j] * weights[r]


def scale_rows(x, weights, stream):
    """``x[r, :] *= weights[r]`` for r < len(weights); ``weights`` in x's dtype."""
    if weights.shape[0]:
        blocks, threads = _grid(weights.shape[0] * x.shape[1])
        _scale_rows[blocks, threads, stream](x, weights)

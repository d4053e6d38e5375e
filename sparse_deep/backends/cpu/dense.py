"""Kernels over dense ``batch x units`` blocks: activations, the fused output
pass (activation + error + delta), dropout and the hidden-layer delta."""

import numpy as np
from numba import njit, prange

from ...core.codes import (
    CROSS_ENTROPY,
    DATA_SCALED_MARGINAL_CROSS_ENTROPY,
    HP_ALPHA,
    HP_BOOST_ONE,
    HP_BOOST_ZERO,
    HP_LAMBDA,
    HP_LOG_HIGH,
    HP_LOG_LOW,
    HP_ONE,
    HP_ONE_SCALE,
    HP_ONE_TARGET,
    HP_SLOPE,
    HP_ZERO_SCALE,
    HP_ZERO_TARGET,
    OUTPUT_HYPER_SIZE,
    SIGMOID,
    SOFTMAX,
    TANH,
)
from ...core.registry import with_globals
from ...core.scalar import LOG_EPSILON
from .vecmath import fast_exp, fast_log, fast_sigmoid, fast_tanh
from ._scalar import (
    activation_functions,
    error_function,
    is_unit_interval_error,
    kl_sparseness,
    output_element,
    uniform,
)


# Reassociation lets LLVM vectorise the row's max and sums; the result is still
# the same on every run of the same compiled kernel.
_REDUCTIONS = {"reassoc", "nsz", "contract"}

# Row sums add CHUNK elements at a time in the row's own dtype (vector lanes of
# float32), and the chunks' sums in float64: a float64 sum of float32 values
# converts every element and ran 2.7x slower over a 128 x 1,682 block (183 vs
# 68 us for the cross-entropy sweep), while chunks keep a 1M-item row's sum
# as accurate as float64 to within one chunk's float32 rounding.
CHUNK = 512


@njit(cache=True, fastmath=_REDUCTIONS)
def row_sum(x):
    """Sum of a 1-D array, CHUNK elements at a time (see CHUNK); float64."""
    total = 0.0
    for lo in range(0, x.shape[0], CHUNK):
        part = x.dtype.type(0)
        for j in range(lo, min(lo + CHUNK, x.shape[0])):
            part += x[j]
        total += part
    return total


@njit(cache=True, fastmath=_REDUCTIONS)
def _softmax_row(z):
    m = z[0]
    for j in range(1, z.shape[0]):
        if z[j] > m:
            m = z[j]
    for j in range(z.shape[0]):
        z[j] = fast_exp(z[j] - m)
    inv = z.dtype.type(1.0 / row_sum(z))
    for j in range(z.shape[0]):
        z[j] *= inv


def activate_rows(z, act, slope, alpha, lam):
    """Replace pre-activations ``z`` by activations, row by row, in place."""
    forward, _, tag = activation_functions(act)
    kernel = _ACTIVATION_KERNELS.get(tag)
    if kernel is None:  # one kernel per activation: a fit compiles only its own
        kernel = _ACTIVATION_KERNELS[tag] = specialise(
            _activate_rows_body, f"activate_rows_{tag}", act=act, forward=forward)
    kernel(z, slope, alpha, lam)


_ACTIVATION_KERNELS = {}  # activation tag -> kernel


def _activate_rows_body(z, slope, alpha, lam):
    """:func:`activate_rows` for the activation ``act`` whose ``forward``
    :func:`specialise` binds as globals, so that the branches of the others
    fold away."""
    for i in prange(z.shape[0]):
        row = z[i]
        if act == SOFTMAX:
            _softmax_row(row)
        elif act == TANH:  # the common hidden activations get vectorisable forms
            for j in range(row.shape[0]):
                row[j] = fast_tanh(row[j])
        elif act == SIGMOID:
            for j in range(row.shape[0]):
                row[j] = fast_sigmoid(row[j])
        else:
            for j in range(row.shape[0]):
                row[j] = forward(row[j], slope, alpha, lam)


def _make_output_pass(act, err, sharded=False):
    """The fused output kernel for one (activation, error) pair.

    ``act`` and ``err`` are compile-time constants inside, so every branch of
    the shared scalar functions folds away and the sweeps over a row vectorise.
    A row is handled as DSSTNE does: a raw sweep that treats every output as a
    missing target, then a fix-up at each target entry (the rows are sparse, so
    the fix-ups are few), then, for SoftMax, the Jacobian sweep.

    ``sharded``: the row holds one rank's slice of the outputs (model
    parallelism). A SoftMax then takes the row's max, exponential sum and
    target sum over all slices from ``row_stats[:, :3]``, and stops before the
    Jacobian sweep, which needs the sum of ``h`` over all slices: it leaves
    ``h`` in ``delta`` and this slice's sum of ``h`` in ``row_stats[:, 3]``
    (see :func:`softmax_jacobian`).
    """
    unit = is_unit_interval_error(err)
    softmax = act == SOFTMAX
    fused_sigmoid = act == SIGMOID and unit
    forward, derivative, tag = activation_functions(act)
    error, error_tag = error_function(err)

    @njit(inline="always")
    def element(a, t, is_one, hp):
        """(error, delta-or-h) of one output; h = a * dE/da for SoftMax."""
        dfdz = derivative(a, hp[HP_SLOPE], hp[HP_ALPHA], hp[HP_LAMBDA])
        e, g = error(a, t, is_one)
        return output_element(softmax, act == SIGMOID, err, a, t, is_one, hp, dfdz, e, g)

    @njit(inline="always")
    def no_target(a, hp):
        """(error, delta-or-h) of an output whose target is missing.

        The raw sweep evaluates this for every output, so the Sigmoid
        cross-entropy family gets a form that vectorises (float32 exp/log).
        """
        if fused_sigmoid:
            one, zero = hp[HP_ONE], hp[HP_ONE] - hp[HP_ONE]
            e = -fast_log(min(max(one - a, hp[HP_LOG_LOW]), hp[HP_LOG_HIGH]))
            if err == CROSS_ENTROPY:
                return e, a
            # Past the zeroTarget margin (selects, as in with_target).
            past = a > hp[HP_ZERO_TARGET]
            scale = hp[HP_ZERO_SCALE]
            return (scale * e if past else zero), (scale * a if past else zero)
        return element(a, 0.0, False, hp)

    @njit(inline="always")
    def with_target(a, t, hp):
        """(error, delta-or-h) of an output whose target is ``t`` (not 0).

        :func:`element` with ``is_one``, but for the cross-entropy family
        (Sigmoid or SoftMax) in the output's dtype with the float32 ``log``,
        so that the fix-up loop vectorises: the shared scalar functions call
        the C library's float64 ``log``, three times per target with Sigmoid,
        and the fix-ups took more time than the sweep over the whole row.
        """
        if not (fused_sigmoid or (softmax and unit)):
            return element(a, t, True, hp)
        one, lo, hi = hp[HP_ONE], hp[HP_LOG_LOW], hp[HP_LOG_HIGH]
        zero = one - one
        log_a = fast_log(min(max(a, lo), hi))
        if err == CROSS_ENTROPY:
            if softmax:
                return -t * log_a, -t
            return -(t * log_a + (one - t) * fast_log(min(max(one - a, lo), hi))), a - t
        # Past the oneTarget margin, no error. Selects, not an early return,
        # or the loop would not vectorise.
        short = a < hp[HP_ONE_TARGET]
        if softmax:
            scale = hp[HP_ONE_SCALE]
            return (-scale * t * log_a if short else zero), (-scale * t if short else zero)
        w = hp[HP_ONE_SCALE] * t if err == DATA_SCALED_MARGINAL_CROSS_ENTROPY else hp[HP_ONE_SCALE]
        return (-w * log_a if short else zero), (w * (a - one) if short else zero)

    @njit(inline="always")
    def activation(x, hp):
        """The output activation of one unit (not SoftMax, which needs its row)."""
        if act == SIGMOID:
            return fast_sigmoid(x)
        return forward(x, hp[HP_SLOPE], hp[HP_ALPHA], hp[HP_LAMBDA])

    return specialise(_output_pass_body, "output_pass_{}_{}_{}".format(
        tag, error_tag, int(sharded)), softmax=softmax, sharded=sharded, unit=unit,
        no_target=no_target, with_target=with_target, activation=activation)


def specialise(body, qualname, fastmath=_REDUCTIONS, **names):
    """``body`` compiled as a parallel kernel with ``names`` among its globals,
    cached under ``qualname``, which must name the values of ``names`` (see
    :func:`~sparse_deep.core.registry.with_globals`)."""
    return njit(parallel=True, cache=True, fastmath=fastmath)(
        with_globals(body, qualname, **names))


def _output_pass_body(z, t_indptr, t_indices, t_data, hp, inv_batch, delta, row_error,
                      row_stats):
    """The output pass's kernel, before :func:`specialise` binds the
    names it reads as globals: ``softmax``, ``sharded`` and ``unit`` (flags)
    and ``no_target``, ``with_target`` and ``activation`` (the helpers of
    :func:`_make_output_pass`)."""
    boost_one, boost_zero = hp[HP_BOOST_ONE], hp[HP_BOOST_ZERO]
    zero = hp[HP_ONE] - hp[HP_ONE]
    inv_b = z.dtype.type(inv_batch)  # float32 stays float32: the sweeps vectorise
    # SoftMax's delta is finished (and divided by the batch) in its
    # Jacobian sweep; any other output's is final where it is written.
    if not softmax:
        boost_one, boost_zero = boost_one * inv_b, boost_zero * inv_b
    for i in prange(z.shape[0]):
        a, d = z[i], delta[i]
        start, end = t_indptr[i], t_indptr[i + 1]
        if softmax and sharded:
            m, inv = a.dtype.type(row_stats[i, 0]), a.dtype.type(1.0 / row_stats[i, 1])
            for j in range(a.shape[0]):
                a[j] = fast_exp(a[j] - m) * inv
        elif softmax:
            _softmax_row(a)
        else:
            for j in range(a.shape[0]):
                a[j] = activation(a[j], hp)
        total = 0.0
        for lo in range(0, a.shape[0], CHUNK):  # raw sweep: no target anywhere
            part = a.dtype.type(0)
            for j in range(lo, min(lo + CHUNK, a.shape[0])):
                e, g = no_target(a[j], hp)
                d[j] = boost_zero * g
                part += e
            total += part
        total *= hp[HP_BOOST_ZERO]
        t_scale = 1.0
        if softmax and unit:  # multinomial: a row's targets form one distribution
            t_sum = 0.0
            if sharded:
                t_sum = row_stats[i, 2]
            else:
                for p in range(start, end):
                    t_sum += t_data[p]
            t_scale = 1.0 / t_sum if t_sum != 0.0 else 0.0
        # Fix-ups at the target entries, in three loops: gather the
        # outputs, the arithmetic on contiguous arrays (which vectorises;
        # LLVM will not vectorise it around gathers), then the writes.
        fixed = np.empty(end - start, d.dtype)
        for q in range(end - start):
            fixed[q] = a[t_indices[start + q]]
        part = a.dtype.type(0)
        for q in range(end - start):
            t, aj = t_data[start + q], fixed[q]
            e0, _ = no_target(aj, hp)
            e1, g1 = with_target(aj, a.dtype.type(t * t_scale), hp)
            part += hp[HP_BOOST_ONE] * e1 - hp[HP_BOOST_ZERO] * e0 if t != 0.0 else zero
            fixed[q] = boost_one * g1
        total += part
        for q in range(end - start):
            if t_data[start + q] != 0.0:  # a stored zero is a missing target
                d[t_indices[start + q]] = fixed[q]
        row_error[i] = total
        if softmax and sharded:
            row_stats[i, 3] = row_sum(d)
        elif softmax:
            # dE/dz_j = a_j * (g_j - sum_k a_k g_k) = h_j - a_j * sum_k h_k.
            h_sum = a.dtype.type(row_sum(d))
            for j in range(a.shape[0]):
                d[j] = (d[j] - a[j] * h_sum) * inv_b


_OUTPUT_KERNELS = {}


def output_pass(z, t_indptr, t_indices, t_data, act, err, hp, inv_batch, delta, row_error,
                row_stats=None):
    """Fused output step, one sweep per row: activation, error and delta.

    ``z`` holds the pre-activations and is overwritten with the activations;
    targets are a CSR block (sorted indices) read by index, never densified.
    ``delta`` receives dL/dz of the mean batch loss (hence ``inv_batch``) and
    ``row_error`` each row's summed error. ``hp`` packs the hyper-parameters:
    slope, ELU alpha, SELU lambda, oneTarget, zeroTarget, oneScale, zeroScale,
    DeltaBoost one, DeltaBoost zero.

    ``row_stats`` (float64, rows x 4) switches to the sharded form for a slice
    of the outputs; see :func:`_make_output_pass`.
    """
    sharded = row_stats is not None and act == SOFTMAX
    key = activation_functions(act)[2], error_function(err)[1], sharded
    kernel = _OUTPUT_KERNELS.get(key)
    if kernel is None:
        kernel = _OUTPUT_KERNELS[key] = _make_output_pass(act, err, sharded)
    # In the kernel's dtype, so float32 arithmetic stays float32; 1 and the
    # clamps of the logarithm's argument are appended for the same reason.
    hp = np.concatenate([hp[:OUTPUT_HYPER_SIZE],
                         [1.0, LOG_EPSILON, 1.0 - LOG_EPSILON]]).astype(z.dtype)
    if row_stats is None:
        row_stats = _NO_STATS
    kernel(z, t_indptr, t_indices, t_data, hp, inv_batch, delta, row_error, row_stats)


_NO_STATS = np.zeros((1, 4), dtype=np.float64)


@njit(parallel=True, cache=True, fastmath=_REDUCTIONS)
def softmax_partials(z, t_indptr, t_data, row_stats):
    """One slice's share of each row's SoftMax normaliser and target sum.

    ``row_stats[i]`` = (max of z, sum of exp(z - max), sum of the targets);
    the slices' shares combine with
    :func:`sparse_deep.distributed.runner.combine_softmax_partials`.
    """
    for i in prange(z.shape[0]):
        row = z[i]
        m = row[0] if row.shape[0] > 0 else -np.inf
        for j in range(1, row.shape[0]):
            if row[j] > m:
                m = row[j]
        s = 0.0
        for lo in range(0, row.shape[0], CHUNK):  # as row_sum
            part = row.dtype.type(0)
            for j in range(lo, min(lo + CHUNK, row.shape[0])):
                part += fast_exp(row[j] - m)
            s += part
        t = 0.0
        for p in range(t_indptr[i], t_indptr[i + 1]):
            t += t_data[p]
        row_stats[i, 0] = m
        row_stats[i, 1] = s
        row_stats[i, 2] = t


@njit(parallel=True, cache=True)
def softmax_apply(z, row_stats):
    """``z = exp(z - max) / sum`` with each row's max and exponential sum over
    every slice taken from ``row_stats[:, :2]`` (sharded SoftMax, inference)."""
    for i in prange(z.shape[0]):
        m, inv = z.dtype.type(row_stats[i, 0]), z.dtype.type(1.0 / row_stats[i, 1])
        for j in range(z.shape[1]):
            z[i, j] = fast_exp(z[i, j] - m) * inv


@njit(parallel=True, cache=True)
def softmax_jacobian(delta, a, h_sum, inv_batch):
    """Finish a sharded SoftMax delta: ``delta = (h - a * sum_k h_k) / batch``,
    with ``h_sum[i]`` the sum of ``h`` over every slice of row ``i``."""
    for i in prange(delta.shape[0]):
        s = h_sum[i]
        for j in range(delta.shape[1]):
            delta[i, j] = (delta[i, j] - a[i, j] * s) * inv_batch


@njit(parallel=True, cache=True)
def dropout_forward(a, out, key, row_ids, p):
    """Inverted dropout: ``out = a * keep / (1 - p)``, the mask drawn by counter.

    The counter is (global example id, unit), so the same example gets the same
    mask whatever batch or process it lands in.
    """
    n = a.shape[1]
    scale = 1.0 / (1.0 - p)
    for i in prange(a.shape[0]):
        base = np.uint64(row_ids[i]) * np.uint64(n)
        for j in range(n):
            if uniform(key, base + np.uint64(j)) < p:
                out[i, j] = 0.0
            else:
                out[i, j] = a[i, j] * scale


def hidden_delta(delta, a, act, slope, alpha, lam, key, row_ids, p_dropout, penalty):
    """Turn dL/d(output of a hidden layer) into dL/dz, in place.

    Walks back through dropout (the mask is recomputed from the same counters),
    adds the sparseness penalty's gradient ``penalty[j]`` (already divided by the
    batch size; zeros when off) on the pre-dropout activation, then multiplies
    by the activation's derivative.
    """
    _, derivative, tag = activation_functions(act)
    kernel = _HIDDEN_DELTA_KERNELS.get(tag)
    if kernel is None:  # one kernel per activation, as activate_rows
        kernel = _HIDDEN_DELTA_KERNELS[tag] = specialise(
            _hidden_delta_body, f"hidden_delta_{tag}", fastmath=False, derivative=derivative)
    kernel(delta, a, slope, alpha, lam, key, row_ids, p_dropout, penalty)


_HIDDEN_DELTA_KERNELS = {}  # activation tag -> kernel


def _hidden_delta_body(delta, a, slope, alpha, lam, key, row_ids, p_dropout, penalty):
    """:func:`hidden_delta` for the activation whose ``derivative``
    :func:`specialise` binds as a global."""
    n = a.shape[1]
    scale = 1.0 / (1.0 - p_dropout) if p_dropout > 0.0 else 1.0
    for i in prange(a.shape[0]):
        base = np.uint64(row_ids[i]) * np.uint64(n)
        for j in range(n):
            g = delta[i, j]
            if p_dropout > 0.0:
                if uniform(key, base + np.uint64(j)) < p_dropout:
                    g = 0.0
                else:
                    g *= scale
            g += penalty[j]
            delta[i, j] = g * derivative(a[i, j], slope, alpha, lam)


@njit(cache=True)
def sparseness_penalty(a, p, beta, inv_batch, grad_out):
    """KL sparseness penalty on the batch-mean activation of each unit.

    Returns ``beta * sum_j KL(p || rho_j)`` and writes each unit's gradient with
    respect to one activation, ``beta * (-p/rho + (1-p)/(1-rho)) / batch``.
    """
    n = a.shape[1]
    sums = np.zeros(n)  # float64, each column in row order; read row by row
    for i in range(a.shape[0]):
        row = a[i]
        for j in range(n):
            sums[j] += row[j]
    total = 0.0
    for j in range(n):
        term, slope = kl_sparseness(sums[j] * inv_batch, p)
        total += term
        grad_out[j] = beta * slope * inv_batch
    return beta * total


# Columns per block of column_sums: the blocks, not the threads, split the work,
# so each column is summed in row order by one thread whatever their number.
_COLUMN_BLOCK = 256


def column_sums(x, out):
    """``out[j] = sum_i x[i, j]`` (see :func:`_column_sums`); numpy's own loop
    where ``x`` is one block wide (a hidden layer's delta), which spares a
    parallel region with a single block in it."""
    if x.shape[1] <= _COLUMN_BLOCK:
        np.sum(x, axis=0, out=out)
    else:
        _column_sums(x, out)


@njit(parallel=True, cache=True)
def _column_sums(x, out):
    """``out[j] = sum_i x[i, j]``, in row order, in ``out``'s dtype, on every
    thread (numpy's ``sum(axis=0)`` runs on one)."""
    n = x.shape[1]
    for block in prange((n + _COLUMN_BLOCK - 1) // _COLUMN_BLOCK):
        lo, hi = block * _COLUMN_BLOCK, min((block + 1) * _COLUMN_BLOCK, n)
        # A fresh accumulator and 1-D row slices: summed into ``out[j]`` via
        # ``x[i, j]`` the loop did not vectorise (5x slower).
        acc = np.zeros(hi - lo, out.dtype)
        for i in range(x.shape[0]):
            row = x[i, lo:hi]
            for j in range(hi - lo):
                acc[j] += row[j]
        out[lo:hi] = acc


def fill_rows(out, bias):
    """``out[i, :] = bias`` for every row: numpy's broadcast copy where a
    row is one column block wide (a hidden layer's), which spares compiling a
    parallel kernel for a copy of a few microseconds; :func:`_fill_rows` for
    wider rows (numpy's copy runs on one thread)."""
    if out.shape[1] <= _COLUMN_BLOCK:
        out[...] = bias
    else:
        _fill_rows(out, bias)


@njit(parallel=True, cache=True)
def _fill_rows(out, bias):
    for i in prange(out.shape[0]):
        row = out[i]
        for j in range(row.shape[0]):
            row[j] = bias[j]


@njit(parallel=True, cache=True)
def scale_rows(x, weights):
    """``x[r, :] *= weights[r]``: per-example weights applied to a batch block."""
    for r in prange(weights.shape[0]):
        w = x.dtype.type(weights[r])
        row = x[r]
        for j in range(row.shape[0]):
            row[j] *= w

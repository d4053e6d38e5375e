"""CUDA kernels on CSR batches: the sparse-input forward product and the
input layer's row-sparse weight gradient.

A batch arrives prepared by the host (gathered, denoised and transposed by
the CPU's kernels; see ``CUDABackend.load_batch``), so nothing here costs
time or memory in proportion to the number of input features. Floating-point
sums never use atomics: each output is summed by one thread in a fixed order,
so results repeat exactly.
"""

from numba import cuda

from . import launch, optim, prepared
from ._device import column_sum
from .dense import specialised
from .optim import SLOT_BITS


# -- forward -----------------------------------------------------------------------
@prepared.jit
def _sparse_matmul_add(indptr, indices, data, weights, out, bias, with_bias):
    n_out = out.shape[1]
    for idx in range(cuda.grid(1), out.shape[0] * n_out, cuda.gridsize(1)):
        i = idx // n_out
        h = idx - i * n_out
        acc = bias[h] if with_bias else out[i, h]
        for p in range(indptr[i], indptr[i + 1]):
            acc += data[p] * weights[indices[p], h]
        out[i, h] = acc


def sparse_matmul_add(indptr, indices, data, weights, out, stream, bias=None):
    """``out += X @ W`` for a CSR batch X (given ``bias``, ``out = bias + X @
    W``): one thread per output, gathering the weight rows of the row's
    features in storage order (coalesced along h)."""
    blocks, threads = launch.elementwise(out.shape[0] * out.shape[1])
    with_bias = bias is not None
    _sparse_matmul_add[blocks, threads, stream](indptr, indices, data, weights, out,
                                                bias if with_bias else out[0], with_bias)


def _activated_sparse_affine_body(indptr, indices, data, weights, out, bias, slope, alpha, lam):
    """``_sparse_matmul_add`` with a bias, each output then activated by the
    ``forward`` that :func:`~.dense.specialised` binds as a global."""
    n_out = out.shape[1]
    for idx in range(cuda.grid(1), out.shape[0] * n_out, cuda.gridsize(1)):
        i = idx // n_out
        h = idx - i * n_out
        acc = bias[h]
        for p in range(indptr[i], indptr[i + 1]):
            acc += data[p] * weights[indices[p], h]
        out[i, h] = forward(acc, slope, alpha, lam)


_ACTIVATED_AFFINE_KERNELS = {}  # activation tag -> kernel


def activated_sparse_affine(indptr, indices, data, weights, bias, out, act, slope, alpha, lam,
                            stream):
    """``out = act(bias + X @ W)`` for an elementwise activation, one thread
    per output as :func:`sparse_matmul_add`: the activation is applied to the
    value the separate kernels would store and read back."""
    blocks, threads = launch.elementwise(out.shape[0] * out.shape[1])
    kernel = specialised(_activated_sparse_affine_body, _ACTIVATED_AFFINE_KERNELS, act)
    kernel[blocks, threads, stream](indptr, indices, data, weights, out, bias, float(slope),
                                    float(alpha), float(lam))


# -- gradient and scatter ----------------------------------------------------------
@prepared.jit
def _sparse_weight_gradient(t_indptr, t_rows, t_data, n_present, delta, zero, grad, bias_grad,
                            with_bias, features, slots, stamp, with_slots):
    n_out = delta.shape[1]
    n_weights = n_present * n_out
    for idx in range(cuda.grid(1), n_weights + (n_out if with_bias else 0), cuda.gridsize(1)):
        if idx >= n_weights:  # the fed layer's bias gradient, a column sum
            bias_grad[idx - n_weights] = column_sum(delta, idx - n_weights, zero)
            continue
        s = idx // n_out
        h = idx - s * n_out
        if with_slots and h == 0:  # the update reads feature s's gradient row here
            slots[features[s]] = (stamp << SLOT_BITS) | s
        acc = zero
        for q in range(t_indptr[s], t_indptr[s + 1]):
            acc += t_data[q] * delta[t_rows[q], h]
        grad[s, h] = acc


def sparse_weight_gradient(t_indptr, t_rows, t_data, n_present, delta, grad, stream,
                           bias_grad=None, features=None, slot_map=None):
    """``grad[s] = sum over the bucket of s of x * delta[row]``, one thread per
    (feature, unit), summing in row order: no float atomics, same on every run.
    Given ``bias_grad``, more threads add up ``delta``'s columns into it (as
    ``dense.column_sums``) in the same launch. Given ``slot_map`` (an
    ``optim.SlotMap``) and ``features`` (the batch's, of the gradient's rows),
    a new step is stamped into it for the weight's update, saving that
    update its own stamping launch."""
    with_bias, with_slots = bias_grad is not None, slot_map is not None
    n = int(n_present) * delta.shape[1] + (delta.shape[1] if with_bias else 0)
    if n == 0:
        return
    stamp = optim.next_stamp(slot_map, stream) if with_slots else 0
    blocks, threads = launch.elementwise(n)
    _sparse_weight_gradient[blocks, threads, stream](
        t_indptr, t_rows, t_data, int(n_present), delta, grad.dtype.type(0), grad,
        bias_grad if with_bias else grad[0], with_bias,
        features if with_slots else t_indptr, slot_map.slots if with_slots else t_indptr,
        stamp, with_slots)
    if with_slots:
        slot_map.stamped = True


@prepared.jit
def _scatter_rows(dst, rows, src):
    n = dst.shape[1]
    for idx in range(cuda.grid(1), rows.shape[0] * n, cuda.gridsize(1)):
        r = idx // n
        j = idx - r * n
        dst[rows[r], j] = src[r, j]


@prepared.jit
def _zero_rows(dst, rows):
    n = dst.shape[1]
    for idx in range(cuda.grid(1), rows.shape[0] * n, cuda.gridsize(1)):
        r = idx // n
        dst[rows[r], idx - r * n] = 0


def scatter_rows(dst, rows, src, stream):
    """``dst[rows[r]] = src[r]`` for r < len(rows)."""
    if rows.shape[0]:
        blocks, threads = launch.elementwise(rows.shape[0] * dst.shape[1])
        _scatter_rows[blocks, threads, stream](dst, rows, src)


def zero_rows(dst, rows, stream):
    if rows.shape[0]:
        blocks, threads = launch.elementwise(rows.shape[0] * dst.shape[1])
        _zero_rows[blocks, threads, stream](dst, rows)

"""The CPU kernels, one by one, against slow and obviously-correct references.

Each test builds a small random input, runs one kernel from
``sparse_deep/backends/cpu`` and compares it with a few lines of numpy or pure
Python written from the definitions (DSSTNE's optimizer formulas, a stable sort
for top-k, dense products for the sparse kernels, ``tests/naive.py`` for the
activations and errors). The references compute in float64; float32 kernels are
compared with a tolerance that fits one rounding per stored value.
"""

import itertools
import math
from types import SimpleNamespace

import os

import numpy as np
import pytest
import scipy.sparse as sp
from numba import njit
from scipy.special import xlogy

from sparse_deep.backends import get_backend
from sparse_deep.backends.cpu import dense, optim, sparse, topk
from sparse_deep.backends.cpu.blas import gemm
from sparse_deep.core import rng as crng
from sparse_deep.core.activations import ACTIVATIONS as REGISTERED_ACTIVATIONS
from sparse_deep.core.errors import ERROR_FUNCTIONS as REGISTERED_ERRORS
from sparse_deep.core.optimizers import OPTIMIZERS as REGISTERED_OPTIMIZERS
from sparse_deep.engine.model import SELU_ALPHA
from sparse_deep.engine.optim import OptimizerConfig, OptimizerState
from sparse_deep.network import ERROR_FUNCTIONS

from . import naive

DTYPES = [np.float32, np.float64]
OPTIMIZERS = list(REGISTERED_OPTIMIZERS)  # sgd, momentum, nesterov, adagrad, rmsprop, adadelta, adam
# Per-weight arrays each optimizer keeps; the others get a one-row dummy.
N_STATES = {name: optimizer.n_states for name, optimizer in REGISTERED_OPTIMIZERS.items()}


def tolerance(dtype):
    """Float64 kernels do the reference's operations in the same order; float32
    ones may differ by a rounding of each stored value, compounded over steps."""
    if dtype == np.float64:
        return {"rtol": 1e-12, "atol": 1e-14}
    return {"rtol": 2e-6, "atol": 1e-7}


# --------------------------------------------------------------------------------------
# Optimizers
# --------------------------------------------------------------------------------------

def pack_hyper(step, lr=0.05, mu=0.8, rho=0.85, beta1=0.8, beta2=0.95, eps=1e-6,
               l2=0.01, l1=0.003):
    """The kernels' ``hyper`` array (lr, mu, rho, beta1, beta2, eps, c1, c2, l2, l1)."""
    return np.array([lr, mu, rho, beta1, beta2, eps, 1 - beta1**step, 1 - beta2**step, l2, l1])


def ref_optimizer(name, w, g, s1, s2, hyper):
    """DSSTNE's update of float64 arrays, written from the formulas; returns (w, s1, s2)."""
    lr, mu, rho, b1, b2, eps, c1, c2, l2, l1 = hyper
    g = g + l2 * w + l1 * np.sign(w)  # sign(0) = 0: no L1 pull on an exact zero
    if name == "sgd":
        return w - lr * g, s1, s2
    if name == "momentum":
        v = mu * s1 - lr * g
        return w + v, v, s2
    if name == "nesterov":
        v = mu * s1 - lr * g
        return w + v + mu * (v - s1), v, s2
    if name == "adagrad":
        s = s1 + g * g
        return w - lr * g / (np.sqrt(s) + eps), s, s2
    if name == "rmsprop":
        s = rho * s1 + (1 - rho) * g * g
        return w - lr * g / (np.sqrt(s) + eps), s, s2
    if name == "adadelta":
        s = rho * s1 + (1 - rho) * g * g
        dx = -np.sqrt(s2 + eps) / np.sqrt(s + eps) * g
        return w + dx, s, rho * s2 + (1 - rho) * dx * dx
    if name == "adam":
        m = b1 * s1 + (1 - b1) * g
        v = b2 * s2 + (1 - b2) * g * g
        return w - lr * (m / c1) / (np.sqrt(v / c2) + eps), m, v
    # An optimizer without a formula here: its registered definition.
    return naive.optimizer_update(name, w, g, s1, s2, hyper)


def ref_update_rows(param, grad, rows, n_rows, s1, s2, name, hyper):
    """Row-by-row reference of ``optim.update_rows`` on copies; dummy states untouched."""
    param, s1, s2 = param.copy(), s1.copy(), s2.copy()
    full1, full2 = N_STATES[name] >= 1, N_STATES[name] >= 2
    for r in range(n_rows):
        row = rows[r]
        zeros = np.zeros(param.shape[1])
        w, a, b = ref_optimizer(
            name, param[row].astype(np.float64), grad[r].astype(np.float64),
            s1[row].astype(np.float64) if full1 else zeros,
            s2[row].astype(np.float64) if full2 else zeros, hyper)
        param[row] = w
        if full1:
            s1[row] = a
        if full2:
            s2[row] = b
    return param, s1, s2


def make_states(name, shape, dtype):
    n = N_STATES[name]
    s1 = np.zeros(shape if n >= 1 else (1, shape[1]), dtype)
    s2 = np.zeros(shape if n >= 2 else (1, shape[1]), dtype)
    return s1, s2


def random_param(rng, shape, dtype):
    p = rng.normal(0, 1, shape).astype(dtype)
    p.flat[:: 5] = 0  # exact zeros: L1 must add nothing there
    return p


def assert_update_matches(name, dtype, param, grad, rows, n_rows, s1, s2, hyper):
    """Run the kernel and the reference on the same inputs and compare everything."""
    expected = ref_update_rows(param, grad, rows, n_rows, s1, s2, name, hyper)
    optim.update_rows(param, grad, rows, n_rows, s1, s2, REGISTERED_OPTIMIZERS[name].code, hyper)
    for got, want in zip((param, s1, s2), expected):
        np.testing.assert_allclose(got, want, **tolerance(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("seed,shape", [(0, (5, 3)), (1, (8, 17))])
def test_update_rows_dense_parameter(name, dtype, seed, shape):
    """Every row updated, state carried over four steps with changing gradients."""
    rng = np.random.default_rng(seed)
    param = random_param(rng, shape, dtype)
    s1, s2 = make_states(name, shape, dtype)
    rows = np.arange(shape[0], dtype=np.int64)
    for step in range(1, 5):
        grad = rng.normal(0, 1, shape).astype(dtype)
        assert_update_matches(name, dtype, param, grad, rows, shape[0], s1, s2, pack_hyper(step))
    if N_STATES[name] < 2:  # the dummies of unused states are never changed
        assert not s2.any()
    if N_STATES[name] < 1:
        assert not s1.any()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_update_rows_row_subset(name, dtype):
    """The sparse input layer's lazy update: only listed rows (in any order) move.

    The rows and gradient buffers are longer than ``n_rows`` and hold stale
    entries past it, as the runner's reused buffers do; those must be ignored.
    """
    rng = np.random.default_rng(7)
    shape = (11, 6)
    param = random_param(rng, shape, dtype)
    s1, s2 = make_states(name, shape, dtype)
    for step in range(1, 5):
        n_rows = int(rng.integers(1, 8))
        order = rng.permutation(shape[0])
        rows = order.astype(np.int64)  # entries past n_rows: other (unlisted) rows
        grad = rng.normal(0, 1, (shape[0], shape[1])).astype(dtype)
        before = [x.copy() for x in (param, s1, s2)]
        assert_update_matches(name, dtype, param, grad, rows, n_rows, s1, s2, pack_hyper(step))
        unlisted = np.setdiff1d(np.arange(shape[0]), rows[:n_rows])
        for got, old in zip((param, s1, s2), before):
            if got.shape[0] == shape[0]:  # full arrays: unlisted rows bit-identical
                assert np.array_equal(got[unlisted], old[unlisted])
            else:  # a dummy state
                assert np.array_equal(got, old)
        assert not np.array_equal(param[rows[:n_rows]], before[0][rows[:n_rows]])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_update_all_rows_equals_a_scattered_full_gradient(name, dtype):
    """The dense input update: every row steps, rows without a gradient with
    zero. Bit for bit what scattering into a zero full-size gradient and
    updating every row gives (the generic backend's way), and slots reset."""
    rng = np.random.default_rng(11)
    shape = (13, 6)
    param = random_param(rng, shape, dtype)
    s1, s2 = make_states(name, shape, dtype)
    want = [x.copy() for x in (param, s1, s2)]
    slots = np.full(shape[0], -1, dtype=np.int64)
    all_rows = np.arange(shape[0], dtype=np.int64)
    for step in range(1, 5):
        n_rows = int(rng.integers(0, 9))
        rows = rng.permutation(shape[0]).astype(np.int64)  # stale ids past n_rows
        row_grads = rng.normal(0, 1, shape).astype(dtype)
        full = np.zeros(shape, dtype)
        full[rows[:n_rows]] = row_grads[:n_rows]
        optim.update_rows(want[0], full, all_rows, shape[0], want[1], want[2],
                          REGISTERED_OPTIMIZERS[name].code, pack_hyper(step))
        optim.update_all_rows(param, row_grads, rows[:n_rows], all_rows, slots, s1, s2,
                              REGISTERED_OPTIMIZERS[name].code, pack_hyper(step))
        for got, expected in zip((param, s1, s2), want):
            assert np.array_equal(got, expected)
        assert (slots == -1).all()


def test_update_rows_zero_rows_is_a_no_op():
    rng = np.random.default_rng(3)
    param = random_param(rng, (4, 3), np.float64)
    s1, s2 = make_states("adam", (4, 3), np.float64)
    old = param.copy()
    optim.update_rows(param, np.ones((4, 3)), np.arange(4), 0, s1, s2, REGISTERED_OPTIMIZERS["adam"].code,
                      pack_hyper(1))
    assert np.array_equal(param, old) and not s1.any() and not s2.any()


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_optimizer_state_drives_update_rows(name):
    """OptimizerState allocates the right arrays and hyper-parameters; driving
    update_rows with them as Runner.update does (weights regularised, a
    row-sparse input weight, biases as one-row params without L2/L1) matches the
    reference."""
    rng = np.random.default_rng(11)
    dtype = np.float32
    w_in = random_param(rng, (9, 4), dtype)
    w_out = random_param(rng, (4, 3), dtype)
    bias = rng.normal(0, 1, 4).astype(dtype)
    params = [("in->h", w_in, True), ("h->out", w_out, False), ("h.bias", bias, False)]
    config = OptimizerConfig(name=name, learning_rate=0.05, momentum=0.8, rho=0.85, beta1=0.8,
                             beta2=0.95, epsilon=1e-6, l2=0.01, l1=0.003, decay=0.1)
    state = OptimizerState(config, params, get_backend("cpu"))
    assert state.uses_state == N_STATES[name]
    n = N_STATES[name]
    for (s1, s2), shape in zip(state.states, [(9, 4), (4, 3), (1, 4)]):
        assert s1.shape == (shape if n >= 1 else (1, shape[1])) and s1.dtype == dtype
        assert s2.shape == (shape if n >= 2 else (1, shape[1])) and s2.dtype == dtype
        assert not s1.any() and not s2.any()
    for step in range(1, 4):
        hyper = state.hyper(step)
        expected = pack_hyper(step, lr=0.05 / (1 + 0.1 * (step - 1)))
        np.testing.assert_allclose(hyper, expected, rtol=1e-15)
        bias_hyper = state.hyper(step, l2=0.0, l1=0.0)
        assert bias_hyper[8] == 0 and bias_hyper[9] == 0
        rows = rng.permutation(9)[:5].astype(np.int64)
        (a1, a2), (b1, b2), (c1, c2) = state.states
        assert_update_matches(name, dtype, w_in, rng.normal(0, 1, (9, 4)).astype(dtype), rows,
                              5, a1, a2, hyper)
        assert_update_matches(name, dtype, w_out, rng.normal(0, 1, (4, 3)).astype(dtype),
                              np.arange(4, dtype=np.int64), 4, b1, b2, hyper)
        bias2d = bias.reshape(1, -1)  # a view: the update must land in ``bias``
        old_bias = bias.copy()
        assert_update_matches(name, dtype, bias2d, rng.normal(0, 1, (1, 4)).astype(dtype),
                              np.arange(1, dtype=np.int64), 1, c1, c2, bias_hyper)
        assert not np.array_equal(bias, old_bias)


def ref_cap_column_norms(w, max_norm):
    w = w.astype(np.float64)
    norms = np.sqrt((w * w).sum(axis=0))
    scale = np.where(norms > max_norm, max_norm / np.maximum(norms, 1e-300), 1.0)
    return w * scale


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed,shape", [(0, (6, 5)), (1, (13, 9)), (2, (1, 4))])
def test_cap_column_norms(dtype, seed, shape):
    rng = np.random.default_rng(seed)
    w = rng.normal(0, 1, shape).astype(dtype)
    w[:, 0] = 0  # a zero column: norm 0, never rescaled
    norms = np.sqrt((w.astype(np.float64) ** 2).sum(axis=0))
    max_norm = float(np.median(norms[1:])) if shape[1] > 2 else 0.5
    expected = ref_cap_column_norms(w, max_norm)
    untouched = norms <= max_norm
    old = w.copy()
    optim.cap_column_norms(w, max_norm)
    np.testing.assert_allclose(w, expected, **tolerance(dtype))
    assert np.array_equal(w[:, untouched], old[:, untouched])  # below the cap: bit-identical
    capped = np.sqrt((w.astype(np.float64) ** 2).sum(axis=0))[~untouched]
    np.testing.assert_allclose(capped, max_norm, rtol=1e-5 if dtype == np.float32 else 1e-12)


# --------------------------------------------------------------------------------------
# Top-k
# --------------------------------------------------------------------------------------

def ref_topk(scores, k, ex_indptr, ex_indices):
    """Stable sort of each row's unexcluded columns by (-score, id), padded with (-1, -inf)."""
    n_rows, n_cols = scores.shape
    ids = np.full((n_rows, k), -1, dtype=np.int64)
    vals = np.full((n_rows, k), -np.inf, dtype=scores.dtype)
    for i in range(n_rows):
        excluded = set(ex_indices[ex_indptr[i]:ex_indptr[i + 1]].tolist())
        cands = sorted((-float(scores[i, j]), j) for j in range(n_cols) if j not in excluded)
        for q, (_, j) in enumerate(cands[:k]):
            ids[i, q], vals[i, q] = j, scores[i, j]
    return ids, vals


def random_exclusions(rng, n_rows, n_cols, heavy):
    """Sorted CSR of excluded columns; ``heavy`` leaves some rows with few candidates."""
    indptr, indices = [0], []
    for i in range(n_rows):
        frac = rng.choice([0.0, 0.3, 0.8, 1.0]) if heavy else 0.3
        cols = np.flatnonzero(rng.random(n_cols) < frac)
        indices.extend(cols.tolist())
        indptr.append(len(indices))
    return np.array(indptr, dtype=np.int64), np.array(indices, dtype=np.int32)


def run_topk(scores, k, ex_indptr, ex_indices):
    n = scores.shape[0]
    ids = np.full((n, k), 12345, dtype=np.int64)  # garbage: everything must be overwritten
    vals = np.full((n, k), np.nan, dtype=scores.dtype)
    topk.topk_rows(scores, k, ex_indptr, ex_indices, ids, vals)
    return ids, vals


def score_matrix(rng, kind, shape, dtype):
    if kind == "continuous":
        return rng.normal(0, 1, shape).astype(dtype)
    if kind == "ties":  # few distinct values: the id breaks the tie
        return rng.choice([0.0, 0.5, 1.0], shape).astype(dtype)
    # real candidates scoring -inf must still be returned with their ids
    return rng.choice([-np.inf, 0.0, 2.0], shape).astype(dtype)


TOPK_SCENARIOS = list(itertools.product(["continuous", "ties", "with-inf"],
                                        ["none", "some", "heavy"]))


def stacked_topk_case(rng, n_cols, dtype, rows_each=3):
    """One score matrix whose row blocks cover every (scores, exclusions) scenario,
    so one kernel call per k checks them all (parallel launches are not free)."""
    blocks, ex_ptr, ex_idx, labels = [], [0], [], []
    for kind, exclusions in TOPK_SCENARIOS:
        blocks.append(score_matrix(rng, kind, (rows_each, n_cols), dtype))
        ptr, idx = random_exclusions(rng, rows_each, n_cols, exclusions == "heavy")
        if exclusions == "none":
            ptr, idx = np.zeros(rows_each + 1, np.int64), idx[:0]
        ex_ptr.extend((ptr[1:] + len(ex_idx)).tolist())
        ex_idx.extend(idx.tolist())
        labels += [f"{kind}/{exclusions}"] * rows_each
    return (np.vstack(blocks), np.array(ex_ptr, np.int64), np.array(ex_idx, np.int32), labels)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", [0, 1])
def test_topk_rows_matches_stable_sort(dtype, seed):
    """Every k from 1 to n_cols; continuous scores, ties and -inf scores; no,
    some and heavy exclusions (rows with fewer than k candidates get padded)."""
    rng = np.random.default_rng(seed)
    for n_cols in (1, 2, 5, 12, 33):
        scores, ex_indptr, ex_indices, labels = stacked_topk_case(rng, n_cols, dtype)
        for k in range(1, n_cols + 1):
            ids, vals = run_topk(scores, k, ex_indptr, ex_indices)
            want_ids, want_vals = ref_topk(scores, k, ex_indptr, ex_indices)
            for i, label in enumerate(labels):
                assert np.array_equal(ids[i], want_ids[i]), (label, n_cols, k, ids[i])
                assert np.array_equal(vals[i], want_vals[i]), (label, n_cols, k, vals[i])


@pytest.mark.parametrize("dtype", DTYPES)
def test_topk_rows_without_exclusions(dtype):
    """The recommender's "exclude nothing": all-zero indptr and an empty index array."""
    rng = np.random.default_rng(2)
    scores = score_matrix(rng, "ties", (6, 9), dtype)
    ex_indptr, ex_indices = np.zeros(7, np.int64), np.zeros(0, np.int32)
    for k in (1, 4, 9):
        ids, vals = run_topk(scores, k, ex_indptr, ex_indices)
        want_ids, want_vals = ref_topk(scores, k, ex_indptr, ex_indices)
        assert np.array_equal(ids, want_ids) and np.array_equal(vals, want_vals)


def test_topk_rows_pads_rows_with_too_few_candidates():
    scores = np.array([[3.0, 1.0, 2.0, 0.5], [1.0, 1.0, 1.0, 1.0]], dtype=np.float32)
    ex_indptr = np.array([0, 3, 4], dtype=np.int64)
    ex_indices = np.array([0, 2, 3, 1], dtype=np.int32)
    ids, vals = run_topk(scores, 3, ex_indptr, ex_indices)
    assert ids.tolist() == [[1, -1, -1], [0, 2, 3]]
    assert vals.tolist() == [[1.0, -np.inf, -np.inf], [1.0, 1.0, 1.0]]


def test_topk_rows_on_row_slice_of_scores():
    """The recommender passes a row-slice of a larger buffer and of the output."""
    rng = np.random.default_rng(5)
    scores = rng.normal(0, 1, (9, 10)).astype(np.float32)
    ids = np.zeros((12, 4), np.int64)
    vals = np.zeros((12, 4), np.float32)
    ex_indptr, ex_indices = random_exclusions(rng, 5, 10, heavy=False)
    topk.topk_rows(scores[:5], 4, ex_indptr, ex_indices, ids[2:7], vals[2:7])
    want_ids, want_vals = ref_topk(scores[:5], 4, ex_indptr, ex_indices)
    assert np.array_equal(ids[2:7], want_ids) and np.array_equal(vals[2:7], want_vals)
    assert not ids[:2].any() and not ids[7:].any()


# --------------------------------------------------------------------------------------
# Sparse kernels
# --------------------------------------------------------------------------------------

def random_csr(rng, n_rows, n_cols, density, dtype, shuffle=False):
    """A random CSR with an empty row; ``shuffle`` unsorts the indices within rows."""
    mask = rng.random((n_rows, n_cols)) < density
    mask[min(1, n_rows - 1)] = False
    x = sp.csr_matrix(np.where(mask, rng.uniform(0.5, 2.0, mask.shape), 0.0).astype(dtype))
    indptr = x.indptr.astype(np.int64)
    indices = x.indices.astype(np.int32)
    data = x.data.astype(dtype)
    if shuffle:
        for i in range(n_rows):
            perm = indptr[i] + rng.permutation(indptr[i + 1] - indptr[i])
            indices[indptr[i]:indptr[i + 1]] = indices[perm]
            data[indptr[i]:indptr[i + 1]] = data[perm]
    return indptr, indices, data


def to_dense(indptr, indices, data, n_cols):
    n_rows = len(indptr) - 1
    return sp.csr_matrix((data[: indptr[-1]], indices[: indptr[-1]], indptr),
                         shape=(n_rows, n_cols)).toarray()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", [0, 1])
def test_gather_rows(dtype, seed):
    rng = np.random.default_rng(seed)
    indptr, indices, data = random_csr(rng, 10, 8, 0.4, dtype, shuffle=True)
    rows = rng.integers(0, 10, 6).astype(np.int64)  # repeats and any order
    rows[0] = 1  # the empty row
    size = int(indptr[-1]) + 5
    out_indptr = np.full(10, -7, np.int64)  # larger than needed, as the runner's buffers
    out_indices = np.full(size * 6, -7, np.int32)
    out_data = np.full(size * 6, -7, dtype)
    nnz = sparse.gather_rows(indptr, indices, data, rows, out_indptr, out_indices, out_data)
    want_indptr, want_indices, want_data = [0], [], []
    for r in rows:  # plain concatenation of the rows, order within rows preserved
        want_indices += indices[indptr[r]:indptr[r + 1]].tolist()
        want_data += data[indptr[r]:indptr[r + 1]].tolist()
        want_indptr.append(len(want_indices))
    assert nnz == len(want_indices)
    assert out_indptr[: len(rows) + 1].tolist() == want_indptr
    assert out_indices[:nnz].tolist() == want_indices
    assert np.array_equal(out_data[:nnz], np.array(want_data, dtype))
    assert (out_indptr[len(rows) + 1:] == -7).all() and (out_indices[nnz:] == -7).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed,p", [(0, 0.3), (1, 0.5), (2, 0.1)])
def test_denoise(dtype, seed, p):
    """Kept set = the counter-RNG mask of (global row id, feature); survivors
    scaled by 1/(1-p); rows compacted in place; the new nnz returned."""
    rng = np.random.default_rng(seed)
    n_rows, n_features = 7, 13
    indptr, indices, data = random_csr(rng, n_rows, n_features, 0.5, dtype, shuffle=True)
    row_ids = rng.choice(1000, n_rows, replace=False).astype(np.int64)
    step = int(rng.integers(0, 50))
    keep = naive.mask(seed, step, 0, row_ids, n_features, p)
    # Expected: each row's entries in their stored order, dropped ones removed.
    want_indptr, want_indices, want_data = [0], [], []
    for i in range(n_rows):
        for q in range(indptr[i], indptr[i + 1]):
            if keep[i, indices[q]]:
                want_indices.append(indices[q])
                want_data.append(float(data[q]) / (1 - p))
        want_indptr.append(len(want_indices))
    # The batch view is indptr[:b+1] of a larger buffer, as the runner passes it.
    big_indptr = np.concatenate([indptr, np.full(3, 99, np.int64)])
    key = crng.stream_key_host(seed, step, 0)
    nnz = sparse.denoise(big_indptr[: n_rows + 1], indices, data, row_ids, n_features, key, p)
    assert 0 < nnz < indptr[-1]  # these seeds drop something and keep something
    assert nnz == len(want_indices)
    assert big_indptr[: n_rows + 1].tolist() == want_indptr
    assert (big_indptr[n_rows + 1:] == 99).all()
    assert indices[:nnz].tolist() == want_indices
    np.testing.assert_allclose(data[:nnz], want_data, rtol=1e-6 if dtype == np.float32 else 1e-15)


def test_denoise_mask_depends_on_global_ids_not_batch_position():
    """The same example keeps the same features whatever batch it lands in."""
    rng = np.random.default_rng(4)
    indptr, indices, data = random_csr(rng, 6, 20, 0.8, np.float64)
    key = crng.stream_key_host(3, 9, 0)
    ids = np.arange(100, 106, dtype=np.int64)
    a = [x.copy() for x in (indptr, indices, data)]
    sparse.denoise(*a, ids, 20, key, 0.4)
    # Reverse the batch: row i moves to position 5 - i.
    rev = [np.concatenate([[0], np.cumsum(np.diff(indptr)[::-1])]).astype(np.int64),
           np.concatenate([indices[indptr[i]:indptr[i + 1]] for i in range(5, -1, -1)]),
           np.concatenate([data[indptr[i]:indptr[i + 1]] for i in range(5, -1, -1)])]
    sparse.denoise(*rev, ids[::-1].copy(), 20, key, 0.4)
    dense_a = to_dense(*a, 20)
    dense_b = to_dense(*rev, 20)[::-1]
    assert np.array_equal(dense_a, dense_b)


def test_denoise_of_a_feature_slice_keeps_what_the_whole_row_keeps():
    """Model-parallel ranks denoise their own feature columns (re-based, with an
    offset) and keep exactly the entries that one process would keep."""
    rng = np.random.default_rng(5)
    indptr, indices, data = random_csr(rng, 6, 20, 0.8, np.float64)
    key = crng.stream_key_host(3, 9, 0)
    ids = np.arange(50, 56, dtype=np.int64)
    whole = [x.copy() for x in (indptr, indices, data)]
    sparse.denoise(*whole, ids, 20, key, 0.4)
    expected = to_dense(*whole, 20)
    matrix = sp.csr_matrix(to_dense(indptr, indices, data, 20))
    pieces = []
    for start, stop in [(0, 7), (7, 13), (13, 20)]:
        part = matrix[:, start:stop].tocsr()
        a = [part.indptr.astype(np.int64), part.indices.astype(np.int32), part.data.copy()]
        sparse.denoise(*a, ids, 20, key, 0.4, start)
        pieces.append(to_dense(*a, stop - start))
    np.testing.assert_array_equal(np.hstack(pieces), expected)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed,shape", [(0, (5, 9, 4)), (1, (8, 30, 17)), (2, (1, 3, 1))])
def test_sparse_matmul_add(dtype, seed, shape):
    """``out += X @ W`` on a row-slice of a larger buffer (rows past it untouched)."""
    rng = np.random.default_rng(seed)
    b, n_in, n_out = shape
    indptr, indices, data = random_csr(rng, b, n_in, 0.4, dtype, shuffle=True)
    w = rng.normal(0, 1, (n_in, n_out)).astype(dtype)
    buf = rng.normal(0, 1, (b + 2, n_out)).astype(dtype)  # bias already in ``out``
    old = buf.copy()
    want = old[:b].astype(np.float64) + to_dense(indptr, indices, data, n_in) @ w.astype(np.float64)
    sparse.sparse_matmul_add(indptr, indices, data, w, buf[:b])
    np.testing.assert_allclose(buf[:b], want, rtol=1e-5 if dtype == np.float32 else 1e-12,
                               atol=1e-5 if dtype == np.float32 else 1e-12)
    assert np.array_equal(buf[b:], old[b:])


def run_transpose(indptr, indices, data, n_features, dtype):
    nnz = int(indptr[-1])
    slot = np.full(n_features, -1, np.int32)
    size = nnz + 3  # runner buffers are sized for the largest batch
    features = np.full(size, -5, np.int64)
    t_indptr = np.full(size + 1, -5, np.int64)
    t_rows = np.full(size, -5, np.int32)
    t_data = np.full(size, -5, dtype)
    n_present = sparse.transpose_batch(indptr, indices, data, slot, features, t_indptr, t_rows,
                                       t_data)
    return n_present, slot, features, t_indptr, t_rows, t_data


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_transpose_batch(dtype, seed):
    rng = np.random.default_rng(seed)
    n_rows, n_features = 6, 15
    indptr, indices, data = random_csr(rng, n_rows, n_features, 0.35, dtype, shuffle=True)
    n_present, slot, features, t_indptr, t_rows, t_data = run_transpose(
        indptr, indices, data, n_features, dtype)
    # Reference: features in order of first appearance in storage order, each
    # with its (row, value) pairs in increasing row order.
    order = list(dict.fromkeys(indices[: indptr[-1]].tolist()))
    assert n_present == len(order)
    assert features[:n_present].tolist() == order
    assert (slot == -1).all()  # scratch left clean for the next batch
    assert t_indptr[0] == 0
    for s, f in enumerate(order):
        pairs = [(i, data[q]) for i in range(n_rows) for q in range(indptr[i], indptr[i + 1])
                 if indices[q] == f]
        lo, hi = t_indptr[s], t_indptr[s + 1]
        assert t_rows[lo:hi].tolist() == [i for i, _ in pairs]
        assert np.array_equal(t_data[lo:hi], np.array([v for _, v in pairs], dtype))
    assert t_indptr[n_present] == indptr[-1]


def test_transpose_batch_of_empty_batch():
    n_present, slot, *_ = run_transpose(np.zeros(4, np.int64), np.zeros(1, np.int32),
                                        np.zeros(1), 5, np.float64)
    assert n_present == 0 and (slot == -1).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", [0, 1])
def test_sparse_weight_gradient(dtype, seed):
    """``grad[s] = (X.T @ delta)[features[s]]`` for the present features only."""
    rng = np.random.default_rng(seed)
    n_rows, n_features, n_out = 7, 12, 5
    indptr, indices, data = random_csr(rng, n_rows, n_features, 0.4, dtype, shuffle=True)
    n_present, _, features, t_indptr, t_rows, t_data = run_transpose(
        indptr, indices, data, n_features, dtype)
    delta = rng.normal(0, 1, (n_rows, n_out)).astype(dtype)
    grad = np.full((int(indptr[-1]) + 2, n_out), 7.0, dtype)  # stale contents
    sparse.sparse_weight_gradient(t_indptr, t_rows, t_data, n_present, delta, grad)
    full = to_dense(indptr, indices, data, n_features).T @ delta.astype(np.float64)
    np.testing.assert_allclose(grad[:n_present], full[features[:n_present]],
                               rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-6)
    assert (grad[n_present:] == 7.0).all()
    # Features absent from the batch have a zero gradient: nothing is lost.
    absent = np.setdiff1d(np.arange(n_features), features[:n_present])
    assert not full[absent].any()


# --------------------------------------------------------------------------------------
# Dense kernels
# --------------------------------------------------------------------------------------

ACTIVATIONS = list(REGISTERED_ACTIVATIONS)
SLOPE, ELU_ALPHA, LAM = 0.1, 0.7, 1.05
SMCE = SimpleNamespace(one_target=0.9, zero_target=0.1, one_scale=1.3, zero_scale=0.7)
BOOST = SimpleNamespace(one=1.5, zero=0.8)
UNIT_ERRORS = {"CrossEntropy", "ScaledMarginalCrossEntropy", "DataScaledMarginalCrossEntropy"}


def valid_pair(act, err):
    """The activation x error pairs the network language accepts for a full
    output layer (the sampled losses have kernels of their own,
    tests/test_sampled.py)."""
    if ERROR_FUNCTIONS.info(err).sampled:
        return False
    if err in UNIT_ERRORS and act not in ("Sigmoid", "SoftMax"):
        return False
    return not (err == "DataScaledMarginalCrossEntropy" and act == "SoftMax")


PAIRS = [(a, e) for a, e in itertools.product(ACTIVATIONS, REGISTERED_ERRORS) if valid_pair(a, e)]


def kernel_alpha(act):
    # The engine passes SELU's standard alpha in the ELU-alpha slot (model.py).
    return SELU_ALPHA if act == "SELU" else ELU_ALPHA


def naive_act(act, z):
    return naive.activation(act, z, SLOPE, ELU_ALPHA, LAM)


def pre_activations(rng, shape, dtype, spread=3.0):
    """Random z kept away from 0, where Relu/LRelu/ELU have kinks."""
    z = rng.uniform(-spread, spread, shape)
    z = np.where(np.abs(z) < 0.05, 0.05 + np.abs(z), z)
    return z.astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ACTIVATIONS)
def test_activate_rows(act, dtype):
    rng = np.random.default_rng(REGISTERED_ACTIVATIONS.info(act).code)
    buf = pre_activations(rng, (7, 9), dtype, spread=4.0)
    buf[0, :3] = [30.0, -30.0, 0.0]  # saturation and the origin
    z = buf.astype(np.float64)
    dense.activate_rows(buf[:5], REGISTERED_ACTIVATIONS.info(act).code, SLOPE, kernel_alpha(act), LAM)
    np.testing.assert_allclose(buf[:5], naive_act(act, z[:5]),
                               rtol=1e-12 if dtype == np.float64 else 2e-6, atol=1e-7)
    assert np.array_equal(buf[5:], z[5:].astype(dtype))  # rows past the view untouched


@pytest.mark.parametrize("dtype", DTYPES)
def test_fill_rows(dtype):
    """Every row of the view gets the bias; rows past the view are untouched."""
    rng = np.random.default_rng(5)
    buf = rng.normal(0, 1, (9, 13)).astype(dtype)
    old = buf.copy()
    bias = rng.normal(0, 1, 13).astype(dtype)
    dense.fill_rows(buf[:6], bias)
    assert np.array_equal(buf[:6], np.broadcast_to(bias, (6, 13)))
    assert np.array_equal(buf[6:], old[6:])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 256, 257, 700])
def test_column_sums(dtype, n):
    """The parallel kernel sums each column in row order, in the array's
    dtype, to the bit; narrow arrays go to numpy (pairwise for one column)."""
    rng = np.random.default_rng(n)
    x = rng.normal(0, 1, (37, n)).astype(dtype)
    out, kernel_out = np.full(n, np.nan, dtype), np.full(n, np.nan, dtype)
    dense.column_sums(x, out)
    dense._column_sums(x, kernel_out)
    want = np.zeros(n, dtype)
    for row in x:
        want += row
    assert np.array_equal(kernel_out, want)
    np.testing.assert_allclose(out, x.astype(np.float64).sum(axis=0), rtol=1e-5, atol=1e-5)


def random_targets(rng, shape, dtype, err):
    """Dense targets with ~40% entries and one empty row; analog where the error reads values."""
    mask = rng.random(shape) < 0.4
    mask[0] = False
    mask[np.arange(1, shape[0]), rng.integers(0, shape[1], shape[0] - 1)] = True
    analog = err in ("L1", "L2", "CrossEntropy", "DataScaledMarginalCrossEntropy")
    values = rng.uniform(0.2, 1.0, shape) if analog else np.ones(shape)
    return np.where(mask, values, 0.0).astype(dtype)


def output_hyper(act):
    return np.array([SLOPE, kernel_alpha(act), LAM, SMCE.one_target, SMCE.zero_target,
                     SMCE.one_scale, SMCE.zero_scale, BOOST.one, BOOST.zero])


def run_output_pass(act, err, z, t):
    tc = sp.csr_matrix(t)
    a = z.copy()
    delta = np.full_like(z, np.nan)
    row_error = np.full(z.shape[0], np.nan)
    dense.output_pass(a, tc.indptr.astype(np.int64), tc.indices.astype(np.int32),
                      tc.data.astype(z.dtype), REGISTERED_ACTIVATIONS.info(act).code, REGISTERED_ERRORS.info(err).code,
                      output_hyper(act), 1.0 / z.shape[0], delta, row_error)
    return a, delta, row_error


def naive_error_matrix(act, err, z, t):
    return naive.output_error(err, act, naive_act(act, z), t, SMCE, BOOST)


def numeric_delta(act, err, z, t, h=1e-6):
    """Central differences of the mean batch error with respect to each z."""
    g = np.zeros_like(z)
    for idx in np.ndindex(z.shape):
        zp, zm = z.copy(), z.copy()
        zp[idx] += h
        zm[idx] -= h
        g[idx] = (naive_error_matrix(act, err, zp, t).sum()
                  - naive_error_matrix(act, err, zm, t).sum()) / (2 * h)
    return g / z.shape[0]


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("act,err", PAIRS)
def test_output_pass_float64(act, err, seed):
    rng = np.random.default_rng(seed * 1000 + REGISTERED_ACTIVATIONS.info(act).code * 10 + REGISTERED_ERRORS.info(err).code)
    z = pre_activations(rng, (4, 6), np.float64)
    t = random_targets(rng, z.shape, np.float64, err)
    a, delta, row_error = run_output_pass(act, err, z, t)
    np.testing.assert_allclose(a, naive_act(act, z), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(row_error, naive_error_matrix(act, err, z, t).sum(axis=1),
                               rtol=1e-10, atol=1e-14)
    want = numeric_delta(act, err, z, t)
    scale = max(np.abs(want).max(), 1e-3)
    np.testing.assert_allclose(delta, want, rtol=0, atol=1e-6 * scale)


def run_sharded_output_pass(act, err, z, t, bounds):
    """The output pass over column slices, as model-parallel ranks run it."""
    from sparse_deep.distributed.runner import combine_softmax_partials

    slices = [(z[:, a:b].copy(), sp.csr_matrix(t[:, a:b])) for a, b in zip(bounds, bounds[1:])]
    parts = np.zeros((len(slices), z.shape[0], 3))
    for r, (zs, ts) in enumerate(slices):
        dense.softmax_partials(zs, ts.indptr.astype(np.int64), ts.data.astype(z.dtype), parts[r])
    stats = combine_softmax_partials(parts)
    outs, h_sums, errors = [], [], []
    for zs, ts in slices:
        delta, row_error, own = np.full_like(zs, np.nan), np.full(z.shape[0], np.nan), stats.copy()
        dense.output_pass(zs, ts.indptr.astype(np.int64), ts.indices.astype(np.int32),
                          ts.data.astype(z.dtype), REGISTERED_ACTIVATIONS.info(act).code, REGISTERED_ERRORS.info(err).code,
                          output_hyper(act), 1.0 / z.shape[0], delta, row_error, own)
        outs.append((zs, delta))
        h_sums.append(own[:, 3])
        errors.append(row_error)
    h_sum = np.sum(h_sums, axis=0)
    for a, delta in outs:
        dense.softmax_jacobian(delta, a, h_sum, 1.0 / z.shape[0])
    return (np.hstack([a for a, _ in outs]), np.hstack([d for _, d in outs]),
            np.sum(errors, axis=0))


@pytest.mark.parametrize("err", ["CrossEntropy", "ScaledMarginalCrossEntropy", "L2", "L1"])
@pytest.mark.parametrize("bounds", [[0, 3, 7, 11], [0, 0, 5, 11], [0, 11]])
def test_sharded_softmax_output_pass_equals_the_whole_row(err, bounds):
    """Slices of a SoftMax output (one per rank, some empty) give the whole row's
    activations, deltas and errors once their partial sums are combined."""
    rng = np.random.default_rng(REGISTERED_ERRORS.info(err).code + 7 * len(bounds))
    z = pre_activations(rng, (5, 11), np.float64)
    t = random_targets(rng, z.shape, np.float64, err)
    a, delta, row_error = run_output_pass("SoftMax", err, z, t)
    a2, delta2, row_error2 = run_sharded_output_pass("SoftMax", err, z, t, bounds)
    np.testing.assert_allclose(a2, a, rtol=1e-6, atol=1e-9)  # fast_exp: float32-exact
    np.testing.assert_allclose(delta2, delta, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(row_error2, row_error, rtol=1e-5, atol=1e-8)
    # Inference: the slices' activations from the combined statistics.
    from sparse_deep.distributed.runner import combine_softmax_partials

    parts = np.zeros((len(bounds) - 1, z.shape[0], 3))
    slices = [z[:, lo:hi].copy() for lo, hi in zip(bounds, bounds[1:])]
    no_targets = np.zeros(z.shape[0] + 1, np.int64)
    for r, zs in enumerate(slices):
        dense.softmax_partials(zs, no_targets, z[0, :0].copy(), parts[r])
    stats = combine_softmax_partials(parts)
    for zs in slices:
        dense.softmax_apply(zs, stats)
    np.testing.assert_allclose(np.hstack(slices), a, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("act,err", [("Sigmoid", "CrossEntropy"), ("SoftMax", "CrossEntropy"),
                                     ("Sigmoid", "ScaledMarginalCrossEntropy"),
                                     ("SoftMax", "ScaledMarginalCrossEntropy"),
                                     ("Sigmoid", "DataScaledMarginalCrossEntropy"),
                                     ("Relu", "L2"), ("Tanh", "Hinge"), ("SoftMax", "L2")])
def test_output_pass_float32(act, err):
    """Float32 outputs agree with the float64 reference to float32 precision."""
    rng = np.random.default_rng(REGISTERED_ERRORS.info(err).code)
    z = pre_activations(rng, (5, 7), np.float32)
    t = random_targets(rng, z.shape, np.float32, err)
    z64, t64 = z.astype(np.float64), t.astype(np.float64)
    a, delta, row_error = run_output_pass(act, err, z, t)
    assert a.dtype == delta.dtype == np.float32
    np.testing.assert_allclose(a, naive_act(act, z64), rtol=2e-6, atol=1e-7)
    np.testing.assert_allclose(row_error, naive_error_matrix(act, err, z64, t64).sum(axis=1),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(delta, numeric_delta(act, err, z64, t64), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act,err", [("Sigmoid", "CrossEntropy"), ("SoftMax", "CrossEntropy"),
                                     ("Sigmoid", "ScaledMarginalCrossEntropy"), ("Relu", "L2")])
def test_output_pass_reads_a_stored_zero_target_as_missing(act, err, dtype):
    """Explicit zeros in the target CSR (the fix-up loops skip them) give the
    same activations, deltas and errors as the same targets without them."""
    rng = np.random.default_rng(3)
    z = pre_activations(rng, (6, 40), dtype)
    t = random_targets(rng, z.shape, dtype, err)
    a, delta, row_error = run_output_pass(act, err, z, t)
    rows, cols = np.nonzero((t != 0) | (rng.random(z.shape) < 0.3))
    with_zeros = sp.csr_matrix((t[rows, cols], (rows, cols)), shape=z.shape)  # zeros kept
    assert (with_zeros.data == 0).sum() > 10
    a2, delta2, row_error2 = z.copy(), np.full_like(z, np.nan), np.full(z.shape[0], np.nan)
    dense.output_pass(a2, with_zeros.indptr.astype(np.int64), with_zeros.indices.astype(np.int32),
                      with_zeros.data, REGISTERED_ACTIVATIONS.info(act).code, REGISTERED_ERRORS.info(err).code,
                      output_hyper(act), 1.0 / z.shape[0], delta2, row_error2)
    # Not to the bit: SoftMax's target sum adds the zeros, in vector lanes
    # grouped by the number of entries.
    np.testing.assert_array_equal(a2, a)
    np.testing.assert_allclose(delta2, delta, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(row_error2, row_error, rtol=1e-6)


def numeric_activation_derivative(act, z, h=1e-6):
    return (naive_act(act, z + h) - naive_act(act, z - h)) / (2 * h)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed,p", [(0, 0.3), (1, 0.6)])
def test_dropout_forward(dtype, seed, p):
    rng = np.random.default_rng(seed)
    a = rng.uniform(0.1, 2.0, (6, 11)).astype(dtype)  # non-zero, so a zero means dropped
    row_ids = rng.choice(500, 6, replace=False).astype(np.int64)
    step, layer = 17 + seed, 2
    keep = naive.mask(seed, step, layer, row_ids, 11, p)
    out = np.full_like(a, np.nan)
    dense.dropout_forward(a, out, crng.stream_key_host(seed, step, layer), row_ids, p)
    assert np.array_equal(out != 0, keep)
    assert 0 < keep.sum() < keep.size
    np.testing.assert_allclose(out, np.where(keep, a.astype(np.float64) / (1 - p), 0.0),
                               rtol=1e-6 if dtype == np.float32 else 1e-15)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [0.0, 0.35])
@pytest.mark.parametrize("act", [a for a in ACTIVATIONS if a != "SoftMax"])
def test_hidden_delta(act, p, dtype):
    """dL/dz = (dropout-masked, rescaled delta + penalty) * f'(z), f' checked
    against a numerical derivative of the reference activation."""
    rng = np.random.default_rng(REGISTERED_ACTIVATIONS.info(act).code)
    b, n = 5, 8
    z = pre_activations(rng, (b, n), np.float64)
    a = naive_act(act, z)
    delta = rng.normal(0, 1, (b, n))
    penalty = rng.normal(0, 0.1, n)
    row_ids = rng.choice(300, b, replace=False).astype(np.int64)
    seed, step, layer = 4, 21, 3
    keep = naive.mask(seed, step, layer, row_ids, n, p) if p > 0 else np.ones((b, n), bool)
    upstream = np.where(keep, delta / (1 - p), 0.0) + penalty
    want = upstream * numeric_activation_derivative(act, z)
    got = delta.astype(dtype)
    dense.hidden_delta(got, a.astype(dtype), REGISTERED_ACTIVATIONS.info(act).code, SLOPE, kernel_alpha(act), LAM,
                       crng.stream_key_host(seed, step, layer), row_ids, p,
                       penalty.astype(dtype))
    tol = {"rtol": 1e-7, "atol": 1e-8} if dtype == np.float64 else {"rtol": 1e-5, "atol": 1e-6}
    np.testing.assert_allclose(got, want, **tol)


def ref_sparseness_penalty(a, p, beta):
    a = a.astype(np.float64)
    rho = np.clip(a.mean(axis=0), 1e-6, 1 - 1e-6)
    kl = xlogy(p, p / rho) + xlogy(1 - p, (1 - p) / (1 - rho))
    grad = beta * (-p / rho + (1 - p) / (1 - rho)) / a.shape[0]
    return beta * kl.sum(), grad


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p,beta", [(0.05, 2.0), (0.3, 0.5), (0.0, 1.0)])
def test_sparseness_penalty(dtype, p, beta):
    rng = np.random.default_rng(int(p * 100))
    a = rng.uniform(0, 1, (6, 7)).astype(dtype)
    a[:, 0] = 0  # mean 0: the clip to 1e-6 keeps the logarithm finite
    a[:, 1] = 1  # mean 1: likewise at the other end
    grad = np.full(7, np.nan, dtype)
    total = dense.sparseness_penalty(a, p, beta, 1.0 / a.shape[0], grad)
    want_total, want_grad = ref_sparseness_penalty(a, p, beta)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(total, want_total, rtol=rtol)
    np.testing.assert_allclose(grad, want_grad, rtol=rtol)


# --------------------------------------------------------------------------------------
# BLAS
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("trans_a,trans_b", list(itertools.product([False, True], repeat=2)))
@pytest.mark.parametrize("alpha,beta", [(1.0, 0.0), (1.0, 1.0), (-0.5, 0.3)])
def test_gemm(dtype, trans_a, trans_b, alpha, beta):
    """``c[:m] = alpha op(a) op(b) + beta c[:m]`` written into the larger buffer."""
    rng = np.random.default_rng(int(trans_a) * 2 + int(trans_b))
    for m, n, k in [(5, 4, 3), (1, 6, 2), (7, 1, 5), (3, 3, 1)]:
        a = rng.normal(0, 1, (k, m) if trans_a else (m, k)).astype(dtype)
        b = rng.normal(0, 1, (n, k) if trans_b else (k, n)).astype(dtype)
        buf = rng.normal(0, 1, (m + 3, n)).astype(dtype)
        old = buf.copy().astype(np.float64)
        op_a = a.T if trans_a else a
        op_b = b.T if trans_b else b
        want = alpha * (op_a.astype(np.float64) @ op_b.astype(np.float64))
        if beta != 0:
            want += beta * old[:m]
        view = buf[:m]
        result = gemm(a, b, view, alpha=alpha, beta=beta, trans_a=trans_a, trans_b=trans_b)
        assert result is view
        tol = 1e-5 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(buf[:m], want, rtol=tol, atol=tol)
        assert np.array_equal(buf[m:], old[m:].astype(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_beta_zero_ignores_garbage_in_c(dtype):
    """With beta = 0, C's old contents (even NaN) must not leak into the result."""
    rng = np.random.default_rng(0)
    a = rng.normal(0, 1, (4, 3)).astype(dtype)
    b = rng.normal(0, 1, (3, 5)).astype(dtype)
    c = np.full((6, 5), np.nan, dtype)
    gemm(a, b, c[:4])
    np.testing.assert_allclose(c[:4], a.astype(np.float64) @ b, rtol=1e-5)
    assert np.isnan(c[4:]).all()


def _cuts(total, parts):
    """blas._block_bounds's cut of ``total`` into ``parts`` (at multiples of 16)."""
    return ([0] + [(total * part // parts) // 16 * 16 for part in range(1, parts)] + [total])


@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, False), (False, True)])
@pytest.mark.parametrize("m,n,k", [(128, 1682, 128), (128, 128, 1682), (300, 70, 9),
                                   (128, 256, 4489)])
def test_gemm_gives_the_same_bits_on_any_number_of_threads(m, n, k, trans_a, trans_b):
    """The engine's three products of a step (forward, weight gradient, hidden
    delta) on ML-100K's shapes, and Last.fm's hidden delta: one thread and
    every thread give the same bits, and each block of C is exactly one
    single-threaded call of the BLAS the GEMMs use (its CBLAS sgemm through
    ctypes, or scipy's sgemm) on it; where the inner dimension is cut into
    chunks too, one call per chunk, summed in chunk order."""
    import numba
    from scipy.linalg import blas as scipy_blas
    from threadpoolctl import threadpool_limits

    from sparse_deep.backends.cpu.blas import blas_library, block_count, chunk_count

    rng = np.random.default_rng(m + n + k)
    a = rng.normal(0, 1, (k, m) if trans_a else (m, k)).astype(np.float32)
    b = rng.normal(0, 1, (n, k) if trans_b else (k, n)).astype(np.float32)
    start = rng.normal(0, 1, (m, n)).astype(np.float32)
    results = []
    threads = numba.get_num_threads()
    try:
        for count in sorted({1, threads}):
            numba.set_num_threads(count)
            c = start.copy()
            gemm(a, b, c, alpha=0.5, beta=1.0, trans_a=trans_a, trans_b=trans_b)
            results.append(c)
    finally:
        numba.set_num_threads(threads)
    assert all(np.array_equal(r, results[0]) for r in results)
    blocks = block_count(m, n)
    assert blocks == {(128, 1682): 8, (128, 128): 2, (300, 70): 2, (128, 256): 2}[m, n]
    chunks = 1 if blas_library() == "scipy" else chunk_count(m, n, k)
    assert chunk_count(m, n, k) == {1682: 2, 4489: 8}.get(k, 1)  # C has few blocks, k is long
    by_rows = m > n
    op_a, op_b = (a.T if trans_a else a), (b.T if trans_b else b)
    want = start.copy()
    cuts = _cuts(m if by_rows else n, blocks)
    for lo, hi in zip(cuts[:-1], cuts[1:]):
        part_a = op_a[lo:hi] if by_rows else op_a
        part_b = op_b if by_rows else op_b[:, lo:hi]
        part_c = want[lo:hi] if by_rows else want[:, lo:hi]
        with threadpool_limits(1, user_api="blas"):
            if blas_library() == "scipy":
                # C-ordered product as scipy computes it: C^T = B^T A^T in Fortran order.
                part_c[...] = scipy_blas.sgemm(0.5, part_b.T, part_a.T, beta=1.0,
                                               c=part_c.T.copy()).T
            elif chunks == 1:
                part_c[...] = _one_cblas_sgemm(0.5, part_a, part_b, 1.0, part_c)
            else:
                k_cuts = _cuts(k, chunks)
                products = [_one_cblas_sgemm(0.5, part_a[:, k_lo:k_hi], part_b[k_lo:k_hi],
                                             0.0, np.zeros_like(part_c))
                            for k_lo, k_hi in zip(k_cuts[:-1], k_cuts[1:])]
                total = products[0]
                for product in products[1:]:
                    total = total + product
                part_c[...] = np.float32(1.0) * part_c + total
    np.testing.assert_array_equal(results[0], want)


def _one_cblas_sgemm(alpha, a, b, beta, c):
    """alpha a @ b + beta c by one call of the CBLAS sgemm our GEMMs use, through ctypes."""
    import ctypes

    from sparse_deep.backends.cpu.blas import _ILP64_CBLAS_NAMES, blas_library

    library = ctypes.CDLL(blas_library())
    function = next(getattr(library, name.format("s")) for name in _ILP64_CBLAS_NAMES
                    if hasattr(library, name.format("s")))
    a, b, out = np.ascontiguousarray(a), np.ascontiguousarray(b), np.ascontiguousarray(c)
    (m, k), n = a.shape, b.shape[1]
    int64, pointer = ctypes.c_int64, ctypes.c_void_p
    function.restype = None
    function.argtypes = [ctypes.c_int] * 3 + [int64] * 3 + [ctypes.c_float, pointer, int64,
                                                             pointer, int64, ctypes.c_float,
                                                             pointer, int64]
    function(101, 111, 111, m, n, k, alpha, a.ctypes.data, k, b.ctypes.data, n, beta,
             out.ctypes.data, n)  # row-major, neither operand transposed
    return out


def test_gemm_uses_numpys_openblas_where_numpy_bundles_it_and_scipys_when_asked():
    """numpy's wheels bundle a 64-bit OpenBLAS (faster here than scipy's); the
    GEMMs find it, and SPARSE_DEEP_BLAS=scipy sends them to scipy's BLAS,
    with the same products to rounding."""
    blas_name = np.__config__.CONFIG["Build Dependencies"]["blas"].get("name", "")
    code = (
        "import numpy as np\n"
        "from sparse_deep.backends.cpu.blas import blas_library, gemm\n"
        "a = np.linspace(-1, 1, 40 * 300, dtype=np.float32).reshape(40, 300)\n"
        "c = np.ones((40, 40), np.float32)\n"
        "gemm(a, a, c, beta=0.5, trans_b=True)\n"
        "print(blas_library().rsplit('/', 1)[-1], ';'.join(map(repr, c.ravel().tolist())))\n"
    )
    default = _run_python(code, SPARSE_DEEP_BLAS="")  # as if unset
    scipys = _run_python(code, SPARSE_DEEP_BLAS="scipy")
    assert scipys[0] == "scipy"
    if blas_name == "scipy-openblas":
        assert "openblas64" in default[0]
    values = [np.array(out[1].split(";"), dtype=np.float64) for out in (default, scipys)]
    a = np.linspace(-1, 1, 40 * 300, dtype=np.float32).reshape(40, 300).astype(np.float64)
    for got in values:
        np.testing.assert_allclose(got, (a @ a.T + 0.5).ravel(), rtol=1e-5, atol=1e-4)


def test_gemm_copies_back_when_blas_cannot_work_in_place():
    """The engine only passes C-contiguous arrays (BLAS then writes in place, as
    test_gemm checks); a column slice forces scipy to copy, and the result must
    still land in ``c``."""
    rng = np.random.default_rng(1)
    a = rng.normal(0, 1, (4, 3))
    b = rng.normal(0, 1, (3, 5))
    buf = rng.normal(0, 1, (4, 7))
    old = buf.copy()
    gemm(a, b, buf[:, 1:6], beta=0.5)
    np.testing.assert_allclose(buf[:, 1:6], a @ b + 0.5 * old[:, 1:6], rtol=1e-12)
    assert np.array_equal(buf[:, [0, 6]], old[:, [0, 6]])


# --------------------------------------------------------------------------------------
# Counter-based RNG
# --------------------------------------------------------------------------------------

@njit
def _draws(key, start, n):
    out = np.empty(n)
    for i in range(n):
        out[i] = crng.uniform(key, np.uint64(start + i))
    return out


_M64 = (1 << 64) - 1


def _splitmix_finaliser(x):
    """splitmix64's finaliser on Python ints, written from the published constants."""
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def test_uniform_range_reproducibility_and_moments():
    key = crng.stream_key_host(1, 2, 3)
    u = _draws(key, 0, 100_000)
    assert (u >= 0).all() and (u < 1).all()
    assert np.array_equal(u * 2**24, np.floor(u * 2**24))  # 24-bit: exact in float32
    assert np.array_equal(u, _draws(key, 0, 100_000))  # same key and counter, same number
    assert abs(u.mean() - 0.5) < 0.005  # ~5 standard errors
    assert abs(u.var() - 1 / 12) < 0.002
    counts = np.histogram(u, bins=20, range=(0, 1))[0]
    assert (np.abs(counts - 5000) < 400).all()
    assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < 0.02  # neighbouring counters unrelated
    other = _draws(crng.stream_key_host(1, 2, 4), 0, 100_000)
    assert (u != other).mean() > 0.99
    assert abs(np.corrcoef(u, other)[0, 1]) < 0.02


def test_uniform_and_stream_key_follow_splitmix64():
    """Pins the generator: the CUDA kernels must reproduce exactly these numbers."""
    golden = 0x9E3779B97F4A7C15
    for seed, step, layer in [(0, 0, 0), (1, 2, 3), (12345, 678, 9), (2**40, 3, 1)]:
        key = _splitmix_finaliser((seed + golden) & _M64)
        key = _splitmix_finaliser(key ^ ((step * golden) & _M64))
        key = _splitmix_finaliser(key ^ ((layer + 0xBF58476D1CE4E5B9) & _M64))
        assert int(crng.stream_key_host(seed, step, layer)) == key
        for counter in (0, 1, 999, 2**33 + 5):
            bits = _splitmix_finaliser(key ^ ((counter * golden) & _M64))
            assert crng.uniform(np.uint64(key), np.uint64(counter)) == (bits >> 40) / 2**24


def test_stream_key_host_differs_across_seed_step_layer():
    grid = list(itertools.product(range(6), repeat=3))
    keys = {int(crng.stream_key_host(s, t, l)) for s, t, l in grid}
    assert len(keys) == len(grid)
    assert crng.stream_key_host(1, 2, 3) == crng.stream_key_host(1, 2, 3)
    assert isinstance(crng.stream_key_host(0, 0, 0), np.uint64)


def test_fast_exp_is_within_one_ulp_in_float32_and_exact_in_float64():
    """The vectorisable exponential of the SoftMax pass (backends/cpu/vecmath.py)."""
    from numba import njit

    from sparse_deep.backends.cpu.vecmath import fast_exp

    @njit
    def apply(x, out):
        for i in range(x.shape[0]):
            out[i] = fast_exp(x[i])

    x = np.linspace(-87.0, 88.0, 400_001).astype(np.float32)
    out = np.empty_like(x)
    apply(x, out)
    exact = np.exp(x.astype(np.float64))
    ulps = np.abs(out - exact) / np.spacing(exact.astype(np.float32))
    assert ulps.max() <= 1.0
    x64 = x.astype(np.float64)
    out64 = np.empty_like(x64)
    apply(x64, out64)
    # float64 is the C library's exp, which numpy's SIMD exp (on AVX-512
    # machines) can differ from by an ulp.
    np.testing.assert_array_equal(out64, [math.exp(v) for v in x64])


def test_fast_log_and_sigmoid_are_accurate_in_float32_and_exact_in_float64():
    from numba import njit

    from sparse_deep.backends.cpu.vecmath import fast_log, fast_sigmoid

    @njit
    def apply(x, logs, sigmoids):
        for i in range(x.shape[0]):
            logs[i] = fast_log(x[i])
            sigmoids[i] = fast_sigmoid(x[i] - 50)

    x = np.geomspace(1e-7, 100.0, 400_001).astype(np.float32)
    logs, sigmoids = np.empty_like(x), np.empty_like(x)
    apply(x, logs, sigmoids)
    exact = np.log(x.astype(np.float64))
    assert np.all(np.abs(logs - exact) <= np.spacing(np.abs(exact).astype(np.float32)))
    s_exact = 1 / (1 + np.exp(-(x.astype(np.float64) - 50)))
    np.testing.assert_allclose(sigmoids, s_exact, rtol=4e-7, atol=1e-30)
    x64 = x.astype(np.float64)
    logs64, sig64 = np.empty_like(x64), np.empty_like(x64)
    apply(x64, logs64, sig64)
    np.testing.assert_array_equal(logs64, [math.log(v) for v in x64])


def test_scatter_and_zero_rows():
    from sparse_deep.backends.cpu import sparse as sparse_kernels

    rng = np.random.default_rng(5)
    dst = np.zeros((50, 7), np.float32)
    rows = rng.permutation(50)[:12].astype(np.int64)
    src = rng.standard_normal((20, 7)).astype(np.float32)  # longer than rows: a reused buffer
    sparse_kernels.scatter_rows(dst, rows, src)
    expected = np.zeros_like(dst)
    expected[rows] = src[:12]
    np.testing.assert_array_equal(dst, expected)
    sparse_kernels.zero_rows(dst, rows)
    assert not dst.any()


def test_scale_rows_multiplies_each_row_by_its_weight():
    from sparse_deep.backends.cpu import dense as dense_kernels

    rng = np.random.default_rng(6)
    x = rng.standard_normal((9, 5)).astype(np.float32)
    weights = rng.random(7)  # fewer weights than rows: only the batch's rows are scaled
    expected = x.copy()
    expected[:7] *= weights[:, None].astype(np.float32)
    dense_kernels.scale_rows(x, weights)
    np.testing.assert_allclose(x, expected, rtol=1e-6)


def test_fast_tanh_is_within_two_ulps_in_float32_and_libm_in_float64():
    from numba import njit

    from sparse_deep.backends.cpu.vecmath import fast_tanh

    @njit
    def apply(x, out):
        for i in range(x.shape[0]):
            out[i] = fast_tanh(x[i])

    x = np.concatenate([np.linspace(-20, 20, 200_001), np.geomspace(1e-8, 1, 5001),
                        -np.geomspace(1e-8, 1, 5001)]).astype(np.float32)
    out = np.empty_like(x)
    apply(x, out)
    exact = np.tanh(x.astype(np.float64))
    assert np.all(np.abs(out - exact) <= 2 * np.spacing(np.abs(exact).astype(np.float32)))
    x64 = x.astype(np.float64)
    out64 = np.empty_like(x64)
    apply(x64, out64)
    # float64 is the C library's tanh, which may differ from numpy's in the last bit.
    np.testing.assert_allclose(out64, np.tanh(x64), rtol=1e-15, atol=0)


def _run_python(code, **env):
    import subprocess
    import sys

    environment = {k: v for k, v in os.environ.items()
                   if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    environment.update(env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=environment, check=True).stdout.split()


def test_import_leaves_the_environment_and_thread_settings_as_they_were():
    """``import sparse_deep`` changes no environment variable and no loaded
    library's thread count; the first backend starts numba's threads under
    the engine's OpenMP settings and puts the environment back."""
    code = (
        "import os, json, numpy, scipy.linalg, sklearn, threadpoolctl\n"
        "def state():\n"
        "    return dict(os.environ), sorted((i['filepath'], i['num_threads'])\n"
        "                                    for i in threadpoolctl.threadpool_info())\n"
        "before = state()\n"
        "import sparse_deep\n"
        "after_import = state()\n"
        "print(json.dumps(before == after_import))\n"
        "print(json.dumps([k for k in after_import[0] if before[0].get(k) != after_import[0][k]]))\n"
        "from sparse_deep.backends import get_backend\n"
        "get_backend('cpu')\n"
        "import numba\n"
        "print(json.dumps(dict(os.environ) == before[0]))\n"
        "print(json.dumps(numba.threading_layer()))\n"
    )
    assert _run_python(code) == ["true", "[]", "true", '"omp"']
    # The user's own settings are kept, before and after the threads start.
    code_user = code + "print(os.environ['GOMP_SPINCOUNT'], os.environ['OMP_WAIT_POLICY'])\n"
    assert _run_python(code_user, GOMP_SPINCOUNT="7", OMP_WAIT_POLICY="ACTIVE")[-2:] == [
        "7", "ACTIVE"]


def test_first_compile_on_a_machine_says_so_once(tmp_path):
    """With an empty kernel cache, the first compile prints one line on
    stderr; with the cache filled, a new process prints nothing."""
    import subprocess
    import sys

    code = (
        "import numpy as np, scipy.sparse as sp\n"
        "from sparse_deep.backends import get_backend\n"
        "from sparse_deep._validation import l2_normalize_rows\n"
        "get_backend('cpu')\n"
        "l2_normalize_rows(sp.eye(3, format='csr', dtype=np.float32))\n"
        "l2_normalize_rows(sp.eye(3, format='csr', dtype=np.float64))\n"
    )
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env=env, check=True).stderr for _ in range(2)]
    from sparse_deep.backends.cpu.compile_notice import NOTICE

    assert runs[0].count(NOTICE) == 1
    assert NOTICE not in runs[1]


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_update_rows_of_a_whole_parameter_equals_updates_of_its_pieces(name):
    """Rows are updated independently, on every thread: one call over a whole
    parameter gives the same bits as calls over pieces of its rows."""
    rng = np.random.default_rng(5)
    shape = (2051, 64)
    param = random_param(rng, shape, np.float32)
    s1, s2 = make_states(name, shape, np.float32)
    pieces = [x.copy() for x in (param, s1, s2)]
    rows = np.arange(shape[0], dtype=np.int64)
    for step in range(1, 3):
        grad = rng.normal(0, 1, shape).astype(np.float32)
        optim.update_rows(param, grad, rows, shape[0], s1, s2, REGISTERED_OPTIMIZERS[name].code,
                          pack_hyper(step))
        for start in range(0, shape[0], 100):
            piece = rows[start:start + 100]
            optim.update_rows(pieces[0], grad[start:start + 100], piece, len(piece),
                              pieces[1], pieces[2], REGISTERED_OPTIMIZERS[name].code, pack_hyper(step))
    for got, want in zip((param, s1, s2), pieces):
        assert np.array_equal(got, want)

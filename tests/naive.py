"""A slow, obviously-correct dense reference of the engine's maths.

Everything here is plain numpy on dense float64 arrays, written from the
definitions in docs/ rather than from the kernels, so the kernels of every
backend can be checked against it (and its loss differentiated numerically).
"""

import enum

import numpy as np

from sparse_deep.core.activations import get_activation
from sparse_deep.core.errors import get_error_function
from sparse_deep.core.optimizers import coefficients, get_optimizer
from sparse_deep.core.rng import stream_key_host, uniform
from sparse_deep.engine.model import SELU_ALPHA

EPS = 1e-7


def activation(name, z, slope=1.0, alpha=1.0, lam=1.050701):
    if name == "Sigmoid":
        return 1.0 / (1.0 + np.exp(-z))
    if name == "Tanh":
        return np.tanh(z)
    if name == "Linear":
        return z
    if name == "Relu":
        return np.maximum(z, 0.0)
    if name == "LRelu":
        return np.where(z > 0, z, slope * z)
    if name == "ELU":
        return np.where(z > 0, z, alpha * (np.exp(z) - 1.0))
    if name == "SELU":
        return np.where(z > 0, lam * z, lam * SELU_ALPHA * (np.exp(z) - 1.0))
    if name == "SoftPlus":
        return np.log1p(np.exp(z))
    if name == "SoftSign":
        return z / (1.0 + np.abs(z))
    if name == "SoftMax":
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    # Any other registered activation: its own definition, element by element.
    forward = get_activation(name).forward
    return np.vectorize(lambda v: forward(float(v), slope, alpha, lam), otypes=[float])(z)


def _log(x):
    return np.log(np.clip(x, EPS, 1.0 - EPS))


def output_error(error, act, a, t, smce, boost):
    """Per-element error matrix (before DeltaBoost) of outputs ``a`` vs targets ``t``."""
    one = t != 0
    if act == "SoftMax" and error in ("CrossEntropy", "ScaledMarginalCrossEntropy"):
        sums = t.sum(axis=1, keepdims=True)
        tn = np.divide(t, sums, out=np.zeros_like(t), where=sums != 0)
        if error == "CrossEntropy":
            e = -tn * _log(a)
        else:
            e = np.where(one & (a < smce.one_target), -smce.one_scale * tn * _log(a), 0.0)
        return e * np.where(one, boost.one, boost.zero)
    if error == "L2":
        e = 0.5 * (a - t) ** 2
    elif error == "L1":
        e = np.abs(a - t)
    elif error in ("Hinge", "L2Hinge"):
        y = np.where(one, 1.0, -1.0)
        m = np.maximum(0.0, 1.0 - y * a)
        e = m if error == "Hinge" else m * m
    elif error == "CrossEntropy":
        e = -(t * _log(a) + (1 - t) * _log(1 - a))
    elif not error.endswith("ScaledMarginalCrossEntropy"):
        # Any other registered error: its own definition, element by element.
        definition = get_error_function(error).error
        e = np.vectorize(lambda x, y, z: definition(float(x), float(y), bool(z))[0],
                         otypes=[float])(a, t, one)
    else:  # (Data)ScaledMarginalCrossEntropy
        w1 = smce.one_scale * (t if error.startswith("Data") else 1.0)
        e_one = np.where(a < smce.one_target, -w1 * _log(a), 0.0)
        e_zero = np.where(a > smce.zero_target, -smce.zero_scale * _log(1 - a), 0.0)
        e = np.where(one, e_one, e_zero)
    return e * np.where(one, boost.one, boost.zero)


def mask(seed, step, stream, row_ids, n, p):
    """Keep-mask of dropout/denoising, drawn from the engine's counter RNG."""
    key = stream_key_host(seed, step, stream)
    u = np.array([[uniform(key, np.uint64(r) * np.uint64(n) + np.uint64(j)) for j in range(n)]
                  for r in row_ids])
    return u >= p


def forward(model, x, *, training=False, seed=0, step=0, row_ids=None):
    """Dense forward pass; returns (outputs per layer index, pre-dropout activations).

    A sampled output layer is left out: :func:`sampled_loss` scores it."""
    spec = model.spec
    row_ids = np.arange(x.shape[0]) if row_ids is None else row_ids
    x = np.array(x, dtype=np.float64)
    if training and spec.denoising_p > 0:
        keep = mask(seed, step, 0, row_ids, x.shape[1], spec.denoising_p)
        x = np.where(keep, x / (1 - spec.denoising_p), 0.0)
    outs, pres = {}, {}
    weights = {link: w.astype(np.float64) for link, w in zip(model.links, model.weights)}
    for p in model.layers:
        if p.is_input:
            outs[p.index] = x
            continue
        if p.is_sampled:
            continue
        layer = spec.layers[p.index]
        z = np.tile(model.biases[p.index].astype(np.float64), (x.shape[0], 1))
        for s, _ in p.sources:
            z = z + outs[s] @ weights[(s, p.index)]
        for s in p.skips:
            z = z + outs[s]
        a = activation(layer.activation, z, p.slope, p.alpha, p.lam)
        pres[p.index] = a
        if training and p.p_dropout > 0:
            keep = mask(seed, step, p.index + 1, row_ids, p.n, p.p_dropout)
            a = np.where(keep, a / (1 - p.p_dropout), 0.0)
        outs[p.index] = a
    return outs, pres


def loss(model, x, t, *, training=False, seed=0, step=0, row_ids=None, present_rows=None):
    """Mean batch loss: data error + sparseness penalty + L2/L1 terms if asked.

    ``present_rows`` (feature ids) limits nothing here; regularisation is left
    to the optimizer tests.
    """
    spec = model.spec
    outs, pres = forward(model, x, training=training, seed=seed, step=step, row_ids=row_ids)
    out = model.output
    a = outs[out.index]
    e = output_error(spec.error_function, spec.output_layer.activation, a, np.asarray(t, float),
                     spec.smce, spec.delta_boost)
    total = e.sum() / x.shape[0]
    for p in model.layers:
        if p.penalty is not None:
            rho = np.clip(pres[p.index].mean(axis=0), 1e-6, 1 - 1e-6)
            q, beta = p.penalty
            kl = q * np.log(q / rho) + (1 - q) * np.log((1 - q) / (1 - rho))
            total += beta * kl.sum()
    return total


def sampled_loss(model, x, t, negatives, corrections, *, training=False, seed=0, step=0,
                 row_ids=None, row_weights=None):
    """Mean batch loss of a network with a sampled output layer (docs/engine.md,
    "Sampled output layers"), for the given negatives and their corrections
    ``log(M q_j)``; ``row_weights`` weight each row's error."""
    spec = model.spec
    out = model.output
    (source, w_index), = out.sources
    outs, _ = forward(model, x, training=training, seed=seed, step=step, row_ids=row_ids)
    h = outs[source]
    w = model.weights[w_index].astype(np.float64)  # item-major: one row per item
    t = np.asarray(t, dtype=np.float64)
    if out.cosine:
        unit_h = h / np.maximum(np.linalg.norm(h, axis=1, keepdims=True), 1e-12)
        unit_w = w / np.maximum(np.linalg.norm(w, axis=1, keepdims=True), 1e-12)
        scores = unit_h @ unit_w.T
    else:
        scores = h @ w.T + model.biases[out.index].astype(np.float64)
    z = scores / out.temperature
    error = spec.error_function
    m = len(negatives)
    total = 0.0
    for r in range(x.shape[0]):
        targets = np.flatnonzero(t[r])
        weights = t[r, targets]
        z_neg = z[r, negatives]
        if error == "SampledSoftmax":
            anchor = np.log(np.sum(np.exp(z_neg - corrections)))
            row = np.sum(weights * np.log1p(np.exp(anchor - z[r, targets])))
        elif error == "CosineContrastive":
            c = spec.contrastive
            hinge = c.negative_weight / m * np.sum(np.maximum(0.0, scores[r, negatives] - c.margin))
            row = np.sum(weights * (1.0 - scores[r, targets] + hinge))
        else:  # BPR
            pairs = z_neg[None, :] - z[r, targets][:, None]
            row = np.sum(weights[:, None] * np.log1p(np.exp(pairs))) / m
        total += row * (1.0 if row_weights is None else row_weights[r])
    return total / x.shape[0]



def optimizer_update(name, w, g, s1, s2, hyper):
    """The registered optimizer ``name``'s step applied to every element of
    float64 arrays, one Python call each (``g`` holds the L2/L1 terms already);
    returns new ``(w, s1, s2)``. Any registered optimizer works here, its
    definition the only source; tests/test_kernels_cpu.py checks the built-in
    ones against their formulas too."""
    step = get_optimizer(name).step
    c = coefficients(hyper, np.float64)
    out = [np.empty_like(w, dtype=np.float64) for _ in range(3)]
    for i in np.ndindex(w.shape):
        out[0][i], out[1][i], out[2][i] = step(float(w[i]), float(g[i]), float(s1[i]),
                                               float(s2[i]), c)
    return tuple(out)


def column_major_gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    """cuBLAS's GEMM as its documentation defines it, on flat buffers:
    ``C = alpha op(A) op(B) + beta C``, C m x n, op(A) m x k, op(B) k x n,
    element (i, j) of a stored matrix at ``buffer[i + j * ld]``; C is
    written in place and not read when beta is 0. Computed in float64."""
    if min(m, n, k) < 0:  # where cuBLAS answers CUBLAS_STATUS_INVALID_VALUE
        raise ValueError(f"negative size: m = {m}, n = {n}, k = {k}")
    for name, ld, stored_rows in (("lda", lda, k if trans_a else m),
                                  ("ldb", ldb, n if trans_b else k), ("ldc", ldc, m)):
        if ld < max(1, stored_rows):
            raise ValueError(f"{name} = {ld} is less than max(1, {stored_rows})")
    i, j = np.arange(m)[:, None], np.arange(n)[None, :]
    p_row, p_col = np.arange(k)[None, :], np.arange(k)[:, None]
    op_a = a[p_row + i * lda] if trans_a else a[i + p_row * lda]  # op(A)[i, p]
    op_b = b[j + p_col * ldb] if trans_b else b[p_col + j * ldb]  # op(B)[p, j]
    product = alpha * (op_a.astype(np.float64) @ op_b.astype(np.float64))
    if beta != 0:
        product += beta * c[i + j * ldc]
    c[i + j * ldc] = product


class EmulatedCuBLAS:
    """A stand-in for ``nvmath.bindings.cublas`` in host memory: the same
    calls, its GEMMs computed by :func:`column_major_gemm` from the buffers
    at the addresses given (the simulator's device arrays are host arrays).
    Records each call's routine, shape and handle."""

    class Operation(enum.IntEnum):
        N = 0
        T = 1

    VERSION = 130101

    def __init__(self):
        self.streams = {}
        self.destroyed = []
        self.calls = []

    def create(self):
        handle = len(self.streams) + 1
        self.streams[handle] = 0
        return handle

    def set_stream(self, handle, stream):
        self.streams[handle] = stream

    def destroy(self, handle):
        self.destroyed.append(handle)

    def get_version(self, handle):
        return self.VERSION

    def sgemm(self, handle, *args):
        self._gemm("sgemm", np.float32, handle, *args)

    def dgemm(self, handle, *args):
        self._gemm("dgemm", np.float64, handle, *args)

    def _gemm(self, routine, dtype, handle, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb,
              beta, c, ldc):
        assert handle in self.streams and handle not in self.destroyed
        trans_a, trans_b = (self.Operation(t) == self.Operation.T for t in (trans_a, trans_b))
        scalar = np.ctypeslib.as_ctypes_type(dtype)

        def buffer(address, rows, cols, ld):
            return np.ctypeslib.as_array((scalar * ((cols - 1) * ld + rows)).from_address(address))

        alpha, beta = buffer(alpha, 1, 1, 1)[0], buffer(beta, 1, 1, 1)[0]
        column_major_gemm(trans_a, trans_b, m, n, k, alpha,
                          buffer(a, *((k, m) if trans_a else (m, k)), lda), lda,
                          buffer(b, *((n, k) if trans_b else (k, n)), ldb), ldb, beta,
                          buffer(c, m, n, ldc), ldc)
        self.calls.append((routine, handle, m, n, k))

"""Per-element math of error functions and penalties, shared by all backends
(activations: :mod:`sparse_deep.core.activations`).

These are plain Python functions in the subset that ``numba.njit`` and
``numba.cuda.jit(device=True)`` both compile; each backend wraps them once.
Keeping one definition is what makes the CPU and GPU paths agree.

"""

import math

from .codes import (
    COSINE_CONTRASTIVE,
    CROSS_ENTROPY,
    DATA_SCALED_MARGINAL_CROSS_ENTROPY,
    HP_ONE_SCALE,
    HP_ONE_TARGET,
    HP_ZERO_SCALE,
    HP_ZERO_TARGET,
    SCALED_MARGINAL_CROSS_ENTROPY,
)

# Outputs are clamped this far from 0 and 1 before a logarithm is taken.
LOG_EPSILON = 1.0e-7


def is_unit_interval_error(err):
    """Cross-entropy-family errors need outputs in (0, 1) (Sigmoid or SoftMax)."""
    return (
        err == CROSS_ENTROPY
        or err == SCALED_MARGINAL_CROSS_ENTROPY
        or err == DATA_SCALED_MARGINAL_CROSS_ENTROPY
    )


def _clamped(x):
    """``x`` clamped to [LOG_EPSILON, 1 - LOG_EPSILON].

    Written with conditionals rather than min/max: numba's CUDA target fails on
    two-argument min and max since 0.66 (numba issue #10753).
    """
    if x < LOG_EPSILON:
        return LOG_EPSILON
    if x > 1.0 - LOG_EPSILON:
        return 1.0 - LOG_EPSILON
    return x


def _clamped_log(x):
    return math.log(_clamped(x))


def cross_entropy_error(err, a, t, is_one, one_target, zero_target, one_scale, zero_scale):
    """Error of one output in (0, 1) under a cross-entropy-family error, and
    its derivative ``g = dE/da`` (with an output activation other than
    Sigmoid or SoftMax, whose fused forms are below).

    ``t`` is the target value (0 where the target has no entry) and ``is_one``
    tells whether the target has a non-zero entry there.
    """
    if err == CROSS_ENTROPY:
        e = -(t * _clamped_log(a) + (1.0 - t) * _clamped_log(1.0 - a))
        ac = _clamped(a)
        return e, (ac - t) / (ac * (1.0 - ac))
    return marginal_error(err, a, t, is_one, one_target, zero_target, one_scale, zero_scale)


def marginal_error(err, a, t, is_one, one_target, zero_target, one_scale, zero_scale):
    """Scaled marginal cross-entropy: no error once an output is past its margin.

    Returns ``(error, h)`` where ``h = a * (1 - a) * dE/da`` is the delta with a
    Sigmoid output. A present target wants ``a >= one_target``; a missing one
    wants ``a <= zero_target``. The data-scaled variant weighs a present target
    by its value.
    """
    if is_one:
        if a >= one_target:
            return 0.0, 0.0
        w = one_scale * t if err == DATA_SCALED_MARGINAL_CROSS_ENTROPY else one_scale
        return -w * _clamped_log(a), w * (a - 1.0)
    if a <= zero_target:
        return 0.0, 0.0
    return -zero_scale * _clamped_log(1.0 - a), zero_scale * a


def sigmoid_delta(err, a, t, is_one, one_target, zero_target, one_scale, zero_scale):
    """``(error, dE/dz)`` for a Sigmoid output under a cross-entropy-family error.

    The sigmoid's derivative cancels the logarithm's, leaving ``a - t``: no
    division, so saturated outputs keep a finite, exact delta.
    """
    if err == CROSS_ENTROPY:
        e = -(t * _clamped_log(a) + (1.0 - t) * _clamped_log(1.0 - a))
        return e, a - t
    return marginal_error(err, a, t, is_one, one_target, zero_target, one_scale, zero_scale)


def multinomial_error(err, a, t, is_one, one_target, one_scale):
    """``(error, h)`` of one SoftMax output under a cross-entropy-family error.

    ``t`` has been normalised so that a row's targets sum to 1. ``h = a * dE/da``;
    the SoftMax delta is then ``h_j - a_j * sum_k h_k``. Outputs without a target
    carry no error in the multinomial form.
    """
    if not is_one:
        return 0.0, 0.0
    if err == CROSS_ENTROPY:
        return -t * _clamped_log(a), -t
    if a >= one_target:
        return 0.0, 0.0
    return -one_scale * t * _clamped_log(a), -one_scale * t


def output_element(softmax, sigmoid, err, a, t, is_one, hp, dfdz, e, g):
    """``(error, delta-or-h)`` of one output of the fused output pass.

    ``h = a * dE/da`` for SoftMax (its delta needs the whole row), else
    ``dE/dz``. ``hp`` holds slope, ELU alpha, SELU lambda, oneTarget,
    zeroTarget, oneScale and zeroScale first (see the backends' output_pass).
    ``dfdz`` is the output activation's derivative at ``a`` (the caller's
    kernel is specialised to that activation); SoftMax, and Sigmoid under a
    cross-entropy error, do not use it. ``softmax`` and ``sigmoid`` say which
    activation it is by flags, not codes: this function is cached on disk,
    and a code is a registration's number, which may change. ``(e, g)`` is the
    element-wise error and its ``dE/da`` from the error's registered
    definition (see :mod:`sparse_deep.core.errors`); the cross-entropy family
    has none and is computed here.
    """
    if softmax:
        if is_unit_interval_error(err):
            return multinomial_error(err, a, t, is_one, hp[HP_ONE_TARGET], hp[HP_ONE_SCALE])
        return e, a * g
    if is_unit_interval_error(err):
        if sigmoid:
            return sigmoid_delta(err, a, t, is_one, hp[HP_ONE_TARGET], hp[HP_ZERO_TARGET],
                                 hp[HP_ONE_SCALE], hp[HP_ZERO_SCALE])
        e, g = cross_entropy_error(err, a, t, is_one, hp[HP_ONE_TARGET], hp[HP_ZERO_TARGET],
                                   hp[HP_ONE_SCALE], hp[HP_ZERO_SCALE])
    return e, g * dfdz


def kl_sparseness(rho, p):
    """``(KL(p || rho), its derivative in rho)`` for a unit whose batch-mean
    activation is ``rho``, clamped to [1e-6, 1 - 1e-6] (DSSTNE's sparseness
    penalty; the caller scales both by beta)."""
    if rho < 1.0e-6:  # conditionals, not min/max, as in _clamped
        rho = 1.0e-6
    if rho > 1.0 - 1.0e-6:
        rho = 1.0 - 1.0e-6
    term = 0.0
    if p > 0.0:
        term += p * math.log(p / rho)
    if p < 1.0:
        term += (1.0 - p) * math.log((1.0 - p) / (1.0 - rho))
    return term, -p / rho + (1.0 - p) / (1.0 - rho)


def softplus(x):
    """``log(1 + exp(x))`` without overflow."""
    if x > 0.0:
        return x + math.log1p(math.exp(-x))
    return math.log1p(math.exp(x))


def logistic(x):
    """``1 / (1 + exp(-x))`` without overflow (the derivative of :func:`softplus`)."""
    if x >= 0.0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def sampled_positive(err, z, anchor):
    """``(error, dE/dz)`` of one target of a sampled output layer, whose logit
    (score over the temperature) is ``z``; the target's weight is applied by
    the caller.

    SampledSoftmax: ``anchor`` is the row's log-sum-exp over its negatives'
    corrected logits, ``A = log sum_j exp(z_j - log(M q_j))``, and the error
    ``-log(e^z / (e^z + e^A)) = softplus(A - z)``. CosineContrastive: ``z`` is
    the cosine itself and the error ``1 - z``. (BPR is pairwise:
    :func:`bpr_pair`.)
    """
    if err == COSINE_CONTRASTIVE:
        return 1.0 - z, -1.0
    return softplus(anchor - z), -logistic(anchor - z)


def sampled_negative(err, z, anchor, log_correction, margin):
    """``(error, weight)`` of one sampled negative of a row.

    SampledSoftmax: no error of its own (it is in the targets' terms); the
    weight is the negative's share ``exp(z - log_correction - A)`` of the row's
    corrected exponential sum, which times the sum of the targets'
    ``|dE/dz|`` gives its ``dE/dz``. CosineContrastive: ``max(0, z - margin)``
    and its derivative (the caller applies NegativeWeight / M).
    """
    if err == COSINE_CONTRASTIVE:
        if z > margin:
            return z - margin, 1.0
        return 0.0, 0.0
    return 0.0, math.exp(z - log_correction - anchor)


def bpr_pair(z_negative, z_positive):
    """``(error, dE/dz_negative)`` of BPR's ``-log sigmoid(z_positive - z_negative)``;
    ``dE/dz_positive`` is minus the second value."""
    x = z_negative - z_positive
    return softplus(x), logistic(x)


def regularised_gradient(g, w, l2, l1):
    """Add the gradient of ``l2/2 * w^2 + l1 * |w|`` to ``g``."""
    if w > 0.0:
        return g + l2 * w + l1
    if w < 0.0:
        return g + l2 * w - l1
    return g


_KERNEL_FUNCTIONS = (
    "output_element",
    "kl_sparseness",
    "is_unit_interval_error",
    "_clamped",
    "_clamped_log",
    "cross_entropy_error",
    "marginal_error",
    "sigmoid_delta",
    "multinomial_error",
    "softplus",
    "logistic",
    "sampled_positive",
    "sampled_negative",
    "bpr_pair",
    "regularised_gradient",
)


def compile_with(jit):
    """Compile every function above with ``jit`` (e.g. ``numba.njit`` or
    ``numba.cuda.jit(device=True)``) and return them as a namespace.

    The functions call one another by global name; each compiled copy gets a
    private globals dict in which those names point at the compiled versions,
    so one source serves every target.
    """
    import types

    namespace = dict(globals())
    compiled = {}
    for name in _KERNEL_FUNCTIONS:
        f = globals()[name]
        clone = types.FunctionType(f.__code__, namespace, name, f.__defaults__, f.__closure__)
        clone.__module__ = f.__module__
        clone.__qualname__ = f.__qualname__
        compiled[name] = jit(clone)
    namespace.update(compiled)
    return types.SimpleNamespace(**compiled)

"""The activation functions, each defined once: its name and aliases, the
function and its derivative, and the facts the network language checks.

The network language accepts the registered names, every backend compiles the
same ``forward`` and ``derivative`` into its kernels (each kernel specialised
to one activation, the first time a fit uses it), and the tests' reference
evaluates them too. A new activation is one :func:`register_activation` call::

    def atan(z, slope, alpha, lam):
        return math.atan(z)

    def atan_derivative(a, slope, alpha, lam):  # from the activation a = atan(z)
        return math.cos(a) ** 2

    register_activation("Atan", atan, atan_derivative)

Both take the layer's ``slope`` (LRelu), ``alpha`` (ELU, SELU) and ``lam``
(SELU) and are plain functions in the subset of Python that ``numba.njit``
and ``numba.cuda.jit`` both compile. The derivative is written in terms of the
activation value ``a = f(z)``, as DSSTNE's kernels do: the forward pass then
keeps one buffer per layer.
"""

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable, Optional

from .registry import Registry, compiled_once, fingerprint

__all__ = ["ACTIVATIONS", "ActivationInfo", "get_activation", "register_activation"]


@dataclass(frozen=True)
class ActivationInfo:
    """One registered activation function.

    Attributes
    ----------
    name : str
        Its canonical name in the network language.
    forward : callable or None
        ``forward(z, slope, alpha, lam)``, the activation of one unit; None
        for SoftMax, which the kernels compute row by row.
    derivative : callable or None
        ``derivative(a, slope, alpha, lam)``: ``f'(z)`` from ``a = f(z)``.
    code : int
        Its index in registration order, what kernels are keyed by.
    elementwise : bool
        False when a unit's value depends on the other units of the layer
        (SoftMax normalises across the layer).
    output_range : tuple of float or None
        ``(low, high)`` when outputs are confined to an interval, which is
        what the cross-entropy family of error functions needs.
    parameters : tuple of str
        The network/layer slope settings the activation reads, as
        ``LayerSpec`` attribute names (``relu_slope``, ``elu_alpha``,
        ``selu_lambda``).
    """

    name: str
    forward: Optional[Callable] = field(repr=False)
    derivative: Optional[Callable] = field(repr=False)
    code: int
    elementwise: bool = True
    output_range: Optional[tuple] = None
    parameters: tuple = ()

    @cached_property
    def fingerprint(self):
        """A digest of the definition (see :func:`~sparse_deep.core.registry.fingerprint`)."""
        return fingerprint(self.forward, self.derivative)


ACTIVATIONS = Registry("activation", {}, unsupported=("ReluMax", "LinearMax",
                                                     "ParametricRectifiedLinear"))


def register_activation(name, forward, derivative, *, aliases=(), output_range=None,
                        parameters=()):
    """Make ``name`` an activation the network language, the estimators and
    every backend accept.

    Parameters
    ----------
    name : str
        Canonical name (case, spaces, underscores and hyphens are ignored
        when it is looked up).
    forward, derivative : callable
        The activation of one unit and its derivative through the activation
        value (see the module's docstring).
    aliases : tuple of str, optional
        Other accepted names.
    output_range : (float, float), optional
        The interval outputs stay in, when there is one; ``(0.0, 1.0)`` lets
        the cross-entropy error functions use it.
    parameters : tuple of str, optional
        The layer settings it reads: ``relu_slope``, ``elu_alpha``, ``selu_lambda``.

    Returns
    -------
    ActivationInfo
    """
    for function in (forward, derivative):
        if not callable(function) or not hasattr(function, "__code__"):
            raise ValueError(f"an activation's forward and derivative must be plain Python "
                             f"functions; got {function!r}")
    return _register(name, forward, derivative, aliases=aliases, output_range=output_range,
                     parameters=parameters)


def _register(name, forward, derivative, *, aliases=(), elementwise=True, output_range=None,
              parameters=()):
    info = ActivationInfo(name, forward, derivative, len(ACTIVATIONS), elementwise,
                          None if output_range is None else tuple(map(float, output_range)),
                          tuple(parameters))
    ACTIVATIONS.add(name, info, tuple(aliases))
    return info


def get_activation(name_or_code):
    """The :class:`ActivationInfo` of a name (any accepted spelling) or a code."""
    return ACTIVATIONS.record(name_or_code)


def compiled_functions(code, jit, compiled):
    """``(forward, derivative, tag)`` of the activation ``code`` compiled with
    ``jit`` (a backend's), made once per definition and kept in ``compiled``.

    ``tag`` names the definition (its name and fingerprint) for the names of
    the kernels specialised to it, which is how numba's disk cache tells them
    apart. SoftMax, which kernels compute row by row, gets the identity.
    """
    info = get_activation(code)
    return compiled_once(info, jit, compiled, info.forward or linear,
                         info.derivative or linear_derivative)


# -- the built-in activations (docs/engine.md, "Activations", has the formulas) -------

def linear(z, slope, alpha, lam):
    return z


def linear_derivative(a, slope, alpha, lam):
    return 1.0


def sigmoid(z, slope, alpha, lam):
    if z >= 0.0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def sigmoid_derivative(a, slope, alpha, lam):
    return a * (1.0 - a)


def tanh(z, slope, alpha, lam):
    return math.tanh(z)


def tanh_derivative(a, slope, alpha, lam):
    return 1.0 - a * a


def relu(z, slope, alpha, lam):
    return z if z > 0.0 else 0.0


def relu_derivative(a, slope, alpha, lam):
    return 1.0 if a > 0.0 else 0.0


def lrelu(z, slope, alpha, lam):
    return z if z > 0.0 else slope * z


def lrelu_derivative(a, slope, alpha, lam):
    return 1.0 if a > 0.0 else slope


def elu(z, slope, alpha, lam):
    return z if z > 0.0 else alpha * (math.exp(z) - 1.0)


def elu_derivative(a, slope, alpha, lam):
    return 1.0 if a > 0.0 else a + alpha


def selu(z, slope, alpha, lam):
    return lam * z if z > 0.0 else lam * alpha * (math.exp(z) - 1.0)


def selu_derivative(a, slope, alpha, lam):
    return lam if a > 0.0 else a + lam * alpha


def softplus(z, slope, alpha, lam):
    if z > 0.0:
        return z + math.log1p(math.exp(-z))
    return math.log1p(math.exp(z))


def softplus_derivative(a, slope, alpha, lam):
    return -math.expm1(-a)  # sigmoid(z) = 1 - exp(-softplus(z))


def softsign(z, slope, alpha, lam):
    return z / (1.0 + abs(z))


def softsign_derivative(a, slope, alpha, lam):
    b = 1.0 - abs(a)  # 1 / (1 + |z|)
    return b * b


_UNIT_INTERVAL = (0.0, 1.0)

# Error messages list the names in this order.
_register("Sigmoid", sigmoid, sigmoid_derivative, output_range=_UNIT_INTERVAL)
_register("Tanh", tanh, tanh_derivative)
_register("Linear", linear, linear_derivative)
_register("Relu", relu, relu_derivative, aliases=("RectifiedLinear",))
_register("LRelu", lrelu, lrelu_derivative, aliases=("LeakyRectifiedLinear",),
          parameters=("relu_slope",))
_register("ELU", elu, elu_derivative, aliases=("ExponentialLinear",), parameters=("elu_alpha",))
# DSSTNE's SELU kernel reused ELUAlpha (default 1); sparse_deep keeps the SELU
# paper's alpha (1.6733), which makes the unit self-normalising.
_register("SELU", selu, selu_derivative, aliases=("ScaledExponentialLinear",),
          parameters=("selu_lambda",))
_register("SoftPlus", softplus, softplus_derivative)
_register("SoftSign", softsign, softsign_derivative)
# Row-wise: the kernels compute it (and its Jacobian) themselves.
_register("SoftMax", None, None, elementwise=False, output_range=_UNIT_INTERVAL)

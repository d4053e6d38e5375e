"""The error (loss) functions of an output layer, each registered once: its
name and aliases, the facts the network language checks and, for an
element-wise error, its definition.

An element-wise error is ``error(a, t, is_one) -> (E, dE/da)`` for one output
``a`` whose target is ``t`` (0 where the target row has no entry; ``is_one``
tells whether it has one), a plain function in the subset of Python that
``numba.njit`` and ``numba.cuda.jit`` both compile. Every backend compiles it
into its output pass (a kernel of its own, the first time a fit uses it),
times the output activation's derivative, and the tests' reference evaluates
it too. A new one is one :func:`register_error_function` call::

    def log_cosh(a, t, is_one):
        d = a - t
        return math.log(math.cosh(d)), math.tanh(d)

    register_error_function("LogCosh", log_cosh)

The cross-entropy family (DSSTNE's CrossEntropy and its scaled marginal
forms) and sparse_deep's sampled losses are registered without a definition:
the kernels compute them in fused forms with the Sigmoid or SoftMax output
(``sparse_deep/core/scalar.py``) or over sampled items (``engine/sampled.py``).
"""

from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable, Optional

from .registry import Registry, compiled_once, fingerprint

__all__ = ["ERROR_FUNCTIONS", "ErrorFunctionInfo", "get_error_function",
           "register_error_function"]


@dataclass(frozen=True)
class ErrorFunctionInfo:
    """One registered error function.

    Attributes
    ----------
    name : str
        Its canonical name in the network language.
    error : callable or None
        ``error(a, t, is_one) -> (E, dE/da)``; None for the errors the
        kernels compute themselves.
    code : int
        Its index in registration order, what kernels are keyed by.
    needs_unit_interval : bool
        True when the output activation must produce values in (0, 1),
        i.e. be Sigmoid or SoftMax.
    allows_softmax : bool
        False when DSSTNE rejects the error function with a SoftMax output.
    sampled : bool
        True for sparse_deep's losses over a sampled Output layer (the
        scores of each row's target items and of sampled negative items);
        they need the layer's ``Sampling`` key, and the others forbid it.
    output_activations : tuple of str
        For a sampled loss, the Output activations it accepts: the loss
        trains the layer's scores, and the activation applies to them only
        at inference (so only those that keep its meaning are allowed).
    """

    name: str
    error: Optional[Callable] = field(repr=False)
    code: int
    needs_unit_interval: bool = False
    allows_softmax: bool = True
    sampled: bool = False
    output_activations: tuple = ()

    @cached_property
    def fingerprint(self):
        """A digest of the definition (see :func:`~sparse_deep.core.registry.fingerprint`)."""
        return fingerprint(self.error) if self.error is not None else "kernel"


ERROR_FUNCTIONS = Registry("error function", {})


def register_error_function(name, error, *, aliases=()):
    """Make ``name`` an element-wise error function the network language,
    the estimators (``network=``) and every backend accept.

    Parameters
    ----------
    name : str
        Canonical name (case, spaces, underscores and hyphens are ignored
        when it is looked up).
    error : callable
        ``error(a, t, is_one) -> (E, dE/da)`` (see the module's docstring).
    aliases : tuple of str, optional
        Other accepted names.

    Returns
    -------
    ErrorFunctionInfo
    """
    if not callable(error) or not hasattr(error, "__code__"):
        raise ValueError(f"an error function must be a plain Python function; got {error!r}")
    return _register(name, error, aliases=aliases)


def _register(name, error, *, aliases=(), **facts):
    info = ErrorFunctionInfo(name, error, len(ERROR_FUNCTIONS), **facts)
    ERROR_FUNCTIONS.add(name, info, tuple(aliases))
    return info


def get_error_function(name_or_code):
    """The :class:`ErrorFunctionInfo` of a name (any accepted spelling) or a code."""
    return ERROR_FUNCTIONS.record(name_or_code)


def no_error(a, t, is_one):
    """What kernels get for an error they compute themselves (never used)."""
    return 0.0, 0.0


def compiled_error(code, jit, compiled):
    """``(error, tag)`` of the error function ``code`` compiled with ``jit``
    (a backend's), made once per definition and kept in ``compiled``; ``tag``
    names the definition for the names of the kernels specialised to it."""
    info = get_error_function(code)
    return compiled_once(info, jit, compiled, info.error or no_error)


# -- the built-in element-wise errors (docs/engine.md, "Error functions") -------------

def l1(a, t, is_one):
    d = a - t
    if d > 0.0:
        return d, 1.0
    if d < 0.0:
        return -d, -1.0
    return 0.0, 0.0


def l2(a, t, is_one):
    d = a - t
    return 0.5 * d * d, d


def hinge(a, t, is_one):
    """Per-output hinge: an indicator target reads as +1, a missing one as -1."""
    y = 1.0 if is_one else -1.0
    m = 1.0 - y * a
    if m <= 0.0:
        return 0.0, 0.0
    return m, -y


def l2_hinge(a, t, is_one):
    y = 1.0 if is_one else -1.0
    m = 1.0 - y * a
    if m <= 0.0:
        return 0.0, 0.0
    return m * m, -2.0 * y * m


# In this order: the codes of core/codes.py (L1 = 0, ..., BPR = 9), which the
# kernels' fused forms are keyed by.
_register("L1", l1)
_register("L2", l2)
_register("CrossEntropy", None, needs_unit_interval=True)
_register("ScaledMarginalCrossEntropy", None, needs_unit_interval=True)
# DSSTNE has no multinomial (SoftMax) variant of this one and aborts.
_register("DataScaledMarginalCrossEntropy", None, needs_unit_interval=True,
          allows_softmax=False)
_register("Hinge", hinge)
_register("L2Hinge", l2_hinge)
# sparse_deep extensions (docs/network.md, "Sampled output layers").
_register("SampledSoftmax", None, sampled=True, output_activations=("SoftMax", "Linear"))
_register("CosineContrastive", None, aliases=("CCL",), sampled=True,
          output_activations=("Linear",))
_register("BPR", None, aliases=("BayesianPersonalizedRanking",), sampled=True,
          output_activations=("Sigmoid", "Linear"))

"""The optimizers, each defined once: its name, how many per-weight arrays it
keeps, and its update of one weight.

Every backend compiles the same ``step`` into its update kernel (the CPU's
vectorised loops, the GPU's one thread per weight), the engine sizes the
optimizer state from ``n_states``, the estimators and the command line accept
the registered names, and the tests' reference applies ``step`` element by
element. A new optimizer is one :func:`register_optimizer` call::

    def sign_sgd(w, g, s1, s2, c):
        return w - c[H_LR] * (1.0 if g > 0 else (-1.0 if g < 0 else 0.0)), s1, s2

    register_optimizer("signsgd", sign_sgd, n_states=0)

``step(w, g, s1, s2, c)`` returns the new ``(w, s1, s2)`` of one weight ``w``
whose gradient ``g`` already holds the L2/L1 terms; ``s1``/``s2`` are its
state (0.0 where the optimizer keeps fewer arrays) and ``c`` the coefficients
of :func:`coefficients`, read by their positions (``H_*``, ``C_*`` in
:mod:`sparse_deep.core.codes`). It must be a plain function in the subset of
Python that ``numba.njit`` and ``numba.cuda.jit`` both compile. The
coefficients come in the weight's dtype, so a step that takes its constants
from ``c`` stays in float32 for float32 weights, which is what lets the CPU
loops vectorise.
"""

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Callable

from .codes import (
    C_INV_SQRT_C2,
    C_ONE_MINUS_BETA1,
    C_ONE_MINUS_BETA2,
    C_ONE_MINUS_RHO,
    C_STEP,
    H_BETA1,
    H_BETA2,
    H_C1,
    H_C2,
    H_EPS,
    H_L1,
    H_LR,
    H_MU,
    H_RHO,
    N_COEFFICIENTS,
)
from .registry import Registry, fingerprint

__all__ = ["OPTIMIZERS", "Optimizer", "coefficients", "get_optimizer", "register_optimizer"]


@dataclass(frozen=True)
class Optimizer:
    """One registered optimizer (see the module's docstring).

    Attributes
    ----------
    name : str
        The name estimators and the command line take (lower case).
    step : callable
        ``step(w, g, s1, s2, c) -> (w, s1, s2)``, the update of one weight.
    n_states : int
        Per-weight arrays it keeps (0, 1 or 2).
    code : int
        Its index in registration order, what kernels are keyed by.
    description : str
        One line for the documentation.
    """

    name: str
    step: Callable
    n_states: int
    code: int
    description: str = ""

    @cached_property
    def fingerprint(self):
        """A digest of ``step`` (see :func:`~sparse_deep.core.registry.fingerprint`)."""
        return fingerprint(self.step) + str(self.n_states)


OPTIMIZERS = Registry("optimizer", {})  # name -> Optimizer, in registration order


def register_optimizer(name, step, n_states, description=""):
    """Make ``name`` an optimizer every estimator, backend and command accepts.

    Parameters
    ----------
    name : str
        Lower-case name, not registered before.
    step : callable
        The update of one weight (see the module's docstring).
    n_states : {0, 1, 2}
        Per-weight arrays the optimizer keeps.
    description : str, optional
        One line for the documentation.

    Returns
    -------
    Optimizer
    """
    if not isinstance(name, str) or not name or name != name.lower():
        raise ValueError(
            f"an optimizer's name must be a non-empty lower-case string; got {name!r}")
    if not isinstance(n_states, int) or isinstance(n_states, bool) or n_states not in (0, 1, 2):
        raise ValueError(f"n_states must be 0, 1 or 2; got {n_states!r}")
    if not callable(step) or not hasattr(step, "__code__"):
        raise ValueError(f"step must be a plain Python function; got {step!r}")
    optimizer = Optimizer(name, step, n_states, len(OPTIMIZERS), description)
    OPTIMIZERS.add(name, optimizer)  # refuses a name registered already
    return optimizer


def get_optimizer(name_or_code):
    """The registered :class:`Optimizer` of a name (any case) or a code."""
    return OPTIMIZERS.record(name_or_code)


def coefficients(hyper, dtype):
    """``hyper`` (the OPTIMIZER_HYPER values, positions H_*) followed by the
    constants the steps derive from them (positions C_*), computed in float64
    and cast once to ``dtype``, the weights' dtype."""
    import numpy as np  # here, so that the command line's --help can read this module fast

    c = np.empty(N_COEFFICIENTS, dtype=np.float64)
    c[:H_L1 + 1] = hyper
    c[C_ONE_MINUS_RHO] = 1.0 - c[H_RHO]
    c[C_ONE_MINUS_BETA1] = 1.0 - c[H_BETA1]
    c[C_ONE_MINUS_BETA2] = 1.0 - c[H_BETA2]
    c[C_STEP] = c[H_LR] / c[H_C1]
    c[C_INV_SQRT_C2] = 1.0 / math.sqrt(c[H_C2])
    return c.astype(dtype)


# -- the built-in optimizers (docs/engine.md, "Optimizers", has the formulas) ---------

def sgd(w, g, s1, s2, c):
    return w - c[H_LR] * g, s1, s2


def momentum(w, g, v, s2, c):
    v = c[H_MU] * v - c[H_LR] * g
    return w + v, v, s2


def nesterov(w, g, v, s2, c):
    new = c[H_MU] * v - c[H_LR] * g
    return w + new + c[H_MU] * (new - v), new, s2


def adagrad(w, g, s, s2, c):
    s = s + g * g
    return w - c[H_LR] * g / (math.sqrt(s) + c[H_EPS]), s, s2


def rmsprop(w, g, s, s2, c):
    s = c[H_RHO] * s + c[C_ONE_MINUS_RHO] * g * g
    return w - c[H_LR] * g / (math.sqrt(s) + c[H_EPS]), s, s2


def adadelta(w, g, s, d, c):
    # AdaDelta sets its own step size: the learning rate is not used.
    s = c[H_RHO] * s + c[C_ONE_MINUS_RHO] * g * g
    dx = -math.sqrt(d + c[H_EPS]) / math.sqrt(s + c[H_EPS]) * g
    return w + dx, s, c[H_RHO] * d + c[C_ONE_MINUS_RHO] * dx * dx


def adam(w, g, m, v, c):
    # C_STEP = lr / (1 - beta1^t) and C_INV_SQRT_C2 = 1 / sqrt(1 - beta2^t):
    # the bias corrections, once per call rather than per weight.
    m = c[H_BETA1] * m + c[C_ONE_MINUS_BETA1] * g
    v = c[H_BETA2] * v + c[C_ONE_MINUS_BETA2] * g * g
    return w - c[C_STEP] * m / (math.sqrt(v) * c[C_INV_SQRT_C2] + c[H_EPS]), m, v


register_optimizer("sgd", sgd, 0, "plain gradient descent (DSSTNE's train)")
register_optimizer("momentum", momentum, 1, "heavy-ball momentum (mu)")
register_optimizer("nesterov", nesterov, 1, "Nesterov momentum (mu)")
register_optimizer("adagrad", adagrad, 1, "AdaGrad")
register_optimizer("rmsprop", rmsprop, 1, "RMSProp (rho)")
register_optimizer("adadelta", adadelta, 2, "AdaDelta (rho; no learning rate)")
register_optimizer("adam", adam, 2, "Adam (beta1 0.9, beta2 0.999)")

"""The shared per-element math (:mod:`sparse_deep.core.scalar`) compiled for
the CPU, and each activation's, compiled when a kernel first needs it."""

from numba import njit

from ...core import rng, scalar
from ...core.activations import compiled_functions
from ...core.errors import compiled_error

_cpu = scalar.compile_with(njit(cache=True))

sigmoid_delta = _cpu.sigmoid_delta
multinomial_error = _cpu.multinomial_error
output_element = _cpu.output_element
kl_sparseness = _cpu.kl_sparseness
is_unit_interval_error = _cpu.is_unit_interval_error
uniform = rng.uniform
sampled_positive = _cpu.sampled_positive
sampled_negative = _cpu.sampled_negative
bpr_pair = _cpu.bpr_pair

_ACTIVATIONS = {}


def activation_functions(code):
    """``(forward, derivative, tag)`` of the activation ``code`` for CPU kernels
    (see :func:`sparse_deep.core.activations.compiled_functions`)."""
    return compiled_functions(code, njit, _ACTIVATIONS)


_ERRORS = {}


def error_function(code):
    """``(error, tag)`` of the error function ``code`` for CPU kernels (see
    :func:`sparse_deep.core.errors.compiled_error`)."""
    return compiled_error(code, njit, _ERRORS)

"""The estimators' parameter rules, declared once and checked before any work.

Each estimator lists a rule per numeric or fixed-choice parameter in
``_parameter_rules`` (its base's rules plus its own), as scikit-learn's
``_parameter_constraints`` do; :func:`validate_parameters` checks them all at
the start of ``fit`` and ``partial_fit``, so a bad value is refused with one
style of message before the data are looked at. Names chosen from a registry
(activations, losses, optimizers) are checked by that registry, which lists
the names it accepts.
"""

import numbers
from dataclasses import dataclass

import numpy as np

from ..core.devices import DEVICES


def _is_real(value):
    return (isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
            and bool(np.isfinite(value)))


@dataclass(frozen=True)
class Number:
    """A finite real number in an interval (``high=None``: no upper bound)."""

    low: float = 0.0
    high: float | None = None
    low_inclusive: bool = True
    high_inclusive: bool = False

    def accepts(self, value):
        if not _is_real(value):
            return False
        if not (value >= self.low if self.low_inclusive else value > self.low):
            return False
        return self.high is None or (value <= self.high if self.high_inclusive
                                     else value < self.high)

    def describe(self):
        lo = "[" if self.low_inclusive else "("
        hi = "inf)" if self.high is None else (
            f"{self.high}]" if self.high_inclusive else f"{self.high})")
        return f"a number in {lo}{self.low}, {hi}"


@dataclass(frozen=True)
class PositiveInt:
    """An integer of at least 1 (not a bool)."""

    def accepts(self, value):
        return (isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))
                and value >= 1)

    def describe(self):
        return "a positive integer"


@dataclass(frozen=True)
class LayerSizes:
    """One positive integer or a sequence of at least ``min_layers`` of them."""

    min_layers: int = 0

    def accepts(self, value):
        sizes = [value] if isinstance(value, numbers.Integral) else value
        if isinstance(sizes, str):
            return False
        try:
            sizes = list(sizes)
        except TypeError:
            return False
        return len(sizes) >= self.min_layers and all(PositiveInt().accepts(s) for s in sizes)

    def describe(self):
        least = f" (at least {self.min_layers})" if self.min_layers else ""
        return f"a positive integer or a sequence of positive integers{least}"


@dataclass(frozen=True)
class Options:
    """One of a few fixed strings."""

    options: tuple

    def accepts(self, value):
        return isinstance(value, str) and value in self.options

    def describe(self):
        return "one of " + ", ".join(repr(option) for option in self.options)


@dataclass(frozen=True)
class AnyOf:
    """A value any of ``rules`` accepts."""

    rules: tuple

    def accepts(self, value):
        return any(rule.accepts(value) for rule in self.rules)

    def describe(self):
        return " or ".join(rule.describe() for rule in self.rules)


def layer_sizes(value):
    """Hidden layer sizes (validated by :class:`LayerSizes`) as a list of ints."""
    return [int(value)] if isinstance(value, numbers.Integral) else [int(v) for v in value]


def check(value, name, rule):
    """``value`` if ``rule`` accepts it, else a ValueError naming ``name``."""
    if not rule.accepts(value):
        raise ValueError(f"{name} must be {rule.describe()}; got {value!r}")
    return value


def validate_parameters(estimator):
    """Check every parameter the estimator declares a rule for."""
    for name, rule in estimator._parameter_rules.items():
        check(getattr(estimator, name), name, rule)


#: The rules every estimator shares.
SHARED_RULES = {
    "hidden_layer_sizes": LayerSizes(),
    "learning_rate": Number(0.0, low_inclusive=False),
    "momentum": Number(0.0, 1.0),
    "l2": Number(),
    "l1": Number(),
    "batch_size": PositiveInt(),
    "epochs": PositiveInt(),
    "dropout": Number(0.0, 1.0),
    "input_dropout": Number(0.0, 1.0),
    "tol": Number(),
    "n_iter_no_change": PositiveInt(),
    "validation_fraction": Number(0.0, 1.0, low_inclusive=False),
    "checkpoint_every": PositiveInt(),
    "device": Options(DEVICES),
    "distributed": Options(("auto", "off")),
}

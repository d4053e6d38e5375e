"""Registries of the names used in DSSTNE's JSON network language.

Each registry maps a canonical name (the spelling ``to_dict`` emits) to an
optional frozen record of facts the engine needs, accepts aliases, and knows
which names DSSTNE defines but sparse_deep does not implement, so that users
get "not supported yet" instead of "unknown" for those.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

__all__ = [
    "ActivationInfo",
    "ErrorFunctionInfo",
    "Registry",
    "ACTIVATIONS",
    "ERROR_FUNCTIONS",
    "WEIGHT_INITS",
    "LAYER_KINDS",
    "LAYER_TYPES",
    "NETWORK_KINDS",
    "SAMPLERS",
    "SCORINGS",
    "activation_info",
    "error_function_info",
]

# Spaces, underscores and hyphens carry no meaning in a name: DSSTNE itself
# accepts both "CrossEntropy" and "Cross Entropy".
_IGNORED = re.compile(r"[\s_\-]+")


def _normalise(name: str) -> str:
    return _IGNORED.sub("", name).lower()


@dataclass(frozen=True)
class ActivationInfo:
    """Facts about an activation function.

    Attributes
    ----------
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

    elementwise: bool = True
    output_range: tuple[float, float] | None = None
    parameters: tuple[str, ...] = ()


@dataclass(frozen=True)
class ErrorFunctionInfo:
    """Facts about an error (loss) function.

    Attributes
    ----------
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

    needs_unit_interval: bool = False
    allows_softmax: bool = True
    sampled: bool = False
    output_activations: tuple[str, ...] = ()


class Registry:
    """Canonical names, their aliases and the facts attached to them.

    Parameters
    ----------
    what : str
        What the names denote, used in error messages ("activation").
    entries : mapping of str to object
        Canonical name -> facts record (or None), in the order to list them.
    aliases : mapping of str to str, optional
        Alias -> canonical name.
    unsupported : iterable of str, optional
        Names DSSTNE defines that sparse_deep does not implement yet.
    """

    def __init__(
        self,
        what: str,
        entries: Mapping[str, Any],
        aliases: Mapping[str, str] | None = None,
        unsupported: tuple[str, ...] = (),
    ) -> None:
        self.what = what
        self._entries = dict(entries)
        self._lookup: dict[str, str] = {}
        for name in self._entries:
            self._add_key(name, name)
        for alias, name in (aliases or {}).items():
            if name not in self._entries:
                raise ValueError(f"alias {alias!r} points at unknown {what} {name!r}")
            self._add_key(alias, name)
        self._unsupported = {_normalise(name): name for name in unsupported}

    def _add_key(self, spelling: str, canonical: str) -> None:
        key = _normalise(spelling)
        if key in self._lookup:
            raise ValueError(f"{self.what} name {spelling!r} registered twice")
        self._lookup[key] = canonical

    @property
    def names(self) -> tuple[str, ...]:
        """Canonical names, in registration order."""
        return tuple(self._entries)

    def canonical(self, name: str) -> str:
        """Return the canonical spelling of `name`.

        Parameters
        ----------
        name : str
            Any accepted spelling: case, spaces, underscores and hyphens are
            ignored, and aliases are resolved.

        Returns
        -------
        str
            The canonical name.

        Raises
        ------
        ValueError
            If `name` is not a string, is unknown, or is a DSSTNE name that
            sparse_deep does not support yet. The message lists the accepted
            canonical names.
        """
        if not isinstance(name, str):
            raise ValueError(
                f"{self.what} must be a string, got {name!r}; "
                f"expected one of: {self._listing()}"
            )
        key = _normalise(name)
        if key in self._lookup:
            return self._lookup[key]
        if key in self._unsupported:
            raise ValueError(
                f"{self._unsupported[key]!r} is a DSSTNE {self.what} that sparse_deep does not "
                f"support yet; supported: {self._listing()}"
            )
        raise ValueError(f"unknown {self.what} {name!r}; expected one of: {self._listing()}")

    def info(self, name: str) -> Any:
        """Return the facts record registered for `name` (any accepted spelling)."""
        return self._entries[self.canonical(name)]

    def _listing(self) -> str:
        return ", ".join(self._entries)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and _normalise(name) in self._lookup

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.what!r}, {list(self._entries)!r})"


_UNIT_INTERVAL = (0.0, 1.0)

ACTIVATIONS = Registry(
    "activation",
    {
        "Sigmoid": ActivationInfo(output_range=_UNIT_INTERVAL),
        "Tanh": ActivationInfo(),
        "Linear": ActivationInfo(),
        "Relu": ActivationInfo(),
        "LRelu": ActivationInfo(parameters=("relu_slope",)),
        "ELU": ActivationInfo(parameters=("elu_alpha",)),
        # DSSTNE's SELU kernel reused ELUAlpha (default 1); sparse_deep keeps the
        # SELU paper's alpha (1.6733), which makes the unit self-normalising.
        "SELU": ActivationInfo(parameters=("selu_lambda",)),
        "SoftPlus": ActivationInfo(),
        "SoftSign": ActivationInfo(),
        "SoftMax": ActivationInfo(elementwise=False, output_range=_UNIT_INTERVAL),
    },
    aliases={
        "RectifiedLinear": "Relu",
        "LeakyRectifiedLinear": "LRelu",
        "ExponentialLinear": "ELU",
        "ScaledExponentialLinear": "SELU",
    },
    unsupported=("ReluMax", "LinearMax", "ParametricRectifiedLinear"),
)

_CROSS_ENTROPY_FAMILY = ErrorFunctionInfo(needs_unit_interval=True)

ERROR_FUNCTIONS = Registry(
    "error function",
    {
        "L1": ErrorFunctionInfo(),
        "L2": ErrorFunctionInfo(),
        "CrossEntropy": _CROSS_ENTROPY_FAMILY,
        "ScaledMarginalCrossEntropy": _CROSS_ENTROPY_FAMILY,
        # DSSTNE has no multinomial (SoftMax) variant of this one and aborts.
        "DataScaledMarginalCrossEntropy": ErrorFunctionInfo(
            needs_unit_interval=True, allows_softmax=False
        ),
        "Hinge": ErrorFunctionInfo(),
        "L2Hinge": ErrorFunctionInfo(),
        # sparse_deep extensions (docs/network.md, "Sampled output layers").
        "SampledSoftmax": ErrorFunctionInfo(sampled=True,
                                            output_activations=("SoftMax", "Linear")),
        "CosineContrastive": ErrorFunctionInfo(sampled=True, output_activations=("Linear",)),
        "BPR": ErrorFunctionInfo(sampled=True, output_activations=("Sigmoid", "Linear")),
    },
    aliases={"CCL": "CosineContrastive",
             "BayesianPersonalizedRanking": "BPR"},
)

# How the negatives of a sampled Output layer are drawn.
SAMPLERS = Registry("negative sampler", dict.fromkeys(("Uniform", "Popularity")))

# How a sampled Output layer scores a (row, item) pair.
SCORINGS = Registry("scoring", dict.fromkeys(("Dot", "Cosine")))

WEIGHT_INITS = Registry(
    "weight initialization scheme",
    dict.fromkeys(("Xavier", "CaffeXavier", "Gaussian", "Uniform", "UnitBall", "Constant", "SELU")),
)

LAYER_KINDS = Registry(
    "layer kind", dict.fromkeys(("Input", "Hidden", "Output")), unsupported=("Target",)
)

LAYER_TYPES = Registry(
    "layer type", {"FullyConnected": None}, unsupported=("Convolutional", "Pooling")
)

NETWORK_KINDS = Registry("network kind", dict.fromkeys(("FeedForward", "AutoEncoder")))


def activation_info(name: str) -> ActivationInfo:
    """Return the :class:`ActivationInfo` of an activation (any accepted spelling)."""
    return ACTIVATIONS.info(name)


def error_function_info(name: str) -> ErrorFunctionInfo:
    """Return the :class:`ErrorFunctionInfo` of an error function (any accepted spelling)."""
    return ERROR_FUNCTIONS.info(name)

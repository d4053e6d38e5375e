"""The codes of the activations and error functions kernels treat specially,
and the positions of the packed hyper-parameters kernels read (activations,
error functions and optimizers are numbered by their registration:
:mod:`sparse_deep.core.activations`, :mod:`sparse_deep.core.errors`,
:mod:`sparse_deep.core.optimizers`).

Kernels cannot take strings, so the engine translates the network's canonical
names (see :mod:`sparse_deep.network.registry`) into these small integers once
per fit. Every backend uses the same table.
"""

from .activations import get_activation
from .errors import get_error_function

# The activations kernels special-case (SoftMax's rows, Sigmoid's fused
# cross-entropy delta, the CPU's vectorised Tanh and Sigmoid), by their
# registered codes (sparse_deep/core/activations.py defines every activation).
LINEAR, SIGMOID, TANH, SOFTMAX = (get_activation(name).code
                                  for name in ("Linear", "Sigmoid", "Tanh", "SoftMax"))

# The error functions kernels compute in fused forms, and the sampled losses,
# by their registered codes (sparse_deep/core/errors.py registers every one).
(L1, L2, CROSS_ENTROPY, SCALED_MARGINAL_CROSS_ENTROPY, DATA_SCALED_MARGINAL_CROSS_ENTROPY,
 HINGE, L2_HINGE, SAMPLED_SOFTMAX, COSINE_CONTRASTIVE, BPR) = (
    get_error_function(name).code for name in (
        "L1", "L2", "CrossEntropy", "ScaledMarginalCrossEntropy",
        "DataScaledMarginalCrossEntropy", "Hinge", "L2Hinge", "SampledSoftmax",
        "CosineContrastive", "BPR"))

# The output pass's packed hyper-parameters, in order: the output layer's
# activation slopes, DSSTNE's ScaledMarginalCrossEntropy settings and its
# DeltaBoost (Runner.output_hyper); the backends append three constants in the
# kernel's dtype: 1 and the clamps of a logarithm's argument.
OUTPUT_HYPER = ("slope", "alpha", "lam", "one_target", "zero_target", "one_scale",
                "zero_scale", "boost_one", "boost_zero")
(HP_SLOPE, HP_ALPHA, HP_LAMBDA, HP_ONE_TARGET, HP_ZERO_TARGET, HP_ONE_SCALE, HP_ZERO_SCALE,
 HP_BOOST_ONE, HP_BOOST_ZERO, HP_ONE, HP_LOG_LOW, HP_LOG_HIGH) = range(len(OUTPUT_HYPER) + 3)
OUTPUT_HYPER_SIZE = len(OUTPUT_HYPER)

# An optimizer step's packed hyper-parameters (OptimizerState.hyper), in order,
# then the coefficients derived from them once per call
# (sparse_deep.core.optimizers.coefficients).
OPTIMIZER_HYPER = ("lr", "mu", "rho", "beta1", "beta2", "eps", "c1", "c2", "l2", "l1")
(H_LR, H_MU, H_RHO, H_BETA1, H_BETA2, H_EPS, H_C1, H_C2, H_L2, H_L1,
 C_ONE_MINUS_RHO, C_ONE_MINUS_BETA1, C_ONE_MINUS_BETA2, C_STEP,
 C_INV_SQRT_C2) = range(len(OPTIMIZER_HYPER) + 5)
N_COEFFICIENTS = C_INV_SQRT_C2 + 1


def pack(names, **values):
    """``values`` as a float64 array in the order of ``names`` (OUTPUT_HYPER or
    OPTIMIZER_HYPER), each name given once."""
    import numpy as np  # here, so that the command line's --help can read this module fast

    if set(values) != set(names):
        raise TypeError(f"expected values for {', '.join(names)}; got {', '.join(values)}")
    return np.array([values[name] for name in names], dtype=np.float64)

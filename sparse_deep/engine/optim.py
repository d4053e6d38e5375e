"""Optimizer settings and per-parameter state (the update kernels live in the backends)."""

from dataclasses import dataclass

import numpy as np

from ..core.codes import OPTIMIZER_HYPER, pack
from ..core.optimizers import get_optimizer


@dataclass(frozen=True)
class OptimizerConfig:
    """Hyper-parameters of one training run.

    ``momentum`` is DSSTNE's mu (Momentum, Nesterov); ``rho`` the decay of the
    squared-gradient averages (RMSProp, AdaDelta); ``beta1``/``beta2`` Adam's.
    ``l2``/``l1`` are DSSTNE's lambda/lambda1 (weights only, never biases).
    ``decay`` divides the learning rate by ``1 + decay * step`` (DSSTNE's
    ``Decay``, per minibatch) and ``epoch_decay`` by ``1 + epoch_decay * epoch``
    (epochs counted from 0: a schedule that does not depend on the data set's
    size, so that ``partial_fit`` and ``warm_start`` follow it exactly).
    """

    name: str = "adam"
    learning_rate: float = 1e-3
    momentum: float = 0.9
    rho: float = 0.9
    beta1: float = 0.9
    beta2: float = 0.999
    epsilon: float = 1e-8
    l2: float = 0.0
    l1: float = 0.0
    decay: float = 0.0
    epoch_decay: float = 0.0

    @property
    def code(self):
        return get_optimizer(self.name).code


class OptimizerState:
    """The per-weight arrays an optimizer keeps, allocated once per fit.

    Unused state slots get a one-row dummy so every optimizer shares one kernel
    signature; the kernel only ever writes row 0 of a dummy.

    The arrays live in host memory by default, like the model's weights: the
    engine's Runner works on a backend's copy during a fit and copies it back,
    so a fitted estimator pickles and can resume training on another device.
    ``backend`` allocates them on that backend instead.
    """

    def __init__(self, config, params, backend=None):
        self.config = config
        optimizer = get_optimizer(config.name)
        self.code = optimizer.code
        n_states = optimizer.n_states
        zeros = np.zeros if backend is None else backend.zeros
        self.states = []
        for _, array, _ in params:
            shape2d = array.shape if array.ndim == 2 else (1, array.size)  # biases: one row
            s1 = zeros(shape2d if n_states >= 1 else (1, shape2d[1]), array.dtype)
            s2 = zeros(shape2d if n_states >= 2 else (1, shape2d[1]), array.dtype)
            self.states.append((s1, s2))
        self.uses_state = n_states

    def hyper(self, step, l2=None, l1=None, epoch=0):
        """Packed hyper-parameters for update ``step`` (1-based), in ``epoch``
        (0-based), of one parameter."""
        c = self.config
        lr = c.learning_rate / (1.0 + c.decay * (step - 1)) / (1.0 + c.epoch_decay * epoch)
        c1 = 1.0 - c.beta1**step
        c2 = 1.0 - c.beta2**step
        return pack(OPTIMIZER_HYPER, lr=lr, mu=c.momentum, rho=c.rho, beta1=c.beta1,
                    beta2=c.beta2, eps=c.epsilon, c1=c1, c2=c2,
                    l2=c.l2 if l2 is None else l2, l1=c.l1 if l1 is None else l1)

"""What every sparse_deep estimator shares: the training loop and inference."""

import numbers
import sys
import time

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state

from ..backends import get_backend
from ..engine.model import Model
from ..engine.optim import OptimizerConfig, OptimizerState, optimizer_code
from ..engine.runner import Runner, max_batch_nnz
from ..network import parse_network

# Rows scored per inference chunk, at most; fewer when the widest layer is wide,
# so that a chunk's activations stay under INFERENCE_BLOCK floats (256 MB).
INFERENCE_CHUNK = 1024
INFERENCE_BLOCK = 1 << 26


def _check_positive_int(value, name):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer; got {value!r}")
    return int(value)


def _check_number(value, name, low=0.0, high=None, low_inclusive=True, high_inclusive=False):
    ok = isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
    ok = ok and np.isfinite(value)
    if ok:
        ok = value >= low if low_inclusive else value > low
    if ok and high is not None:
        ok = value <= high if high_inclusive else value < high
    if not ok:
        lo = "[" if low_inclusive else "("
        hi = "inf)" if high is None else (f"{high}]" if high_inclusive else f"{high})")
        raise ValueError(f"{name} must be a number in {lo}{low}, {hi}; got {value!r}")
    return float(value)


def epoch_order(seed, epoch, n_rows, shuffle):
    """Row order of one epoch: a permutation keyed by (seed, epoch), so training
    resumed at epoch e sees exactly the orders a single longer run would."""
    if not shuffle:
        return np.arange(n_rows, dtype=np.int64)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5EED, epoch]))
    return rng.permutation(n_rows).astype(np.int64)


class SparseNetworkEstimator(BaseEstimator):
    """Base of the estimators: builds the network, trains it, runs it forward.

    Subclasses provide ``_default_network(n_inputs, n_outputs)`` (a JSON dict)
    and their scikit-learn face. Parameters shared by all live here as
    attributes set by the subclasses' ``__init__``.
    """

    # -- parameters -----------------------------------------------------------
    def _optimizer_config(self, decay):
        optimizer_code(self.optimizer)  # a clear error for unknown names
        return OptimizerConfig(
            name=str(self.optimizer).lower(),
            learning_rate=_check_number(self.learning_rate, "learning_rate", 0.0,
                                        low_inclusive=False),
            momentum=_check_number(self.momentum, "momentum", 0.0, 1.0),
            l2=_check_number(self.l2, "l2"),
            l1=_check_number(self.l1, "l1"),
            decay=float(decay),
        )

    def _validate_training_params(self):
        _check_positive_int(self.batch_size, "batch_size")
        _check_positive_int(self.epochs, "epochs")
        if self.device not in ("cpu", "cuda", "auto"):
            raise ValueError(f"device must be 'cpu', 'cuda' or 'auto'; got {self.device!r}")

    def _network_spec(self, n_inputs, n_outputs):
        """The network to train: ``network`` if given, else the estimator's own."""
        if self.network is not None:
            spec = parse_network(self.network)
        else:
            spec = parse_network(self._default_network())
        return spec.resolve(n_inputs, n_outputs)

    # -- training -------------------------------------------------------------
    def _fit_network(self, X_in, Y, spec):
        """Train ``spec`` on inputs ``X_in`` and targets ``Y`` (CSR, same rows).

        With ``warm_start`` and a fitted model of the same network, training
        continues from its weights, optimizer state, step and epoch counters.
        """
        self._validate_training_params()
        backend = get_backend(self.device)
        config = self._optimizer_config(spec.decay)
        resume = self.warm_start and hasattr(self, "model_") and self.model_.spec == spec
        if resume:
            model, seed = self.model_, self._seed_
            state, step, epoch = self._optimizer_state_, self.n_steps_, self.n_epochs_
            if state.config != config:
                state = OptimizerState(config, model.parameters())
        else:
            seed = int(check_random_state(self.random_state).randint(0, 2**31 - 1))
            model = Model(spec, np.float32).initialize(seed)
            state = OptimizerState(config, model.parameters())
            step, epoch, self.loss_curve_ = 0, 0, []
        batch_size = min(int(self.batch_size), X_in.shape[0])
        runner = Runner(model, backend, batch_size, max_batch_nnz(X_in.indptr, batch_size),
                        max_batch_nnz(Y.indptr, batch_size), seed=seed,
                        sparse_input_update=bool(self.sparse_input_update), optimizer=state)
        inputs, targets = backend.batch_source(X_in), backend.batch_source(Y)
        n = X_in.shape[0]
        for _ in range(int(self.epochs)):
            started = time.perf_counter()
            order = epoch_order(seed, epoch, n, spec.shuffle_indices)
            total = 0.0
            for start in range(0, n, batch_size):
                step += 1
                error, penalty = runner.train_step(
                    inputs, targets, order[start:start + batch_size], step, state
                )
                total += error + penalty * min(batch_size, n - start)
            epoch += 1
            loss = total / n
            if not np.isfinite(loss):
                raise FloatingPointError(
                    f"training diverged at epoch {epoch} (loss {loss}); lower learning_rate "
                    f"(now {self.learning_rate}) or check the data for extreme values"
                )
            self.loss_curve_.append(loss)
            if self.verbose:
                print(f"epoch {epoch:4d}  loss {loss:.6f}  {time.perf_counter() - started:.2f}s",
                      file=sys.stderr)
        runner.sync_to_model()
        self.model_, self._seed_, self._optimizer_state_ = model, seed, state
        self.n_steps_, self.n_epochs_ = step, epoch
        self.network_ = spec.to_dict()
        return self

    # -- inference ------------------------------------------------------------
    def _forward_chunks(self, X_in):
        """Run the fitted network forward over ``X_in`` in row chunks.

        Yields ``(start, stop, runner)`` with every layer's activations of the
        chunk in ``runner.out``.
        """
        backend = get_backend(self.device)
        widest = max(p.n for p in self.model_.layers if not p.is_input)
        chunk = max(1, min(INFERENCE_CHUNK, INFERENCE_BLOCK // widest, X_in.shape[0]))
        runner = Runner(self.model_, backend, chunk, max_batch_nnz(X_in.indptr, chunk),
                        inference=True)
        inputs = backend.batch_source(X_in)
        for start in range(0, X_in.shape[0], chunk):
            rows = np.arange(start, min(start + chunk, X_in.shape[0]), dtype=np.int64)
            b = runner.load_batch(inputs, None, rows, 0, training=False)
            runner.forward(b, training=False)
            yield start, start + b, runner

    def _layer_outputs(self, X_in, layer_index):
        """Activations of one layer for every row of ``X_in`` (n_rows x units)."""
        n = self.model_.layers[layer_index].n
        out = np.empty((X_in.shape[0], n), dtype=self.model_.dtype)
        for start, stop, runner in self._forward_chunks(X_in):
            out[start:stop] = runner.backend.to_host(runner.out[layer_index][: stop - start])
        return out

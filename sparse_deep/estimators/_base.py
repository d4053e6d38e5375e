"""What every sparse_deep estimator shares: the training loop and inference."""

import functools
import os
import sys
import time
import warnings

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted
from tqdm import tqdm

from ..backends import get_backend
from ..distributed.comm import SerialComm, abort_on_error, ranks_agree
from ..distributed.placement import Placement, communicator, parse_bytes
from ..distributed.shards import (
    gather_model,
    gather_optimizer_state,
    scatter_model,
    scatter_optimizer_state,
)
from ..core.optimizers import get_optimizer
from ..engine.optim import OptimizerConfig, OptimizerState
from ..engine.runner import max_batch_nnz, runner_bytes, summed_error
from ..engine.sampling import NegativeSampler, item_counts
from ..network import parse_network
from ._checkpoint import Checkpoint, data_checksum
from ._params import SHARED_RULES, validate_parameters

# Rows scored per inference chunk, at most; fewer when the widest layer is wide,
# so that a chunk's activations stay under INFERENCE_BLOCK floats (256 MB).
INFERENCE_CHUNK = 1024
INFERENCE_BLOCK = 1 << 26

# Training buffers up to this size are kept between training calls that may
# continue (fit with warm_start, partial_fit), so that the next call skips
# allocating and first touching them; larger ones are freed after each call.
KEEP_TRAINING_BUFFERS_BYTES = 1 << 30

# A continued fit (warm_start, partial_fit) trains the fitted arrays in place;
# they are copied beforehand, to be put back if the call fails, up to this size
# (a Yelp2018-sized model, 38K items: 234 MB with Adam's state); larger models
# skip it. The copy goes into buffers the estimator keeps for the next call:
# into fresh memory it took 7-10 ms a call for Last.fm's 28 MB, into the kept
# buffers 2.3 ms.
RESTORE_COPY_BYTES = 256 * 2**20

# A batch whose loss per row is this many times the first batch's (or than 1,
# if that is larger) has diverged: no training that converges gets there, and
# one that overflows gets there before its loss turns to infinity.
DIVERGENCE_FACTOR = 1e6
# Steps between two reads of the batches' losses from the backend: on a GPU a
# read waits for the queued steps, so the steps between run without a wait,
# and a diverging fit stops within this many steps of it.
LOSS_READ_STEPS = 256


def restored_on_failure(fit):
    """Decorate a training method so that, if it raises, the estimator is left
    exactly as it was before the call: its attributes, its loss curve, and the
    fitted weights and optimizer state that a continued fit (``warm_start``,
    ``partial_fit``) trains in place. Those are copied first when they take at
    most RESTORE_COPY_BYTES; a larger model that a failed call has changed is
    dropped (the estimator is then unfitted, with a warning) rather than kept
    half-trained."""

    @functools.wraps(fit)
    def guarded(self, *args, **kwargs):
        continues = self._fitted_model() is not None and (
            self.warm_start or fit.__name__.endswith("partial_fit"))
        if not continues:  # a new fit may take over the runner that holds them
            self._bring_back_from_device()
        before = dict(self.__dict__)
        curve = list(self.loss_curve_) if hasattr(self, "loss_curve_") else None
        saved = _TrainingState.copy(self) if continues else None
        validate_parameters(self)  # before any work
        try:
            result = fit(self, *args, **kwargs)
        except BaseException:
            before.pop("_kept_training_runner", None)  # it may hold the failed fit's state
            before.pop("_newer_on_device", None)  # what it held is restored from the copy
            self.__dict__.clear()
            self.__dict__.update(before)
            if curve is not None:
                self.loss_curve_ = curve
            if saved is not None:
                saved.restore()
            elif continues:
                _forget_fit(self)
            raise
        if saved is not None:
            self._restore_buffers = saved.copies  # the next call's copy goes there
        return result

    return guarded


class _TrainingState:
    """Copies of a fitted model's weights, biases and optimizer arrays as a
    continued fit starts, to be put back into them if it fails.

    Where a GPU holds newer copies of those arrays (after a partial_fit there,
    see ``model_``), the GPU's are copied, on the GPU. ``buffers`` are the
    copies of the last call, reused when they fit."""

    def __init__(self, pairs, backend=None, buffers=None):
        self.hosts = [host for host, _ in pairs]
        newest = [array for _, array in pairs]
        layouts = [(a.shape, a.dtype, _is_device_array(a)) for a in newest]
        if buffers is None or [(b.shape, b.dtype, _is_device_array(b))
                               for b in buffers] != layouts:
            buffers = [backend.empty(shape, dtype) if on_gpu else np.empty(shape, dtype)
                       for shape, dtype, on_gpu in layouts]
        self.copies = buffers
        for array, copy in zip(newest, self.copies):
            if _is_device_array(array):
                backend.copy(copy, array)
            else:
                np.copyto(copy, array)

    @classmethod
    def copy(cls, estimator):
        """The copy, or None when it would take more than RESTORE_COPY_BYTES."""
        hosts = _training_arrays(estimator._fitted_model(), estimator._optimizer_state_)
        if sum(int(a.nbytes) for a in hosts) > RESTORE_COPY_BYTES:
            return None
        runner = estimator.__dict__.get("_newer_on_device")
        newer = {} if runner is None else {id(h): c for h, c in runner.parameter_pairs()}
        return cls([(h, newer.get(id(h), h)) for h in hosts],
                   None if runner is None else runner.backend,
                   getattr(estimator, "_restore_buffers", None))

    def restore(self):
        for host, copy in zip(self.hosts, self.copies):
            host[...] = copy.copy_to_host() if _is_device_array(copy) else copy


def _is_device_array(array):
    return hasattr(array, "copy_to_host")


def _training_arrays(model, state):
    """The arrays a continued fit trains: weights, biases, optimizer state."""
    return [p for _, p, _ in model.parameters()] + [a for s in state.states for a in s]


def _forget_fit(estimator):
    warnings.warn(f"the failed call had changed the fitted {type(estimator).__name__}'s "
                  "weights in place, which are too large to copy beforehand "
                  "(RESTORE_COPY_BYTES); the estimator is no longer fitted", RuntimeWarning,
                  stacklevel=3)
    for name in [k for k in vars(estimator) if k.endswith("_") and not k.startswith("__")]:
        delattr(estimator, name)


def epoch_order(seed, epoch, n_rows, shuffle):
    """Row order of one epoch: a permutation keyed by (seed, epoch), so training
    resumed at epoch e sees exactly the orders a single longer run would."""
    if not shuffle:
        return np.arange(n_rows, dtype=np.int64)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5EED, epoch]))
    return rng.permutation(n_rows).astype(np.int64)


class TrainingSession:
    """A model being trained on one data set, one epoch at a time.

    Holds what an epoch needs (runner, data blocks on the backend, optimizer
    state) and the counters that key the randomness (step, epoch), so that
    epochs run one call at a time (``partial_fit``) give the same model as
    epochs run in one loop.

    Parameters
    ----------
    runner : Runner
    inputs, targets
        The data set as the backend's ``batch_source``.
    optimizer : OptimizerState
    seed, step, epoch : int
        Seed of the random streams; steps and epochs trained so far.
    n_rows, batch_size : int
    shuffle : bool
        Visit rows in a (seed, epoch)-keyed random order.
    row_weights : ndarray of shape (n_rows,), optional
        Per-row loss weights, already normalised (mean 1 over the data set).
    comm : communicator, optional
        The ranks the model is sharded over (see :mod:`sparse_deep.distributed`).
    """

    def __init__(self, runner, inputs, targets, optimizer, seed, step, epoch, n_rows,
                 batch_size, shuffle, row_weights=None, comm=None):
        self.runner, self.inputs, self.targets = runner, inputs, targets
        self.optimizer, self.seed, self.step, self.epoch = optimizer, seed, step, epoch
        self.n_rows, self.batch_size, self.shuffle = n_rows, batch_size, shuffle
        self.row_weights = row_weights
        self.comm = SerialComm() if comm is None else comm
        self.first_loss = None
        self._losses = None  # see _loss_window

    def run_epoch(self):
        """Train one epoch; returns its mean loss per row.

        The loss of a row is its summed output error times its weight (1 when
        there are no weights); the epoch's loss is the sum over rows, plus the
        sparseness penalty of each batch counted once per row, divided by the
        number of rows.
        """
        order = epoch_order(self.seed, self.epoch, self.n_rows, self.shuffle)
        n, batch = self.n_rows, self.batch_size
        runner = self.runner
        starts = range(0, n, batch)
        row_error, penalty_losses, views = self._loss_window(len(starts))
        total, checked = 0.0, 0
        for index, start in enumerate(starts):
            self.step += 1
            rows = order[start:start + batch]
            batch_error, batch_penalties = views[index - checked]
            runner.train_step(
                self.inputs, self.targets, rows, self.step, self.optimizer,
                row_weights=self.row_weights, epoch=self.epoch,
                row_error=runner.backend.head(batch_error, len(rows)),
                penalty_losses=batch_penalties,
            )
            if index + 1 - checked == len(views) or index + 1 == len(starts):
                total = self._checked_losses(order, starts[checked:index + 1], row_error,
                                             penalty_losses, total)
                checked = index + 1
        # Losses that clip their logarithms stay finite over NaN outputs: the
        # weights themselves are checked once an epoch.
        if not all(self.comm.allgather_objects(self.runner.parameters_finite())):
            raise FloatingPointError(
                f"training diverged at epoch {self.epoch + 1}, by batch {-(-n // batch)} of "
                f"{-(-n // batch)}: some weights are NaN or infinite. Lower learning_rate, "
                "or check the data for extreme values."
            )
        self.epoch += 1
        return total / n

    def _loss_window(self, n_steps):
        """Backend arrays for the losses of the steps between two reads (at
        most LOSS_READ_STEPS), and each step's part of them, made once for
        the session: a GPU spends tens of µs of Python making a view."""
        if self._losses is None:
            runner, batch = self.runner, self.batch_size
            steps = min(LOSS_READ_STEPS, n_steps)
            row_error, penalty_losses = runner.loss_buffers(steps * batch, steps)
            views = [(row_error[s * batch:(s + 1) * batch],
                      penalty_losses[s] if runner.penalized else None) for s in range(steps)]
            self._losses = row_error, penalty_losses, views
        return self._losses

    def _checked_losses(self, order, starts, row_error, penalty_losses, total):
        """``total`` plus the losses of the batches starting at ``starts`` (a
        range of the epoch's, whose losses fill the first entries of
        ``row_error`` and ``penalty_losses``), read back from the backend in
        one go and checked batch by batch (:meth:`_check_divergence`)."""
        runner, batch = self.runner, self.batch_size
        lo, hi = starts[0], min(starts[-1] + batch, self.n_rows)
        first = lo // batch
        errors = runner.row_errors(runner.backend.head(row_error, hi - lo))
        penalties = runner.step_penalties(runner.backend.head(penalty_losses, len(starts)))
        for index, (start, penalty) in enumerate(zip(starts, penalties), start=first):
            rows = order[start:start + batch]
            error = summed_error(errors[start - lo:start - lo + batch],
                                 None if self.row_weights is None else self.row_weights[rows])
            self._check_divergence((error + penalty * len(rows)) / len(rows), index)
            total += error + penalty * len(rows)
        return total

    def _check_divergence(self, loss, batch_index):
        """Raise FloatingPointError, naming the epoch and batch, when a batch's
        loss per row is not finite or DIVERGENCE_FACTOR times the first's."""
        if self.first_loss is None:
            self.first_loss = loss
        # (A first loss below 1 counts as 1: a tiny start is not a scale.)
        if np.isfinite(loss) and not loss > DIVERGENCE_FACTOR * max(self.first_loss, 1.0):
            return
        n_batches = -(-self.n_rows // self.batch_size)
        raise FloatingPointError(
            f"training diverged at epoch {self.epoch + 1}, batch {batch_index + 1} of "
            f"{n_batches}: loss per row {loss:.4g}, against {self.first_loss:.4g} at this "
            "fit's first batch. Lower learning_rate, or check the data for extreme values."
        )


class StoppingMonitor:
    """scikit-learn's stopping rule for the epochs of one ``fit``.

    After each epoch the monitored value is compared with the best so far: an
    epoch that does not beat it by more than ``tol`` counts as one without
    improvement, and training stops after ``n_iter_no_change`` such epochs in a
    row. The value is the training loss, or, with ``validate``, a validation
    score (higher is better); then the weights of the best-scoring epoch are
    kept and restored by :meth:`restore_best` (as scikit-learn's MLP does).

    Parameters
    ----------
    tol : float
    n_iter_no_change : int
    validate : callable, optional
        ``validate(model) -> float``, the score of the current model.
    """

    def __init__(self, tol, n_iter_no_change, validate=None):
        self.tol, self.n_iter_no_change, self.validate = tol, n_iter_no_change, validate
        self.scores = []
        self.best_score = -np.inf
        self.best_loss = np.inf
        self.no_improvement = 0
        self.reason = ""
        self._best_parameters = None

    def epoch_done(self, session, loss):
        """Record one epoch; returns True when training should stop."""
        if self.validate is None:
            value, best = -loss, -self.best_loss
            self.best_loss = min(self.best_loss, loss)
        else:
            session.runner.sync_to_model()
            value, best = float(self.validate(session.runner.model)), self.best_score
            self.scores.append(value)
            if value > self.best_score:
                self.best_score = value
                self._best_parameters = _copy_parameters(session.runner.model)
        self.no_improvement = self.no_improvement + 1 if value < best + self.tol else 0
        if self.no_improvement < self.n_iter_no_change:
            return False
        what = "Training loss" if self.validate is None else "Validation score"
        self.reason = (f"{what} did not improve by more than tol={self.tol:g} for "
                       f"{self.n_iter_no_change} consecutive epochs; stopping.")
        return True

    def replay(self, losses):
        """Feed the training losses of epochs already run (a resumed fit) to a
        monitor of the training loss; returns True when they say stop."""
        if self.validate is not None:
            raise ValueError("a validation monitor cannot replay past epochs")
        stop = False
        for loss in losses:
            stop = self.epoch_done(None, loss)
        return stop

    def restore_best(self, model):
        """Put the best-scoring epoch's weights into ``model`` (validation only)."""
        if self._best_parameters is not None:
            _restore_parameters(model, self._best_parameters)


def _copy_parameters(model):
    return [w.copy() for w in model.weights], {t: b.copy() for t, b in model.biases.items()}


def _restore_parameters(model, parameters):
    """Write ``parameters`` (from :func:`_copy_parameters`) back into ``model``."""
    weights, biases = parameters
    for host, saved in zip(model.weights, weights):
        host[...] = saved
    for t, host in model.biases.items():
        host[...] = biases[t]


def _progress(verbose, epochs):
    """A progress bar over epochs on stderr; disabled when not ``verbose``."""
    return tqdm(total=epochs, disable=not verbose, file=sys.stderr, unit="epoch",
                dynamic_ncols=True)


def _report_epoch(bar, verbose, epoch, loss, monitor, seconds):
    """Show an epoch's loss (and validation score) on the bar; at ``verbose >= 2``
    also one line per epoch, which stays in logs."""
    if not verbose:
        return
    shown = {"loss": f"{loss:.5f}"}
    if monitor is not None and monitor.scores:
        shown["val"] = f"{monitor.scores[-1]:.5f}"
    bar.set_postfix(shown, refresh=False)
    bar.update(1)
    if verbose >= 2:
        extra = f"  validation {shown['val']}" if "val" in shown else ""
        bar.write(f"epoch {epoch:4d}  loss {loss:.6f}{extra}  {seconds:.2f}s", file=sys.stderr)


class SparseNetworkEstimator(BaseEstimator):
    """Base of the estimators: builds the network, trains it, runs it forward.

    Subclasses provide ``_default_network(n_inputs, n_outputs, **head)`` (the
    JSON dict their parameters describe; ``head``: what else the output layer
    depends on, e.g. the target encoding), may check a network in
    ``_check_network(spec, **head)``, and give their scikit-learn face.
    Parameters shared by all live here as attributes set by the subclasses'
    ``__init__``.
    """

    # -- parameters -----------------------------------------------------------
    #: Each numeric or fixed-choice parameter's rule (see _params.py), checked
    #: at the start of every fit and partial_fit.
    _parameter_rules = SHARED_RULES

    def _optimizer_config(self, decay):
        get_optimizer(self.optimizer)  # a clear error for unknown names
        return OptimizerConfig(
            name=str(self.optimizer).lower(),
            learning_rate=float(self.learning_rate),
            momentum=float(self.momentum),
            l2=float(self.l2),
            l1=float(self.l1),
            decay=float(decay),
            epoch_decay=self._epoch_decay(),
        )

    def _epoch_decay(self):
        """The learning rate's decay per epoch (see OptimizerConfig); none here."""
        return 0.0

    def _validate_training_params(self):
        self._validate_checkpoint_params()
        parse_bytes(self.weight_memory_limit)

    def _validate_checkpoint_params(self):
        path = self.checkpoint_path
        if path is None:
            return
        if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
            raise ValueError(f"checkpoint_path must be a file path or None; got {path!r}")
        if self.early_stopping:
            raise ValueError("checkpoint_path cannot be combined with early_stopping=True: "
                             "the validation monitor's best weights are not part of a "
                             "checkpoint; set early_stopping=False or checkpoint_path=None")
        directory = os.path.dirname(os.path.abspath(os.fspath(path)))
        if not os.path.isdir(directory):
            raise FileNotFoundError(f"checkpoint_path {path}: directory {directory} does not "
                                    "exist")

    def _communicator(self):
        """The ranks this estimator spans (``distributed`` parameter)."""
        return communicator(self.distributed)

    def _network_spec(self, n_inputs, n_outputs, **head):
        """The network to train: ``network`` if given, else the estimator's own."""
        network = (self.network if self.network is not None
                   else self._default_network(n_inputs, n_outputs, **head))
        spec = parse_network(network).resolve(n_inputs, n_outputs)
        self._check_network(spec, **head)
        return spec

    def _check_network(self, spec, **head):
        """Refuse a network these data cannot train (nothing to check here)."""

    # -- the whole model, for files --------------------------------------------
    def _with_whole_model(self, use):
        """Call ``use(model, optimizer_state)`` once, with the whole model: on
        rank 0, gathered from every rank's shard when the model is sharded
        (every rank must call this). A failure on rank 0 raises on every rank."""
        model, state, comm = self.model_, self._optimizer_state_, SerialComm()
        if model.shards is not None:
            comm = self._communicator()
            whole = gather_model(model, comm)
            model, state = whole, gather_optimizer_state(state, model, whole, comm)
        with ranks_agree(comm):
            if comm.rank == 0:
                use(model, state)

    def _adopt_whole_model(self, model, state):
        """Keep a whole model (read from a file); under ``mpiexec`` with more
        than one rank, each rank keeps its shard, as a fit would leave it."""
        comm = self._communicator()
        if comm.size > 1:
            local = scatter_model(model, comm)
            model, state = local, scatter_optimizer_state(state, model, local, comm)
        self.model_, self._optimizer_state_ = model, state
        self.n_ranks_ = comm.size

    # -- fitted weights, as scikit-learn's MLPs show them ------------------------
    @property
    def coefs_(self):
        """The weight matrices, one per connection of the network (in
        ``network_``'s order: a layer's sources, layer by layer), each of shape
        (units of the source, units of the target) as in scikit-learn's
        ``MLPClassifier``. Read-only views of the trained weights, not copies;
        under MPI, this rank's block of each split weight."""
        check_is_fitted(self, "model_")
        model = self.model_
        return [_read_only(w.T if item_major else w)
                for w, item_major in zip(model.weights, model.item_major)]

    @property
    def intercepts_(self):
        """The bias vectors of the layers after the input, in layer order;
        read-only views (this rank's block of the output bias under MPI)."""
        check_is_fitted(self, "model_")
        model = self.model_
        return [_read_only(model.biases[p.index]) for p in model.layers if not p.is_input]

    # -- the fitted model -----------------------------------------------------
    # After a partial_fit (or a warm-start fit) on a GPU, the newest weights and
    # optimizer state are the copies the kept runner trained there; they come
    # back to the model's host arrays when model_ is next read (by the user, a
    # prediction, pickling, saving), not at the end of every call, so a loop of
    # partial_fit calls copies nothing between host and GPU (docs/gpu.md).
    @property
    def model_(self):
        model = self.__dict__.get("_model_")
        if model is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute 'model_'")
        self._bring_back_from_device()
        return model

    @model_.setter
    def model_(self, model):
        self.__dict__.pop("_newer_on_device", None)
        self.__dict__["_model_"] = model

    @model_.deleter
    def model_(self):
        self.__dict__.pop("_newer_on_device", None)
        del self.__dict__["_model_"]

    def _fitted_model(self):
        """The fitted model (None before a fit) without reading the GPU's newer
        copies back: for training, which goes on from those."""
        return self.__dict__.get("_model_")

    def _bring_back_from_device(self):
        """Copy the GPU's newer parameters and optimizer state, if a runner
        holds them, into the fitted model's arrays. The runner lets its copies
        go: the arrays may be changed once read, so the next training call
        takes them afresh."""
        runner = self.__dict__.pop("_newer_on_device", None)
        if runner is not None:
            runner.sync_to_model()
            runner.release_parameters()

    # -- training -------------------------------------------------------------
    def _can_resume(self, spec):
        """Whether training continues the fitted model: ``warm_start``, the same
        network, and the same number of ranks."""
        model = self._fitted_model()
        return (bool(self.warm_start) and model is not None and model.spec == spec
                and getattr(self, "n_ranks_", 1) == self._communicator().size)

    def _training_seed(self, resume):
        """The seed of the model's random streams: kept when training resumes."""
        if resume:
            return self._seed_
        return int(check_random_state(self.random_state).randint(0, 2**31 - 1))

    def _start_training(self, X_in, Y, spec, row_weights=None, resume=None):
        """Prepare a :class:`TrainingSession` of ``spec`` on ``X_in`` -> ``Y``.

        With ``resume`` (default: :meth:`_can_resume`) the fitted model goes on
        from its weights, optimizer state, step and epoch counters; otherwise a
        new model is initialised and ``loss_curve_`` restarts. ``row_weights``
        are per-row loss weights (see :meth:`TrainingSession.run_epoch`).
        Under MPI with more than one rank the model is sharded (see
        docs/distributed.md); every rank runs this with the same data.
        """
        comm = self._communicator()
        placement = Placement(comm)
        with ranks_agree(comm):  # a failure on any rank, before lockstep, raises on all
            self._validate_training_params()
            backend = get_backend(self.device)
            config = self._optimizer_config(spec.decay)
            if resume is None:
                resume = self._can_resume(spec)
            seed = self._training_seed(resume)
            if resume:
                model = self._fitted_model()  # newer on the GPU, maybe: see below
                state, step, epoch = self._optimizer_state_, self.n_steps_, self.n_epochs_
                if state.config != config:
                    state = OptimizerState(config, model.parameters())
            else:
                placement.check_memory(spec, config.name, parse_bytes(self.weight_memory_limit))
                seed = placement.agree_on_seed(seed)
                model = placement.new_model(spec, np.float32).initialize(seed)
                self._initialize_output(model, Y, row_weights)
                state = OptimizerState(config, model.parameters())
                step, epoch, self.loss_curve_ = 0, 0, []
            sampler = None
            if model.output.is_sampled:  # drawn over every item, whichever rank holds it
                sampler = NegativeSampler(model.output.sampling, item_counts(Y))
            X_in = placement.local_columns(X_in, *model.input_range)
            Y = placement.local_columns(Y, *model.output_range)
            batch_size = min(int(self.batch_size), X_in.shape[0])
            sizes = (batch_size, max_batch_nnz(X_in.indptr, batch_size),
                     max_batch_nnz(Y.indptr, batch_size))
            runner = self._kept_runner(model, backend, sizes, comm)
            # Training goes on from the GPU's newer copies when this call continues
            # them as they are; otherwise they come back first, and the model's
            # arrays are taken afresh.
            on_gpu = (resume and runner is not None and runner.holds(model, state)
                      and runner is self.__dict__.get("_newer_on_device"))
            if on_gpu:
                del self._newer_on_device  # the runner trains them on
            else:
                self._bring_back_from_device()
            if runner is not None:
                runner.rebind(model, state, seed, keep_copies=on_gpu)
            else:
                runner = placement.runner(model, backend, *sizes, seed=seed,
                                          sparse_input_update=bool(self.sparse_input_update),
                                          optimizer=state)
            if sampler is not None:
                runner.sampled.prepare(sampler)
            inputs, targets = runner.backend.batch_source(X_in), runner.backend.batch_source(Y)
        return TrainingSession(runner, inputs, targets, state, seed, step, epoch,
                               X_in.shape[0], batch_size, spec.shuffle_indices, row_weights,
                               comm=comm)

    def _kept_runner(self, model, backend, sizes, comm):
        """The runner kept from the last training call, if its buffers serve
        this one (see KEEP_TRAINING_BUFFERS_BYTES); it is given up either way,
        so a call that fails leaves none behind."""
        runner, self._kept_training_runner = getattr(self, "_kept_training_runner", None), None
        if runner is None or comm.size != 1:
            return None
        if not runner.can_train(model, backend, *sizes, bool(self.sparse_input_update)):
            return None
        return runner

    @staticmethod
    def _keeps_runner(session, keep):
        """Whether ``session``'s runner is kept for the next training call:
        ``keep``, one process, and buffers small enough."""
        runner = session.runner
        if not keep or session.comm.size != 1:
            return False
        buffers = runner_bytes(runner.model, runner.batch_size, runner.inputs.indices.shape[0],
                               runner.targets.indices.shape[0],
                               sparse_input_update=runner.sparse_input_update,
                               backend=runner.backend)["batch buffers"]
        return buffers <= KEEP_TRAINING_BUFFERS_BYTES

    def __getstate__(self):
        # Kept training and restore buffers are caches: never pickled (nor saved).
        self._bring_back_from_device()
        state = dict(super().__getstate__())
        state.pop("_kept_training_runner", None)
        state.pop("_restore_buffers", None)
        return state

    def _initialize_output(self, model, Y, row_weights):
        """Hook: adjust a freshly initialised model to its targets (default: nothing).

        ``Y`` holds every output column; a sharded model holds the columns
        ``model.output_range`` of the output layer."""

    def _run_epoch(self, session):
        """One epoch of ``session``; appends its loss to ``loss_curve_``."""
        loss = session.run_epoch()  # raises FloatingPointError if it diverges
        self.loss_curve_.append(loss)
        return loss

    def _end_training(self, session, keep_buffers=False):
        """Publish the session's model and counters as fitted attributes.

        With ``keep_buffers`` (the next call may continue: ``warm_start`` or
        ``partial_fit``) the runner's buffers are kept for it."""
        runner = session.runner
        kept = self._keeps_runner(session, keep_buffers)
        newer_on_device = kept and runner.trains_copies()
        if not newer_on_device:
            runner.sync_to_model()
        if kept:
            self._kept_training_runner = runner
        else:
            runner.close()  # its buffers are freed now (see Runner.close)
        self.model_, self._seed_ = runner.model, session.seed
        if newer_on_device:  # read back when model_ is (see there)
            self._newer_on_device = runner
        self._optimizer_state_ = session.optimizer
        self.n_steps_, self.n_epochs_ = session.step, session.epoch
        self.n_ranks_ = session.comm.size
        self.network_ = session.runner.model.spec.to_dict()
        return self

    def _fit_network(self, X_in, Y, spec, row_weights=None, monitor=None):
        """Train ``spec`` on inputs ``X_in`` and targets ``Y`` (CSR, same rows)
        for ``epochs`` epochs, or until ``monitor`` says stop.

        With ``warm_start`` and a fitted model of the same network, training
        continues from its weights, optimizer state, step and epoch counters.
        ``monitor`` (a :class:`StoppingMonitor`) sees the model after every epoch.
        """
        checkpoint = None
        resume = None
        if self.checkpoint_path is not None:
            checkpoint = Checkpoint(self, data_checksum(X_in, Y, row_weights))
            resume = checkpoint.restore(self, spec) or None
        session = self._start_training(X_in, Y, spec, row_weights, resume=resume)
        epochs = int(self.epochs)
        if checkpoint is not None:
            if checkpoint.first_epoch is None:  # not resumed: this fit starts here
                checkpoint.first_epoch = session.epoch
            elif monitor is not None and monitor.replay(self.loss_curve_[checkpoint.first_epoch:]):
                epochs = 0  # the interrupted fit had stopped at its last checkpoint
            epochs = max(0, min(epochs, checkpoint.first_epoch + int(self.epochs) - session.epoch))
        self._train_epochs(session, epochs, monitor, checkpoint)
        self._end_training(session, keep_buffers=bool(self.warm_start))
        if monitor is not None:
            monitor.restore_best(self.model_)
        return self

    def _train_epochs(self, session, epochs, monitor=None, checkpoint=None):
        """Run up to ``epochs`` epochs of ``session``, reporting progress, until
        ``monitor`` (if any) says stop, writing ``checkpoint`` when it is due.
        Returns the last epoch's loss."""
        loss = None
        # Sharded: the loss is summed over ranks, so divergence is seen by all
        # at once; any other failure of one rank inside the steps aborts the job.
        with abort_on_error(session.comm, shared=(FloatingPointError,)), \
                _progress(self.verbose, epochs) as bar:
            for _ in range(epochs):
                started = time.perf_counter()
                loss = self._run_epoch(session)
                stop = monitor is not None and monitor.epoch_done(session, loss)
                if checkpoint is not None and (checkpoint.due(session) or stop):
                    checkpoint.write(self, session)
                _report_epoch(bar, self.verbose, session.epoch, loss, monitor,
                              time.perf_counter() - started)
                if stop:
                    if self.verbose:
                        bar.write(monitor.reason)
                    break
        return loss

    # -- inference ------------------------------------------------------------
    def _forward_chunks(self, X_in, activate_output=True, model=None):
        """Run the fitted network (or ``model``) forward over ``X_in`` in row chunks.

        Yields ``(start, stop, runner)`` with every layer's activations of the
        chunk in ``runner.out``; without ``activate_output`` the output layer's
        entry holds its pre-activations (the scores before Sigmoid/SoftMax).
        """
        model = self.model_ if model is None else model
        backend = get_backend(self.device)
        widest = max(p.n for p in model.layers if not p.is_input)
        chunk = max(1, min(INFERENCE_CHUNK, INFERENCE_BLOCK // widest, X_in.shape[0]))
        placement = self._placement(model)
        X_in = placement.local_columns(X_in, *model.input_range)
        runner = placement.runner(model, backend, chunk, max_batch_nnz(X_in.indptr, chunk),
                                  inference=True)
        inputs = backend.batch_source(X_in)
        for start in range(0, X_in.shape[0], chunk):
            rows = np.arange(start, min(start + chunk, X_in.shape[0]), dtype=np.int64)
            b = runner.load_batch(inputs, None, rows, 0, training=False)
            runner.forward(b, training=False, stop_at_output=not activate_output)
            yield start, start + b, runner

    def _output_scores(self, X_in, model=None, activate_output=False):
        """Output scores of every row (pre-activation unless ``activate_output``),
        in row chunks.

        Yields ``(start, stop, z)`` with ``z`` a host array (stop - start, n_outputs).
        """
        model = self.model_ if model is None else model
        out = model.output.index
        for start, stop, runner in self._forward_chunks(X_in, activate_output=activate_output,
                                                        model=model):
            z = np.array(runner.backend.to_host(runner.out[out][: stop - start]))
            if model.shards is not None:  # each rank holds a slice of the outputs: join them
                z = np.hstack(runner.comm.allgather_objects(z))
            yield start, stop, z

    def _placement(self, model):
        """The placement of a fitted ``model``: sharded over the ranks it was fitted on."""
        comm = self._communicator() if model.shards is not None else None
        if comm is not None and comm.size != getattr(self, "n_ranks_", 1):
            raise ValueError(
                f"this model was fitted sharded over {self.n_ranks_} ranks and can only run on "
                f"{self.n_ranks_} ranks; this process is one of {comm.size}"
            )
        return Placement(comm) if comm is not None else Placement(SerialComm())

    def _layer_outputs(self, X_in, layer_index):
        """Activations of one layer for every row of ``X_in`` (n_rows x units)."""
        n = self.model_.layers[layer_index].n
        out = np.empty((X_in.shape[0], n), dtype=self.model_.dtype)
        split = self.model_.shards is not None and layer_index == self.model_.output.index
        for start, stop, runner in self._forward_chunks(X_in):
            block = runner.backend.to_host(runner.out[layer_index][: stop - start])
            if split:  # each rank holds a slice of the output units: join them
                block = np.hstack(runner.comm.allgather_objects(np.ascontiguousarray(block)))
            out[start:stop] = block
        return out


def _read_only(array):
    view = array.view()
    view.flags.writeable = False
    return view

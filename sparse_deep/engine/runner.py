"""One training step, expressed in backend operations.

:class:`Runner` owns every buffer a step needs, allocated once for the largest
batch, and runs forward, backward and update over a :class:`~.model.Model`:

    CSR batch -> input layer (gather the weight rows of present features)
              -> hidden layers (dense GEMM, activation, dropout)
              -> output layer (GEMM, then one fused pass: activation, error, delta)
              -> backward (GEMMs; the input layer's gradient covers present rows only)
              -> optimizer update.

Random draws (dropout, denoising) are keyed by (seed, step, layer, example id),
so a step is a pure function of the model, the batch and those numbers.

The Runner keeps the backend's working copies of the parameters and of the
optimizer's state for one fit; :meth:`Runner.sync_to_model` copies them back
into the host arrays the estimator keeps. Data sets are read through
``backend.batch_source``: only the current batch is loaded into the buffers.
"""

import numpy as np

from ..backends.base import ParameterStep
from ..core.blocks import CSRBlock, TransposedBlock
from ..core.codes import LINEAR, OUTPUT_HYPER, pack
from ..core.rng import stream_key_host
from .layers import make_layer
from .sampled import SampledOutput


def summed_penalty(values):
    """A step's sparseness penalty from each penalised layer's loss (host
    array, in layer order), added from the last layer back."""
    return sum(float(v) for v in reversed(values))


def summed_error(errors, weights=None):
    """A batch's error: its rows' errors (host array), each times its weight
    when ``weights`` is given."""
    if weights is None:
        return float(np.sum(errors))
    return float(np.sum(errors * np.asarray(weights)))


def max_batch_nnz(indptr, batch_size):
    """Most non-zeros any batch of ``batch_size`` rows can hold (its largest rows)."""
    lengths = np.diff(np.asarray(indptr))
    if lengths.size <= batch_size:
        return int(lengths.sum())
    return int(np.partition(lengths, lengths.size - batch_size)[-batch_size:].sum())


def input_gradient_rows(max_input_nnz, n_features):
    """Rows of an input-fed layer's gradient buffer: one per feature present in
    a batch, which is at most the batch's non-zeros and at most the features
    (a batch of long rows, as MovieLens's heaviest users, can hold 20 times
    more non-zeros than there are items)."""
    return max(min(int(max_input_nnz), int(n_features)), 1)


def runner_bytes(model, batch_size, max_input_nnz, max_target_nnz=0, optimizer=None,
                 inference=False, sparse_input_update=False, backend_scratch=0, backend=None):
    """Bytes a :class:`Runner` allocates on its backend, by part.

    Counted by building the Runner on an :class:`AllocationCounter`, which
    allocates nothing: the estimate comes from the code that allocates, so
    that a backend with little memory can refuse a model before allocating
    any of it. ``optimizer`` is the :class:`OptimizerState` whose arrays the
    Runner copies, ``backend_scratch`` what the backend adds
    (:meth:`Backend.scratch_bytes`); ``backend``, if given, sizes the dense
    input update's scratch (else a full-size gradient is counted). Returns
    ``{"weights", "optimizer state", "batch buffers"}`` in bytes.
    """
    counter = AllocationCounter(model, optimizer, backend)
    Runner(model, counter, batch_size, max_input_nnz, max_target_nnz, inference=inference,
           sparse_input_update=sparse_input_update, optimizer=optimizer)
    counter.bytes["batch buffers"] += int(backend_scratch)
    return counter.bytes


class AllocationCounter:
    """A stand-in backend on which a :class:`Runner` is built only to be
    measured (:func:`runner_bytes`): it allocates nothing, and adds up the
    bytes of each array the Runner asks for, by part.

    Copies of the model's parameters count as "weights", of the optimizer's
    arrays as "optimizer state", everything else as "batch buffers".
    ``backend`` sizes what depends on the real backend (the dense input
    update's scratch).
    """

    measures_only = True

    def __init__(self, model, optimizer=None, backend=None):
        self.backend = backend
        self._parts = {id(a): "weights" for a in (*model.weights, *model.biases.values())}
        for s1, s2 in (optimizer.states if optimizer is not None else ()):
            self._parts[id(s1)] = self._parts[id(s2)] = "optimizer state"
        self.bytes = {"weights": 0, "optimizer state": 0, "batch buffers": 0}

    def zeros(self, shape, dtype):
        dtype = np.dtype(dtype)
        self.bytes["batch buffers"] += int(np.prod(shape)) * dtype.itemsize
        return np.broadcast_to(np.zeros((), dtype), shape)  # no memory behind it

    empty = zeros

    def to_device(self, array):
        self.bytes[self._parts.get(id(array), "batch buffers")] += array.nbytes
        return array

    def fill(self, array, value):
        """Nothing to fill."""

    def all_rows_scratch(self, shape, dtype):
        itemsize = np.dtype(dtype).itemsize
        self.bytes["batch buffers"] += (int(np.prod(shape)) * itemsize if self.backend is None
                                        else self.backend.all_rows_scratch_bytes(shape, itemsize))


# Offsets that keep the random streams of denoising and of each layer's dropout apart.
_DENOISE_STREAM = 0


class Runner:
    """Buffers and step logic for one model on one backend.

    Parameters
    ----------
    model : Model
    backend : Backend
    batch_size : int
        Largest number of rows per step.
    max_input_nnz, max_target_nnz : int
        Largest number of non-zeros a batch of inputs / targets can hold.
    seed : int
        Seed of the random streams (dropout, denoising).
    inference : bool
        Allocate only what the forward pass needs (no deltas, no gradients).
    sparse_input_update : bool
        Update only the input-layer rows of features present in the batch
        ("lazy", as sparse Adam). Otherwise every row takes its optimizer step,
        absent rows with a zero gradient, as in DSSTNE and PyTorch.
    optimizer : OptimizerState, optional
        The optimizer state the fit will pass to :meth:`update`: counted in the
        memory check and copied to the backend now rather than at the first step.

    Raises
    ------
    MemoryError
        When the backend cannot hold the model and buffers (a GPU's memory is
        checked before anything is allocated on it).
    """

    def __init__(self, model, backend, batch_size, max_input_nnz, max_target_nnz=0, seed=0,
                 inference=False, sparse_input_update=False, optimizer=None):
        self.model = model
        self.layers = [make_layer(p) for p in model.layers]  # what each does in a step
        self.backend = backend
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.sparse_input_update = bool(sparse_input_update)
        self.inference = bool(inference)
        dt = model.dtype
        bk = backend
        n = self.batch_size
        if not getattr(bk, "measures_only", False):  # see AllocationCounter
            bk.check_memory(runner_bytes(
                model, n, max_input_nnz, max_target_nnz, optimizer, inference,
                self.sparse_input_update,
                bk.scratch_bytes(n, max_input_nnz, max_target_nnz, np.dtype(dt).itemsize), bk,
            ))
        self._bind_parameters(model, optimizer)
        self.inputs = CSRBlock.empty(n, max_input_nnz, dt, bk)
        self.targets = CSRBlock.empty(n, max_target_nnz, dt, bk)
        self.row_ids = bk.zeros(n, np.int64)
        self.transposed, self.n_present = None, 0  # training: see load_batch
        # Per layer: z/activation before dropout ("pre") and after it ("out"),
        # and in training the delta: each layer allocates its own.
        self.pre, self.out, self.delta, self.penalty_grad = {}, {}, {}, {}
        self.sampled = None
        for layer in self.layers:
            layer.allocate(self, inference)
        self._cosine_scratch = None
        if inference and model.output.is_sampled and model.output.cosine:
            width = model.layers[model.output.sources[0][0]].n
            self._cosine_scratch = (bk.zeros((n, width), dt), bk.zeros(n, dt),
                                    bk.zeros(self.width(model.output), dt))
            self._column_scales_ready = False
        if not inference:
            self._allocate_training_buffers(max_input_nnz, max_target_nnz)

    def _bind_parameters(self, model, optimizer):
        """Take the backend's copies of ``model``'s parameters and of the
        optimizer's state (the arrays themselves on the CPU)."""
        bk = self.backend
        self.model = model
        self.weights = [bk.to_device(w) for w in model.weights]
        self.biases = {t: bk.to_device(b) for t, b in model.biases.items()}
        self._optimizer, self._states = None, []
        if optimizer is not None:
            self._optimizer_states(optimizer)

    def can_train(self, model, backend, batch_size, max_input_nnz, max_target_nnz,
                  sparse_input_update):
        """Whether this training runner's buffers serve another fit of
        ``model``: the same network, dtype, kind of backend, batch size and
        input update, and no batch larger than the buffers were sized for."""
        return (type(self) is Runner and not self.inference
                and self.model.spec == model.spec and self.model.dtype == model.dtype
                and self.backend.name == backend.name and self.batch_size == int(batch_size)
                and self.sparse_input_update == bool(sparse_input_update)
                and self.inputs.indices.shape[0] >= max(int(max_input_nnz), 1)
                and self.targets.indices.shape[0] >= max(int(max_target_nnz), 1))

    def holds(self, model, optimizer):
        """Whether this runner still holds its copies of ``model``'s parameters
        and of ``optimizer``'s state (not let go since it trained them)."""
        return bool(self.weights) and self.model is model and self._optimizer is optimizer

    def rebind(self, model, optimizer, seed, keep_copies=False):
        """Train ``model`` with ``optimizer``'s state and ``seed`` in this
        runner's buffers (check :meth:`can_train` first). The parameters are
        taken afresh, so changes made to the model's arrays since the last
        fit are seen; with ``keep_copies`` (the runner :meth:`holds` them, and
        the caller knows its copies are newer than the model's arrays)
        training goes on from the copies, with nothing copied. Returns self."""
        if not keep_copies:
            self._bind_parameters(model, optimizer)
        self.seed = int(seed)
        return self

    def release_parameters(self):
        """Drop the backend's copies of the parameters and optimizer state
        (memory on a GPU), keeping the buffers for a later :meth:`rebind`."""
        self.weights, self.biases = [], {}
        self._optimizer, self._states = None, []

    def close(self):
        """Drop every buffer and the backend's copies of the parameters; the
        runner cannot be used afterwards (the model's own arrays are kept).

        A training call that keeps no runner closes its own, so that the
        buffers are freed when the call ends even while something still
        holds the runner: numba's compiler, when a kernel is compiled during
        a fit, leaves a reference cycle through the fit's stack frames, and
        at 1M items those frames kept 2 GB of buffers alive into the next fit.
        """
        self.release_parameters()
        self.sampled = self._cosine_scratch = None
        self.pre, self.out, self.delta, self.penalty_grad = {}, {}, {}, {}
        self.layers = []  # and any buffers a layer holds itself
        self.weight_grads, self.bias_grads, self.all_rows_scratch, self._all_rows = [], {}, {}, {}
        self.inputs = self.targets = self.transposed = None
        self.row_ids = self.row_error = self._no_penalty = None
        self.penalty_losses = self._penalty_target = None

    def _allocate_training_buffers(self, max_input_nnz, max_target_nnz):
        model, bk, n, dt = self.model, self.backend, self.batch_size, self.model.dtype
        self.transposed = TransposedBlock.empty(self.width(model.input), max_input_nnz, dt, bk)
        self.row_error = bk.zeros(n, np.float64)
        # Each sparseness penalty's loss of a step, in layer order (see penalty_out).
        self.penalized = [layer.index for layer in self.layers
                          if getattr(layer, "penalty", None) is not None]
        self.penalty_losses = bk.zeros(self._penalty_width, np.float64)
        self._penalty_target = self.penalty_losses
        if model.output.is_sampled:
            self.sampled = SampledOutput(self, max_target_nnz)
        self._no_penalty = bk.zeros(max(p.n for p in model.layers), dt)
        # The sampled output layer keeps its compact gradients itself (None here).
        self.weight_grads = [
            None if model.layers[t].is_sampled
            else bk.zeros((input_gradient_rows(max_input_nnz, w.shape[0]), w.shape[1]), dt)
            if model.layers[s].is_input
            else bk.zeros(w.shape, dt)
            for w, (s, t) in zip(model.weights, model.links)
        ]
        self.bias_grads = {t: bk.zeros(b.shape, dt) for t, b in model.biases.items()
                           if not model.layers[t].is_sampled}
        # For the dense input update (every row steps, most with a zero
        # gradient): what the backend's update_all_rows needs.
        self.all_rows_scratch = {
            i: bk.all_rows_scratch(w.shape, dt)
            for i, (w, (s, _)) in enumerate(zip(model.weights, model.links))
            if model.layers[s].is_input and not self.sparse_input_update
        }
        # The row lists the updates read (0..n-1 for each weight updated whole,
        # as the layers' connection_steps do, and for a bias), made now so
        # that runner_bytes counts them.
        self._all_rows = {}
        for i, (w, grad, (s, _)) in enumerate(zip(model.weights, self.weight_grads, model.links)):
            if grad is not None and (not model.layers[s].is_input or i in self.all_rows_scratch):
                self._rows(w.shape[0])
        self._rows(1)
        hp = model.spec
        smce, boost = hp.smce, hp.delta_boost
        out = model.output
        self.output_hyper = pack(
            OUTPUT_HYPER, slope=out.slope, alpha=out.alpha, lam=out.lam,
            one_target=smce.one_target, zero_target=smce.zero_target,
            one_scale=smce.one_scale, zero_scale=smce.zero_scale,
            boost_one=boost.one, boost_zero=boost.zero)

    def width(self, layer):
        """Units of ``layer`` held by this runner (all of them; a model-parallel
        runner holds a slice of the input and output layers)."""
        return layer.n

    # Where this runner's input features start in the whole input layer (a
    # model-parallel runner holds a slice); random draws use global ids.
    feature_offset = 0

    # -- batches --------------------------------------------------------------
    def load_batch(self, inputs, targets, rows, step, training):
        """Gather ``rows`` of the CSR sources into the batch buffers; returns the row count.

        ``inputs``/``targets`` come from ``backend.batch_source``; ``targets``
        may be None (inference). Denoising is applied here when training, and a
        training runner's batch is transposed here for the input layer's
        gradient (``n_present`` features).
        """
        p = self.model.spec.denoising_p
        denoising = None
        if training and p > 0:
            key = stream_key_host(self.seed, step, _DENOISE_STREAM)
            denoising = (self.model.input.n, key, p, self.feature_offset)
        self.n_present = self.backend.load_batch(rows, self.row_ids, inputs, self.inputs,
                                                 targets, self.targets, denoising,
                                                 self.transposed)
        return rows.shape[0]

    def _batch_view(self, block, b):
        return CSRBlock(self.backend.head(block.indptr, b + 1), block.indices, block.data)

    def _dropout_key(self, step, layer):
        return stream_key_host(self.seed, step, layer.index + 1)

    # -- forward --------------------------------------------------------------
    def forward(self, b, step=0, training=False, stop_at_output=False):
        """Forward pass over the first ``b`` batch rows.

        With ``stop_at_output`` the output layer's pre-activations are left in
        ``self.pre[output]`` for the fused output pass; otherwise they are
        activated too (inference). A training runner stops before a sampled
        output layer, whose pass scores only the items it samples.
        """
        batch = self._batch_view(self.inputs, b)
        for layer in self.layers:
            layer.forward(self, b, batch, step, training, stop_at_output)

    def _activate(self, layer, z):
        if layer.act != LINEAR:  # the identity: no pass over z (nor a kernel to compile)
            self.backend.activate(z, layer.act, layer.slope, layer.alpha, layer.lam)

    def _sampled_scores(self, layer, b):
        """Every item's score from a sampled output layer (inference): the
        incoming activations times the item-major weight, plus the bias, over
        the temperature; with cosine scoring, unit rows times the weight rows
        divided by their norms."""
        bk = self.backend
        (source, w), = layer.sources
        z, h = bk.head(self.pre[layer.index], b), bk.head(self.out[source], b)
        weights = self.weights[w]
        if layer.cosine:
            h_unit, h_norms, scales = self._cosine_scratch
            if not self._column_scales_ready:
                bk.row_norms(weights, scales)
                bk.reciprocal_scaled(scales, layer.temperature)
                self._column_scales_ready = True
            bk.normalize_rows(h, bk.head(h_unit, b), bk.head(h_norms, b))
            bk.gemm(bk.head(h_unit, b), weights, z, trans_b=True)
            bk.scale_columns(z, scales)
            return
        bk.fill_rows(z, self.biases[layer.index])
        bk.gemm(h, weights, z, beta=1.0, trans_b=True)
        if layer.temperature != 1.0:
            bk.scale(z, 1.0 / layer.temperature)

    def _add_input_product(self, batch, weights, z, bias=None, activated=None):
        """``z += batch @ weights`` for the sparse input layer; given ``bias``,
        ``z = bias + batch @ weights``, and given ``activated`` too (a
        layer's plan), that layer's activation of it."""
        if bias is None:
            self.backend.sparse_matmul_add(batch, weights, z)
        elif activated is None:
            self.backend.sparse_affine(batch, weights, bias, z)
        else:
            self.backend.activated_sparse_affine(batch, weights, bias, z, activated.act,
                                                 activated.slope, activated.alpha,
                                                 activated.lam)

    def output_error(self, b, weights=None, step=0, row_error=None):
        """Fused output pass: each row's data error into ``row_error`` (a
        backend float64 array of ``b`` entries, by default the runner's own,
        which the next step overwrites) and the output deltas.

        With ``weights`` (host array, one per batch row) each row's output
        delta is multiplied by its weight: the gradient of ``(1/b) sum_rows
        weight * error``; the errors written stay unweighted (see
        :meth:`batch_error`). ``step`` keys a sampled output layer's negatives.
        Nothing is read back: on a GPU the step runs without waiting for it.
        """
        bk = self.backend
        if row_error is None:
            row_error = bk.head(self.row_error, b)
        if self.sampled is not None:
            self.sampled.error_and_gradients(b, step, self._batch_view(self.targets, b),
                                             row_error, weights)
            return
        out = self.model.output
        act, err = self.model.act_error
        targets = self._batch_view(self.targets, b)
        bk.output_pass(
            bk.head(self.pre[out.index], b), targets, act, err, self.output_hyper, 1.0 / b,
            bk.head(self.delta[out.index], b), row_error,
        )
        if weights is not None:
            bk.scale_rows(bk.head(self.delta[out.index], b), weights)

    def batch_error(self, row_error, weights=None):
        """The summed (weighted) data error of the rows whose errors
        :meth:`output_error` wrote into ``row_error``, over every rank's share."""
        return summed_error(self.row_errors(row_error), weights)

    def row_errors(self, row_error):
        """Each row's data error (host), over every rank's share, read back
        from ``row_error``: a fit reads it every few hundred steps."""
        return self.sum_rows_over_ranks(self.backend.to_host(row_error))

    @property
    def _penalty_width(self):
        return max(len(self.penalized), 1)

    def loss_buffers(self, n_rows, n_steps):
        """Backend arrays for the losses of ``n_steps`` steps of ``n_rows`` rows
        in all, counted against the backend's memory first: each row's error
        (``row_error`` of :meth:`train_step`) and each step's penalties (row
        s is step s's ``penalty_losses``)."""
        bk = self.backend
        bk.check_memory({"the steps' losses": (n_rows + n_steps * self._penalty_width) * 8})
        return bk.zeros(n_rows, np.float64), bk.zeros((n_steps, self._penalty_width), np.float64)

    def step_penalties(self, penalty_losses):
        """Each step's summed sparseness penalty (host floats) from
        ``penalty_losses`` (see :meth:`loss_buffers`)."""
        if not self.penalized:
            return [0.0] * penalty_losses.shape[0]
        return [summed_penalty(row) for row in self.backend.to_host(penalty_losses)]

    # -- backward -------------------------------------------------------------
    def backward(self, b, step=0, training=True, penalty_losses=None):
        """Gradients of the mean batch loss for every parameter.

        Expects :meth:`forward` (with ``stop_at_output``) and :meth:`output_error`
        to have run. Each sparseness penalty's loss goes into
        ``penalty_losses`` (a backend float64 array, one entry per penalised
        layer; by default the runner's own); :meth:`penalty_loss` reads them.
        """
        self._penalty_target = self.penalty_losses if penalty_losses is None else penalty_losses
        written = {self.model.output.index}
        for layer in reversed(self.layers):
            layer.backward(self, b, step, training, written)

    def penalty_out(self, index):
        """Where layer ``index``'s sparseness penalty writes its loss this step."""
        slot = self.penalized.index(index)
        return self._penalty_target[slot:slot + 1]

    def penalty_loss(self):
        """The last step's summed sparseness penalty, when :meth:`backward`
        wrote it into the runner's own buffer; 0 without one."""
        return self.step_penalties(self.penalty_losses.reshape(1, -1))[0]

    def _backpropagate(self, delta, weights, target, accumulate, into_hidden_from):
        """``target (+)= delta @ weights.T``: the delta flowing back to a source
        layer (``into_hidden_from`` is the layer the delta belongs to)."""
        self.backend.gemm(delta, weights, target, beta=1.0 if accumulate else 0.0, trans_b=True)

    # -- what a sharded runner sums over its ranks ------------------------------
    # Whether the output layer is split over ranks (see ShardedRunner).
    sharded = False

    def sum_over_ranks(self, block):
        """A device block summed over the ranks holding the output layer's
        slices (here one: the block itself)."""
        return block

    def sum_rows_over_ranks(self, values):
        """A host array summed over the ranks (here: itself)."""
        return values

    # -- update ---------------------------------------------------------------
    def _rows(self, n):
        if n not in self._all_rows:
            self._all_rows[n] = self.backend.to_device(np.arange(n, dtype=np.int64))
        return self._all_rows[n]

    def _optimizer_states(self, optimizer):
        """The backend's copies of ``optimizer``'s state arrays (the arrays
        themselves on the CPU), made when a new optimizer state is first seen."""
        if optimizer is not self._optimizer:
            self._optimizer = optimizer
            self._states = [(self.backend.to_device(s1), self.backend.to_device(s2))
                            for s1, s2 in optimizer.states]
        return self._states

    def update(self, optimizer, step, epoch=0):
        """Apply one optimizer step (``step`` is 1-based, ``epoch`` 0-based) to
        every parameter."""
        bk = self.backend
        code = optimizer.code
        states = self._optimizer_states(optimizer)
        weight_hyper = optimizer.hyper(step, epoch=epoch)
        bias_hyper = optimizer.hyper(step, l2=0.0, l1=0.0, epoch=epoch)
        n_weights = len(self.weights)
        bias_slot = {t: n_weights + j for j, t in enumerate(self.biases)}
        steps = []
        for i, (source, target) in enumerate(self.model.links):
            s1, s2 = states[i]
            if self.weight_grads[i] is None:  # the sampled output layer: its touched rows
                steps += self.sampled.steps(states[i], states[bias_slot[target]], weight_hyper,
                                            bias_hyper)
            else:
                steps += self.layers[source].connection_steps(self, i, s1, s2, code,
                                                              weight_hyper)
        for t, bias in self.biases.items():
            if t in self.bias_grads:  # (else stepped with the sampled output layer's rows)
                s1, s2 = states[bias_slot[t]]
                steps.append(ParameterStep(bk.reshaped(bias, (1, -1)),
                                           bk.reshaped(self.bias_grads[t], (1, -1)),
                                           self._rows(1), 1, s1, s2, bias_hyper))
        bk.update_params(steps, code)
        for w, grad, (_, target) in zip(self.weights, self.weight_grads, self.model.links):
            norm = self.model.layers[target].weight_norm
            if norm > 0 and grad is not None:  # (DSSTNE's WeightNorm; not on sampled rows)
                bk.cap_column_norms(w, norm)

    def train_step(self, inputs, targets, rows, step, optimizer, row_weights=None, epoch=0,
                   row_error=None, penalty_losses=None):
        """Load, forward, error, backward and update one batch. Nothing is
        read back: on a GPU the host queues the next step at once.

        Each row's data error is written into ``row_error``, a backend float64
        array of ``len(rows)`` entries (see :meth:`output_error` and
        :meth:`batch_error`), each sparseness penalty's loss into
        ``penalty_losses`` (see :meth:`backward`); both default to the
        runner's own buffers. ``row_weights``, optional, holds one loss weight
        per row of the data set (host array); the batch's rows are weighted by
        ``row_weights[rows]``. ``epoch`` (0-based) sets the learning rate's
        epoch decay.
        """
        b = self.load_batch(inputs, targets, rows, step, training=True)
        self.forward(b, step, training=True, stop_at_output=True)
        weights = None if row_weights is None else row_weights[rows]
        self.output_error(b, weights, step, row_error)
        self.backward(b, step, training=True, penalty_losses=penalty_losses)
        self.update(optimizer, step, epoch)

    def parameters_finite(self):
        """Whether every weight and bias on this rank is a finite number."""
        return self.backend.all_finite(self.weights + list(self.biases.values()))

    def parameter_pairs(self):
        """``[(host, copy)]``: the arrays of the model and of the optimizer state
        last used, each with the backend's copy that training updates (the
        array itself on the CPU)."""
        pairs = list(zip(self.model.weights, self.weights))
        pairs += [(host, self.biases[t]) for t, host in self.model.biases.items()]
        if self._optimizer is not None:
            for host, dev in zip(self._optimizer.states, self._states):
                pairs += list(zip(host, dev))
        return pairs

    def trains_copies(self):
        """Whether training updates the backend's copies of the parameters (a
        GPU's), which :meth:`sync_to_model` brings back, and not the model's
        own arrays (the CPU)."""
        return any(dev is not host for host, dev in self.parameter_pairs())

    def sync_to_model(self):
        """Copy the backend's parameters, and the optimizer state last used,
        back into the host arrays of the model and of that state."""
        for host, dev in self.parameter_pairs():
            if dev is not host:
                host[...] = self.backend.to_host(dev)

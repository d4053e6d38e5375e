"""SparseAutoencoderRecommender: DSSTNE's autoencoder as a scikit-learn estimator."""


import numpy as np
import scipy.sparse as sp
from sklearn.base import ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from .._validation import as_interactions, check_k, check_width, l2_normalize_rows
from ..datasets import per_user_split
from ..metrics import ndcg_at_k, recall_at_k
from ..distributed.comm import ranks_agree
from ..distributed.merge import merge_rank_topk
from ..io.model_file import register_estimator
from ..network import ACTIVATIONS, ERROR_FUNCTIONS, SAMPLERS, SCORINGS
from ._docs import share_docs
from ._base import (
    SparseNetworkEstimator,
    StoppingMonitor,
    restored_on_failure,
)
from ._params import SHARED_RULES, AnyOf, LayerSizes, Number, Options, PositiveInt, layer_sizes

# Rows whose held-out items early stopping scores after each epoch, at most:
# enough for a steady NDCG, few enough that validating costs a fraction of an epoch.
VALIDATION_USERS = 5000

# Negatives per step of n_negatives="auto" (every item, in catalogues smaller).
AUTO_NEGATIVES = 1000

# temperature="auto" is AUTO_TEMPERATURE / ln(n_items). Cosine scores lie in
# [-1, 1], so the logits span 2 / temperature; for a softmax over n items to put
# a given share of its mass on a few of them, that span must grow as ln(n).
# The constant was chosen on validation splits of Last.fm, ML-100K and Yelp2018
# (benchmarks/tune_recommender_defaults.py): 0.17, 0.15 and 0.12 there.
AUTO_TEMPERATURE = 1.25

# The output activation each loss gets when ``output_activation`` is None: the
# one whose scores at inference mean what the loss trained.
_NATURAL_OUTPUT = {"SampledSoftmax": "SoftMax", "CosineContrastive": "Linear", "BPR": "Sigmoid",
                   "CrossEntropy": "SoftMax", "ScaledMarginalCrossEntropy": "SoftMax",
                   "DataScaledMarginalCrossEntropy": "Sigmoid"}


@share_docs
class SparseAutoencoderRecommender(ClassNamePrefixFeaturesOutMixin, TransformerMixin,
                                   SparseNetworkEstimator):
    """Autoencoder recommender for sparse user x item interaction matrices.

    Each user's history (a sparse row) goes in, a score for every item comes
    out; the items a user has not seen with the highest scores are the
    recommendations. The network is DSSTNE's: a sparse input layer with one
    unit per item, dense hidden layers, an output layer with one unit per item.
    Inputs are never densified.

    The defaults follow the evidence in ``benchmarks/`` (docs/quickstart.md,
    "The defaults, and why"): the output layer is trained on sampled items
    (the sampled softmax over each user's items and 1,000 negatives drawn by
    popularity, cosine scores at a temperature set by the number of items),
    so a step costs the same
    whatever the number of items; one linear hidden layer of 256 units;
    L2-normalised input rows, half of each user's items hidden at random in
    every epoch (DSSTNE's denoising); Adam with a learning rate that falls
    with the epochs. ``loss="cross_entropy"`` trains DSSTNE's full SoftMax
    output instead.

    Parameters
    ----------
    hidden_layer_sizes : tuple of int, default=(256,)
        Units of each hidden layer, input side first.
    activation : str, default="linear"
        Hidden activation, any of DSSTNE's names (case-insensitive): Sigmoid,
        Tanh, Linear, Relu, LRelu (slope 0.01 here), ELU, SELU, SoftPlus, SoftSign.
    output_activation : str or None, default=None
        Output activation; None takes the one whose scores mean what the loss
        trains: SoftMax for sampled_softmax and the cross-entropy losses,
        Linear for cosine_contrastive, Sigmoid for bpr (a sampled loss trains
        the scores, and the activation applies at inference only).
    loss : str, default="sampled_softmax"
        sparse_deep's sampled losses, which score each row's items and
        ``n_negatives`` sampled items per step (docs/engine.md, "Sampled
        output layers"): sampled_softmax (the softmax cross-entropy against
        the negatives, with the log-Q correction), cosine_contrastive
        (SimpleX's loss; needs ``scoring="cosine"``) or bpr; or a DSSTNE error
        function over every item: L1, L2, CrossEntropy,
        ScaledMarginalCrossEntropy, DataScaledMarginalCrossEntropy, Hinge,
        L2Hinge (spaces, case and underscores are ignored).
    n_negatives : int or "auto", default="auto"
        Items sampled per training step and shared by the batch (sampled
        losses): "auto" is 1,000, or every item in smaller catalogues; an
        integer from 1 to the number of items.
    negative_sampler : {"popularity", "uniform"}, default="popularity"
        How negatives are drawn: in proportion to ``(count + 1) ** 0.75``,
        ``count`` the training rows holding the item, or uniformly.
    scoring : {"cosine", "dot"}, default="cosine"
        A sampled output unit's score: the cosine of the hidden activations
        and the item's weights, or their dot product plus the item's bias.
    temperature : float or "auto", default="auto"
        Scores are divided by it (sampled softmax, bpr; and at inference).
        "auto" is ``1.25 / ln(n_items)`` (0.12 for 38,000 items, 0.17 for
        1,700): cosine logits then span enough for a softmax over every item
        to single out a few of them, whatever the catalogue's size.
    margin, negative_weight : float, default=0.4, 1.0
        cosine_contrastive's margin (negatives with a cosine above it are
        penalised) and the weight of its negatives' term.
    %(optimizer)s
    learning_rate : float, default=1e-2
    learning_rate_decay : float, default=0.15
        Epoch ``e`` (from 0) trains at ``learning_rate / (1 + learning_rate_decay
        * e)``: a tenth of the rate in the 61st epoch. 0 keeps it constant.
    batch_size : int, default=128
    epochs : int, default=60
    input_dropout : float, default=0.5
        Probability of hiding each of a user's items in an epoch (DSSTNE's
        ``Denoising``); survivors are scaled by 1 / (1 - p).
    dropout : float, default=0.0
        Dropout probability of hidden units (DSSTNE's ``pDropout``).
    normalize_input : bool, default=True
        Scale each input row to unit L2 norm before it enters the network
        (targets stay as given).
    l2, l1 : float, default=0.0
        Weight penalties (DSSTNE's lambda and lambda1), on weights, not biases.
    %(momentum)s
    sparse_input_update : bool, default=True
        Update only the input-layer rows of items present in each batch (a
        "lazy" update, as sparse Adam), instead of every row: the input layer
        then costs nothing in proportion to the catalogue, as a sampled
        output layer (whose rows are always updated this way). With the full
        SoftMax output on Last.fm it cost 0.003 of recall@20
        (benchmarks/README.md); with the sampled one it changed nothing.
    k : int, default=10
        Number of items :meth:`predict` marks per row, and the cut-off of
        :meth:`score` and of early stopping's NDCG.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of each row's items (rows with at
        least two), train on the rest, score NDCG@k of the held-out items
        after every epoch (at most 5,000 rows, the same each epoch), stop
        after ``n_iter_no_change`` epochs that do not beat the best by more
        than ``tol``, and keep the best epoch's weights.
    validation_fraction : float, default=0.1
        Share of each row's items held out by ``early_stopping``, in (0, 1).
    n_iter_no_change : int, default=5
    tol : float, default=0.0
    shuffle : bool, default=True
        Shuffle rows every epoch (DSSTNE's ``ShuffleIndices``).
    network : dict, str or path, optional
        A DSSTNE JSON network (dict, JSON text or file) to train instead of the
        one built from the parameters above; its ``"auto"`` sizes take the data's
        widths. Training parameters (optimizer, learning rate, batch size,
        epochs, penalties) still come from this estimator.
    %(warm_start)s
    %(checkpoints)s
    %(placement)s
    random_state : int, RandomState or None, default=None
        Seeds weights, shuffling, dropout and denoising. The same value gives
        the same model.
    verbose : int, default=0
        1: a progress bar over epochs on stderr with the loss; 2: also one
        line per epoch.

    Attributes
    ----------
    %(fitted_network)s
    n_features_in_ : int
        Columns of X (input items).
    n_items_ : int
        Output units: columns of the targets.
    loss_curve_ : list of float
        Mean training loss per example after each epoch.
    validation_scores_ : list of float or None
        With ``early_stopping``, NDCG@k of the held-out items after each epoch.
    best_validation_score_ : float or None
        The best of them (its epoch's weights are the model's).
    n_epochs_, n_steps_, n_iter_ : int
        Epochs and minibatch steps trained so far (``n_iter_``: epochs).
    n_ranks_ : int
        MPI ranks the model is sharded over (1: not sharded).
    """

    def __init__(
        self,
        hidden_layer_sizes=(256,),
        activation="linear",
        output_activation=None,
        loss="sampled_softmax",
        n_negatives="auto",
        negative_sampler="popularity",
        scoring="cosine",
        temperature="auto",
        margin=0.4,
        negative_weight=1.0,
        optimizer="adam",
        learning_rate=1e-2,
        learning_rate_decay=0.15,
        batch_size=128,
        epochs=60,
        input_dropout=0.5,
        dropout=0.0,
        normalize_input=True,
        l2=0.0,
        l1=0.0,
        momentum=0.9,
        sparse_input_update=True,
        k=10,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=5,
        tol=0.0,
        shuffle=True,
        network=None,
        warm_start=False,
        checkpoint_path=None,
        checkpoint_every=1,
        device="cpu",
        distributed="auto",
        weight_memory_limit=None,
        random_state=None,
        verbose=0,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.output_activation = output_activation
        self.loss = loss
        self.n_negatives = n_negatives
        self.negative_sampler = negative_sampler
        self.scoring = scoring
        self.temperature = temperature
        self.margin = margin
        self.negative_weight = negative_weight
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.learning_rate_decay = learning_rate_decay
        self.batch_size = batch_size
        self.epochs = epochs
        self.input_dropout = input_dropout
        self.dropout = dropout
        self.normalize_input = normalize_input
        self.l2 = l2
        self.l1 = l1
        self.momentum = momentum
        self.sparse_input_update = sparse_input_update
        self.k = k
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.shuffle = shuffle
        self.network = network
        self.warm_start = warm_start
        self.checkpoint_path = checkpoint_path
        self.checkpoint_every = checkpoint_every
        self.device = device
        self.distributed = distributed
        self.weight_memory_limit = weight_memory_limit
        self.random_state = random_state
        self.verbose = verbose

    _parameter_rules = {
        **SHARED_RULES,
        "hidden_layer_sizes": LayerSizes(min_layers=1),  # the embedding is a hidden layer
        "learning_rate_decay": Number(),
        "n_negatives": AnyOf((Options(("auto",)), PositiveInt())),
        "temperature": AnyOf((Options(("auto",)), Number(0.0, low_inclusive=False))),
        "margin": Number(-1.0, 1.0),
        "negative_weight": Number(0.0, low_inclusive=False),
        "k": PositiveInt(),
    }

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.input_tags.positive_only = True
        tags.target_tags.required = False
        # y, when given, is a target matrix (one column per output item).
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = False
        tags.target_tags.positive_only = True
        # The network computes in float32 whatever the input's dtype.
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags

    # -- network --------------------------------------------------------------
    def _default_network(self, n_inputs, n_outputs):
        """The DSSTNE JSON network these parameters describe for data of
        ``n_inputs`` features and ``n_outputs`` items."""
        sizes = layer_sizes(self.hidden_layer_sizes)
        hidden_act = ACTIVATIONS.canonical(self.activation)
        loss = ERROR_FUNCTIONS.canonical(self.loss)
        layers = [{"Name": "Input", "Kind": "Input", "N": "auto", "DataSet": "input",
                   "Sparse": True}]
        for i, n in enumerate(sizes):
            layers.append({"Name": f"Hidden{i + 1}", "Kind": "Hidden", "N": n,
                           "Activation": hidden_act,
                           "pDropout": float(self.dropout)})
        output_activation = (_NATURAL_OUTPUT.get(loss, "Linear") if self.output_activation is None
                             else ACTIVATIONS.canonical(self.output_activation))
        output = {"Name": "Output", "Kind": "Output", "N": "auto", "DataSet": "output",
                  "Activation": output_activation}
        network = {}
        if ERROR_FUNCTIONS.info(loss).sampled:
            output.update(self._sampled_output(n_outputs))
            if loss == "CosineContrastive":
                output.pop("Temperature")
                network["CosineContrastive"] = {
                    "Margin": float(self.margin),
                    "NegativeWeight": float(self.negative_weight)}
        layers.append(output)
        return {
            **network,
            "Version": 0.9,
            "Name": "SparseAutoencoderRecommender",
            "Kind": "AutoEncoder",
            "Layers": layers,
            "ErrorFunction": loss,
            "Denoising": {"p": float(self.input_dropout)},
            "ShuffleIndices": bool(self.shuffle),
            # DSSTNE's default slope (1.0) makes LRelu linear; use the usual 0.01.
            "RELUSlope": 0.01,
        }

    def _sampled_output(self, n_items):
        """The sampled Output layer's keys these parameters describe."""
        negatives = self.n_negatives
        if negatives == "auto":
            negatives = min(AUTO_NEGATIVES, n_items)
        elif negatives > n_items:
            raise ValueError(f"n_negatives must be 'auto' or an integer from 1 to the number of "
                             f"items ({n_items}): the items sampled per training step; "
                             f"got {negatives!r}")
        return {
            "Sampling": {"Negatives": int(negatives),
                         "Sampler": SAMPLERS.canonical(self.negative_sampler)},
            "Scoring": SCORINGS.canonical(self.scoring),
            "Temperature": self._temperature(n_items),
        }

    def _temperature(self, n_items):
        if self.temperature == "auto":
            return AUTO_TEMPERATURE / np.log(max(n_items, 2))
        return float(self.temperature)

    def _inputs(self, X):
        return l2_normalize_rows(X) if self.normalize_input else X

    def _epoch_decay(self):
        return float(self.learning_rate_decay)

    # -- fit ------------------------------------------------------------------
    @restored_on_failure
    def fit(self, X, y=None):
        """Train on the interaction matrix ``X`` (n_users, n_items).

        Parameters
        ----------
        X : sparse matrix of shape (n_users, n_items)
            Each user's history: non-zero = interaction (values are kept, e.g.
            counts or ratings). Dense arrays are accepted and converted.
        y : sparse matrix of shape (n_users, n_outputs), optional
            Targets, when they differ from the inputs (DSSTNE's separate input
            and output data sets). Defaults to ``X`` itself. A 1-D ``y`` is
            one target column.

        Returns
        -------
        self
        """
        with ranks_agree(self._communicator()):  # bad data on one rank raises on all
            X, Y = self._training_data(X, y, reset=True)
            spec = self._network_spec(X.shape[1], Y.shape[1])
        monitor = None
        if self.early_stopping:
            X, Y, monitor = self._validation_monitor(X, Y, y is None, spec)
        self.n_items_ = Y.shape[1]  # before training: checkpoints hold it
        self._fit_network(self._inputs(X), Y, spec, monitor=monitor)
        self.n_iter_ = self.n_epochs_
        self.validation_scores_ = None if monitor is None else list(monitor.scores)
        self.best_validation_score_ = None if monitor is None else monitor.best_score
        return self

    def _validation_monitor(self, X, Y, targets_are_inputs, spec):
        """Hold out ``validation_fraction`` of each row's target items; returns
        the training inputs and targets without them, and the monitor that
        scores NDCG@k of the held-out items (at most VALIDATION_USERS rows,
        the same every epoch) and stops training."""
        seed = self._training_seed(self._can_resume(spec))
        Y_fit, held_out = per_user_split(Y, self.validation_fraction, random_state=seed)
        if held_out.nnz == 0:
            raise ValueError(
                f"early_stopping holds out validation_fraction={self.validation_fraction} of "
                "each row's items, which leaves no item to validate on (rows need at least two "
                "items); use a larger validation_fraction or early_stopping=False")
        X_fit = Y_fit if targets_are_inputs else X
        users = np.flatnonzero(np.diff(held_out.indptr))
        if users.size > VALIDATION_USERS:
            rng = np.random.default_rng(np.random.SeedSequence([seed, 0x7A1]))
            users = np.sort(rng.choice(users, VALIDATION_USERS, replace=False))
        history, truth = X_fit[users], held_out[users]
        inputs = self._inputs(history)
        k = min(check_k(self.k, max(self.k, 1) if self.k > 0 else 1, name="k"), Y.shape[1])
        excluded = _exclusion_pattern([history] if history.shape[1] == Y.shape[1] else [])

        def validate(model):
            return ndcg_at_k(truth, self._top_k(inputs, k, excluded, model), k=k)

        return X_fit, Y_fit, StoppingMonitor(self.tol, self.n_iter_no_change, validate=validate)

    @restored_on_failure
    def partial_fit(self, X, y=None):
        """Train one epoch on ``X``, continuing the fitted model if there is one.

        ``k`` calls on the same data give the same model as ``fit`` with
        ``epochs=k``. The training buffers are kept between calls (up to 1 GiB),
        and on a GPU the newest weights too (copied back when ``model_`` is
        read), so a loop of calls costs about what the same epochs cost in one
        ``fit``.

        Parameters
        ----------
        X : sparse matrix of shape (n_users, n_items)
        y : sparse matrix of shape (n_users, n_outputs), optional
            Targets, as in :meth:`fit`.

        Returns
        -------
        self
        """
        if self.early_stopping:
            raise ValueError("partial_fit does not support early_stopping=True: there is no "
                             "fixed data set to hold out from; use fit, or set "
                             "early_stopping=False")
        first = self._fitted_model() is None
        with ranks_agree(self._communicator()):
            X, Y = self._training_data(X, y, reset=first)
            if first:
                spec = self._network_spec(X.shape[1], Y.shape[1])
            else:
                spec = self._fitted_model().spec
                if Y.shape[1] != self.n_items_:
                    raise ValueError(f"y has {Y.shape[1]} columns but the model was fitted "
                                     f"with {self.n_items_} outputs")
        session = self._start_training(self._inputs(X), Y, spec, resume=not first)
        self._train_epochs(session, 1)
        self._end_training(session, keep_buffers=True)
        self.n_items_ = Y.shape[1]
        return self

    def _training_data(self, X, y, reset):
        """Validated inputs and targets (CSR, float32, same rows)."""
        X = validate_data(self, X, accept_sparse="csr", dtype=np.float32, reset=reset,
                          ensure_min_samples=1)
        X = as_interactions(X, checked=True)
        if y is None:
            Y = X
        else:
            if not sp.issparse(y):
                y = np.asarray(y)
                y = y.reshape(-1, 1) if y.ndim == 1 else y
            Y = as_interactions(y, name="y")
            if Y.shape[0] != X.shape[0]:
                raise ValueError(
                    f"y has {Y.shape[0]} rows but X has {X.shape[0]}; y must hold one "
                    "target row per row of X"
                )
        if X.nnz == 0:
            raise ValueError("X holds no interactions (every entry is zero); nothing to learn")
        return X, Y

    # -- inference ------------------------------------------------------------
    def _check_X(self, X):
        check_is_fitted(self, "model_")
        X = validate_data(self, X, accept_sparse="csr", dtype=np.float32, reset=False)
        return as_interactions(X, checked=True)

    def predict_proba(self, X):
        """Score of every item for every row of ``X``, shape (n_rows, n_items).

        Computed in row chunks; with the SoftMax output each row sums to 1.
        """
        X = self._check_X(X)
        return self._layer_outputs(self._inputs(X), self.model_.output.index)

    def recommend(self, X, k=10, exclude_seen=True, return_scores=False, exclude=None,
                  items=None, filter_items=None):
        """Top-``k`` items for each row of ``X``, best first.

        Parameters
        ----------
        X : sparse matrix of shape (n_rows, n_items), or 1-D array of item ids
            Histories; rows need not have been seen in training. A 1-D array
            is one user's history as item ids, and gives 1-D results.
        k : int, default=10
            Any value from 1 to n_items (to the number of candidates with
            ``items``).
        exclude_seen : bool, default=True
            Never recommend an item the row already has. Rows with fewer than
            ``k`` candidate items are padded with id -1 (score -inf).
        return_scores : bool, default=False
            Also return the scores of the recommended items.
        exclude : sparse matrix of shape (n_rows, n_items), optional
            Items never to recommend to each row: its stored entries, whatever
            their values (a filter list, as DSSTNE's ``predict -f``). Applies
            in addition to ``exclude_seen``.
        items : array-like of int, optional
            The candidates: rank only these items (e.g. those in stock).
        filter_items : array-like of int, optional
            Items never to recommend to any row (combined with the above).

        Returns
        -------
        ids : ndarray of shape (n_rows, k), int64; (k,) for a 1-D history
        scores : ndarray of the same shape, float32
            Only if ``return_scores``.
        """
        one_history = _is_id_list(X)
        if one_history:
            check_is_fitted(self, "model_")
            X = _history_row(X, self.n_items_)
        X = self._check_X(X)
        candidates = None if items is None else _unique_ids(items, self.n_items_, "items")
        banned = None if filter_items is None else _unique_ids(filter_items, self.n_items_,
                                                                "filter_items")
        k = check_k(k, self.n_items_ if candidates is None else candidates.size)
        if exclude_seen:
            check_width(X, self.n_items_, "X", "output items (exclude_seen needs the histories "
                        "to be in the output item space)")
        excluded = self._exclusions(X if exclude_seen else None, exclude, X.shape[0])
        if banned is not None:
            excluded = _exclusion_pattern(([] if excluded is None else [excluded])
                                          + [_same_items_each_row(banned, X.shape[0],
                                                                  self.n_items_)])
        if candidates is None:
            ids, scores = self._top_k(self._inputs(X), k, excluded, return_scores=True)
        else:
            ids, scores = self._top_k_among(self._inputs(X), k, excluded, candidates)
        if one_history:
            ids, scores = ids[0], scores[0]
        return (ids, scores) if return_scores else ids

    def _top_k_among(self, X_in, k, excluded, candidates):
        """:meth:`_top_k` restricted to the item ids ``candidates`` (sorted,
        unique): their scores, gathered per row chunk, ranked on the host."""
        ids = np.empty((X_in.shape[0], k), dtype=np.int64)
        scores = np.empty((X_in.shape[0], k), dtype=np.float32)
        for start, stop, z in self._output_scores(X_in, activate_output=True):
            block = np.array(z[:, candidates], dtype=np.float32)
            if excluded is not None:
                rows = excluded[start:stop].tocoo()
                where = np.searchsorted(candidates, rows.col)
                hit = (where < candidates.size) & (candidates[np.minimum(
                    where, candidates.size - 1)] == rows.col)
                block[rows.row[hit], where[hit]] = -np.inf
            top, scores[start:stop] = _host_top_k(block, k)
            ids[start:stop] = np.where(np.isneginf(scores[start:stop]), -1, candidates[top])
        return ids, scores

    def _top_k(self, X_in, k, excluded, model=None, return_scores=False):
        """The top-``k`` items of each row of the network inputs ``X_in``
        under ``model`` (the fitted one by default), never those stored in
        ``excluded`` (CSR, sorted indices, or None)."""
        model = self.model_ if model is None else model
        n_items = model.output.n
        ids = np.empty((X_in.shape[0], k), dtype=np.int64)
        scores = np.empty((X_in.shape[0], k), dtype=model.dtype)
        no_exclusions = np.zeros(X_in.shape[0] + 1, dtype=np.int64)
        out = model.output.index
        first, last = model.output_range  # this rank's items (all on one process)
        for start, stop, runner in self._forward_chunks(X_in, model=model):
            block = runner.out[out][: stop - start]
            if excluded is not None:
                rows = excluded[start:stop]
                if (first, last) != (0, n_items):  # this rank's items, re-based
                    rows = rows[:, first:last].tocsr()
                ex_indptr = np.asarray(rows.indptr, dtype=np.int64)
                ex_indices = np.asarray(rows.indices, dtype=np.int32)
            else:
                ex_indptr, ex_indices = no_exclusions[: stop - start + 1], no_exclusions[:0]
            runner.backend.topk(block, k, runner.backend.to_device(ex_indptr),
                                runner.backend.to_device(ex_indices.astype(np.int32)),
                                ids[start:stop], scores[start:stop])
            if model.shards is not None:  # each rank ranked its own items
                ids[start:stop], scores[start:stop] = merge_rank_topk(
                    runner.comm, ids[start:stop], scores[start:stop], first, k)
        return (ids, scores) if return_scores else ids

    def _exclusions(self, seen, exclude, n_rows):
        """The union of the patterns of ``seen`` and ``exclude`` as a CSR matrix with
        sorted indices, or None when nothing is excluded."""
        patterns = [] if seen is None else [seen]
        if exclude is not None:
            if not sp.issparse(exclude):
                raise TypeError("exclude must be a scipy.sparse matrix of the items to exclude; "
                                f"got {type(exclude).__name__}")
            if exclude.shape != (n_rows, self.n_items_):
                raise ValueError(f"exclude must have shape ({n_rows}, {self.n_items_}), one row "
                                 f"per row of X and one column per item; got {exclude.shape}")
            patterns.append(exclude)
        return _exclusion_pattern(patterns)

    def predict(self, X):
        """The top-``k`` unseen items of each row as a sparse 0/1 matrix.

        Shape (n_rows, n_items), so scikit-learn's multi-label metrics apply;
        ``k`` is the estimator parameter (capped at the number of items).
        """
        X = self._check_X(X)
        k = check_k(self.k, max(self.k, 1) if self.k > 0 else 1, name="k")
        k = min(k, self.n_items_)
        ids = self.recommend(X, k=k, exclude_seen=X.shape[1] == self.n_items_)
        rows = np.repeat(np.arange(ids.shape[0]), ids.shape[1])
        keep = ids.ravel() >= 0
        return sp.csr_matrix(
            (np.ones(keep.sum(), dtype=np.float32), (rows[keep], ids.ravel()[keep])),
            shape=(ids.shape[0], self.n_items_),
        )

    def similar_items(self, items, k=10, return_scores=False):
        """The ``k`` items most similar to each of ``items``, best first.

        Similarity is the cosine between the items' output weight vectors
        (``item_vectors_``): the vectors a user's hidden embedding is scored
        against, so two items are similar when the same users would be
        recommended both. Cosine, not the dot product, so that popular items
        (long vectors) do not crowd every list. An item is never in its own list.

        Parameters
        ----------
        items : int or array-like of int
            Item ids in [0, n_items).
        k : int, default=10
            From 1 to n_items - 1.
        return_scores : bool, default=False
            Also return the cosines.

        Returns
        -------
        ids : ndarray of shape (len(items), k), int64; (k,) for one item
        scores : ndarray of the same shape, float32
            Only if ``return_scores``.
        """
        check_is_fitted(self, "model_")
        queries, single = _item_ids(items, self.n_items_)
        k = check_k(k, self.n_items_ - 1)
        vectors = _unit_rows(self.item_vectors_)
        ids, scores = _cosine_top_k(vectors[queries], vectors, k, queries)
        if single:
            ids, scores = ids[0], scores[0]
        return (ids, scores) if return_scores else ids

    def similar_users(self, X, k=10, return_scores=False):
        """The ``k`` rows of ``X`` most similar to each row of ``X``, best first.

        Users are compared by the cosine of their hidden embeddings
        (:meth:`transform`), computed from their histories, so any users can
        be compared, seen in training or not. A row is never in its own list.

        Parameters
        ----------
        X : sparse matrix of shape (n_users, n_items)
            Histories, at least two rows.
        k : int, default=10
            From 1 to n_users - 1.
        return_scores : bool, default=False
            Also return the cosines.

        Returns
        -------
        ids : ndarray of shape (n_users, k), int64 (row numbers of ``X``)
        scores : ndarray of shape (n_users, k), float32
            Only if ``return_scores``.
        """
        embeddings = _unit_rows(self.transform(X))
        n = embeddings.shape[0]
        if n < 2:
            raise ValueError(f"similar_users compares the rows of X with each other; X has {n} "
                             "row, it needs at least 2")
        k = check_k(k, n - 1)
        ids, scores = _cosine_top_k(embeddings, embeddings, k, np.arange(n))
        return (ids, scores) if return_scores else ids

    @property
    def item_vectors_(self):
        """The items' output weight vectors, shape (n_items, units of the last
        hidden layer): the weights of the connection into the output layer, one
        row per item (joined from every rank when the model is sharded)."""
        check_is_fitted(self, "model_")
        model = self.model_
        out = model.output.index
        w = next(w for w, (_, t) in zip(model.weights, model.links) if t == out)
        rows = w if model.output.is_sampled else w.T  # item-major, or DSSTNE's layout
        if model.shards is not None:  # each rank holds its items' rows
            comm = self._communicator()
            rows = np.vstack(comm.allgather_objects(np.ascontiguousarray(rows)))
        return np.asarray(rows)

    def transform(self, X):
        """The hidden embedding of each row: the narrowest hidden layer's activations.

        Its columns are named by :meth:`get_feature_names_out`, so
        ``set_output(transform="pandas")`` gives a DataFrame.

        Returns
        -------
        ndarray of shape (n_rows, n_units)
        """
        X = self._check_X(X)
        return self._layer_outputs(self._inputs(X), self._embedding_layer().index)

    def _embedding_layer(self):
        hidden = [p for p in self.model_.layers if p.kind == "Hidden"]
        return min(hidden, key=lambda p: p.n)

    @property
    def _n_features_out(self):
        """Columns of :meth:`transform` (for ``get_feature_names_out``)."""
        check_is_fitted(self, "model_")
        return self._embedding_layer().n

    def score(self, X, y):
        """Mean recall@k of ``y``'s items among the top-``k`` recommendations for ``X``.

        ``X`` holds the known histories and ``y`` the held-out items of the same
        rows; items seen in ``X`` are excluded when ``X`` and ``y`` share the item
        space. Users with no held-out item are skipped.
        """
        if y is None:
            raise ValueError("score needs y: the held-out items of each row of X")
        X = self._check_X(X)
        Y = as_interactions(y, name="y")
        if Y.shape != (X.shape[0], self.n_items_):
            raise ValueError(f"y must have shape ({X.shape[0]}, {self.n_items_}); got {Y.shape}")
        k = min(check_k(self.k, max(self.k, 1) if self.k > 0 else 1, name="k"), self.n_items_)
        recommended = self.recommend(X, k=k, exclude_seen=X.shape[1] == self.n_items_)
        return float(recall_at_k(Y, recommended))


def _is_id_list(X):
    """Whether ``X`` is one history given as a 1-D sequence of item ids."""
    return not sp.issparse(X) and np.ndim(X) == 1


def _history_row(ids, n_items):
    """One history (1-D item ids) as a one-row interaction matrix."""
    ids = _unique_ids(ids, n_items, "the history", allow_empty=True)
    return sp.csr_matrix((np.ones(ids.size, np.float32), ids, [0, ids.size]),
                         shape=(1, n_items))


def _unique_ids(ids, n_items, what, allow_empty=False):
    """``ids`` as a sorted int64 array of distinct item ids in [0, n_items)."""
    array = np.asarray(ids)
    if array.ndim != 1 or (array.size == 0 and not allow_empty) or (
            array.size and array.dtype.kind not in "iu"):
        raise ValueError(f"{what} must be a 1-D sequence of item ids (integers); got {ids!r}")
    array = array.astype(np.int64)
    bad = array[(array < 0) | (array >= n_items)]
    if bad.size:
        raise ValueError(f"{what}: item ids must be in [0, {n_items}); got {bad[:5].tolist()}")
    unique = np.unique(array)
    if unique.size != array.size:
        raise ValueError(f"{what} lists an item id more than once")
    return unique


def _same_items_each_row(ids, n_rows, n_items):
    """A CSR matrix whose every row stores the sorted item ids ``ids``."""
    return sp.csr_matrix((np.ones(n_rows * ids.size, np.float32), np.tile(ids, n_rows),
                          np.arange(n_rows + 1, dtype=np.int64) * ids.size),
                         shape=(n_rows, n_items))


# Similarity scores computed at a time, at most: (queries in a block) x candidates.
SIMILARITY_BLOCK = 1 << 24


def _item_ids(items, n_items):
    """``items`` as a 1-D int64 array of ids in [0, n_items), and whether one
    id was given (not a sequence)."""
    single = np.ndim(items) == 0
    ids = np.atleast_1d(np.asarray(items))
    if ids.ndim != 1 or ids.size == 0 or ids.dtype.kind not in "iu":
        raise ValueError(f"items must be an item id or a 1-D sequence of item ids (integers); "
                         f"got {items!r}")
    bad = ids[(ids < 0) | (ids >= n_items)]
    if bad.size:
        raise ValueError(f"item ids must be in [0, {n_items}); got {bad[:5].tolist()}")
    return ids.astype(np.int64), single


def _unit_rows(vectors):
    """Rows scaled to unit L2 norm (zero rows stay zero), as float32."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1)


def _cosine_top_k(queries, candidates, k, own):
    """For each row of ``queries`` (unit rows), the ``k`` rows of ``candidates``
    (unit rows) of highest dot product, best first, never row ``own[i]``.
    Computed in blocks of queries, so that no queries x candidates matrix of
    more than SIMILARITY_BLOCK values exists."""
    n, m = queries.shape[0], candidates.shape[0]
    ids = np.empty((n, k), dtype=np.int64)
    scores = np.empty((n, k), dtype=np.float32)
    block = max(1, SIMILARITY_BLOCK // max(m, 1))
    for start in range(0, n, block):
        stop = min(start + block, n)
        sims = queries[start:stop] @ candidates.T
        sims[np.arange(stop - start), own[start:stop]] = -np.inf
        ids[start:stop], scores[start:stop] = _host_top_k(sims, k)
    return ids, scores


def _host_top_k(block, k):
    """Column numbers and values of each row's ``k`` largest values of a host
    array, largest first (ties: the lower column first)."""
    top = np.argpartition(-block, k - 1, axis=1)[:, :k]
    order = np.lexsort((top, -np.take_along_axis(block, top, axis=1)), axis=1)
    top = np.take_along_axis(top, order, axis=1)
    return top, np.take_along_axis(block, top, axis=1)


def _exclusion_pattern(matrices):
    """The union of the stored entries of ``matrices`` as a CSR matrix with
    sorted indices (as the top-k kernel expects), or None when there are none."""
    if not matrices:
        return None
    union = _pattern(matrices[0])
    for other in matrices[1:]:
        union = union + _pattern(other)
    union = sp.csr_matrix(union)
    union.sum_duplicates()
    return union


def _pattern(matrix):
    """A boolean CSR matrix with True at every stored entry of ``matrix``."""
    matrix = sp.csr_matrix(matrix)
    return sp.csr_matrix((np.ones(matrix.nnz, dtype=bool), matrix.indices, matrix.indptr),
                         shape=matrix.shape)


register_estimator(
    SparseAutoencoderRecommender,
    json_attributes=("n_items_", "n_iter_", "validation_scores_", "best_validation_score_",
                     "_checkpoint_"),
)

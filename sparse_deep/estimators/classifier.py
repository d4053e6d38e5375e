"""SparseMLPClassifier: a feed-forward network for sparse inputs and many labels."""

import numbers
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.special import expit, logsumexp, softmax
from sklearn.base import ClassifierMixin
from sklearn.metrics import accuracy_score
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets, is_multilabel, type_of_target
from sklearn.utils.validation import check_is_fitted, column_or_1d

from ..distributed.merge import merge_rank_topk
from ..io.model_file import register_estimator
from ._docs import share_docs
from ._mlp import SparseMLPBase


@dataclass(frozen=True)
class _Labels:
    """How the targets map to output units.

    kind : "binary" (one Sigmoid unit, the positive class is ``classes[1]``),
    "multiclass" (one SoftMax unit per class) or "multilabel" (one Sigmoid unit
    per label column). ``sparse``: multi-label targets came as a sparse matrix,
    so ``predict`` returns one.
    """

    kind: str
    classes: np.ndarray
    sparse: bool = False

    @property
    def n_outputs(self):
        return 1 if self.kind == "binary" else len(self.classes)

    @property
    def output_activation(self):
        return "SoftMax" if self.kind == "multiclass" else "Sigmoid"


@share_docs
class SparseMLPClassifier(ClassifierMixin, SparseMLPBase):
    """Multi-layer perceptron classifier for sparse inputs and many labels.

    A feed-forward network trained by minibatch gradient descent on the
    sparse_deep engine: a sparse input layer (one weight row per feature, only
    the rows of a row's non-zero features are read), dense hidden layers, and
    an output layer chosen by the targets:

    - binary ``y``: one Sigmoid unit trained with the cross-entropy;
    - multiclass ``y``: one SoftMax unit per class, multinomial cross-entropy;
    - a 2-D 0/1 indicator ``y`` (dense or sparse), multi-label: one Sigmoid unit
      per label; the targets are read as a sparse matrix, never densified.

    Names follow scikit-learn's ``MLPClassifier`` where they overlap
    (``hidden_layer_sizes``, ``activation``, ``batch_size``, ``shuffle``, ``tol``,
    ``early_stopping``, ``validation_fraction``, ``n_iter_no_change``,
    ``warm_start``, ``random_state``, ``verbose``) and this project's otherwise:
    ``learning_rate`` is MLPClassifier's ``learning_rate_init``, ``epochs`` its
    ``max_iter``, ``l2`` plays the part of ``alpha`` (see docs/mlp.md for how
    the two scale). Defaults were chosen on validation splits of bibtex and a9a
    (``benchmarks/tune_mlp_defaults.py``).

    Parameters
    ----------
    hidden_layer_sizes : tuple of int, default=(256,)
        Units of each hidden layer, input side first. ``()`` gives a linear
        model (logistic regression).
    activation : str, default="relu"
        Hidden activation, any of DSSTNE's names (case-insensitive): Sigmoid,
        Tanh, Linear, Relu, LRelu (slope 0.01 here), ELU, SELU, SoftPlus, SoftSign.
    %(optimizer)s
    learning_rate : float, default=1e-3
        Step size (scikit-learn's ``learning_rate_init``).
    batch_size : int, default=128
        Rows per minibatch (capped at the number of rows).
    epochs : int, default=20
        Most passes over the data in one ``fit`` (scikit-learn's ``max_iter``);
        fewer when the stopping rule (``tol``, ``n_iter_no_change``) ends training.
    input_dropout : float, default=0.0
        Probability of hiding each non-zero input feature of a row in a step
        (DSSTNE's ``Denoising``); survivors are scaled by 1 / (1 - p).
    dropout : float, default=0.2
        Dropout probability of hidden units (inverted dropout; none at
        prediction time).
    normalize_input : bool, default=False
        Scale each input row to unit L2 norm before it enters the network.
    l2, l1 : float, default=0.0
        Weight penalties added to each weight's gradient (``l2 * w``,
        ``l1 * sign(w)``); biases are not penalised.
    %(momentum)s
    sparse_input_update : bool, default=False
        Update only the input-layer rows of features present in each batch.
    shuffle : bool, default=True
        Shuffle rows every epoch.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the rows (stratified by class for
        single-label targets, seeded by ``random_state``), score them with
        :meth:`score` after every epoch, stop after ``n_iter_no_change`` epochs
        without an improvement of more than ``tol``, and keep the weights of
        the best-scoring epoch (as scikit-learn does).
    validation_fraction : float, default=0.1
        Share of rows held out by ``early_stopping``, in (0, 1).
    n_iter_no_change : int, default=10
        Epochs without improvement (of the validation score with
        ``early_stopping``, of the training loss otherwise) before stopping.
    tol : float, default=1e-4
        Least improvement that counts.
    class_weight : dict, "balanced" or None, default=None
        Weights of the classes (single-label targets only), multiplied into
        ``sample_weight``: ``{label: weight}``, or ``"balanced"`` for
        ``n_samples / (n_classes * count(label))``.
    network : dict, str or path, optional
        A DSSTNE JSON network (dict, JSON text or file) to train instead of the
        one built from the parameters above; ``"auto"`` sizes take the data's
        widths. Its output layer must use SoftMax for multiclass targets and
        Sigmoid otherwise; any error function of the network is kept.
    %(warm_start)s
    %(checkpoints)s
    %(placement)s
    random_state : int, RandomState or None, default=None
        Seeds weights, shuffling, dropout and the early-stopping split.
    verbose : int, default=0
        1: a progress bar over epochs on stderr with the loss (and validation
        score); 2: also one line per epoch.

    Attributes
    ----------
    classes_ : ndarray
        Class labels (``arange(n_labels)`` for multi-label targets).
    n_outputs_ : int
        Output units: 1 for binary targets, else the number of classes/labels.
    %(fitted_network)s
    n_features_in_ : int
    loss_curve_ : list of float
        Mean training loss per row after each epoch (weighted by the
        normalised sample weights).
    validation_scores_ : list of float or None
        Validation accuracy after each epoch of the last ``fit`` (with
        ``early_stopping``).
    best_validation_score_ : float or None
    best_loss_ : float or None
        Lowest training loss of the last ``fit`` (None with ``early_stopping``).
    n_iter_, n_epochs_ : int
        Epochs trained in all; ``n_steps_``: minibatch steps.

    See Also
    --------
    SparseMLPRegressor : the same network with a linear output.
    sklearn.neural_network.MLPClassifier : the dense-output reference.
    """

    def __init__(
        self,
        hidden_layer_sizes=(256,),
        activation="relu",
        optimizer="adam",
        learning_rate=1e-3,
        batch_size=128,
        epochs=20,
        input_dropout=0.0,
        dropout=0.2,
        normalize_input=False,
        l2=0.0,
        l1=0.0,
        momentum=0.9,
        sparse_input_update=False,
        shuffle=True,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=10,
        tol=1e-4,
        class_weight=None,
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
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.epochs = epochs
        self.input_dropout = input_dropout
        self.dropout = dropout
        self.normalize_input = normalize_input
        self.l2 = l2
        self.l1 = l1
        self.momentum = momentum
        self.sparse_input_update = sparse_input_update
        self.shuffle = shuffle
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.class_weight = class_weight
        self.network = network
        self.warm_start = warm_start
        self.checkpoint_path = checkpoint_path
        self.checkpoint_every = checkpoint_every
        self.device = device
        self.distributed = distributed
        self.weight_memory_limit = weight_memory_limit
        self.random_state = random_state
        self.verbose = verbose

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.classifier_tags.multi_label = True
        return tags

    # -- targets --------------------------------------------------------------
    def _output_head(self, labels):
        return labels.output_activation, "CrossEntropy"

    def _check_output_layer(self, spec, labels):
        act = spec.output_layer.activation
        if act != labels.output_activation:
            what = {"binary": "binary", "multiclass": "multiclass",
                    "multilabel": "multi-label"}[labels.kind]
            raise ValueError(
                f"the network's output layer uses {act}, but {what} targets need "
                f"{labels.output_activation} (SoftMax for multiclass, Sigmoid for binary and "
                "multi-label targets)"
            )

    def _prepare_targets(self, y, first, classes=None):
        """Check ``y`` and encode it as the sparse target matrix.

        Returns ``(Y, class_weights, labels, y)``: ``Y`` a CSR matrix
        (n_rows, n_outputs) of 0/1, ``class_weights`` one weight per row (or
        None), ``labels`` the :class:`_Labels` of the fit (``first``) or the
        fitted one (later ``partial_fit`` calls, which must only bring known
        labels), and ``y`` checked (a column vector made 1-D).
        """
        kind, y = _target_kind(y)
        if not first:
            labels = self._labels_
            _check_same_kind(kind, y, labels)
        elif kind == "multilabel":
            labels = _Labels("multilabel", np.arange(y.shape[1]), sp.issparse(y))
        else:
            labels = self._single_label_classes(y, classes)
        if self.warm_start and first and classes is None and hasattr(self, "_labels_"):
            _check_warm_start_labels(self._labels_, labels)
        if labels.kind == "multilabel":
            if self.class_weight is not None:
                raise ValueError("class_weight applies to single-label targets (one class per "
                                 "row); for multi-label targets pass sample_weight instead")
            return _indicator_csr(y), None, labels, y
        codes = _label_codes(y, labels.classes)
        weights = self._row_class_weights(y, codes, labels, first)
        return _one_hot(codes, labels), weights, labels, y

    def _single_label_classes(self, y, classes):
        if classes is not None:
            classes = np.unique(np.asarray(classes))
            unknown = np.setdiff1d(np.unique(y), classes)
            if unknown.size:
                raise ValueError(f"y holds labels not in classes: {_show(unknown)}; classes "
                                 f"must list every label partial_fit will see")
        else:
            classes = np.unique(y)
        if classes.shape[0] < 2:
            raise ValueError(
                f"y has only one class ({_show(classes)}); a classifier needs at least two "
                "classes to learn from"
            )
        return _Labels("binary" if classes.shape[0] == 2 else "multiclass", classes)

    def _row_class_weights(self, y, codes, labels, first):
        if self.class_weight is None:
            return None
        if isinstance(self.class_weight, str) and self.class_weight == "balanced" and not first:
            raise ValueError("class_weight='balanced' is not supported by partial_fit: the "
                             "class counts of one batch do not describe the data; pass a dict")
        if not (isinstance(self.class_weight, dict) or self.class_weight == "balanced"):
            raise ValueError("class_weight must be a dict {label: weight}, 'balanced' or None; "
                             f"got {self.class_weight!r}")
        weights = compute_class_weight(self.class_weight, classes=labels.classes, y=y)
        return weights[codes]

    def _stratify(self, y, labels):
        return None if labels.kind == "multilabel" else y

    # -- fit ------------------------------------------------------------------
    def fit(self, X, y, sample_weight=None):
        """Train on sparse ``X`` and labels ``y``.

        Parameters
        ----------
        X : {sparse matrix, array-like} of shape (n_samples, n_features)
            Inputs; dense arrays are converted to CSR.
        y : array-like of shape (n_samples,), or a 0/1 indicator matrix of shape
            (n_samples, n_labels), dense or sparse, for multi-label targets.
        sample_weight : array-like of shape (n_samples,), optional
            Non-negative loss weights of the rows, rescaled to mean 1 (see
            docs/mlp.md).

        Returns
        -------
        self
        """
        return self._fit(X, y, sample_weight, y_numeric=False)

    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """Train one epoch on ``(X, y)``, continuing the fitted model if any.

        ``k`` calls on the same data give the same model as ``fit`` with
        ``epochs=k`` (the stopping rule aside).

        Parameters
        ----------
        X : {sparse matrix, array-like} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_labels)
        sample_weight : array-like of shape (n_samples,), optional
        classes : array-like, optional
            Every label the calls will see. Needed on the first call for
            single-label targets unless this ``y`` already holds all of them;
            ignored afterwards. Multi-label targets take their labels from the
            indicator's columns.

        Returns
        -------
        self
        """
        return self._partial_fit(X, y, sample_weight, y_numeric=False, classes=classes)

    def _publish_labels(self, labels):
        # Stored as plain values (not the _Labels object) so that model files
        # can hold them as JSON; _labels_ rebuilds the object.
        self.classes_ = labels.classes
        self.n_outputs_ = labels.n_outputs
        self._label_kind_ = labels.kind
        self._label_sparse_ = bool(labels.sparse)

    @property
    def _labels_(self):
        """How the fitted targets map to output units (a :class:`_Labels`)."""
        return _Labels(self._label_kind_, self.classes_, self._label_sparse_)

    def _validation_score(self, model, labels, X_in, y, sample_weight):
        predicted = self._predict_labels(X_in, labels, model)
        return float(accuracy_score(y, predicted, sample_weight=sample_weight))

    # -- inference ------------------------------------------------------------
    def _check_X(self, X):
        check_is_fitted(self, "model_")
        return self._inputs(self._validate_X(X, reset=False))

    def _predict_labels(self, X_in, labels, model=None):
        n = X_in.shape[0]
        if labels.kind == "multilabel":
            chunks = [sp.csr_matrix((z > 0).astype(np.int64))
                      for _, _, z in self._output_scores(X_in, model)]
            out = sp.vstack(chunks, format="csr") if chunks else sp.csr_matrix(
                (0, labels.n_outputs), dtype=np.int64)
            return out if labels.sparse else out.toarray()
        out = np.empty(n, dtype=labels.classes.dtype)
        for start, stop, z in self._output_scores(X_in, model):
            codes = (z[:, 0] > 0).astype(np.intp) if labels.kind == "binary" else z.argmax(1)
            out[start:stop] = labels.classes[codes]
        return out

    def decision_function(self, X):
        """Output scores before the Sigmoid/SoftMax.

        Returns
        -------
        ndarray of shape (n_samples,) for binary targets (positive means
        ``classes_[1]``), else (n_samples, n_outputs_); float32.
        """
        X_in = self._check_X(X)
        z = np.empty((X_in.shape[0], self.n_outputs_), dtype=self.model_.dtype)
        for start, stop, chunk in self._output_scores(X_in):
            z[start:stop] = chunk
        return z[:, 0] if self._labels_.kind == "binary" else z

    def predict(self, X):
        """Predicted labels.

        Returns
        -------
        ndarray of shape (n_samples,) with labels from ``classes_``, or for
        multi-label targets a 0/1 indicator of shape (n_samples, n_labels):
        a CSR matrix when ``y`` was sparse at fit, else a dense array. A label
        is predicted when its probability exceeds 0.5.
        """
        return self._predict_labels(self._check_X(X), self._labels_)

    def predict_proba(self, X):
        """Probability estimates, float64.

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
            Columns follow ``classes_``. Binary: (1 - p, p); multiclass: the
            SoftMax; multi-label: each label's own Sigmoid probability.
        """
        X_in = self._check_X(X)
        kind = self._labels_.kind
        out = np.empty((X_in.shape[0], len(self.classes_)), dtype=np.float64)
        for start, stop, z in self._output_scores(X_in):
            z = z.astype(np.float64)
            if kind == "binary":
                p = expit(z[:, 0])
                out[start:stop, 0], out[start:stop, 1] = 1.0 - p, p
            elif kind == "multiclass":
                out[start:stop] = softmax(z, axis=1)
            else:
                out[start:stop] = expit(z)
        return out

    def predict_log_proba(self, X):
        """Logarithm of :meth:`predict_proba`."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict_top_k(self, X, k, return_scores=False):
        """The ``k`` most probable classes (or labels) of each row, best first.

        For many labels: scores are ranked in row chunks by the backend's
        top-k kernel, so the full (n_samples, n_labels) matrix is never built.

        Parameters
        ----------
        X : {sparse matrix, array-like} of shape (n_samples, n_features)
        k : int
            From 1 to the number of classes.
        return_scores : bool, default=False
            Also return the probabilities of the returned classes.

        Returns
        -------
        labels : ndarray of shape (n_samples, k)
            Values from ``classes_`` (label column ids for multi-label targets).
        probabilities : ndarray of shape (n_samples, k), float64
            Only with ``return_scores``.
        """
        X_in = self._check_X(X)
        n_classes = len(self.classes_)
        if isinstance(k, (bool, np.bool_)) or not isinstance(k, numbers.Integral):
            raise TypeError(f"k must be an integer; got {k!r}")
        if not 1 <= k <= n_classes:
            raise ValueError(f"k must be between 1 and the number of classes ({n_classes}); "
                             f"got {k}")
        ids = np.empty((X_in.shape[0], k), dtype=np.int64)
        probs = np.empty((X_in.shape[0], k), dtype=np.float64)
        if self._labels_.kind == "binary":
            self._top_k_binary(X_in, k, ids, probs)
        else:
            self._top_k_kernel(X_in, k, ids, probs)
        labels = self.classes_[ids]
        return (labels, probs) if return_scores else labels

    def _top_k_binary(self, X_in, k, ids, probs):
        for start, stop, z in self._output_scores(X_in):
            p = expit(z[:, 0].astype(np.float64))
            both = np.column_stack([1.0 - p, p])
            order = np.argsort(-both, axis=1, kind="stable")[:, :k]
            ids[start:stop] = order
            probs[start:stop] = np.take_along_axis(both, order, axis=1)

    def _top_k_kernel(self, X_in, k, ids, probs):
        """Rank the pre-activations (no ties from a saturated Sigmoid), then turn
        the chosen scores into probabilities."""
        out = self.model_.output.index
        dtype = self.model_.dtype
        no_exclusions = np.zeros(X_in.shape[0] + 1, dtype=np.int64)
        no_indices = np.zeros(0, dtype=np.int32)
        multiclass = self._labels_.kind == "multiclass"
        for start, stop, runner in self._forward_chunks(X_in, activate_output=False):
            bk, m = runner.backend, stop - start
            z = runner.out[out][:m]
            scores = np.empty((m, k), dtype=dtype)
            bk.topk(z, k, bk.to_device(no_exclusions[: m + 1]), bk.to_device(no_indices),
                    ids[start:stop], scores)
            sharded = self.model_.shards is not None
            if sharded:  # each rank ranked its own labels
                ids[start:stop], scores = merge_rank_topk(
                    runner.comm, ids[start:stop], scores, self.model_.output_range[0], k)
            scores = scores.astype(np.float64)
            if multiclass:
                norm = logsumexp(np.asarray(bk.to_host(z), dtype=np.float64), axis=1)
                if sharded:
                    norm = logsumexp(runner.comm.allgather(norm), axis=0)
                probs[start:stop] = np.exp(scores - norm[:, None])
            else:
                probs[start:stop] = expit(scores)

    def score(self, X, y, sample_weight=None):
        """Mean accuracy on ``(X, y)`` (subset accuracy for multi-label targets).

        Raises ValueError when ``y`` holds labels the classifier was not fitted
        with (or, for multi-label targets, another number of label columns).
        """
        check_is_fitted(self, "model_")
        kind, y_checked = _target_kind(y)
        labels = self._labels_
        _check_same_kind(kind, y_checked, labels)
        if kind != "multilabel":
            _label_codes(y_checked, labels.classes)  # raises on unknown labels
        return super().score(X, y_checked, sample_weight=sample_weight)


# -- target helpers -----------------------------------------------------------------
def _show(values, limit=10):
    values = list(np.asarray(values).ravel()[:limit + 1])
    more = ", ..." if len(values) > limit else ""
    return ", ".join(repr(v.item() if hasattr(v, "item") else v) for v in values[:limit]) + more


def _target_kind(y):
    """("single", 1-D labels) or ("multilabel", 2-D 0/1 indicator); clear errors otherwise."""
    if sp.issparse(y):
        if y.ndim != 2 or y.shape[1] < 2 or not is_multilabel(y):
            raise ValueError(
                "a sparse y must be a multi-label indicator matrix: 0/1 values, one column "
                f"per label, at least 2 columns; got shape {y.shape}"
            )
        return "multilabel", y
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = column_or_1d(y, warn=True)
    if y.ndim == 2:
        if is_multilabel(y):
            return "multilabel", y
        raise ValueError(
            "a 2-D y must be a multi-label indicator matrix of 0s and 1s (one column per "
            f"label); got a y of type {type_of_target(y)!r}, which this classifier does "
            "not support (use one classifier per output)"
        )
    check_classification_targets(y)
    return "single", y


def _check_same_kind(kind, y, labels):
    if (kind == "multilabel") != (labels.kind == "multilabel"):
        fitted = "multi-label indicator" if labels.kind == "multilabel" else "single-label"
        given = "a multi-label indicator" if kind == "multilabel" else "single labels"
        raise ValueError(f"this classifier was fitted on {fitted} targets; got {given}")
    if kind == "multilabel" and y.shape[1] != labels.n_outputs:
        raise ValueError(f"y has {y.shape[1]} label columns, but the classifier was fitted "
                         f"with {labels.n_outputs}")


def _check_warm_start_labels(old, new):
    if old.kind != new.kind or not np.array_equal(old.classes, new.classes):
        raise ValueError(
            "warm_start can only continue training on targets with the same classes as the "
            f"previous fit: had {_show(old.classes)}, y has {_show(new.classes)}"
        )


def _label_codes(y, classes):
    """Index of each label in ``classes``; ValueError naming labels not in it."""
    try:
        codes = np.minimum(np.searchsorted(classes, y), classes.shape[0] - 1)
        unknown = classes[codes] != y
    except TypeError:  # labels of another type than the classes (str vs int)
        codes, unknown = None, np.ones(y.shape[0], dtype=bool)
    if np.any(unknown):
        raise ValueError(
            f"y contains labels the classifier has not seen: {_show(y[unknown])}; "
            f"known classes_ are {_show(classes)}"
        )
    return codes


def _one_hot(codes, labels):
    n = codes.shape[0]
    if labels.kind == "binary":
        positive = np.flatnonzero(codes == 1)
        return sp.csr_matrix((np.ones(positive.size, np.float32),
                              (positive, np.zeros(positive.size, np.int64))), shape=(n, 1))
    return sp.csr_matrix((np.ones(n, np.float32), codes.astype(np.int32),
                          np.arange(n + 1, dtype=np.int64)), shape=(n, labels.n_outputs))


def _indicator_csr(y):
    """A 0/1 indicator (dense or sparse) as sorted CSR float32 with only its ones."""
    Y = sp.csr_matrix(y, dtype=np.float32, copy=True)
    Y.sum_duplicates()
    Y.eliminate_zeros()
    Y.data[:] = 1.0
    return Y


register_estimator(
    SparseMLPClassifier,
    json_attributes=("classes_", "n_outputs_", "_label_kind_", "_label_sparse_", "n_iter_",
                     "best_loss_", "best_validation_score_", "validation_scores_",
                     "_checkpoint_"),
)

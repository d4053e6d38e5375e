"""SparseMLPRegressor: a feed-forward network with a linear output for sparse inputs."""

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from sklearn.base import RegressorMixin
from sklearn.metrics import r2_score
from sklearn.utils.validation import check_is_fitted

from ..io.model_file import register_estimator
from ._docs import share_docs
from ._mlp import SparseMLPBase

# scikit-learn's loss names -> DSSTNE's error functions.
LOSSES = {"squared_error": "L2", "absolute_error": "L1"}


@dataclass(frozen=True)
class _Targets:
    """Shape of the fitted targets: ``n_outputs`` columns; ``ravel`` when y was 1-D."""

    n_outputs: int
    ravel: bool


@share_docs
class SparseMLPRegressor(RegressorMixin, SparseMLPBase):
    """Multi-layer perceptron regressor for sparse inputs.

    The network of :class:`SparseMLPClassifier` (sparse input layer, dense
    hidden layers) with one Linear output unit per target column, trained on
    the squared error (DSSTNE's L2: ``1/2 (a - t)^2`` per output) or the
    absolute error (L1: ``|a - t|``). Targets are read as a sparse matrix, so a
    wide, mostly-zero 2-D ``y`` (sparse or not) is never densified. Targets are
    not standardised (as in scikit-learn): for targets far from unit scale, wrap
    the regressor in ``sklearn.compose.TransformedTargetRegressor`` with a
    ``StandardScaler``.

    Parameters
    ----------
    hidden_layer_sizes : tuple of int, default=(256,)
        Units of each hidden layer; ``()`` gives a linear model.
    activation : str, default="relu"
        Hidden activation (DSSTNE names, case-insensitive).
    loss : {"squared_error", "absolute_error"}, default="squared_error"
    %(optimizer)s
    learning_rate : float, default=1e-3
        Step size (scikit-learn's ``learning_rate_init``).
    batch_size : int, default=128
    epochs : int, default=20
        Most passes over the data in one ``fit`` (scikit-learn's ``max_iter``).
    input_dropout : float, default=0.0
    dropout : float, default=0.0
    normalize_input : bool, default=False
        Scale each input row to unit L2 norm before it enters the network.
    l2, l1 : float, default=0.0
        Weight penalties (biases are not penalised).
    %(momentum)s
    sparse_input_update : bool, default=False
    shuffle : bool, default=True
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the rows (seeded by ``random_state``),
        score them with R^2 after every epoch, stop after ``n_iter_no_change``
        epochs without an improvement of more than ``tol``, and keep the
        weights of the best epoch.
    validation_fraction : float, default=0.1
    n_iter_no_change : int, default=10
    tol : float, default=1e-4
    network : dict, str or path, optional
        A DSSTNE JSON network to train instead of the default one; its output
        activation and error function are kept as written.
    %(warm_start)s
    %(checkpoints)s
    %(placement)s
    random_state : int, RandomState or None, default=None
    verbose : int, default=0
        1: a progress bar over epochs on stderr; 2: also one line per epoch.

    Attributes
    ----------
    n_outputs_ : int
    %(fitted_network)s
    n_features_in_ : int
    loss_curve_ : list of float
        Mean training loss per row after each epoch: the error summed over
        outputs (``1/2 (a - t)^2`` for the squared error).
    validation_scores_ : list of float or None
        R^2 on the held-out rows after each epoch (with ``early_stopping``).
    best_validation_score_, best_loss_ : float or None
    n_iter_, n_epochs_, n_steps_ : int

    See Also
    --------
    SparseMLPClassifier
    sklearn.neural_network.MLPRegressor
    """

    def __init__(
        self,
        hidden_layer_sizes=(256,),
        activation="relu",
        loss="squared_error",
        optimizer="adam",
        learning_rate=1e-3,
        batch_size=128,
        epochs=20,
        input_dropout=0.0,
        dropout=0.0,
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
        self.loss = loss
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
        tags.target_tags.multi_output = True
        return tags

    # -- targets --------------------------------------------------------------
    def _output_head(self, targets):
        if not isinstance(self.loss, str) or self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(map(repr, LOSSES))}; "
                             f"got {self.loss!r}")
        return "Linear", LOSSES[self.loss]

    def _check_output_layer(self, spec, targets):
        """Any output activation and error function of a given network is kept."""

    def _prepare_targets(self, y, first, classes=None):
        """``y`` as a CSR target matrix (n_rows, n_outputs) of float32."""
        if y.ndim == 1:
            targets = _Targets(1, True)
            Y = sp.csr_matrix(np.asarray(y, dtype=np.float32).reshape(-1, 1))
        else:
            targets = _Targets(y.shape[1], False)
            Y = sp.csr_matrix(y, dtype=np.float32, copy=True)
        if not first and targets != self._targets_:
            raise ValueError(
                f"y has {targets.n_outputs} output(s) ({'1-D' if targets.ravel else '2-D'}), "
                f"but the regressor was fitted with {self._targets_.n_outputs} "
                f"({'1-D' if self._targets_.ravel else '2-D'})"
            )
        Y.sum_duplicates()
        Y.eliminate_zeros()  # a missing target is a zero target to the engine
        return Y, None, targets, y

    def _stratify(self, y, targets):
        return None

    def _publish_labels(self, targets):
        # Plain values, so that model files can hold them as JSON.
        self.n_outputs_ = targets.n_outputs
        self._targets_ravel_ = bool(targets.ravel)

    @property
    def _targets_(self):
        """Shape of the fitted targets (a :class:`_Targets`)."""
        return _Targets(self.n_outputs_, self._targets_ravel_)

    def _validation_score(self, model, targets, X_in, y, sample_weight):
        predicted = self._predict_in(X_in, targets, model)
        y = y.toarray() if sp.issparse(y) else y
        return float(r2_score(y, predicted, sample_weight=sample_weight))

    # -- fit ------------------------------------------------------------------
    def fit(self, X, y, sample_weight=None):
        """Train on sparse ``X`` and targets ``y``.

        Parameters
        ----------
        X : {sparse matrix, array-like} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs), or a
            sparse matrix of shape (n_samples, n_outputs)
        sample_weight : array-like of shape (n_samples,), optional
            Non-negative loss weights, rescaled to mean 1 (docs/mlp.md).

        Returns
        -------
        self
        """
        return self._fit(X, y, sample_weight, y_numeric=True)

    def partial_fit(self, X, y, sample_weight=None):
        """Train one epoch on ``(X, y)``, continuing the fitted model if any.

        Returns
        -------
        self
        """
        return self._partial_fit(X, y, sample_weight, y_numeric=True)

    # -- inference ------------------------------------------------------------
    def _predict_in(self, X_in, targets, model=None):
        out = np.empty((X_in.shape[0], targets.n_outputs), dtype=np.float64)
        index = (self.model_ if model is None else model).output.index
        for start, stop, runner in self._forward_chunks(X_in, model=model):
            out[start:stop] = runner.backend.to_host(runner.out[index][: stop - start])
        return out[:, 0] if targets.ravel else out

    def predict(self, X):
        """Predicted targets.

        Returns
        -------
        ndarray of shape (n_samples,) when ``y`` was 1-D at fit, else
        (n_samples, n_outputs); float64.
        """
        check_is_fitted(self, "model_")
        X_in = self._inputs(self._validate_X(X, reset=False))
        return self._predict_in(X_in, self._targets_)


register_estimator(
    SparseMLPRegressor,
    json_attributes=("n_outputs_", "_targets_ravel_", "n_iter_", "best_loss_",
                     "best_validation_score_", "validation_scores_", "_checkpoint_"),
)

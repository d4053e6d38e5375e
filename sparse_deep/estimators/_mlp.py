"""What SparseMLPClassifier and SparseMLPRegressor share: parameters, the
network they build, input checks, sample weights, early stopping and partial_fit."""


import numpy as np
import scipy.sparse as sp
from sklearn.model_selection import train_test_split
from sklearn.utils.validation import _check_sample_weight, validate_data

from .._validation import l2_normalize_rows
from ..distributed.comm import ranks_agree
from ..network import ACTIVATIONS
from ._base import (
    SparseNetworkEstimator,
    StoppingMonitor,
    restored_on_failure,
)
from ._params import layer_sizes


def as_feature_matrix(X):
    """``X`` (already validated, float32) as canonical CSR: sorted, no duplicates."""
    X = sp.csr_matrix(X)
    if not X.has_canonical_format:
        X = X.copy()
        X.sum_duplicates()
    return X


def normalised_row_weights(sample_weight, X, extra=None):
    """Per-row loss weights rescaled to mean 1 over the rows, or None.

    ``sample_weight`` (validated here: one finite non-negative number per row)
    times ``extra`` (class weights), divided by their mean, so that weights
    that are all equal give exactly the unweighted model and the learning rate
    keeps its meaning whatever the weights' scale.
    """
    if sample_weight is None and extra is None:
        return None
    weights = _check_sample_weight(sample_weight, X, dtype=np.float64,
                                   ensure_non_negative=True)
    if extra is not None:
        weights = weights * extra
    total = float(weights.sum())
    if not total > 0:
        raise ValueError("sample_weight is zero for every row; at least one row needs a "
                         "positive weight")
    return weights * (weights.shape[0] / total)


def output_bias_prior(Y, row_weights, activation, error_function):
    """The output biases that reproduce the targets' base rates, or None.

    ``Y`` is the CSR target matrix (missing entries are zero targets) and
    ``row_weights`` the normalised row weights (None: all 1). See
    :meth:`SparseMLPBase._initialize_output`.
    """
    n = Y.shape[0]
    weights = np.ones(n) if row_weights is None else row_weights
    means = np.asarray(Y.T @ weights, dtype=np.float64).ravel() / weights.sum()
    if activation in ("Sigmoid", "SoftMax"):
        # A label never (or always) seen gets the odds of half an example.
        low = 0.5 / n
        if activation == "Sigmoid":
            p = np.clip(means, low, 1.0 - low)
            return np.log(p / (1.0 - p))
        total = means.sum()
        if total <= 0:
            return None
        return np.log(np.clip(means / total, low, 1.0))
    if activation == "Linear":
        return means if error_function != "L1" else _column_medians(Y, weights)
    return None


def _column_medians(Y, weights):
    """Weighted median of each column of CSR ``Y``, its missing entries being zeros."""
    csc = Y.tocsc()
    rows_of = csc.indices
    total = weights.sum()
    out = np.zeros(Y.shape[1])
    for j in range(Y.shape[1]):
        lo, hi = csc.indptr[j], csc.indptr[j + 1]
        values = np.r_[csc.data[lo:hi], 0.0]
        w = np.r_[weights[rows_of[lo:hi]], total - weights[rows_of[lo:hi]].sum()]
        order = np.argsort(values, kind="stable")
        cumulative = np.cumsum(w[order])
        out[j] = values[order][np.searchsorted(cumulative, 0.5 * total)]
    return out


class SparseMLPBase(SparseNetworkEstimator):
    """Shared face of the MLP estimators; subclasses add the targets' handling.

    Subclasses provide:

    - ``_prepare_targets(y, first, classes=None)`` -> ``(Y, class_weights,
      encoding, y)``: the target CSR, per-row class weights or None, a record
      of how targets map to outputs, and ``y`` checked;
    - ``_output_head(encoding)`` -> (output activation, error function);
    - ``_check_output_layer(spec, encoding)``;
    - ``_validation_score(model, encoding, X_in, y, sample_weight)``;
    - ``_stratify(y, encoding)`` -> labels to stratify the validation split by, or None;
    - ``_publish_labels(encoding)``: set the fitted attributes it implies.
    """

    # -- parameters -----------------------------------------------------------
    def _default_network(self, n_inputs, n_outputs, encoding):
        """The DSSTNE JSON network these parameters describe for ``encoding``."""
        output_activation, error_function = self._output_head(encoding)
        hidden_act = ACTIVATIONS.canonical(self.activation)
        dropout = float(self.dropout)
        layers = [{"Name": "Input", "Kind": "Input", "N": "auto", "DataSet": "input",
                   "Sparse": True}]
        for i, n in enumerate(layer_sizes(self.hidden_layer_sizes)):
            layers.append({"Name": f"Hidden{i + 1}", "Kind": "Hidden", "N": n,
                           "Activation": hidden_act, "pDropout": dropout})
        layers.append({"Name": "Output", "Kind": "Output", "N": "auto", "DataSet": "output",
                       "Activation": output_activation})
        return {
            "Version": 0.9,
            "Name": type(self).__name__,
            "Kind": "FeedForward",
            "Layers": layers,
            "ErrorFunction": error_function,
            "Denoising": {"p": float(self.input_dropout)},
            "ShuffleIndices": bool(self.shuffle),
            # DSSTNE's default slope (1.0) makes LRelu linear; use the usual 0.01.
            "RELUSlope": 0.01,
        }

    def _check_network(self, spec, encoding):
        self._check_output_layer(spec, encoding)

    def _initialize_output(self, model, Y, row_weights):
        """Start the output biases at the targets' base rates.

        Sigmoid units start at the log-odds of their label's (weighted)
        frequency, SoftMax units at the log of their class's frequency, Linear
        units at the target column's mean (L2) or median (L1), so that the first
        epochs learn the features instead of the label priors. Other output
        activations, and networks whose output layer sets a non-zero
        ``WeightInit`` ``Bias``, keep the network's initial biases.
        """
        layer = model.spec.output_layer
        if layer.weight_init.bias != 0.0:
            return
        bias = output_bias_prior(Y, row_weights, layer.activation, model.spec.error_function)
        if bias is not None:
            start, stop = model.output_range  # a sharded model holds these columns
            model.biases[model.output.index][...] = bias[start:stop]

    # -- data -----------------------------------------------------------------
    def _validate_X(self, X, reset):
        X = validate_data(self, X, accept_sparse="csr", dtype=np.float32, reset=reset)
        return as_feature_matrix(X)

    def _validate_X_y(self, X, y, y_numeric):
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target "
                             "y is None")
        X, y = validate_data(self, X, y, accept_sparse="csr", dtype=np.float32,
                             multi_output=True, y_numeric=y_numeric, reset=True)
        return as_feature_matrix(X), y

    def _inputs(self, X):
        return l2_normalize_rows(X) if self.normalize_input else X

    # -- fit ------------------------------------------------------------------
    @restored_on_failure
    def _fit(self, X, y, sample_weight, y_numeric):
        with ranks_agree(self._communicator()):  # bad data on one MPI rank raises on all
            X, y = self._validate_X_y(X, y, y_numeric)
            Y, class_weights, encoding, y = self._prepare_targets(y, first=True)
            weights = normalised_row_weights(sample_weight, X, class_weights)
            spec = self._network_spec(X.shape[1], Y.shape[1], encoding=encoding)
        X_in = self._inputs(X)
        if self.early_stopping:
            # Seeded like the model, so warm-started fits hold out the same rows.
            seed = self._training_seed(self._can_resume(spec))
            train, val = self._validation_split(y, self._stratify(y, encoding), seed)
            sw_val = None if sample_weight is None else np.asarray(
                _check_sample_weight(sample_weight, X, dtype=np.float64))[val]
            X_val, y_val = X_in[val], _take_rows(y, val)
            monitor = StoppingMonitor(
                self.tol, self.n_iter_no_change,
                validate=lambda model: self._validation_score(model, encoding, X_val, y_val,
                                                              sw_val),
            )
            X_in, Y = X_in[train], Y[train]
            if weights is not None:
                weights = normalised_row_weights(weights[train], X_in)
        else:
            monitor = StoppingMonitor(self.tol, self.n_iter_no_change)
        self._publish_labels(encoding)  # before training: checkpoints hold the labels
        self._fit_network(X_in, Y, spec, weights, monitor)
        self._publish_monitor(monitor)
        return self

    def _validation_split(self, y, stratify, seed):
        """Seeded train/validation rows, stratified by ``stratify`` when given."""
        n = y.shape[0]
        try:
            train, val = train_test_split(
                np.arange(n), test_size=self.validation_fraction,
                random_state=np.random.RandomState(seed), stratify=stratify,
            )
        except ValueError as err:
            raise ValueError(
                f"early_stopping cannot hold out validation_fraction={self.validation_fraction} "
                f"of {n} rows{' stratified by class' if stratify is not None else ''}: {err} "
                "Use more rows, a larger validation_fraction, or early_stopping=False."
            ) from None
        if val.shape[0] < 2 or train.shape[0] < 1:
            raise ValueError(
                f"The validation set is too small: validation_fraction="
                f"{self.validation_fraction} of {n} rows leaves {val.shape[0]} for "
                "validation; increase validation_fraction or pass more rows"
            )
        return np.sort(train), np.sort(val)

    def _publish_monitor(self, monitor):
        """scikit-learn's stopping attributes, from the monitor of the last fit."""
        self.n_iter_ = self.n_epochs_
        if self.early_stopping:
            self.validation_scores_ = list(monitor.scores)
            self.best_validation_score_ = monitor.best_score
            self.best_loss_ = None
        else:
            self.validation_scores_ = None
            self.best_validation_score_ = None
            self.best_loss_ = monitor.best_loss

    @restored_on_failure
    def _partial_fit(self, X, y, sample_weight, y_numeric, classes=None):
        """One epoch over (X, y), continuing the fitted model if there is one."""
        if self.early_stopping:
            raise ValueError("partial_fit does not support early_stopping=True: there is no "
                             "fixed data set to hold out from; use fit, or set "
                             "early_stopping=False")
        first = self._fitted_model() is None
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target "
                             "y is None")
        with ranks_agree(self._communicator()):
            X, y = validate_data(self, X, y, accept_sparse="csr", dtype=np.float32,
                                 multi_output=True, y_numeric=y_numeric, reset=first)
            X = as_feature_matrix(X)
            Y, class_weights, encoding, y = self._prepare_targets(y, first=first,
                                                                  classes=classes)
            weights = normalised_row_weights(sample_weight, X, class_weights)
            if first:
                spec = self._network_spec(X.shape[1], Y.shape[1], encoding=encoding)
            else:
                spec = self._fitted_model().spec
        session = self._start_training(self._inputs(X), Y, spec, weights, resume=not first)
        loss = self._train_epochs(session, 1)
        self._end_training(session, keep_buffers=True)
        self._publish_labels(encoding)
        self.n_iter_ = self.n_epochs_
        if first:
            self.validation_scores_ = self.best_validation_score_ = None
        previous = getattr(self, "best_loss_", None)  # None after an early-stopped fit
        self.best_loss_ = loss if previous is None else min(previous, loss)
        return self


def _take_rows(y, rows):
    return y[rows] if not sp.issparse(y) else sp.csr_matrix(y)[rows]

"""SparseMLPClassifier: scikit-learn conformance, behaviour, sample weights and errors."""

import pickle

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.feature_extraction.text import TfidfTransformer
from sklearn.metrics import accuracy_score
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.estimator_checks import parametrize_with_checks

from sparse_deep import SparseMLPClassifier
from sparse_deep.estimators import _base

SMALL = dict(hidden_layer_sizes=(16,), epochs=6, batch_size=16, learning_rate=1e-2,
             random_state=0)


def small(**kw):
    return SparseMLPClassifier(**{**SMALL, **kw})


def sparse_problem(n=90, n_features=30, n_classes=3, seed=0):
    """Sparse non-negative rows whose class is the argmax of a fixed linear map."""
    rng = np.random.default_rng(seed)
    X = sp.random(n, n_features, density=0.2, random_state=seed, format="csr",
                  dtype=np.float32)
    X.data[:] = rng.integers(1, 4, X.nnz)
    X = (X + sp.csr_matrix((np.ones(n, np.float32), (np.arange(n), rng.integers(
        0, n_features, n))), shape=X.shape)).tocsr()  # no empty row
    scores = X @ rng.normal(size=(n_features, n_classes))
    return X, np.argmax(scores, axis=1)


def multilabel_problem(n=90, n_features=30, n_labels=6, seed=0):
    X, _ = sparse_problem(n, n_features, 2, seed)
    rng = np.random.default_rng(seed + 1)
    Y = (X @ rng.normal(size=(n_features, n_labels))) > 1.0
    return X, sp.csr_matrix(Y.astype(np.int64))


@pytest.fixture(scope="module")
def multiclass():
    return sparse_problem()


@pytest.fixture(scope="module")
def binary():
    X, y = sparse_problem(n_classes=2, seed=3)
    return X, np.where(y == 1, "spam", "ham")


@pytest.fixture(scope="module")
def multilabel():
    return multilabel_problem()


def weights_of(est):
    return est.model_.weights + list(est.model_.biases.values())


def assert_same_weights(a, b):
    for wa, wb in zip(weights_of(a), weights_of(b)):
        np.testing.assert_array_equal(wa, wb)


# -- scikit-learn conformance -----------------------------------------------------
EXPECTED_FAILED_CHECKS = {
    "check_sample_weight_equivalence_on_dense_data": (
        "dropout (on by default) draws its mask per row, so a repeated row gets masks of "
        "its own; without dropout, when one batch holds every row as here, integer weights "
        "and repeated rows agree up to float32 rounding (about 5e-8), not to the rtol=1e-7 "
        "the check asks for; with several batches per epoch the batches differ by "
        "construction. test_integer_weights_equal_repeated_rows_in_one_batch tests the "
        "equivalence"
    ),
    "check_sample_weight_equivalence_on_sparse_data": "same as on dense data",
}


@parametrize_with_checks(
    [SparseMLPClassifier(hidden_layer_sizes=(16,), epochs=20, batch_size=32, learning_rate=1e-2,
                         random_state=0)],
    expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS,
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


# -- the three kinds of targets ------------------------------------------------------
def test_binary_string_labels(binary):
    X, y = binary
    est = small(epochs=30).fit(X, y)
    np.testing.assert_array_equal(est.classes_, ["ham", "spam"])
    assert est.n_outputs_ == 1 and est.network_["Layers"][-1]["Activation"] == "Sigmoid"
    proba, scores = est.predict_proba(X), est.decision_function(X)
    assert proba.shape == (X.shape[0], 2) and scores.shape == (X.shape[0],)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_allclose(proba[:, 1], 1 / (1 + np.exp(-scores.astype(np.float64))))
    np.testing.assert_array_equal(est.predict(X), est.classes_[(scores > 0).astype(int)])
    assert est.score(X, y) > 0.9
    np.testing.assert_allclose(est.predict_log_proba(X), np.log(proba))


def test_multiclass_softmax(multiclass):
    X, y = multiclass
    est = small(epochs=40).fit(X, y)
    assert est.network_["Layers"][-1]["Activation"] == "SoftMax"
    assert est.network_["ErrorFunction"] == "CrossEntropy"
    proba = est.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(est.predict(X), est.classes_[proba.argmax(axis=1)])
    np.testing.assert_array_equal(est.decision_function(X).argmax(axis=1), proba.argmax(axis=1))
    assert est.score(X, y) > 0.9
    assert est.score(X, y) == accuracy_score(y, est.predict(X))


def test_multilabel_sparse_and_dense_targets(multilabel):
    X, Y = multilabel
    sparse_fit = small(epochs=30).fit(X, Y)
    dense_fit = small(epochs=30).fit(X, Y.toarray())
    assert_same_weights(sparse_fit, dense_fit)
    np.testing.assert_array_equal(sparse_fit.classes_, np.arange(Y.shape[1]))
    predicted = sparse_fit.predict(X)
    assert sp.issparse(predicted) and predicted.shape == Y.shape
    dense_predicted = dense_fit.predict(X)
    assert isinstance(dense_predicted, np.ndarray)
    np.testing.assert_array_equal(predicted.toarray(), dense_predicted)
    proba = sparse_fit.predict_proba(X)
    np.testing.assert_array_equal(dense_predicted, (proba > 0.5).astype(int))
    assert sparse_fit.score(X, Y) == accuracy_score(Y.toarray(), dense_predicted)
    assert (predicted != Y).nnz < 0.1 * np.prod(Y.shape)


class NoDenseCSR(sp.csr_matrix):
    """A CSR matrix that refuses to be densified."""

    def toarray(self, *args, **kwargs):
        raise AssertionError("the targets were densified")

    todense = toarray


def test_multilabel_targets_are_never_densified(multilabel):
    X, Y = multilabel
    est = small(epochs=2).fit(X, NoDenseCSR(Y))
    assert est.predict(X).shape == Y.shape


def test_predict_top_k_matches_predict_proba(multiclass, multilabel, binary, monkeypatch):
    monkeypatch.setattr(_base, "INFERENCE_CHUNK", 7)  # several chunks, uneven last one
    for X, y in (multiclass, multilabel, binary):
        est = small().fit(X, y)
        proba = est.predict_proba(X)
        k = min(3, proba.shape[1])
        labels, scores = est.predict_top_k(X, k, return_scores=True)
        order = np.argsort(-proba, axis=1, kind="stable")[:, :k]
        np.testing.assert_array_equal(labels, est.classes_[order])
        np.testing.assert_allclose(scores, np.take_along_axis(proba, order, axis=1), rtol=1e-6)
        if y.ndim == 1:  # the top class is the predicted one
            np.testing.assert_array_equal(est.predict_top_k(X, 1)[:, 0], est.predict(X))


@pytest.mark.parametrize("k,error", [(0, ValueError), (4, ValueError), (1.5, TypeError),
                                     (True, TypeError)])
def test_predict_top_k_bad_k(multiclass, k, error):
    X, y = multiclass
    with pytest.raises(error, match="k must"):
        small(epochs=1).fit(X, y).predict_top_k(X, k)


def test_output_biases_start_at_the_label_priors(binary, multiclass, multilabel):
    for X, y in (binary, multiclass, multilabel):
        est = small(epochs=1, learning_rate=1e-9)  # one negligible step
        est.fit(X, y)
        bias = est.model_.biases[est.model_.output.index]
        if y.ndim == 2:
            # Labels never (or always) present get the odds of half a row.
            p = np.clip(np.asarray(y.mean(axis=0)).ravel(), 0.5 / y.shape[0],
                        1 - 0.5 / y.shape[0])
            expected = np.log(p / (1 - p))
        elif len(est.classes_) == 2:
            p = np.mean(y == est.classes_[1])
            expected = [np.log(p / (1 - p))]
        else:
            expected = np.log(np.bincount(y) / len(y))
        np.testing.assert_allclose(bias, expected, rtol=1e-5, atol=1e-6)
    # A network that sets its own output bias keeps it.
    X, y = multiclass
    network = small(epochs=1).fit(X, y).network_
    network["Layers"][-1]["WeightInit"] = {**network["Layers"][-1].get("WeightInit", {}),
                                           "Bias": 0.25}
    est = small(epochs=1, learning_rate=1e-9, network=network).fit(X, y)
    np.testing.assert_allclose(est.model_.biases[est.model_.output.index], 0.25, atol=1e-6)


def test_linear_model_without_hidden_layers(binary):
    X, y = binary
    est = small(hidden_layer_sizes=(), epochs=40).fit(X, y)
    assert len(est.model_.weights) == 1 and est.score(X, y) > 0.85


# -- training loop habits ----------------------------------------------------------------
def test_same_random_state_same_model_and_every_sparse_format(multiclass):
    X, y = multiclass
    reference = small().fit(X, y)
    for X_other in (X.tocsc(), X.tocoo(), X.toarray()):
        assert_same_weights(small().fit(X_other, y), reference)
    assert not np.array_equal(small(random_state=1).fit(X, y).model_.weights[0],
                              reference.model_.weights[0])


def test_partial_fit_epochs_equal_fit_epochs(multiclass):
    X, y = multiclass
    once = small(epochs=4).fit(X, y)
    stepwise = small()
    stepwise.partial_fit(X, y, classes=np.unique(y))
    for _ in range(3):
        stepwise.partial_fit(X, y)
    assert stepwise.n_iter_ == 4 and stepwise.loss_curve_ == once.loss_curve_
    assert_same_weights(stepwise, once)


def test_partial_fit_classes_and_chunks(multiclass):
    X, y = multiclass
    est = small()
    first = y < 2
    est.partial_fit(X[first], y[first], classes=[0, 1, 2])
    assert list(est.classes_) == [0, 1, 2] and est.n_outputs_ == 3
    est.partial_fit(X[~first], y[~first])
    assert est.predict_proba(X).shape == (X.shape[0], 3)
    with pytest.raises(ValueError, match="not seen.*7"):
        est.partial_fit(X[:5], np.full(5, 7))
    with pytest.raises(ValueError, match="not in classes"):
        small().partial_fit(X, y, classes=[0, 1])


def test_warm_start_continues_exactly_like_one_longer_run(multiclass):
    X, y = multiclass
    once = small(epochs=6).fit(X, y)
    twice = small(epochs=3, warm_start=True).fit(X, y)
    twice.fit(X, y)
    assert twice.n_epochs_ == 6 and twice.loss_curve_ == once.loss_curve_
    assert_same_weights(once, twice)
    with pytest.raises(ValueError, match="warm_start.*same classes"):
        twice.fit(X, np.where(y == 2, 5, y))


def test_early_stopping_keeps_the_best_epoch(multiclass):
    X, y = multiclass
    est = small(epochs=30, early_stopping=True, validation_fraction=0.3, n_iter_no_change=3,
                tol=0.5)
    est.fit(X, y)
    # The first epoch sets the best score; tol=0.5 of accuracy is never gained after
    # it, so training stops after 3 more epochs.
    assert est.n_iter_ == 4 and len(est.validation_scores_) == 4
    assert est.best_validation_score_ == max(est.validation_scores_)
    assert est.best_loss_ is None
    long_run = small(epochs=12, early_stopping=True, validation_fraction=0.3,
                     n_iter_no_change=50).fit(X, y)
    assert long_run.n_iter_ == 12
    # The weights kept are those of the best epoch: re-score the held-out rows.
    train, val = long_run._validation_split(y, y, long_run._seed_)
    assert np.bincount(y[val]).min() >= 1  # stratified
    assert long_run.score(X[val], y[val]) == long_run.best_validation_score_


def test_training_loss_stopping(multiclass):
    X, y = multiclass
    est = small(epochs=30, n_iter_no_change=2, tol=100.0).fit(X, y)
    assert est.n_iter_ == 3 and est.best_loss_ == min(est.loss_curve_)
    assert est.validation_scores_ is None


def test_verbose_shows_progress_on_stderr(multiclass, capsys):
    X, y = multiclass
    small(epochs=2, verbose=2, early_stopping=True, validation_fraction=0.3).fit(X, y)
    err = capsys.readouterr().err
    assert "epoch    2" in err and "loss" in err and "validation" in err
    small(epochs=2).fit(X, y)
    assert capsys.readouterr().err == ""


def test_network_round_trip_and_override(multiclass, tmp_path):
    X, y = multiclass
    est = small().fit(X, y)
    again = small(network=est.network_).fit(X, y)
    assert_same_weights(est, again)
    deeper = small(network={
        "Kind": "FeedForward", "ErrorFunction": "CrossEntropy",
        "Layers": [{"Kind": "Input", "N": "auto", "Sparse": True},
                   {"Kind": "Hidden", "N": 16, "Activation": "Relu"},
                   {"Kind": "Hidden", "N": 8, "Activation": "Tanh"},
                   {"Kind": "Output", "N": "auto", "Activation": "SoftMax"}]}).fit(X, y)
    assert [w.shape for w in deeper.model_.weights] == [(30, 16), (16, 8), (8, 3)]
    wrong = {**est.network_, "Layers": est.network_["Layers"][:-1]
             + [{**est.network_["Layers"][-1], "Activation": "Sigmoid"}]}
    with pytest.raises(ValueError, match="multiclass targets need SoftMax"):
        small(network=wrong).fit(X, y)


def test_pickle_clone_and_grid_search_over_pipeline(multiclass):
    X, y = multiclass
    est = small().fit(X, y)
    again = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(again.predict_proba(X), est.predict_proba(X))
    copy = clone(est)
    assert copy.get_params() == est.get_params() and not hasattr(copy, "model_")
    grid = GridSearchCV(make_pipeline(TfidfTransformer(), small(epochs=3)),
                        {"sparsemlpclassifier__hidden_layer_sizes": [(8,), (16,)]}, cv=2)
    grid.fit(X, y)
    assert 0.0 <= grid.best_score_ <= 1.0


# -- sample and class weights -----------------------------------------------------------
def test_unit_and_rescaled_weights_give_the_unweighted_model(multiclass):
    X, y = multiclass
    plain = small().fit(X, y)
    assert_same_weights(plain, small().fit(X, y, sample_weight=np.ones(len(y))))
    # Weights are rescaled to mean 1, so their scale does not matter.
    w = np.random.default_rng(0).integers(1, 4, len(y)).astype(float)
    assert_same_weights(small().fit(X, y, sample_weight=w),
                        small().fit(X, y, sample_weight=4 * w))


def test_integer_weights_equal_repeated_rows_in_one_batch(multiclass):
    """With the whole data set in one batch, weight 2 == the row twice and weight 0 ==
    the row absent (up to float32 summation order)."""
    X, y = multiclass
    w = np.random.default_rng(1).integers(0, 3, len(y))
    rows = np.repeat(np.arange(len(y)), w)
    # No dropout: its masks are keyed by row, so a repeated row would draw its own.
    params = dict(batch_size=1000, epochs=5, optimizer="sgd", learning_rate=0.5, dropout=0.0)
    weighted = small(**params).fit(X, y, sample_weight=w)
    repeated = small(**params).fit(X[rows], y[rows])
    for a, b in zip(weights_of(weighted), weights_of(repeated)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(weighted.loss_curve_, repeated.loss_curve_, rtol=1e-5)


def test_class_weight(multiclass):
    X, y = multiclass
    balanced = small(class_weight="balanced").fit(X, y)
    by_hand = small().fit(X, y, sample_weight=compute_sample_weight("balanced", y))
    assert_same_weights(balanced, by_hand)
    heavy = small(class_weight={2: 20.0}, epochs=10).fit(X, y)
    light = small(epochs=10).fit(X, y)
    assert (heavy.predict(X) == 2).sum() > (light.predict(X) == 2).sum()


# -- errors -------------------------------------------------------------------------------
@pytest.mark.parametrize("make_y,match", [
    (lambda y: y[:-1], "inconsistent numbers of samples"),
    (lambda y: np.zeros_like(y), "only one class"),
    (lambda y: y + 0.5, "Unknown label type"),
    (lambda y: np.where(y == 0, np.nan, y), "NaN"),
    (lambda y: np.column_stack([y, y]), "multi-label indicator"),
    (lambda y: sp.csr_matrix(y.reshape(-1, 1)), "sparse y"),
])
def test_bad_targets(multiclass, make_y, match):
    X, y = multiclass
    est = small()
    with pytest.raises(ValueError, match=match):
        est.fit(X, make_y(y.astype(float)))
    assert not hasattr(est, "model_")


def test_bad_inputs(multiclass):
    X, y = multiclass
    bad = X.copy()
    bad.data[0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        small().fit(bad, y)
    est = small(epochs=1).fit(X, y)
    with pytest.raises(ValueError, match="NaN"):
        est.predict(bad)
    with pytest.raises(ValueError, match="30 features"):
        est.predict(X[:, :20])
    bad.data[0] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        est.predict_proba(bad)


def test_unknown_labels_at_score(multiclass, multilabel):
    X, y = multiclass
    est = small(epochs=1).fit(X, y)
    with pytest.raises(ValueError, match="not seen: 9.*known classes_ are 0, 1, 2"):
        est.score(X, np.where(y == 2, 9, y))
    with pytest.raises(ValueError, match="not seen: 'a'"):
        est.score(X[:2], np.array(["a", "b"]))
    with pytest.raises(ValueError, match="single-label targets; got a multi-label"):
        est.score(*multilabel)
    X, Y = multilabel
    est = small(epochs=1).fit(X, Y)
    with pytest.raises(ValueError, match="5 label columns.*fitted with 6"):
        est.score(X, Y[:, :5])


@pytest.mark.parametrize("weights,match", [
    (lambda n: np.full(n, np.nan), "NaN"),
    (lambda n: -np.ones(n), "Negative values"),
    (lambda n: np.zeros(n), "non-zero"),
    (lambda n: np.ones(n - 1), r"sample_weight.shape == \(89,\)"),
])
def test_bad_sample_weight(multiclass, weights, match):
    X, y = multiclass
    with pytest.raises(ValueError, match=match):
        small().fit(X, y, sample_weight=weights(len(y)))


@pytest.mark.parametrize("params,match", [
    (dict(tol=-1.0), "tol"),
    (dict(n_iter_no_change=0), "n_iter_no_change"),
    (dict(validation_fraction=1.0, early_stopping=True), "validation_fraction"),
    (dict(class_weight="heavy"), "class_weight"),
    (dict(hidden_layer_sizes=(0,)), "hidden_layer_sizes"),
    (dict(hidden_layer_sizes="big"), "hidden_layer_sizes"),
    (dict(activation="swish"), "unknown activation"),
    (dict(learning_rate=-1.0), "learning_rate"),
    (dict(device="tpu"), "device"),
])
def test_bad_parameters_rejected_before_training(multiclass, params, match):
    X, y = multiclass
    est = small(**params)
    with pytest.raises(ValueError, match=match):
        est.fit(X, y)
    assert not hasattr(est, "model_")


def test_unsupported_combinations(multiclass, multilabel):
    X, y = multiclass
    with pytest.raises(ValueError, match="partial_fit does not support early_stopping"):
        small(early_stopping=True).partial_fit(X, y, classes=[0, 1, 2])
    with pytest.raises(ValueError, match="'balanced' is not supported by partial_fit"):
        est = small(class_weight="balanced").partial_fit(X, y)
        est.partial_fit(X, y)
    with pytest.raises(ValueError, match="class_weight applies to single-label"):
        small(class_weight="balanced").fit(*multilabel)
    with pytest.raises(ValueError, match="stratified"):
        small(early_stopping=True, validation_fraction=0.02).fit(X, y)


def test_partial_fit_continues_an_early_stopped_fit(multiclass):
    X, y = multiclass
    est = small(epochs=3, early_stopping=True, validation_fraction=0.3).fit(X, y)
    assert est.best_loss_ is None
    est.set_params(early_stopping=False).partial_fit(X, y)
    assert est.n_iter_ == 4 and est.best_loss_ == est.loss_curve_[-1]

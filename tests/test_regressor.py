"""SparseMLPRegressor: scikit-learn conformance, losses, weighted gradients and errors."""

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.metrics import r2_score
from sklearn.utils.estimator_checks import parametrize_with_checks

from sparse_deep import SparseMLPRegressor
from sparse_deep.engine.model import Model

SMALL = dict(hidden_layer_sizes=(16,), epochs=6, batch_size=16, learning_rate=1e-2,
             random_state=0)


def small(**kw):
    return SparseMLPRegressor(**{**SMALL, **kw})


def sparse_regression(n=80, n_features=25, n_outputs=1, seed=0):
    rng = np.random.default_rng(seed)
    X = sp.random(n, n_features, density=0.25, random_state=seed, format="csr",
                  dtype=np.float32)
    coef = rng.normal(size=(n_features, n_outputs))
    y = np.asarray(X @ coef) + 0.5
    return X, (y[:, 0] if n_outputs == 1 else y)


@pytest.fixture(scope="module")
def data():
    return sparse_regression()


def weights_of(est):
    return est.model_.weights + list(est.model_.biases.values())


def assert_same_weights(a, b):
    for wa, wb in zip(weights_of(a), weights_of(b)):
        np.testing.assert_array_equal(wa, wb)


EXPECTED_FAILED_CHECKS = {
    "check_sample_weight_equivalence_on_dense_data": (
        "in one batch, integer weights and repeated rows agree up to float32 rounding, not "
        "to the rtol=1e-7 the check asks for; with several batches per epoch the batches "
        "differ by construction. test_weights_in_one_batch_equal_repeated_rows tests the "
        "equivalence"
    ),
    "check_sample_weight_equivalence_on_sparse_data": "same as on dense data",
}


@parametrize_with_checks(
    [SparseMLPRegressor(hidden_layer_sizes=(16,), epochs=20, batch_size=32, learning_rate=1e-2,
                        random_state=0)],
    expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS,
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


# -- targets and losses -----------------------------------------------------------------
def test_learns_a_sparse_linear_map(data):
    X, y = data
    est = small(epochs=60).fit(X, y)
    assert est.network_["Layers"][-1]["Activation"] == "Linear"
    assert est.network_["ErrorFunction"] == "L2"
    assert est.predict(X).shape == y.shape and est.predict(X).dtype == np.float64
    assert est.score(X, y) > 0.9
    assert est.score(X, y) == pytest.approx(r2_score(y, est.predict(X)))


def test_target_shapes_and_sparse_targets():
    X, Y = sparse_regression(n_outputs=3)
    est = small().fit(X, Y)
    assert est.n_outputs_ == 3 and est.predict(X).shape == Y.shape
    column = small().fit(X, Y[:, :1])
    assert column.predict(X).shape == (X.shape[0], 1)
    # A mostly-zero target matrix gives the same model whether sparse or dense.
    wide = np.where(np.abs(Y) > 1.0, Y, 0.0)
    assert_same_weights(small().fit(X, sp.csr_matrix(wide)), small().fit(X, wide))


@pytest.mark.parametrize("loss,expected", [("squared_error", 2.0), ("absolute_error", 0.0)])
def test_squared_error_fits_the_mean_and_absolute_error_the_median(loss, expected):
    X = sp.csr_matrix(np.ones((10, 1), dtype=np.float32))
    y = np.r_[np.zeros(8), np.full(2, 10.0)]
    est = SparseMLPRegressor(hidden_layer_sizes=(), loss=loss, batch_size=10, epochs=300,
                             learning_rate=0.05, random_state=0, n_iter_no_change=300).fit(X, y)
    np.testing.assert_allclose(est.predict(X), expected, atol=0.1)


def weighted_median(values, weights):
    order = np.argsort(values)
    cumulative = np.cumsum(weights[order])
    return values[order][np.searchsorted(cumulative, 0.5 * cumulative[-1])]


def _one_full_batch_sgd_step(X, y, w, loss, lr):
    """The documented step of a linear model by hand: the output bias starts at the
    weighted mean (L2) or median (L1) of y, rows are weighted by w / mean(w), and
    the step follows the gradient of (1/B) sum_i w_i E_i."""
    est = SparseMLPRegressor(hidden_layer_sizes=(), loss=loss, optimizer="sgd",
                             learning_rate=lr, batch_size=len(y), epochs=1, random_state=0,
                             shuffle=False)
    est.fit(X, y, sample_weight=w)
    W0 = Model(est.model_.spec).initialize(est._seed_).weights[0].astype(np.float64)
    b0 = np.array([np.average(y, weights=w) if loss == "squared_error"
                   else weighted_median(y, w)], dtype=np.float32).astype(np.float64)
    Xd = X.toarray().astype(np.float64)
    residual = Xd @ W0 + b0 - y[:, None]
    scale = (w * len(y) / w.sum())[:, None] / len(y)
    delta = scale * (residual if loss == "squared_error" else np.sign(residual))
    W1, b1 = W0 - lr * Xd.T @ delta, b0 - lr * delta.sum(axis=0)
    error = 0.5 * residual**2 if loss == "squared_error" else np.abs(residual)
    expected_loss = float((w * len(y) / w.sum()) @ error[:, 0]) / len(y)
    return est, W1, b1, expected_loss


@pytest.mark.parametrize("loss", ["squared_error", "absolute_error"])
def test_weighted_gradient_is_the_documented_one(data, loss):
    X, y = data
    w = np.random.default_rng(2).uniform(0.0, 3.0, len(y))
    est, W1, b1, expected_loss = _one_full_batch_sgd_step(X, y, w, loss, lr=0.1)
    np.testing.assert_allclose(est.model_.weights[0], W1, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(est.model_.biases[1], b1, rtol=1e-5, atol=1e-6)
    assert est.loss_curve_[0] == pytest.approx(expected_loss, rel=1e-5)


def test_weights_in_one_batch_equal_repeated_rows(data):
    """Weight 2 == the row twice, weight 0 == the row absent, when one batch holds all."""
    X, y = data
    w = np.random.default_rng(3).integers(0, 3, len(y))
    rows = np.repeat(np.arange(len(y)), w)
    params = dict(batch_size=1000, epochs=4, optimizer="sgd", learning_rate=0.1)
    weighted = small(**params).fit(X, y, sample_weight=w)
    repeated = small(**params).fit(X[rows], y[rows])
    for a, b in zip(weights_of(weighted), weights_of(repeated)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_unit_weights_give_the_unweighted_model(data):
    X, y = data
    assert_same_weights(small().fit(X, y), small().fit(X, y, sample_weight=np.ones(len(y))))


# -- training loop habits ------------------------------------------------------------------
def test_partial_fit_epochs_equal_fit_epochs(data):
    X, y = data
    once = small(epochs=3).fit(X, y)
    stepwise = small()
    for _ in range(3):
        stepwise.partial_fit(X, y)
    assert stepwise.loss_curve_ == once.loss_curve_
    assert_same_weights(stepwise, once)
    with pytest.raises(ValueError, match="2 output.*fitted with 1"):
        stepwise.partial_fit(X, np.column_stack([y, y]))


def test_early_stopping_scores_r2(data):
    X, y = data
    est = small(epochs=8, early_stopping=True, validation_fraction=0.25, n_iter_no_change=20)
    est.fit(X, y)
    assert len(est.validation_scores_) == 8 == est.n_iter_
    train, val = est._validation_split(y, None, est._seed_)
    assert est.score(X[val], y[val]) == pytest.approx(est.best_validation_score_)


def test_warm_start_continues_exactly(data):
    X, y = data
    once = small(epochs=4).fit(X, y)
    twice = small(epochs=2, warm_start=True).fit(X, y)
    twice.fit(X, y)
    assert twice.loss_curve_ == once.loss_curve_
    assert_same_weights(once, twice)


# -- errors ---------------------------------------------------------------------------------
@pytest.mark.parametrize("make_y,match", [
    (lambda y: y[:-3], "inconsistent numbers of samples"),
    (lambda y: np.where(y > 1, np.nan, y), "NaN"),
    (lambda y: np.where(y > 1, np.inf, y), "infinity"),
    (lambda y: None, "requires y"),
])
def test_bad_targets(data, make_y, match):
    X, y = data
    est = small()
    with pytest.raises(ValueError, match=match):
        est.fit(X, make_y(y))
    assert not hasattr(est, "model_")


@pytest.mark.parametrize("params,match", [
    (dict(loss="huber"), "loss must be one of 'squared_error', 'absolute_error'"),
    (dict(epochs=0), "epochs"),
    (dict(batch_size=2.5), "batch_size"),
    (dict(dropout=1.0), "dropout"),
])
def test_bad_parameters(data, params, match):
    X, y = data
    with pytest.raises(ValueError, match=match):
        small(**params).fit(X, y)


def test_divergence_is_reported(data):
    X, y = data
    with pytest.raises(FloatingPointError, match="diverged.*learning_rate"):
        small(optimizer="sgd", learning_rate=1e6, epochs=5).fit(X, y * 1e3)


def test_coefs_and_intercepts_are_read_only_views_that_predict(data):
    """coefs_ / intercepts_ have scikit-learn's shapes and, run forward by hand
    (relu hidden layers, linear output), give the estimator's predictions."""
    X, y = data
    est = small(hidden_layer_sizes=(12, 7)).fit(X, y)
    coefs, intercepts = est.coefs_, est.intercepts_
    assert [w.shape for w in coefs] == [(X.shape[1], 12), (12, 7), (7, 1)]
    assert [b.shape for b in intercepts] == [(12,), (7,), (1,)]
    for view, weight in zip(coefs, est.model_.weights):
        assert np.shares_memory(view, weight)
        with pytest.raises(ValueError, match="read-only"):
            view[0, 0] = 1.0
    h = X.toarray().astype(np.float64)
    for i, (w, b) in enumerate(zip(coefs, intercepts)):
        h = h @ w + b
        if i < len(coefs) - 1:
            h = np.maximum(h, 0.0)
    np.testing.assert_allclose(h.ravel(), est.predict(X), rtol=1e-4, atol=1e-5)
    with pytest.raises(AttributeError):
        small().coefs_

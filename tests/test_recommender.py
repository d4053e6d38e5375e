"""SparseAutoencoderRecommender: scikit-learn conformance, behaviour and errors."""

import json
import pickle

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils.estimator_checks import parametrize_with_checks

from sparse_deep import SparseAutoencoderRecommender
from sparse_deep.estimators import _base
from sparse_deep.metrics import make_recommendation_scorer, recall_at_k
from sparse_deep.network.samples import movielens_config

MOVIELENS_CONFIG = movielens_config()

SMALL = dict(hidden_layer_sizes=(16,), epochs=8, batch_size=16, random_state=0)


def small(**kw):
    return SparseAutoencoderRecommender(**{**SMALL, **kw})


def interactions(n_users=60, n_items=25, density=0.15, seed=0):
    """Users drawn from two tastes (first / second half of the items), so that
    there is structure to learn, with no empty row."""
    rng = np.random.default_rng(seed)
    half = n_items // 2
    taste = rng.random(n_users) < 0.5
    p = np.where(taste[:, None], np.r_[np.full(half, 3 * density), np.full(n_items - half, 0.02)],
                 np.r_[np.full(half, 0.02), np.full(n_items - half, 3 * density)])
    dense = rng.random((n_users, n_items)) < p
    dense[np.arange(n_users), rng.integers(0, n_items, n_users)] = True
    return sp.csr_matrix(dense.astype(np.float32))


@pytest.fixture(scope="module")
def data():
    return interactions()


@pytest.fixture(scope="module")
def fitted(data):
    return small().fit(data)


# -- scikit-learn conformance -----------------------------------------------------
EXPECTED_FAILED_CHECKS = {
    "check_estimator_sparse_array": (
        "the check assumes an estimator with predict_proba is a classifier (it reads "
        "classifier_tags); ours returns per-item scores. Every sparse format is tested in "
        "test_every_sparse_format_gives_the_same_model"
    ),
    "check_estimator_sparse_matrix": "same as check_estimator_sparse_array",
}


@parametrize_with_checks(
    [SparseAutoencoderRecommender(hidden_layer_sizes=(8,), epochs=3, random_state=0)],
    expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS,
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo", "lil", "dok", "bsr", "csr64", "dense"])
def test_every_sparse_format_gives_the_same_model(data, fmt):
    reference = small().fit(data).recommend(data, k=5)
    if fmt == "dense":
        X = data.toarray()
    elif fmt == "csr64":
        X = data.copy()
        X.indices, X.indptr = X.indices.astype(np.int64), X.indptr.astype(np.int64)
    else:
        X = data.asformat(fmt)
    np.testing.assert_array_equal(small().fit(X).recommend(X, k=5), reference)


def test_pipeline_clone_and_pickle(data):
    pipe = make_pipeline(FunctionTransformer(lambda X: (X > 0).astype(np.float32),
                                             accept_sparse=True), small())
    pipe.fit(data)
    assert pipe.predict(data).shape == data.shape
    copy = clone(pipe.steps[-1][1])
    assert copy.get_params() == small().get_params() and not hasattr(copy, "model_")
    est = small().fit(data)
    again = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(again.predict_proba(data), est.predict_proba(data))
    np.testing.assert_array_equal(again.recommend(data, k=7), est.recommend(data, k=7))


def test_grid_search_over_hidden_size_and_learning_rate(data):
    history, held_out = _split(data)
    grid = GridSearchCV(
        small(epochs=4),
        {"hidden_layer_sizes": [(8,), (16,)], "learning_rate": [1e-3, 1e-2]},
        cv=2,
    )
    grid.fit(history, held_out)
    assert set(grid.best_params_) == {"hidden_layer_sizes", "learning_rate"}
    assert np.all(np.isfinite(grid.cv_results_["mean_test_score"]))
    scored = GridSearchCV(small(epochs=4), {"learning_rate": [1e-3, 1e-2]}, cv=2,
                          scoring=make_recommendation_scorer("ndcg", k=5))
    scored.fit(history, held_out)
    assert 0.0 <= scored.best_score_ <= 1.0


def _split(X, seed=1):
    """Hide one item per user: (history, held_out)."""
    rng = np.random.default_rng(seed)
    X = X.tocsr()
    hidden = np.array([rng.choice(X.indices[X.indptr[i]:X.indptr[i + 1]])
                       for i in range(X.shape[0])])
    held = sp.csr_matrix((np.ones(X.shape[0], np.float32), (np.arange(X.shape[0]), hidden)),
                         shape=X.shape)
    history = (X - held.multiply(X)).tocsr()
    history.eliminate_zeros()
    return history, held


# -- behaviour ----------------------------------------------------------------------
def test_same_random_state_gives_identical_weights(data):
    a, b = small().fit(data).model_, small().fit(data).model_
    for wa, wb in zip(a.weights + list(a.biases.values()), b.weights + list(b.biases.values())):
        np.testing.assert_array_equal(wa, wb)
    c = small(random_state=1).fit(data).model_
    assert not np.array_equal(a.weights[0], c.weights[0])


def test_learns_structure_better_than_popularity(data):
    history, held = _split(data)
    est = small(epochs=40).fit(history)
    popularity = np.argsort(-np.asarray(history.sum(axis=0)).ravel(), kind="stable")
    pop = np.array([[i for i in popularity if history[u, i] == 0][:5]
                    for u in range(history.shape[0])])
    assert recall_at_k(held, est.recommend(history, k=5)) > recall_at_k(held, pop) + 0.1


def test_recommend_excludes_seen_and_pads(fitted, data):
    ids, scores = fitted.recommend(data, k=data.shape[1], return_scores=True)
    assert ids.shape == scores.shape == data.shape and ids.dtype == np.int64
    for u in range(data.shape[0]):
        seen = set(data[u].indices)
        valid = ids[u][ids[u] >= 0]
        assert not seen & set(valid)
        assert len(valid) == data.shape[1] - len(seen)
        assert np.all(np.diff(scores[u][: len(valid)]) <= 0)
        assert np.all(ids[u][len(valid):] == -1) and np.all(np.isneginf(scores[u][len(valid):]))


def test_recommend_any_k_without_exclusion_ranks_by_predict_proba(fitted, data):
    proba = fitted.predict_proba(data)
    ids = fitted.recommend(data, k=data.shape[1], exclude_seen=False)
    np.testing.assert_array_equal(np.sort(ids, axis=1), np.tile(np.arange(data.shape[1]),
                                                                (data.shape[0], 1)))
    expected = np.argsort(-proba, axis=1, kind="stable")
    np.testing.assert_array_equal(ids, expected)


def test_rows_never_seen_in_training(fitted):
    new = interactions(n_users=7, seed=9)
    assert fitted.recommend(new, k=3).shape == (7, 3)
    empty = sp.csr_matrix((2, new.shape[1]), dtype=np.float32)  # users with no history yet
    assert np.all(fitted.recommend(empty, k=4) >= 0)


def test_predict_proba_transform_predict_and_score(fitted, data, monkeypatch):
    proba = fitted.predict_proba(data)
    assert proba.shape == data.shape
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    monkeypatch.setattr(_base, "INFERENCE_CHUNK", 7)  # many chunks, uneven last one
    # BLAS blocks a 7-row product differently from a 60-row one: equal to float32 rounding.
    np.testing.assert_allclose(fitted.predict_proba(data), proba, rtol=1e-6, atol=1e-9)
    assert fitted.transform(data).shape == (data.shape[0], 16)
    predicted = fitted.predict(data)
    assert sp.issparse(predicted) and predicted.shape == data.shape
    np.testing.assert_array_equal(predicted.getnnz(axis=1), fitted.k)
    assert predicted.multiply(data).nnz == 0
    history, held = _split(data)
    expected = recall_at_k(held, fitted.recommend(history, k=fitted.k))
    assert fitted.score(history, held) == pytest.approx(expected)


def test_network_override_trains_dsstne_movielens_config(data, tmp_path):
    est = small(network=MOVIELENS_CONFIG, epochs=3).fit(data)
    assert est.network_["Layers"][0]["N"] == data.shape[1]
    assert est.network_["Layers"][1]["N"] == 128
    assert est.network_["ErrorFunction"] == "ScaledMarginalCrossEntropy"
    path = tmp_path / "config.json"
    path.write_text(json.dumps(MOVIELENS_CONFIG))
    from_file = small(network=str(path), epochs=3).fit(data)
    np.testing.assert_array_equal(from_file.predict_proba(data), est.predict_proba(data))


def test_separate_targets_of_another_width(data):
    y = interactions(n_users=data.shape[0], n_items=9, seed=4)
    est = small().fit(data, y)
    assert est.n_items_ == 9 and est.predict_proba(data).shape == (data.shape[0], 9)
    assert est.recommend(data, k=9, exclude_seen=False).shape == (data.shape[0], 9)
    with pytest.raises(ValueError, match="exclude_seen"):
        est.recommend(data, k=3)


def test_learning_rate_decays_by_epoch(data):
    """Epoch e steps at learning_rate / (1 + learning_rate_decay * e): under
    SGD without penalties, an epoch at decay d equals, step for step, an epoch
    at a rate divided by (1 + d * e). Two epochs at decay 1 equal one epoch at
    the full rate followed by one at half of it."""
    sgd = dict(optimizer="sgd", input_dropout=0.0, shuffle=False)
    decayed = small(**sgd, learning_rate=0.4, learning_rate_decay=1.0, epochs=2).fit(data)
    halves = small(**sgd, learning_rate=0.4, learning_rate_decay=0.0, epochs=1).fit(data)
    halves.set_params(learning_rate=0.2, warm_start=True).fit(data)
    for a, b in zip(decayed.model_.weights, halves.model_.weights):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_warm_start_continues_exactly_like_one_longer_run(data):
    once = small(epochs=6).fit(data)
    twice = small(epochs=3, warm_start=True).fit(data)
    twice.fit(data)
    assert twice.n_epochs_ == 6 and len(twice.loss_curve_) == 6
    for a, b in zip(once.model_.weights, twice.model_.weights):
        np.testing.assert_array_equal(a, b)
    assert once.loss_curve_ == twice.loss_curve_


def test_partial_fit_epochs_equal_fit_epochs(data):
    once = small(epochs=4).fit(data)
    stepwise = small()
    for _ in range(4):
        stepwise.partial_fit(data)
    assert stepwise.n_epochs_ == 4 and stepwise.loss_curve_ == once.loss_curve_
    for a, b in zip(once.model_.weights, stepwise.model_.weights):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(once.recommend(data, k=5), stepwise.recommend(data, k=5))


def test_partial_fit_checks_widths(data):
    est = small().partial_fit(data)
    with pytest.raises(ValueError, match="25 features"):
        est.partial_fit(data[:, :20])
    with pytest.raises(ValueError, match="y has 3 columns but the model was fitted with 25"):
        est.partial_fit(data, data[:, :3])


def _kept(est):
    return getattr(est, "_kept_training_runner", None)


def test_training_buffers_kept_between_calls_change_nothing(data, monkeypatch):
    """Kept buffers (warm_start, partial_fit) give the same model as buffers
    allocated afresh for every call, also when the next call's batches are
    too large for them or the model was changed in between."""
    long_rows = interactions(n_users=60, n_items=25, density=0.3, seed=3)
    models = []
    for keep in (True, False):
        monkeypatch.setattr(_base, "KEEP_TRAINING_BUFFERS_BYTES", 1 << 30 if keep else 0)
        est = small(epochs=2, warm_start=True).fit(data)
        kept = _kept(est)
        assert (kept is not None) == keep
        est.fit(data)
        assert (_kept(est) is kept) if keep else _kept(est) is None  # used again
        est.partial_fit(long_rows)  # larger batches: new buffers
        assert (_kept(est) is not kept) if keep else _kept(est) is None
        est.model_.weights[0][:3] = 0.5  # seen by the next call
        est.partial_fit(data)
        models.append(est)
    for a, b in zip(models[0].model_.weights, models[1].model_.weights):
        np.testing.assert_array_equal(a, b)
    assert models[0].loss_curve_ == models[1].loss_curve_


def test_a_runner_not_kept_is_closed_when_its_call_ends(data, monkeypatch):
    """A training call that keeps no runner drops its buffers when it ends,
    so that nothing still holding the runner (a reference cycle) keeps its
    memory; a kept runner keeps them. The model is whole either way."""
    runners = []
    keeps_runner = SparseAutoencoderRecommender._keeps_runner

    def spy(session, keep):
        runners.append(session.runner)
        return keeps_runner(session, keep)

    monkeypatch.setattr(SparseAutoencoderRecommender, "_keeps_runner", staticmethod(spy))
    for warm_start, limit in [(False, 1 << 30), (True, 0), (True, 1 << 30)]:
        monkeypatch.setattr(_base, "KEEP_TRAINING_BUFFERS_BYTES", limit)
        est = small(epochs=1, warm_start=warm_start).fit(data)
        closed = runners[-1].weight_grads == [] and runners[-1].pre == {}
        assert closed == (not (warm_start and limit))
        assert (_kept(est) is None) == closed
        assert np.isfinite(est.predict_proba(data[:3])).all()


def test_training_buffers_are_not_kept_without_warm_start_nor_pickled(data):
    assert _kept(small(epochs=1).fit(data)) is None
    est = small(epochs=1, warm_start=True).fit(data)
    copy = pickle.loads(pickle.dumps(est))
    assert _kept(est) is not None and _kept(copy) is None
    est.fit(data)
    copy.fit(data)
    for a, b in zip(est.model_.weights, copy.model_.weights):
        np.testing.assert_array_equal(a, b)


def test_loss_decreases(data):
    curve = small(epochs=20).fit(data).loss_curve_
    assert curve[-1] < curve[0]


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "nesterov", "adagrad", "rmsprop",
                                       "adadelta", "adam"])
def test_every_optimizer_trains(data, optimizer):
    # The full SoftMax output: its loss has no sampling noise to hide a small descent.
    lr = {"sgd": 0.5, "momentum": 0.1, "nesterov": 0.1, "adagrad": 0.05}.get(optimizer, 1e-2)
    est = small(optimizer=optimizer, learning_rate=lr, epochs=10, loss="cross_entropy").fit(data)
    assert est.loss_curve_[-1] < est.loss_curve_[0]


# -- errors -------------------------------------------------------------------------
@pytest.mark.parametrize("bad,match", [
    (np.nan, "NaN"), (np.inf, "infinity"), (-1.0, "Negative values"),
])
def test_bad_values_rejected_before_training(data, bad, match):
    X = data.copy()
    X.data[3] = bad
    est = small()
    with pytest.raises(ValueError, match=match):
        est.fit(X)
    assert not hasattr(est, "model_")
    with pytest.raises(ValueError, match=match):
        small().fit(data, X)


@pytest.mark.parametrize("params,match", [
    (dict(activation="swish"), "unknown activation 'swish'.*Sigmoid"),
    (dict(loss="mse"), "unknown error function 'mse'.*CrossEntropy"),
    (dict(optimizer="lbfgs"), "unknown optimizer 'lbfgs'.*adam"),
    (dict(loss="cross_entropy", output_activation="tanh"), "CrossEntropy.*Sigmoid or SoftMax"),
    (dict(output_activation="tanh"), "'SampledSoftmax' trains the scores.*use SoftMax or Linear"),
    (dict(n_negatives=0), "n_negatives must be one of 'auto' or a positive integer; got 0"),
    (dict(n_negatives=26), r"from 1 to the number of items \(25\).*got 26"),
    (dict(n_negatives=2.5), "n_negatives must be one of 'auto' or a positive integer"),
    (dict(negative_sampler="zipf"), "unknown negative sampler 'zipf'; expected one of: Uniform, "
                                    "Popularity"),
    (dict(scoring="euclid"), "unknown scoring 'euclid'; expected one of: Dot, Cosine"),
    (dict(temperature=0.0), "temperature must be one of 'auto' or a number in"),
    (dict(temperature="hot"),
     r"temperature must be one of 'auto' or a number in \(0.0, inf\); got 'hot'"),
    (dict(loss="cosine_contrastive", margin=1.0), r"margin must be a number in \[-1.0, 1.0\)"),
    (dict(loss="cosine_contrastive", negative_weight=0.0), "negative_weight must be a number"),
    (dict(loss="bpr", scoring="dot", output_activation="softmax"), "use Sigmoid or Linear"),
    (dict(early_stopping=True, validation_fraction=1.0), "validation_fraction"),
    (dict(early_stopping=True, n_iter_no_change=0), "n_iter_no_change"),
    (dict(hidden_layer_sizes=(0,)), "hidden_layer_sizes"),
    (dict(hidden_layer_sizes=()), r"sequence of positive integers \(at least 1\); got \(\)"),
    (dict(learning_rate=0.0), "learning_rate"),
    (dict(batch_size=0), "batch_size"),
    (dict(epochs=1.5), "epochs"),
    (dict(input_dropout=1.0), "input_dropout"),
    (dict(dropout=-0.1), "dropout"),
    (dict(device="tpu"), "device"),
    (dict(network={"Layers": [], "Bogus": 1}), "Bogus"),
    (dict(network="{ not json"), "JSON"),
    (dict(network={"Version": 0.9, "Layers": [{"Kind": "Input", "N": "auto"},
                                               {"Kind": "Hidden", "N": 4, "Colour": "red"},
                                               {"Kind": "Output", "N": "auto"}]}), "Colour"),
])
def test_bad_parameters_rejected_before_training(data, params, match):
    est = small(**params)
    with pytest.raises(ValueError, match=match):
        est.fit(data)
    assert not hasattr(est, "model_")


def test_bad_shapes(fitted, data):
    with pytest.raises(ValueError, match="25 features"):
        fitted.predict_proba(data[:, :20])
    with pytest.raises(ValueError, match="rows"):
        small().fit(data, data[:10])
    with pytest.raises(ValueError, match="no interactions"):
        small().fit(sp.csr_matrix(data.shape, dtype=np.float32))
    with pytest.raises(ValueError, match="2D"):
        small().fit(np.ones(5))


@pytest.mark.parametrize("k,error", [(0, ValueError), (26, ValueError), (2.5, TypeError),
                                     (True, TypeError)])
def test_bad_k(fitted, data, k, error):
    with pytest.raises(error, match="k must"):
        fitted.recommend(data, k=k)


def test_unfitted_estimator_says_so(data):
    from sklearn.exceptions import NotFittedError
    with pytest.raises(NotFittedError):
        small().recommend(data)


def test_dense_and_lazy_input_updates(data):
    """Under SGD without penalties an absent row has a zero step, so both update
    modes must agree bit for bit; with an L2 penalty only the dense mode also
    decays the rows of items no batch contains."""
    X = sp.hstack([data, sp.csr_matrix((data.shape[0], 3), dtype=np.float32)]).tocsr()
    sgd = dict(optimizer="sgd", learning_rate=0.5, epochs=3, learning_rate_decay=0.0)
    dense = small(**sgd, sparse_input_update=False).fit(X).model_.weights[0]
    lazy = small(**sgd, sparse_input_update=True).fit(X).model_.weights[0]
    np.testing.assert_array_equal(dense, lazy)
    unseen = slice(data.shape[1], None)
    dense_fit = small(**sgd, l2=0.1, sparse_input_update=False).fit(X)
    lazy = small(**sgd, l2=0.1, sparse_input_update=True).fit(X).model_.weights[0]
    start = initial_input_weights(dense_fit)
    steps = 3 * -(-X.shape[0] // dense_fit.batch_size)
    np.testing.assert_array_equal(lazy[unseen], start[unseen])
    np.testing.assert_allclose(dense_fit.model_.weights[0][unseen],
                               start[unseen] * (1 - 0.5 * 0.1) ** steps, rtol=1e-5)


def initial_input_weights(est):
    """The input weights a fitted estimator started from (same seed, no training)."""
    from sparse_deep.engine.model import Model
    return Model(est.model_.spec).initialize(est._seed_).weights[0]


# -- sampled output layers and early stopping ----------------------------------------
SAMPLED_VARIANTS = [
    dict(),  # the defaults: SampledSoftmax, cosine scores, popularity sampler
    dict(scoring="dot", temperature=1.0, negative_sampler="uniform", n_negatives=7,
         learning_rate=3e-2),
    dict(loss="cosine_contrastive", margin=0.3, negative_weight=5.0),
    dict(loss="bpr", scoring="dot", n_negatives=5),
    dict(loss="cross_entropy"),  # the full SoftMax output layer, one parameter away
]


@pytest.mark.parametrize("params", SAMPLED_VARIANTS, ids=["default", "dot", "ccl", "bpr", "full"])
def test_each_output_variant_learns_and_continues_bit_exactly(data, params, tmp_path):
    from sparse_deep.io import load_model, save_model

    history, held = _split(data)
    once = small(epochs=6, **params).fit(history)
    assert recall_at_k(held, once.recommend(history, k=5)) > 0.3
    stepwise = small(epochs=3, warm_start=True, **params).fit(history)
    save_model(stepwise, tmp_path / "model.nc")
    resumed = load_model(tmp_path / "model.nc")
    for model in (stepwise, resumed):
        model.fit(history)
        assert model.loss_curve_ == once.loss_curve_
        for a, b in zip(once.model_.weights + list(once.model_.biases.values()),
                        model.model_.weights + list(model.model_.biases.values())):
            np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(resumed.recommend(history, k=5), once.recommend(history, k=5))


def test_a_sampled_step_updates_only_the_rows_it_scored(data):
    """One step (the whole data set in one batch, three negatives): the
    item-major output weight changes in the rows of the items held by some
    row or drawn as a negative, and nowhere else."""
    from sparse_deep.engine.model import Model
    from sparse_deep.engine.sampling import NegativeSampler, item_counts

    keep = np.ones(20, dtype=np.float32)
    keep[3:6] = 0  # three items no row holds
    X = (data[:, :20] @ sp.diags(keep)).tocsr()
    X.eliminate_zeros()
    X = X[np.diff(X.indptr) > 0]
    est = small(epochs=1, batch_size=X.shape[0], n_negatives=3, negative_sampler="uniform",
                input_dropout=0.0).fit(X)
    weights = est.model_.weights[-1]
    assert weights.shape == (X.shape[1], 16)  # one row per item
    initial = Model(est.model_.spec, np.float32).initialize(est._seed_).weights[-1]
    negatives, _ = NegativeSampler(est.model_.output.sampling, item_counts(X)).draw(est._seed_, 1)
    touched = set(X.indices) | set(negatives)
    for item in range(X.shape[1]):
        changed = not np.array_equal(weights[item], initial[item])
        assert changed == (item in touched), item


def test_early_stopping_restores_the_best_epoch(data):
    """A learning rate high enough that validation NDCG peaks early and then
    falls: the model kept is the best epoch's, bit for bit what a plain fit of
    that many epochs on the same training split gives."""
    from sklearn.utils import check_random_state

    from sparse_deep.datasets import per_user_split

    est = small(early_stopping=True, validation_fraction=0.3, n_iter_no_change=3, epochs=40,
                learning_rate=0.3).fit(data)
    scores = est.validation_scores_
    best = int(np.argmax(scores)) + 1
    assert est.n_epochs_ == len(scores) < 40  # stopped early
    assert best < len(scores) and est.best_validation_score_ == max(scores)
    seed = int(check_random_state(0).randint(0, 2**31 - 1))
    kept, _ = per_user_split(data, 0.3, random_state=seed)
    reference = small(epochs=best, learning_rate=0.3).fit(kept)
    for a, b in zip(est.model_.weights + list(est.model_.biases.values()),
                    reference.model_.weights + list(reference.model_.biases.values())):
        np.testing.assert_array_equal(a, b)


def test_early_stopping_needs_items_to_hold_out_and_refuses_partial_fit(data):
    one_each = sp.identity(30, format="csr", dtype=np.float32)
    with pytest.raises(ValueError, match="leaves no item to validate on"):
        small(early_stopping=True).fit(one_each)
    with pytest.raises(ValueError, match="partial_fit does not support early_stopping"):
        small(early_stopping=True).partial_fit(data)
    est = small(early_stopping=False).fit(data)
    assert est.validation_scores_ is None and est.best_validation_score_ is None


# -- similar items and users ---------------------------------------------------------
def _naive_cosine_top_k(vectors, queries, k):
    """Every pair's cosine in float64, sorted; the query itself left out."""
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-30)
    out = []
    for q in queries:
        sims = unit @ unit[q]
        order = [i for i in np.argsort(-sims, kind="stable") if i != q]
        out.append(order[:k])
    return np.array(out)


@pytest.mark.parametrize("params", [dict(), dict(loss="cross_entropy")],
                         ids=["sampled", "full"])
def test_similar_items_are_the_nearest_output_vectors(data, params):
    est = small(**params).fit(data)
    vectors = est.item_vectors_
    assert vectors.shape == (data.shape[1], 16)
    queries = np.array([0, 3, 3, 24])
    ids, scores = est.similar_items(queries, k=5, return_scores=True)
    np.testing.assert_array_equal(ids, _naive_cosine_top_k(vectors.astype(np.float64),
                                                           queries, 5))
    assert not np.any(ids == queries[:, None])
    assert np.all(np.diff(scores, axis=1) <= 1e-6)
    one = est.similar_items(3, k=5)
    np.testing.assert_array_equal(one, ids[1])
    assert est.similar_items([1], k=data.shape[1] - 1).shape == (1, data.shape[1] - 1)


def test_similar_users_compare_hidden_embeddings(data):
    est = small().fit(data)
    ids, scores = est.similar_users(data, k=4, return_scores=True)
    expected = _naive_cosine_top_k(est.transform(data).astype(np.float64),
                                   np.arange(data.shape[0]), 4)
    np.testing.assert_array_equal(ids, expected)
    assert not np.any(ids == np.arange(data.shape[0])[:, None])


@pytest.mark.parametrize("call,match", [
    (lambda est, X: est.similar_items(25), r"item ids must be in \[0, 25\); got \[25\]"),
    (lambda est, X: est.similar_items([-1, 2]), r"got \[-1\]"),
    (lambda est, X: est.similar_items([0.5]), "integers"),
    (lambda est, X: est.similar_items([]), "1-D sequence"),
    (lambda est, X: est.similar_items(0, k=25), "k must be between 1 and"),
    (lambda est, X: est.similar_users(X[:1]), "at least 2"),
    (lambda est, X: est.similar_users(X, k=60), "k must be between 1 and"),
])
def test_similarity_refuses_bad_queries(fitted, data, call, match):
    with pytest.raises(ValueError, match=match):
        call(fitted, data)


# -- candidates, global filters, one history -------------------------------------------
def _naive_recommend(est, X, k, items=None, banned=()):
    """Every item's score; the seen, banned and non-candidate ones removed; sorted."""
    scores = est.predict_proba(X).astype(np.float64)
    allowed = np.ones(scores.shape[1], bool) if items is None else np.isin(
        np.arange(scores.shape[1]), items)
    allowed[list(banned)] = False
    out = []
    for row, seen in zip(scores, X.toarray() > 0):
        order = [i for i in np.argsort(-row, kind="stable") if allowed[i] and not seen[i]]
        out.append((order + [-1] * k)[:k])
    return np.array(out)


def test_recommend_among_candidates_and_without_filtered_items(fitted, data):
    X = data[:12]
    candidates = [20, 1, 5, 7, 3, 9, 11, 2]
    ids = fitted.recommend(X, k=4, items=candidates, filter_items=[9, 2])
    np.testing.assert_array_equal(ids, _naive_recommend(fitted, X, 4, candidates, [9, 2]))
    banned = fitted.recommend(X, k=6, filter_items=[0, 24, 13])
    np.testing.assert_array_equal(banned, _naive_recommend(fitted, X, 6, None, [0, 24, 13]))
    # Candidates' scores are the same scores recommend returns without them.
    _, full = fitted.recommend(X, k=25, exclude_seen=False, return_scores=True)
    top, some = fitted.recommend(X, k=3, exclude_seen=False, items=candidates,
                                 return_scores=True)
    assert np.all(np.isin(some, full))


def test_one_history_as_item_ids_gives_one_row_of_results(fitted, data):
    history = data[5].indices
    ids, scores = fitted.recommend(history, k=5, return_scores=True)
    two_d, two_d_scores = fitted.recommend(data[5], k=5, return_scores=True)
    np.testing.assert_array_equal(ids, two_d[0])
    np.testing.assert_array_equal(scores, two_d_scores[0])
    assert fitted.recommend([], k=3).shape == (3,)  # a new user with no history


@pytest.mark.parametrize("kwargs,match", [
    (dict(items=[1, 1, 2]), "items lists an item id more than once"),
    (dict(items=[30]), r"items: item ids must be in \[0, 25\)"),
    (dict(items=[1, 2], k=3), r"k must be between 1 and the number of items \(2\)"),
    (dict(filter_items=[-3]), r"filter_items: item ids must be in \[0, 25\); got \[-3\]"),
    (dict(filter_items=[[1, 2]]), "1-D sequence"),
])
def test_bad_candidates_and_filters_are_refused(fitted, data, kwargs, match):
    with pytest.raises(ValueError, match=match):
        fitted.recommend(data[:3], **{"k": 2, **kwargs})


def test_transform_names_its_columns(fitted, data):
    names = fitted.get_feature_names_out()
    assert names.tolist() == [f"sparseautoencoderrecommender{i}" for i in range(16)]
    assert clone_fitted(fitted).set_output(transform="default").transform(data).shape == (
        data.shape[0], 16)


def test_transform_output_can_be_a_dataframe(fitted, data):
    names = fitted.get_feature_names_out()
    pandas = pytest.importorskip("pandas")
    frame = clone_fitted(fitted).set_output(transform="pandas").transform(data[:4])
    assert isinstance(frame, pandas.DataFrame) and list(frame.columns) == names.tolist()


def clone_fitted(est):
    import copy

    return copy.deepcopy(est)


def test_grid_search_without_y_scores_held_out_items_of_unseen_users(data):
    from sklearn.model_selection import GridSearchCV, KFold

    grid = GridSearchCV(small(), {"learning_rate": [3e-3, 1e-2]},
                        scoring=make_recommendation_scorer("ndcg", k=5),
                        cv=KFold(3, shuffle=True, random_state=0))
    grid.fit(data)
    assert np.all(np.isfinite(grid.cv_results_["mean_test_score"]))
    # The refit is a plain fit of the chosen parameters on the data, nothing else.
    plain = small(**grid.best_params_).fit(data)
    for a, b in zip(grid.best_estimator_.model_.weights, plain.model_.weights):
        np.testing.assert_array_equal(a, b)


def test_similar_movies_on_movielens_are_ones_a_reader_would_accept():
    """examples/similar_movies.py on the real data: with the defaults, Star
    Wars's nearest movie is Return of the Jedi (docs/quickstart.md), and
    evaluate's NDCG@20 on the test split is that of the README."""
    from pathlib import Path

    from sparse_deep.datasets import load_movielens_100k
    from sparse_deep.metrics import evaluate

    data = Path(__file__).resolve().parents[2] / "shared" / "data"
    if not (data / "ml-100k" / "ml-100k.item").is_file():
        pytest.skip("needs ../shared/data/ml-100k beside the repository")
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "similar_movies", Path(__file__).resolve().parents[1] / "examples" / "similar_movies.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    titles = example.movie_titles(str(data))
    train, test = load_movielens_100k(str(data))
    model = SparseAutoencoderRecommender(random_state=0).fit(train)
    star_wars = next(i for i, t in titles.items() if t.startswith("Star Wars (1977"))
    neighbours = [titles[int(i)] for i in model.similar_items(star_wars, k=5)]
    assert neighbours[0].startswith("Return of the Jedi"), neighbours
    assert evaluate(model, train, test, k=20)[20]["ndcg"] > 0.40

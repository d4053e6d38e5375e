"""UserHoldoutSplit as cv=, its scorer, and RecommenderPipeline."""

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, cross_validate
from sklearn.preprocessing import FunctionTransformer, Normalizer

from sparse_deep import SparseAutoencoderRecommender
from sparse_deep.datasets import per_user_split
from sparse_deep.model_selection import UserHoldoutSplit
from sparse_deep.pipeline import RecommenderPipeline, make_recommender_pipeline

from .test_recommender import interactions, small

FITTED_ON = []  # every matrix a SpyRecommender was fitted on, in order


class SpyRecommender(SparseAutoencoderRecommender):
    """The recommender, recording what reaches ``fit``."""

    def fit(self, X, y=None):
        FITTED_ON.append((sp.csr_matrix(X, copy=True), y))
        return super().fit(X, y)


def _entries(X):
    X = sp.coo_matrix(X)
    return set(zip(X.row.tolist(), X.col.tolist()))


@pytest.fixture(scope="module")
def data():
    return interactions(n_users=60, n_items=25)


def test_folds_partition_the_splittable_users_and_train_on_the_rest(data):
    X = data.tolil()
    X[0, :] = 0
    X[1, :] = 0
    X[1, 3] = 1          # user 1 has one interaction: trains, never scored
    X = X.tocsr()
    cv = UserHoldoutSplit(n_splits=4, random_state=0)
    folds = list(cv.split(X))
    assert len(folds) == cv.get_n_splits() == 4
    tested = np.concatenate([test for _, test in folds])
    assert sorted(tested.tolist()) == list(range(2, 60))
    for train, test in folds:
        assert np.intersect1d(train, test).size == 0
        assert np.union1d(train, test).size == 60
        assert {0, 1} <= set(train.tolist())
    again = list(UserHoldoutSplit(n_splits=4, random_state=0).split(X))
    for (a, b), (c, d) in zip(folds, again):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, d)


def test_search_never_fits_on_a_scored_or_test_interaction(data):
    train, test = per_user_split(data, 0.2, random_state=3)
    cv = UserHoldoutSplit(n_splits=3, holdout=0.25, random_state=0)
    FITTED_ON.clear()
    search = GridSearchCV(SpyRecommender(**{**dict(hidden_layer_sizes=(8,), epochs=3,
                                                   batch_size=16, random_state=0)}),
                          {"learning_rate": [3e-3, 1e-2]}, cv=cv,
                          scoring=cv.scorer("ndcg", k=5))
    search.fit(train)
    assert len(FITTED_ON) == 2 * 3 + 1
    test_entries = _entries(test)
    folds = list(cv.split(train))
    for i, (X, y) in enumerate(FITTED_ON):
        assert y is None
        rows = folds[i % 3][0] if i < 6 else np.arange(train.shape[0])
        # Each fold fits exactly the other folds' users; the refit, the training matrix.
        assert X.shape == (rows.size, train.shape[1]) and (X != train[rows]).nnz == 0
        in_original_rows = {(int(rows[r]), c) for r, c in _entries(X)}
        assert not in_original_rows & test_entries    # the test set never reaches fit
        if i < 6:
            assert not set(rows.tolist()) & set(folds[i % 3][1].tolist())
    assert 0.0 <= search.best_score_ <= 1.0


def test_scorer_scores_the_held_out_items_of_the_splitters_rule(data):
    cv = UserHoldoutSplit(n_splits=3, holdout=0.25, random_state=5)
    model = small().fit(data)
    _, test = next(iter(cv.split(data)))
    history, held = cv.hold_out(data[test])
    assert (history + held != data[test]).nnz == 0
    assert _entries(history).isdisjoint(_entries(held))
    from sparse_deep.metrics import ndcg_at_k

    expected = ndcg_at_k(held, model.recommend(history, k=5), k=5)
    assert cv.scorer("ndcg", k=5)(model, data[test]) == pytest.approx(expected)


def test_chronological_hold_out_takes_each_users_latest_items(data):
    rng = np.random.default_rng(0)
    when = data.copy()
    when.data = rng.permutation(when.nnz).astype(np.float64) + 1
    cv = UserHoldoutSplit(n_splits=3, n_last=2, order=when, random_state=0)
    results = cross_validate(small(epochs=2), data, cv=cv, scoring=cv.scorer("recall", k=5))
    assert np.all((0 <= results["test_score"]) & (results["test_score"] <= 1))
    for _, test in cv.split(data):
        history, held = cv.hold_out(data[test])
        for row in range(len(test)):
            times = when[test[row]]
            cut = np.sort(times.data)[-2] if times.nnz > 2 else np.inf
            latest = set(times.indices[times.data >= cut].tolist())
            assert set(held[row].indices.tolist()) == latest
            assert set(history[row].indices.tolist()) == set(times.indices.tolist()) - latest


@pytest.mark.parametrize("kwargs, message", [
    (dict(n_splits=1), "n_splits must be an integer of at least 2"),
    (dict(holdout=0), r"holdout must be a share .* in \(0, 1\)"),
    (dict(holdout=1.0), r"holdout must be a share .* in \(0, 1\)"),
    (dict(holdout=True), r"holdout must be a share .* in \(0, 1\)"),
    (dict(n_last=0, order=sp.csr_matrix((2, 2))), "n_last must be a positive integer"),
    (dict(n_last=1), "needs order="),
])
def test_bad_parameters_are_named(data, kwargs, message):
    with pytest.raises(ValueError, match=message):
        list(UserHoldoutSplit(**kwargs).split(data))


def test_bad_inputs_are_named(data):
    with pytest.raises(ValueError, match="needs at least n_splits=3 users with two or more"):
        list(UserHoldoutSplit().split(sp.eye(5, format="csr")))
    with pytest.raises(TypeError, match="must be a scipy sparse matrix"):
        list(UserHoldoutSplit().split(data.toarray()))
    cv = UserHoldoutSplit(n_last=1, order=sp.csr_matrix((3, 3)))
    with pytest.raises(ValueError, match="order must have the shape of X"):
        list(cv.split(data))
    cv = UserHoldoutSplit(n_last=1, order=data)
    list(cv.split(data))
    with pytest.raises(ValueError, match="not such a fold"):
        cv.hold_out(data[:7])


def test_pipeline_recommends_through_its_steps(data):
    pipe = RecommenderPipeline([("norm", Normalizer()), ("model", small())]).fit(data)
    prepared = pipe[:-1].transform(data[:9])
    np.testing.assert_array_equal(pipe.recommend(data[:9], k=4, filter_items=[0, 1]),
                                  pipe[-1].recommend(prepared, k=4, filter_items=[0, 1]))
    np.testing.assert_array_equal(pipe.similar_users(data[:9], k=3),
                                  pipe[-1].similar_users(prepared, k=3))
    np.testing.assert_array_equal(pipe.similar_items([2, 5], k=3),
                                  pipe[-1].similar_items([2, 5], k=3))
    made = make_recommender_pipeline(FunctionTransformer(accept_sparse=True), small())
    assert [name for name, _ in made.steps] == ["functiontransformer",
                                                 "sparseautoencoderrecommender"]
    cv = UserHoldoutSplit(n_splits=2, random_state=0)
    search = GridSearchCV(made, {"sparseautoencoderrecommender__epochs": [2, 4]}, cv=cv,
                          scoring=cv.scorer("ndcg", k=5)).fit(data)
    assert isinstance(search.best_estimator_, RecommenderPipeline)
    assert search.best_estimator_.recommend(data[:3], k=2).shape == (3, 2)
    assert isinstance(clone(pipe), RecommenderPipeline)

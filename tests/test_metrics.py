import math

import numpy as np
import pytest
import scipy.sparse as sp

from sparse_deep.metrics import (
    make_recommendation_scorer,
    map_at_k,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
)

METRICS = [precision_at_k, recall_at_k, ndcg_at_k, map_at_k]


# ---------------------------------------------------------------------------
# Slow, obviously correct references: one user at a time, straight from the
# definitions in the docstrings.
# ---------------------------------------------------------------------------


def _hit_list(truth, row, k):
    seen, hits = set(), []
    for item in row[:k]:
        hits.append(item != -1 and item in truth and item not in seen)
        seen.add(item)
    return hits


def ref_precision(truth, row, k):
    return sum(_hit_list(truth, row, k)) / k


def ref_recall(truth, row, k):
    return sum(_hit_list(truth, row, k)) / len(truth)


def ref_ndcg(truth, row, k):
    hits = _hit_list(truth, row, k)
    dcg = sum(1 / math.log2(i + 1) for i, hit in enumerate(hits, start=1) if hit)
    idcg = sum(1 / math.log2(i + 1) for i in range(1, min(len(truth), k) + 1))
    return dcg / idcg


def ref_map(truth, row, k):
    hits = _hit_list(truth, row, k)
    total = 0.0
    for i, hit in enumerate(hits, start=1):
        if hit:
            total += sum(hits[:i]) / i
    return total / min(len(truth), k)


REFERENCES = {
    precision_at_k: ref_precision,
    recall_at_k: ref_recall,
    ndcg_at_k: ref_ndcg,
    map_at_k: ref_map,
}


def reference(metric, y_true, recommended, k):
    dense = np.asarray(sp.csr_matrix(y_true).todense())
    per_user = []
    for truth_row, row in zip(dense, recommended):
        truth = set(np.flatnonzero(truth_row).tolist())
        ids = [int(x) for x in row]
        per_user.append(REFERENCES[metric](truth, ids, k) if truth else math.nan)
    return np.array(per_user)


def random_case(seed, n_users=40, n_items=30, k_rec=12):
    rng = np.random.default_rng(seed)
    y_true = sp.random(n_users, n_items, density=0.15, format="lil", random_state=seed)
    y_true[[0, 5], :] = 0  # users without true items must be skipped
    y_true = y_true.tocsr()
    # Ids from a small range, so that hits, repeats and padding all occur.
    recommended = rng.integers(-1, n_items, size=(n_users, k_rec))
    return y_true, recommended


# ---------------------------------------------------------------------------
# Agreement with the references
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("metric", METRICS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("k", [1, 5, 12])
def test_matches_reference_per_user(metric, seed, k):
    y_true, recommended = random_case(seed)
    expected = reference(metric, y_true, recommended, k)
    got = metric(y_true, recommended, k=k, average=False)
    np.testing.assert_allclose(got, expected, equal_nan=True)


@pytest.mark.parametrize("metric", METRICS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("seed", [4, 5])
def test_average_skips_users_without_true_items(metric, seed):
    y_true, recommended = random_case(seed)
    expected = np.nanmean(reference(metric, y_true, recommended, 7))
    assert metric(y_true, recommended, k=7) == pytest.approx(expected)


@pytest.mark.parametrize("metric", METRICS, ids=lambda f: f.__name__)
def test_k_defaults_to_number_of_columns(metric):
    y_true, recommended = random_case(6)
    assert metric(y_true, recommended) == metric(y_true, recommended, k=12)


@pytest.mark.parametrize("metric", METRICS, ids=lambda f: f.__name__)
@pytest.mark.parametrize(
    "convert",
    [
        lambda m: m.tocoo(),
        lambda m: m.tocsc(),
        lambda m: sp.csr_array(m),
        lambda m: m.toarray(),
        lambda m: m.toarray().tolist(),
        lambda m: m.toarray() != 0,
    ],
    ids=["coo", "csc", "csr_array", "ndarray", "list", "bool"],
)
def test_accepts_any_matrix_format(metric, convert):
    y_true, recommended = random_case(7)
    expected = metric(y_true, recommended, k=5, average=False)
    got = metric(convert(y_true), recommended, k=5, average=False)
    np.testing.assert_allclose(got, expected, equal_nan=True)


def test_explicit_zeros_and_duplicate_entries():
    # A stored zero is not relevant; duplicate COO entries form one item.
    y_true = sp.coo_matrix(([0.0, 1.0, 1.0], ([0, 0, 0], [0, 1, 1])), shape=(1, 3))
    assert recall_at_k(y_true, [[0, 1]]) == 1.0
    assert precision_at_k(y_true, [[0, 1]]) == 0.5


def test_does_not_modify_input():
    y_true = sp.csr_matrix(([0.0, 2.0], ([0, 0], [1, 0])), shape=(1, 3))
    before = (y_true.data.copy(), y_true.indices.copy(), y_true.indptr.copy())
    recall_at_k(y_true, [[0, 1]])
    for array, saved in zip((y_true.data, y_true.indices, y_true.indptr), before):
        np.testing.assert_array_equal(array, saved)


# ---------------------------------------------------------------------------
# Hand-computed cases
# ---------------------------------------------------------------------------

# User 0 owns items {1, 3}; user 1 owns {0, 2, 4}; user 2 owns nothing.
HAND_TRUE = sp.csr_matrix(
    np.array(
        [
            [0, 1, 0, 1, 0],
            [1, 0, 1, 0, 1],
            [0, 0, 0, 0, 0],
        ]
    )
)
HAND_REC = np.array(
    [
        [1, 0, 3],  # hits at ranks 1 and 3
        [3, 2, -1],  # hit at rank 2, then padding
        [0, 1, 2],
    ]
)


def test_hand_precision():
    got = precision_at_k(HAND_TRUE, HAND_REC, average=False)
    np.testing.assert_allclose(got, [2 / 3, 1 / 3, np.nan])
    assert precision_at_k(HAND_TRUE, HAND_REC) == pytest.approx(0.5)


def test_hand_recall_uses_all_true_items():
    got = recall_at_k(HAND_TRUE, HAND_REC, k=2, average=False)
    # User 1 has 3 true items: 1 / 3, not 1 / min(3, 2).
    np.testing.assert_allclose(got, [1 / 2, 1 / 3, np.nan])


def test_hand_ndcg():
    got = ndcg_at_k(HAND_TRUE, HAND_REC, average=False)
    user0 = (1 + 1 / 2) / (1 + 1 / math.log2(3))
    user1 = (1 / math.log2(3)) / (1 + 1 / math.log2(3) + 1 / 2)
    np.testing.assert_allclose(got, [user0, user1, np.nan])


def test_hand_map():
    got = map_at_k(HAND_TRUE, HAND_REC, average=False)
    # User 0: (1/1 + 2/3) / 2. User 1: (1/2) / 3.
    np.testing.assert_allclose(got, [(1 + 2 / 3) / 2, (1 / 2) / 3, np.nan])
    # With k=2 user 1's denominator becomes min(3, 2) = 2.
    np.testing.assert_allclose(map_at_k(HAND_TRUE, HAND_REC, k=2, average=False)[1], 1 / 4)


def test_perfect_lists_score_one():
    y_true = sp.csr_matrix(np.array([[1, 1, 0, 0], [0, 0, 0, 1]]))
    recommended = np.array([[1, 0], [3, -1]])
    assert ndcg_at_k(y_true, recommended) == pytest.approx(1.0)
    assert map_at_k(y_true, recommended) == pytest.approx(1.0)
    assert recall_at_k(y_true, recommended) == pytest.approx(1.0)
    # Padding still counts in the precision denominator.
    np.testing.assert_allclose(precision_at_k(y_true, recommended, average=False), [1, 0.5])


def test_repeated_id_counts_once():
    y_true = sp.csr_matrix(np.array([[1, 1, 0]]))
    recommended = np.array([[0, 0, 0]])
    assert precision_at_k(y_true, recommended) == pytest.approx(1 / 3)
    assert recall_at_k(y_true, recommended) == pytest.approx(1 / 2)
    assert ndcg_at_k(y_true, recommended) == pytest.approx(1 / (1 + 1 / math.log2(3)))
    assert map_at_k(y_true, recommended) == pytest.approx(1 / 2)


def test_padding_only_rows_score_zero():
    y_true = sp.csr_matrix(np.array([[1, 0], [0, 1]]))
    recommended = np.full((2, 3), -1)
    for metric in METRICS:
        assert metric(y_true, recommended) == 0.0


# ---------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("metric", METRICS, ids=lambda f: f.__name__)
@pytest.mark.parametrize(
    "y_true, recommended, k, match",
    [
        (np.eye(3), np.zeros((2, 2), dtype=int), None, "rows but y_true has 3"),
        (np.eye(3), np.zeros(3, dtype=int), None, "2-D integer array"),
        (np.eye(3), np.zeros((3, 2, 1), dtype=int), None, "2-D integer array"),
        (np.eye(3), np.zeros((3, 2)), None, "integer item ids"),
        (np.eye(3), np.full((3, 2), 3), None, r"\[0, 3\)"),
        (np.eye(3), np.full((3, 2), -2), None, r"\[0, 3\)"),
        (np.array([[np.nan, 1.0]]), np.zeros((1, 1), dtype=int), None, "NaN"),
        (sp.csr_matrix(np.array([[np.nan, 1.0]])), [[0]], None, "NaN"),
        (np.ones(3), np.zeros((3, 1), dtype=int), None, "y_true must be a 2-D"),
        (np.eye(3), np.zeros((3, 2), dtype=int), 3, "k=3 is out of range"),
        (np.eye(3), np.zeros((3, 2), dtype=int), 0, "k=0 is out of range"),
        (np.eye(3), np.zeros((3, 2), dtype=int), 1.5, "k must be an integer"),
        (np.eye(3), np.zeros((3, 0), dtype=int), None, "k=0 is out of range"),
        (np.zeros((3, 3)), np.zeros((3, 2), dtype=int), None, "no relevant item"),
    ],
)
def test_validation_errors(metric, y_true, recommended, k, match):
    with pytest.raises(ValueError, match=match):
        metric(y_true, recommended, k=k)


# ---------------------------------------------------------------------------
# Scorer
# ---------------------------------------------------------------------------


class FakeRecommender:
    """Recommends fixed ids and records how it was called."""

    def __init__(self, ids):
        self.ids = np.asarray(ids)
        self.calls = []

    def recommend(self, X, k=10, exclude_seen=True):
        self.calls.append((X.shape, k, exclude_seen))
        return self.ids[:, :k]


@pytest.mark.parametrize(
    "name, metric",
    [
        ("precision", precision_at_k),
        ("recall", recall_at_k),
        ("ndcg", ndcg_at_k),
        ("map", map_at_k),
    ],
)
def test_scorer_matches_metric(name, metric):
    estimator = FakeRecommender(HAND_REC)
    scorer = make_recommendation_scorer(metric=name, k=2)
    X = sp.csr_matrix((3, 5))
    assert scorer(estimator, X, HAND_TRUE) == pytest.approx(metric(HAND_TRUE, HAND_REC, k=2))
    assert estimator.calls == [((3, 5), 2, True)]


def test_scorer_repr_and_defaults():
    assert repr(make_recommendation_scorer()) == (
        "make_recommendation_scorer(metric='recall', k=20, holdout=0.2, random_state=0)")
    assert repr(make_recommendation_scorer("ndcg", k=5, holdout=0.5, random_state=3)) == (
        "make_recommendation_scorer(metric='ndcg', k=5, holdout=0.5, random_state=3)"
    )


def test_scorer_rejects_unknown_metric_and_bad_arguments():
    with pytest.raises(ValueError, match="'precision', 'recall', 'ndcg', 'map'"):
        make_recommendation_scorer("auc")
    with pytest.raises(ValueError, match="positive integer"):
        make_recommendation_scorer("recall", k=0)
    for holdout in (0, 1, 1.5, True):
        with pytest.raises(ValueError, match=r"holdout must be a share .* in \(0, 1\)"):
            make_recommendation_scorer(holdout=holdout)


def test_scorer_without_y_holds_out_part_of_each_users_items():
    """Scored on items the model was not given: the seeded per-user split."""
    from sparse_deep.datasets import per_user_split

    rng = np.random.default_rng(0)
    X = sp.random(40, 12, density=0.4, format="csr", random_state=rng)
    X.data[:] = 1
    given = []

    class Recorder(FakeRecommender):
        def recommend(self, X, k, exclude_seen):
            given.append(X.copy())
            return np.tile(np.arange(k), (X.shape[0], 1))

    score = make_recommendation_scorer("recall", k=3, holdout=0.25, random_state=7)(
        Recorder(HAND_REC), X)
    history, held = per_user_split(X, 0.25, random_state=7)
    assert (given[0] != history).nnz == 0
    assert score == pytest.approx(recall_at_k(held, np.tile(np.arange(3), (40, 1))))


def test_runs_on_100k_users():
    # The metrics are meant for 100K-user evaluations; this stays well under a
    # second when vectorised.
    n_users, n_items, k = 100_000, 5_000, 20
    rng = np.random.default_rng(0)
    nnz = 1_000_000
    y_true = sp.csr_matrix(
        (np.ones(nnz), (rng.integers(0, n_users, nnz), rng.integers(0, n_items, nnz))),
        shape=(n_users, n_items),
    )
    recommended = rng.integers(0, n_items, size=(n_users, k))
    for metric in METRICS:
        value = metric(y_true, recommended, k=k)
        assert 0.0 <= value <= 1.0


def test_scorer_works_in_grid_search():
    from sklearn.base import BaseEstimator
    from sklearn.model_selection import GridSearchCV

    class PopularityRecommender(BaseEstimator):
        """Recommends popular items, or unpopular ones when reverse=True."""

        def __init__(self, reverse=False):
            self.reverse = reverse

        def fit(self, X, y=None):
            counts = np.asarray(X.sum(axis=0)).ravel()
            self.order_ = np.argsort(counts if self.reverse else -counts, kind="stable")
            return self

        def recommend(self, X, k=10, exclude_seen=True):
            return np.tile(self.order_[:k], (X.shape[0], 1))

    # Item popularity falls with the item id; half of each user's items are
    # known (X) and the other half held out (y).
    rng = np.random.default_rng(0)
    liked = rng.random((60, 30)) < np.linspace(0.9, 0.02, 30)
    known = rng.random((60, 30)) < 0.5
    X = sp.csr_matrix((liked & known).astype(float))
    y = sp.csr_matrix((liked & ~known).astype(float))
    search = GridSearchCV(
        PopularityRecommender(),
        {"reverse": [True, False]},
        scoring=make_recommendation_scorer("ndcg", k=5),
        cv=3,
    ).fit(X, y)
    assert search.best_params_ == {"reverse": False}


# -- MRR, hit rate and the one-call evaluation -------------------------------------------
def test_mrr_and_hit_rate_against_hand_counts():
    from sparse_deep.metrics import hit_rate_at_k, mrr_at_k

    y = sp.csr_matrix(np.array([[0, 1, 0, 1], [1, 0, 0, 0], [0, 0, 1, 0]]))
    rec = np.array([[3, 1, 0], [2, 3, 0], [0, 1, 3]])
    assert mrr_at_k(y, rec, average=False).tolist() == [1.0, 1 / 3, 0.0]
    assert hit_rate_at_k(y, rec, k=2, average=False).tolist() == [1.0, 0.0, 0.0]
    assert mrr_at_k(y, rec, k=2) == pytest.approx(1 / 3)


def test_evaluate_matches_the_metrics_on_all_users_at_once():
    from sparse_deep import SparseAutoencoderRecommender
    from sparse_deep.datasets import per_user_split
    from sparse_deep.metrics import evaluate, hit_rate_at_k, map_at_k, mrr_at_k

    rng = np.random.default_rng(0)
    X = sp.random(80, 30, density=0.25, format="csr", dtype=np.float32, random_state=rng)
    X.data[:] = 1
    train, test = per_user_split(X, 0.3, random_state=0)
    model = SparseAutoencoderRecommender(hidden_layer_sizes=(8,), epochs=3,
                                         random_state=0).fit(train)
    report = evaluate(model, train, test, k=(5, 10), batch_size=7)
    users = np.flatnonzero(np.diff(test.indptr))
    ids = model.recommend(train[users], k=10)
    truth = test[users]
    popularity = np.asarray((train > 0).sum(axis=0)).ravel() / train.shape[0]
    assert report["n_users"] == users.size and "excluded" in report["protocol"]
    for c in (5, 10):
        expected = {"precision": precision_at_k, "recall": recall_at_k, "ndcg": ndcg_at_k,
                    "map": map_at_k, "mrr": mrr_at_k, "hit_rate": hit_rate_at_k}
        for name, metric in expected.items():
            assert report[c][name] == pytest.approx(metric(truth, ids, k=c)), name
        top = ids[:, :c][ids[:, :c] >= 0]
        assert report[c]["coverage"] == pytest.approx(np.unique(top).size / 30)
        assert report[c]["popularity"] == pytest.approx(popularity[top].mean())


@pytest.mark.parametrize("kwargs,match", [
    (dict(k=0), "cut-offs between 1 and the number of items"),
    (dict(k=(10, 31)), "cut-offs between 1 and the number of items"),
    (dict(k=5, batch_size=0), "batch_size must be a positive integer"),
])
def test_evaluate_refuses_bad_arguments(kwargs, match):
    from sparse_deep.metrics import evaluate

    X = sp.csr_matrix(np.eye(5, 30, dtype=np.float32))
    with pytest.raises(ValueError, match=match):
        evaluate(None, X, X, **kwargs)
    with pytest.raises(ValueError, match="same shape"):
        evaluate(None, X, X[:4])


def test_ndcg_agrees_with_scikit_learn_where_both_apply():
    """No exclusions, binary gains, no tied scores: the same definition."""
    from sklearn.metrics import ndcg_score

    rng = np.random.default_rng(1)
    truth = (rng.random((50, 40)) < 0.15).astype(np.float64)
    truth[truth.sum(axis=1) == 0, 0] = 1  # every user has a relevant item
    scores = rng.random((50, 40))
    for k in (5, 10, 40):
        ids = np.argsort(-scores, axis=1)[:, :k]
        assert ndcg_at_k(sp.csr_matrix(truth), ids, k=k) == pytest.approx(
            ndcg_score(truth, scores, k=k))

"""Ranking metrics for top-k recommendation lists.

Every metric compares a matrix of relevant items, ``y_true`` of shape
``(n_users, n_items)`` where any non-zero entry marks a relevant item, with a
matrix of recommended item ids, ``recommended`` of shape ``(n_users, k_rec)``,
best first. Entries of ``-1`` in ``recommended`` are padding (no item) and
never count as hits. An id repeated within a row counts at most once: only its
first (best-ranked) occurrence can be a hit, so a list cannot score above 1 by
repeating a relevant item.

All metrics are computed for every user at once with numpy and scipy; nothing
loops over users in Python.
"""

import functools
import numbers

import numpy as np
import scipy.sparse as sp

__all__ = [
    "precision_at_k",
    "recall_at_k",
    "ndcg_at_k",
    "map_at_k",
    "mrr_at_k",
    "hit_rate_at_k",
    "evaluate",
    "make_recommendation_scorer",
]


# ---------------------------------------------------------------------------
# Input validation and the hit matrix shared by every metric
# ---------------------------------------------------------------------------


def _check_y_true(y_true):
    """Return ``y_true`` as a canonical CSR matrix of relevant entries.

    The result is a copy with sorted indices, no duplicate entries and no
    stored zeros, so its non-zero pattern is exactly the relevant set and the
    caller's matrix is never modified.
    """
    if sp.issparse(y_true):
        csr = sp.csr_matrix(y_true, copy=True)
    else:
        dense = np.asarray(y_true)
        if dense.ndim != 2:
            raise ValueError(
                "y_true must be a 2-D matrix of shape (n_users, n_items); "
                f"got an array with {dense.ndim} dimension(s)."
            )
        csr = sp.csr_matrix(dense)
    if csr.dtype.kind in "fc" and np.isnan(csr.data).any():
        raise ValueError(
            "y_true contains NaN; expected finite values where any non-zero "
            "entry marks a relevant item."
        )
    csr.sum_duplicates()
    csr.eliminate_zeros()
    return csr


def _check_recommended(recommended, n_users, n_items):
    """Validate the recommended ids against the shape of ``y_true``."""
    ids = np.asarray(recommended)
    if ids.ndim != 2:
        raise ValueError(
            "recommended must be a 2-D integer array of shape (n_users, k); "
            f"got an array with {ids.ndim} dimension(s)."
        )
    if not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(
            "recommended must hold integer item ids (-1 for padding); "
            f"got dtype {ids.dtype}."
        )
    if ids.shape[0] != n_users:
        raise ValueError(
            f"recommended has {ids.shape[0]} rows but y_true has {n_users} "
            "users; expected one row of recommendations per user."
        )
    if ids.size and (ids.min() < -1 or ids.max() >= n_items):
        raise ValueError(
            f"recommended holds ids in [{ids.min()}, {ids.max()}]; expected "
            f"item ids in [0, {n_items}) or -1 for padding, as y_true has "
            f"{n_items} items."
        )
    return ids.astype(np.int64, copy=False)


def _check_k(k, k_rec):
    """Resolve ``k`` (``None`` means every recommended column)."""
    if k is None:
        k = k_rec
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise ValueError(f"k must be an integer or None; got {k!r}.")
    if k < 1 or k > k_rec:
        raise ValueError(
            f"k={k} is out of range; expected 1 <= k <= {k_rec}, the number "
            "of recommended columns."
        )
    return int(k)


def _first_occurrence(ids):
    """Mask that is False where an id already appeared earlier in its row."""
    # A stable sort keeps equal ids in their original order, so within each
    # run of equal ids the first element is the best-ranked occurrence.
    order = np.argsort(ids, axis=1, kind="stable")
    sorted_ids = np.take_along_axis(ids, order, axis=1)
    repeat = np.zeros(ids.shape, dtype=bool)
    repeat[:, 1:] = sorted_ids[:, 1:] == sorted_ids[:, :-1]
    first = np.empty(ids.shape, dtype=bool)
    np.put_along_axis(first, order, ~repeat, axis=1)
    return first


def _hits_and_counts(y_true, recommended, k):
    """Validate the inputs and return the hit matrix and true-item counts.

    Returns
    -------
    hits : ndarray of bool, shape (n_users, k)
        ``hits[u, i]`` is True when the item at rank ``i`` (0-based) for user
        ``u`` is relevant and is that id's first occurrence in the row.
    n_true : ndarray of int, shape (n_users,)
        Number of relevant items of each user.
    """
    truth = _check_y_true(y_true)
    n_users, n_items = truth.shape
    ids = _check_recommended(recommended, n_users, n_items)
    k = _check_k(k, ids.shape[1])
    ids = ids[:, :k]
    n_true = np.diff(truth.indptr)
    if not n_true.any():
        raise ValueError(
            "y_true has no relevant item for any user; the metrics are "
            "averaged over users with at least one non-zero entry."
        )
    # Each (user, item) pair becomes one integer key. The canonical CSR
    # pattern lists its keys in increasing order, so membership of every
    # recommended pair is a single binary search.
    true_keys = np.repeat(np.arange(n_users, dtype=np.int64), n_true)
    true_keys = true_keys * n_items + truth.indices
    rec_keys = np.arange(n_users, dtype=np.int64)[:, None] * n_items + ids
    pos = np.searchsorted(true_keys, rec_keys)
    pos = np.minimum(pos, true_keys.size - 1)
    hits = (true_keys[pos] == rec_keys) & (ids >= 0) & _first_occurrence(ids)
    return hits, n_true


def _finish(per_user, n_true, average):
    """Blank out users without true items, then average or return per user."""
    per_user = np.where(n_true > 0, per_user, np.nan)
    if average:
        return float(np.nanmean(per_user))
    return per_user


def _divide(numerator, denominator):
    """Divide, leaving 0 where the denominator is 0 (those users become NaN)."""
    return numerator / np.maximum(denominator, 1)


# ---------------------------------------------------------------------------
# Public metrics
# ---------------------------------------------------------------------------

_COMMON_PARAMETERS = """
    Parameters
    ----------
    y_true : sparse matrix or array-like of shape (n_users, n_items)
        Relevant items; any non-zero entry marks a relevant item. Any scipy
        sparse format is accepted, and dense array-likes are converted. NaN
        is rejected.
    recommended : array-like of int, shape (n_users, k_rec)
        Recommended item ids per user, best first. ``-1`` is padding and is
        never a hit; an id repeated in a row counts only at its first rank.
    k : int, default=None
        Cut-off; the first ``k`` columns of ``recommended`` are used. ``None``
        means ``k_rec``. Must satisfy ``1 <= k <= k_rec``.
    average : bool, default=True
        If True, return the mean over users with at least one relevant item
        (other users are skipped). If False, return the per-user values, NaN
        for users with no relevant item.

    Returns
    -------
    score : float or ndarray of shape (n_users,)
        The mean score, or the per-user scores when ``average=False``.

    Raises
    ------
    ValueError
        If the shapes disagree, ``recommended`` is not a 2-D integer array,
        an id lies outside ``[-1, n_items)``, ``y_true`` holds NaN, ``k`` is
        out of range, or no user has a relevant item.
"""


def _document(func):
    """Append the parameter section shared by all metrics to a docstring."""
    if func.__doc__:  # None under python -OO
        func.__doc__ = func.__doc__.rstrip() + "\n" + _COMMON_PARAMETERS
    return func


@_document
def precision_at_k(y_true, recommended, k=None, average=True):
    """Precision at k: the share of the top-k list that is relevant.

    For each user, ``precision@k = hits in the top k / k``. The denominator
    is always ``k``, even when the list is padded with ``-1`` or the user has
    fewer than ``k`` relevant items, so a perfect score may be unreachable.
    """
    hits, n_true = _hits_and_counts(y_true, recommended, k)
    per_user = hits.sum(axis=1) / hits.shape[1]
    return _finish(per_user, n_true, average)


@_document
def recall_at_k(y_true, recommended, k=None, average=True):
    """Recall at k: the share of the user's relevant items found in the top k.

    For each user, ``recall@k = hits in the top k / n_true``, where ``n_true``
    is the user's number of relevant items (not ``min(n_true, k)``), so users
    with more than ``k`` relevant items cannot reach 1.
    """
    hits, n_true = _hits_and_counts(y_true, recommended, k)
    per_user = _divide(hits.sum(axis=1), n_true)
    return _finish(per_user, n_true, average)


@_document
def ndcg_at_k(y_true, recommended, k=None, average=True):
    """Normalised discounted cumulative gain at k, with binary gains.

    For each user, ``DCG@k = sum over hit ranks i (1-based, i <= k) of
    1 / log2(i + 1)``, and ``NDCG@k = DCG@k / IDCG@k`` where the ideal
    ``IDCG@k`` places relevant items at the first ``min(n_true, k)`` ranks.
    """
    hits, n_true = _hits_and_counts(y_true, recommended, k)
    discounts = 1.0 / np.log2(np.arange(2, hits.shape[1] + 2))
    dcg = hits @ discounts
    ideal = np.concatenate(([0.0], np.cumsum(discounts)))
    idcg = ideal[np.minimum(n_true, hits.shape[1])]
    per_user = np.divide(dcg, idcg, out=np.zeros_like(dcg), where=idcg > 0)
    return _finish(per_user, n_true, average)


@_document
def map_at_k(y_true, recommended, k=None, average=True):
    """Mean average precision at k.

    For each user, ``AP@k = (sum over hit ranks i <= k of precision@i) /
    min(n_true, k)``, where ``precision@i`` is the number of hits in the top
    ``i`` divided by ``i``. A list that puts ``min(n_true, k)`` relevant items
    first scores 1. ``map_at_k`` averages ``AP@k`` over users.
    """
    hits, n_true = _hits_and_counts(y_true, recommended, k)
    ranks = np.arange(1, hits.shape[1] + 1)
    precision_at_rank = np.cumsum(hits, axis=1) / ranks
    summed = np.where(hits, precision_at_rank, 0.0).sum(axis=1)
    per_user = _divide(summed, np.minimum(n_true, hits.shape[1]))
    return _finish(per_user, n_true, average)


@_document
def mrr_at_k(y_true, recommended, k=None, average=True):
    """Mean reciprocal rank at k: 1 / the rank of the first relevant item in
    the top k, 0 when there is none.
    """
    hits, n_true = _hits_and_counts(y_true, recommended, k)
    first = np.argmax(hits, axis=1)
    per_user = np.where(hits.any(axis=1), 1.0 / (first + 1), 0.0)
    return _finish(per_user, n_true, average)


@_document
def hit_rate_at_k(y_true, recommended, k=None, average=True):
    """Hit rate at k: 1 when at least one relevant item is in the top k, else 0.
    """
    hits, n_true = _hits_and_counts(y_true, recommended, k)
    return _finish(hits.any(axis=1).astype(np.float64), n_true, average)


# ---------------------------------------------------------------------------
# Scorer for model selection, and a one-call evaluation
# ---------------------------------------------------------------------------

_METRICS = {
    "precision": precision_at_k,
    "recall": recall_at_k,
    "ndcg": ndcg_at_k,
    "map": map_at_k,
    "mrr": mrr_at_k,
    "hit_rate": hit_rate_at_k,
}

EVALUATION_PROTOCOL = (
    "users with at least one test item; every item ranked, the user's training items "
    "excluded; metrics averaged over those users; coverage: distinct items in the top-k "
    "lists / all items; popularity: mean share of training users holding a recommended item"
)


def evaluate(model, train, test, k=(10, 20, 50), batch_size=4096):
    """Every ranking metric of ``model`` on a test split, at several cut-offs.

    For every user with at least one item in ``test``, ``model.recommend``
    ranks all items given the user's ``train`` history, the training items
    excluded, and the top ``max(k)`` are compared with the test items, in
    batches of users (no users x items matrix is built).

    Parameters
    ----------
    model : fitted recommender
        Anything with ``recommend(X, k=..., exclude_seen=True)``.
    train, test : sparse matrix of shape (n_users, n_items)
        The histories and the held-out items, row for row.
    k : int or sequence of int, default=(10, 20, 50)
        Cut-offs, each at most n_items.
    batch_size : int, default=4096
        Users recommended for at a time.

    Returns
    -------
    dict
        ``{k: {"precision", "recall", "ndcg", "map", "mrr", "hit_rate",
        "coverage", "popularity"}}`` for each cut-off, plus ``"n_users"`` (the
        users scored) and ``"protocol"`` (how, in words).
    """
    truth, history = _check_y_true(test), sp.csr_matrix(train)
    if history.shape != truth.shape:
        raise ValueError(f"train and test must have the same shape; got {history.shape} and "
                         f"{truth.shape}")
    cutoffs = sorted({int(c) for c in np.atleast_1d(k)})
    n_users, n_items = truth.shape
    if not cutoffs or cutoffs[0] < 1 or cutoffs[-1] > n_items:
        raise ValueError(f"k must hold cut-offs between 1 and the number of items ({n_items}); "
                         f"got {k!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) \
            or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}")
    users = np.flatnonzero(np.diff(truth.indptr))
    if users.size == 0:
        raise ValueError("test has no item for any user; nothing to evaluate")
    popularity = np.diff(history.tocsc().indptr) / n_users
    sums = {c: dict.fromkeys(_METRICS, 0.0) for c in cutoffs}
    seen = {c: np.zeros(n_items, dtype=bool) for c in cutoffs}
    shown = {c: [0.0, 0] for c in cutoffs}  # popularity sum, items shown
    for start in range(0, users.size, int(batch_size)):
        batch = users[start:start + int(batch_size)]
        ids = np.asarray(model.recommend(history[batch], k=cutoffs[-1], exclude_seen=True))
        for c in cutoffs:
            for name, metric in _METRICS.items():
                sums[c][name] += float(np.sum(metric(truth[batch], ids, k=c, average=False)))
            top = ids[:, :c][ids[:, :c] >= 0]
            seen[c][top] = True
            shown[c][0] += float(popularity[top].sum())
            shown[c][1] += top.size
    report = {c: {name: total / users.size for name, total in sums[c].items()}
              for c in cutoffs}
    for c in cutoffs:
        report[c]["coverage"] = float(seen[c].mean())
        report[c]["popularity"] = shown[c][0] / max(shown[c][1], 1)
    report["n_users"] = int(users.size)
    report["protocol"] = EVALUATION_PROTOCOL
    return report


class _RecommendationScorer:
    """Callable ``scorer(estimator, X, y)`` built by make_recommendation_scorer.

    ``hold_out(X) -> (history, held_out)`` splits the rows of a fold's own
    users when no ``y`` is given; ``description`` is the call that built it.
    """

    def __init__(self, metric, k, hold_out, description):
        self.metric, self.k = metric, k
        self._hold_out, self._description = hold_out, description

    def __call__(self, estimator, X, y=None):
        if y is None:  # the fold's own users: hold out part of each one's items
            X, y = self._hold_out(X)
        ids = estimator.recommend(X, k=self.k, exclude_seen=True)
        return _METRICS[self.metric](y, ids, k=self.k)

    def __repr__(self):
        return self._description


def make_recommendation_scorer(metric="recall", k=20, holdout=0.2, random_state=0):
    """Build a scorer for ``GridSearchCV`` and ``cross_validate``.

    The scorer calls ``estimator.recommend(X, k=k, exclude_seen=True)`` and
    returns the chosen metric at ``k`` between the held-out interactions and
    those ids, averaged over users with at least one held-out item. Higher is
    better for every metric, so no sign flip is needed.

    Without ``y`` (``GridSearchCV(...).fit(train)``), each fold's users are
    users the fold's model was not fitted on: the scorer holds out ``holdout``
    of each one's interactions (``per_user_split``, seeded), gives the rest as
    the history and scores the held-out items. With ``y``, ``y`` holds the
    held-out interactions of the users of ``X``, row for row.

    Parameters
    ----------
    metric : {"precision", "recall", "ndcg", "map", "mrr", "hit_rate"}, default="recall"
        Which ranking metric to compute.
    k : int, default=20
        Length of the recommendation list and cut-off of the metric. The
        estimator must return ``k`` columns (padded with ``-1`` if needed).
    holdout : float or UserHoldoutSplit, default=0.2
        Without ``y``: the share of each scored user's interactions held out,
        in (0, 1). Users with one interaction keep it and are not scored. A
        :class:`sparse_deep.model_selection.UserHoldoutSplit` applies its own
        rule instead (its ``scorer`` method passes itself here).
    random_state : int, default=0
        Without ``y``: the seed of the held-out choice (the same for every
        candidate, so that they are compared on the same items).

    Returns
    -------
    scorer : callable
        ``scorer(estimator, X, y) -> float``.

    Raises
    ------
    ValueError
        If ``metric`` is unknown or ``k`` is not a positive integer.
    """
    if metric not in _METRICS:
        raise ValueError(
            f"Unknown metric {metric!r}; expected one of "
            f"{', '.join(repr(name) for name in _METRICS)}."
        )
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise ValueError(f"k must be a positive integer; got {k!r}.")
    call = f"make_recommendation_scorer(metric={metric!r}, k={k}, holdout="
    if hasattr(holdout, "hold_out"):  # a splitter of sparse_deep.model_selection
        return _RecommendationScorer(metric, int(k), holdout.hold_out, f"{call}{holdout!r})")
    if isinstance(holdout, bool) or not isinstance(holdout, numbers.Real) \
            or not 0 < holdout < 1:
        raise ValueError(f"holdout must be a share of each user's items in (0, 1); "
                         f"got {holdout!r}.")
    from .datasets import per_user_split

    hold_out = functools.partial(per_user_split, test_fraction=float(holdout),
                                 random_state=random_state)
    return _RecommendationScorer(metric, int(k), hold_out,
                                 f"{call}{holdout}, random_state={random_state})")

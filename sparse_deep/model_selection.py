"""Cross-validation of recommenders on the training interactions alone.

A recommender is scored on interactions it did not see. :class:`UserHoldoutSplit`
is a scikit-learn splitter for ``cv=``: each fold trains on the other folds'
users and scores the fold's own users, whose interactions are split into a
history (given to ``recommend``) and held-out items (scored) by the
splitter's rule: a random share of each user's items, or each user's latest
``n_last`` by a matrix of timestamps. Its :meth:`~UserHoldoutSplit.scorer`
applies that rule; nothing of a scored user reaches the fold's ``fit``, and
``GridSearchCV(...).fit(train)`` never sees the test set::

    cv = UserHoldoutSplit(n_splits=3, holdout=0.2, random_state=0)
    search = GridSearchCV(model, grid, cv=cv, scoring=cv.scorer("ndcg", k=20))
    search.fit(train)
"""

import numbers

import numpy as np
import scipy.sparse as sp
from sklearn.model_selection import KFold

from .datasets import canonical_interactions, last_items_split, per_user_split

__all__ = ["UserHoldoutSplit"]


class UserHoldoutSplit:
    """K-fold over users, each test user's interactions split into history and held-out.

    Users (rows) with at least two interactions are dealt into ``n_splits``
    test folds (shuffled when ``random_state`` is given); a user with fewer
    cannot be split, so it trains in every fold and is never scored. The
    held-out rule is applied by :meth:`hold_out`, which the scorer from
    :meth:`scorer` calls on the fold's users.

    Parameters
    ----------
    n_splits : int, default=3
        Number of folds, at least 2.
    holdout : float, default=0.2
        Share of each scored user's interactions held out, in (0, 1),
        rounded half up and at most all but one (see
        :func:`sparse_deep.datasets.per_user_split`). Ignored when ``n_last``
        is given.
    n_last : int, optional
        Hold out each scored user's latest ``n_last`` interactions instead, by
        ``order``. A user with at most ``n_last`` interactions is not scored.
    order : sparse matrix of shape (n_users, n_items), optional
        When each interaction of the matrix given to ``split`` happened (e.g.
        timestamps; larger is later), with its non-zero pattern. Required with
        ``n_last``.
    random_state : int or None, default=0
        Seeds the users' shuffle and the random held-out choice; the same for
        every candidate of a search, so that they are scored on the same items.
        ``None`` keeps the users in row order.

    Examples
    --------
    >>> cv = UserHoldoutSplit(n_splits=3, holdout=0.2, random_state=0)
    >>> GridSearchCV(model, grid, cv=cv, scoring=cv.scorer("ndcg", k=20)).fit(train)
    ... # doctest: +SKIP
    """

    def __init__(self, n_splits=3, holdout=0.2, n_last=None, order=None, random_state=0):
        self.n_splits = n_splits
        self.holdout = holdout
        self.n_last = n_last
        self.order = order
        self.random_state = random_state

    # -- scikit-learn's splitter interface ---------------------------------

    def get_n_splits(self, X=None, y=None, groups=None):
        """Number of folds."""
        self._check_parameters()
        return self.n_splits

    def split(self, X, y=None, groups=None):
        """Yield ``(train_users, test_users)`` row indices, one pair per fold.

        Raises
        ------
        ValueError
            If fewer users than ``n_splits`` have two or more interactions, or
            ``order`` does not match ``X``.
        """
        self._check_parameters()
        X = _as_csr(X, "X")
        if self.n_last is not None:
            self._folds_of = (X, [])
            _check_order(self.order, X)
        counts = np.diff(canonical_interactions(X).indptr)
        splittable = np.flatnonzero(counts >= 2)
        if splittable.size < self.n_splits:
            raise ValueError(
                f"UserHoldoutSplit needs at least n_splits={self.n_splits} users with two "
                f"or more interactions to score; X has {splittable.size}."
            )
        folds = KFold(self.n_splits, shuffle=self.random_state is not None,
                      random_state=self.random_state)
        for _, test_pos in folds.split(splittable):
            test = splittable[test_pos]
            train = np.setdiff1d(np.arange(X.shape[0]), test, assume_unique=True)
            if self.n_last is not None:
                self._folds_of[1].append(test)
            yield train, test

    # -- the held-out rule ---------------------------------------------------

    def hold_out(self, X):
        """Split the interactions of a fold's users into history and held-out items.

        Parameters
        ----------
        X : sparse matrix of shape (n_fold_users, n_items)
            The rows of one test fold, as ``split`` chose them.

        Returns
        -------
        history, held_out : csr_matrix of shape (n_fold_users, n_items)
            Disjoint; their sum is ``X``.
        """
        self._check_parameters()
        if self.n_last is None:
            return per_user_split(X, self.holdout, random_state=self.random_state)
        return last_items_split(X, self._order_of_fold(_as_csr(X, "X")), self.n_last)

    def scorer(self, metric="recall", k=20):
        """A ``scoring=`` callable that scores each fold's users by this rule.

        See :func:`sparse_deep.metrics.make_recommendation_scorer` for
        ``metric`` and ``k``.
        """
        from .metrics import make_recommendation_scorer

        return make_recommendation_scorer(metric, k, holdout=self)

    def __repr__(self):
        rule = (f"n_last={self.n_last}, order=<timestamps>" if self.n_last is not None
                else f"holdout={self.holdout}")
        return (f"UserHoldoutSplit(n_splits={self.n_splits}, {rule}, "
                f"random_state={self.random_state})")

    # -- helpers ----------------------------------------------------------------

    def _check_parameters(self):
        if isinstance(self.n_splits, bool) or not isinstance(self.n_splits, numbers.Integral) \
                or self.n_splits < 2:
            raise ValueError(f"n_splits must be an integer of at least 2; got {self.n_splits!r}.")
        if self.n_last is None:
            if isinstance(self.holdout, bool) or not isinstance(self.holdout, numbers.Real) \
                    or not 0 < self.holdout < 1:
                raise ValueError("holdout must be a share of each user's interactions in "
                                 f"(0, 1); got {self.holdout!r}.")
            return
        if isinstance(self.n_last, bool) or not isinstance(self.n_last, numbers.Integral) \
                or self.n_last < 1:
            raise ValueError(f"n_last must be a positive integer; got {self.n_last!r}.")
        if self.order is None:
            raise ValueError("n_last holds out each user's latest interactions and needs "
                             "order=, a sparse matrix of their timestamps.")

    def _order_of_fold(self, X):
        """The rows of ``order`` for a fold's users, found among the last split's folds."""
        full, folds = getattr(self, "_folds_of", (None, []))
        for test in folds:
            rows = full[test]
            if rows.shape == X.shape and _same_entries(rows, X):
                return _as_csr(self.order, "order")[test]
        raise ValueError(
            "With n_last, hold_out takes the rows of one test fold of this splitter's last "
            "split(X) (as GridSearchCV and cross_validate pass them), so that it can find "
            "their timestamps in order=; these rows are not such a fold."
        )


def _as_csr(X, name):
    if not sp.issparse(X):
        raise TypeError(f"{name} must be a scipy sparse matrix of interactions; "
                        f"got {type(X).__name__}.")
    X = sp.csr_matrix(X)
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D; got shape {X.shape}.")
    return X


def _check_order(order, X):
    order = _as_csr(order, "order")
    if order.shape != X.shape:
        raise ValueError(f"order must have the shape of X, {X.shape}; got {order.shape}.")


def _same_entries(A, B):
    A, B = canonical_interactions(A), canonical_interactions(B)
    return (np.array_equal(A.indptr, B.indptr) and np.array_equal(A.indices, B.indices)
            and np.array_equal(A.data, B.data))

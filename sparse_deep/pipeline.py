"""A scikit-learn Pipeline that ends in a recommender and can recommend."""

from sklearn.pipeline import Pipeline

__all__ = ["RecommenderPipeline", "make_recommender_pipeline"]


class RecommenderPipeline(Pipeline):
    """A :class:`~sklearn.pipeline.Pipeline` with the recommender calls of its last step.

    ``recommend`` and ``similar_users`` pass the histories through every step
    but the last (``transform``), then call the last step, so the steps that
    prepared the training data prepare the histories too. ``similar_items``
    needs no histories and goes straight to the last step. Everything else is
    scikit-learn's ``Pipeline``: ``fit``, ``GridSearchCV`` over
    ``"step__param"`` names, ``clone``, pickling.

    Examples
    --------
    >>> from sklearn.preprocessing import Normalizer
    >>> pipe = RecommenderPipeline([("norm", Normalizer()),
    ...                             ("model", SparseAutoencoderRecommender())])
    >>> pipe.fit(train).recommend(train[:5], k=10)  # doctest: +SKIP
    """

    def recommend(self, X, k=10, **kwargs):
        """``recommend`` of the last step on ``X`` transformed by the others.

        Keyword arguments (``exclude_seen``, ``exclude``, ``items``,
        ``filter_items``, ``return_scores``) go to the last step's
        ``recommend``; ``exclude_seen`` looks at the transformed rows, so a
        step must keep each row's non-zero pattern for it to mean "seen".
        """
        return self._final_estimator.recommend(self._prepare(X), k=k, **kwargs)

    def similar_users(self, X, k=10, **kwargs):
        """``similar_users`` of the last step on ``X`` transformed by the others."""
        return self._final_estimator.similar_users(self._prepare(X), k=k, **kwargs)

    def similar_items(self, items, k=10, **kwargs):
        """``similar_items`` of the last step."""
        return self._final_estimator.similar_items(items, k=k, **kwargs)

    def _prepare(self, X):
        for _, _, step in self._iter(with_final=False, filter_passthrough=True):
            X = step.transform(X)
        return X


def make_recommender_pipeline(*steps, memory=None, verbose=False):
    """:class:`RecommenderPipeline` from estimators, named as ``make_pipeline`` names them."""
    from sklearn.pipeline import make_pipeline

    plain = make_pipeline(*steps, memory=memory, verbose=verbose)
    return RecommenderPipeline(plain.steps, memory=memory, verbose=verbose)

"""scikit-learn estimators over the sparse engine."""

from .recommender import SparseAutoencoderRecommender

__all__ = ["SparseAutoencoderRecommender"]

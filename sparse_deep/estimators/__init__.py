"""scikit-learn estimators over the sparse engine."""

from .classifier import SparseMLPClassifier
from .recommender import SparseAutoencoderRecommender
from .regressor import SparseMLPRegressor

__all__ = ["SparseAutoencoderRecommender", "SparseMLPClassifier", "SparseMLPRegressor"]

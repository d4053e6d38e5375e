"""Plots of a fitted estimator's training: loss and validation curves.

matplotlib is an optional dependency (``pip install "sparse_deep[plot]"``): it
is imported inside the functions that draw, so ``import sparse_deep`` and
``import sparse_deep.plotting`` work, and stay fast, without it.
"""

import numpy as np
from sklearn.utils.validation import check_is_fitted

__all__ = ["plot_learning_curves"]

_INSTALL_HINT = 'pip install "sparse_deep[plot]"'

# A shared y axis squeezes a curve whose own range is less than this share of
# the axis's range into a flat line; below it the two curves get twin axes.
_SHARED_AXIS_MIN_SHARE = 1 / 3

_LOSS_COLOR, _SCORE_COLOR, _BEST_COLOR = "C0", "C1", "C2"


def plot_learning_curves(estimator, ax=None):
    """Draw a fitted estimator's training loss and validation score per epoch.

    The training loss (``loss_curve_``) is drawn for every epoch trained so
    far. When the last ``fit`` ran with ``early_stopping``, its validation
    scores (``validation_scores_``: accuracy for
    :class:`~sparse_deep.SparseMLPClassifier`, R^2 for
    :class:`~sparse_deep.SparseMLPRegressor`, NDCG@k of held-out items for
    :class:`~sparse_deep.SparseAutoencoderRecommender`) are drawn against the
    epochs of that fit, and the best of them is marked: its weights are the
    ones the estimator kept. The scores go on a second y axis (``ax.twinx()``)
    unless both curves fit one axis without either being flattened.

    Parameters
    ----------
    estimator : SparseMLPClassifier, SparseMLPRegressor or SparseAutoencoderRecommender
        A fitted estimator (by ``fit`` or ``partial_fit``).
    ax : matplotlib.axes.Axes, optional
        Where to draw; a new figure's axes (``matplotlib.pyplot.subplots()``)
        when None.

    Returns
    -------
    ax : matplotlib.axes.Axes
        The axes of the training loss. A twin axes holding the validation
        scores, if one was made, is in ``ax.figure.axes`` and shares its x
        axis.

    Raises
    ------
    sklearn.exceptions.NotFittedError
        If the estimator has not been fitted.
    ImportError
        If matplotlib is not installed.

    Examples
    --------
    >>> import numpy as np
    >>> import scipy.sparse as sp
    >>> from sparse_deep import SparseMLPClassifier
    >>> from sparse_deep.plotting import plot_learning_curves
    >>> X = sp.random(200, 30, density=0.2, format="csr", random_state=0)
    >>> y = np.arange(200) % 2
    >>> clf = SparseMLPClassifier(epochs=5, early_stopping=True, random_state=0).fit(X, y)
    >>> ax = plot_learning_curves(clf)
    >>> ax.figure.savefig("learning_curves.png")
    """
    check_is_fitted(estimator, "loss_curve_")
    if ax is None:
        ax = _pyplot().subplots()[1]
    else:
        _require_matplotlib()  # the same message even when the caller made the axes

    loss = np.asarray(estimator.loss_curve_, dtype=np.float64)
    scores = _validation_scores(estimator)
    handles = [_draw_loss(ax, loss)]
    score_ax, score_name = ax, None
    if scores is not None:
        score_name = _score_name(estimator)
        if not _fit_one_axis(loss, scores):
            score_ax = _twin_axis(ax)
        epochs = _score_epochs(len(loss), len(scores))
        handles += _draw_scores(score_ax, epochs, scores, score_name)
    _label_axes(ax, score_ax, score_name)
    # On the twin axes, which is drawn above ax, so that its curve never hides the legend.
    score_ax.legend(handles=handles, loc="best")
    return ax


def _require_matplotlib():
    """Import matplotlib, or raise an ImportError that says how to install it."""
    try:
        import matplotlib
    except ImportError as err:
        raise ImportError(
            f"Plotting needs matplotlib, which is not installed: {_INSTALL_HINT}"
        ) from err
    return matplotlib


def _pyplot():
    """matplotlib.pyplot, after checking that matplotlib is there."""
    _require_matplotlib()
    import matplotlib.pyplot as plt

    return plt


def _validation_scores(estimator):
    """The last fit's validation scores as an array, or None when it recorded none
    (no ``early_stopping``, or a model trained by ``partial_fit``)."""
    scores = getattr(estimator, "validation_scores_", None)
    if scores is None or len(scores) == 0:
        return None
    return np.asarray(scores, dtype=np.float64)


def _score_epochs(n_epochs, n_scores):
    """Epoch numbers (from 1) of the validation scores.

    ``validation_scores_`` covers the epochs of the last ``fit`` only, while
    ``loss_curve_`` goes on across ``warm_start`` fits and ``partial_fit``
    calls: the scores belong to the last ``n_scores`` epochs of the curve.
    """
    return np.arange(n_epochs - n_scores, n_epochs) + 1


def _fit_one_axis(loss, scores):
    """Whether both curves can share one y axis without either looking flat."""
    low = min(loss.min(), scores.min())
    high = max(loss.max(), scores.max())
    widest = max(np.ptp(loss), np.ptp(scores))
    return high - low <= widest / _SHARED_AXIS_MIN_SHARE


def _twin_axis(ax):
    """A second y axis on the right of ``ax``, coloured like the scores."""
    twin = ax.twinx()
    ax.tick_params(axis="y", colors=_LOSS_COLOR)
    twin.tick_params(axis="y", colors=_SCORE_COLOR)
    return twin


def _draw_loss(ax, loss):
    epochs = np.arange(1, len(loss) + 1)
    (line,) = ax.plot(epochs, loss, color=_LOSS_COLOR, marker=".", label="training loss")
    return line


def _draw_scores(ax, epochs, scores, name):
    """The validation curve and, on it, the best epoch (the weights kept)."""
    (line,) = ax.plot(epochs, scores, color=_SCORE_COLOR, marker=".", label=name)
    # The monitor keeps the first epoch that reaches the best score, as argmax does.
    best = int(np.argmax(scores))
    marker = ax.axvline(epochs[best], color=_BEST_COLOR, linestyle="--", linewidth=1,
                        label=f"best epoch {epochs[best]} (weights kept)")
    ax.plot(epochs[best], scores[best], color=_BEST_COLOR, marker="o", linestyle="none")
    return [line, marker]


def _score_name(estimator):
    """What the estimator's validation score measures."""
    from .estimators import (SparseAutoencoderRecommender, SparseMLPClassifier,
                             SparseMLPRegressor)

    if isinstance(estimator, SparseMLPClassifier):
        return "validation accuracy"
    if isinstance(estimator, SparseMLPRegressor):
        return "validation R\u00b2"
    if isinstance(estimator, SparseAutoencoderRecommender):
        k = min(int(estimator.k), int(estimator.n_items_))
        return f"validation NDCG@{k}"
    return "validation score"


def _label_axes(ax, score_ax, score_name):
    """Axis labels; ``score_name`` is None when no validation curve was drawn."""
    from matplotlib.ticker import MaxNLocator

    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    if score_name is None:
        ax.set_ylabel("training loss")
    elif score_ax is ax:
        ax.set_ylabel(f"training loss / {score_name}")
    else:
        ax.set_ylabel("training loss", color=_LOSS_COLOR)
        score_ax.set_ylabel(score_name, color=_SCORE_COLOR)

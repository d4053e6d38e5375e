"""sparse_deep.plotting, examples/loss_curves.py and benchmarks/plot_results.py.

matplotlib is optional: the tests that draw skip without it, the others
(import cost, error messages) run either way.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.exceptions import NotFittedError

from sparse_deep import SparseAutoencoderRecommender, SparseMLPClassifier, SparseMLPRegressor
from sparse_deep.plotting import plot_learning_curves

ROOT = Path(__file__).resolve().parent.parent
CHART_DIR = ROOT / "docs" / "img"
CHARTS = ("speed_vs_peers.svg", "recommender_quality.svg", "scale_sweep.svg")

TINY = dict(hidden_layer_sizes=(8,), epochs=6, batch_size=16, random_state=0)


def tiny_problem(seed=0):
    """Sparse rows, a binary label and a real target from the same linear map."""
    rng = np.random.default_rng(seed)
    X = sp.random(120, 30, density=0.25, random_state=seed, format="csr", dtype=np.float32)
    signal = np.asarray(X @ rng.normal(size=30)).ravel()
    return X, (signal > np.median(signal)).astype(np.int64), signal


def fitted(kind, **params):
    """A tiny estimator of ``kind`` fitted on :func:`tiny_problem`."""
    X, labels, signal = tiny_problem()
    if kind == "recommender":
        return SparseAutoencoderRecommender(**{**TINY, **params}).fit(X)
    if kind == "classifier":
        return SparseMLPClassifier(learning_rate=1e-2, **{**TINY, **params}).fit(X, labels)
    return SparseMLPRegressor(learning_rate=1e-2, **{**TINY, **params}).fit(X, signal)


def run_script(args, **kwargs):
    """Run a repository script in a fresh interpreter; fail with its output."""
    done = subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, **kwargs)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def lines_by_label(ax):
    """Every labelled line of ``ax``'s figure (twin axes included), by label."""
    return {line.get_label(): line for axes in ax.figure.axes for line in axes.get_lines()
            if not line.get_label().startswith("_")}


@pytest.fixture
def pyplot():
    plt = pytest.importorskip("matplotlib.pyplot")
    yield plt
    plt.close("all")


# -- the helper ----------------------------------------------------------------

@pytest.mark.parametrize("kind, score_name", [
    ("classifier", "validation accuracy"),
    ("regressor", "validation R\u00b2"),
    ("recommender", "validation NDCG@10"),
])
def test_draws_the_loss_and_validation_curves_and_marks_the_best_epoch(pyplot, kind,
                                                                       score_name):
    est = fitted(kind, early_stopping=True, validation_fraction=0.3, n_iter_no_change=20)
    ax = plot_learning_curves(est)
    lines = lines_by_label(ax)

    loss = lines["training loss"]
    np.testing.assert_array_equal(loss.get_xdata(), np.arange(1, len(est.loss_curve_) + 1))
    np.testing.assert_array_equal(loss.get_ydata(), est.loss_curve_)
    scores = lines[score_name]
    np.testing.assert_array_equal(scores.get_ydata(), est.validation_scores_)
    np.testing.assert_array_equal(scores.get_xdata(), loss.get_xdata())
    best = int(np.argmax(est.validation_scores_)) + 1
    assert est.validation_scores_[best - 1] == est.best_validation_score_
    assert f"best epoch {best} (weights kept)" in lines
    assert ax.get_xlabel() == "epoch"
    assert "training loss" in ax.get_ylabel()


def test_validation_scores_sit_on_the_last_fits_epochs(pyplot):
    """After a warm-started fit the loss curve spans both fits, the validation
    scores only the last one: they are drawn against its epochs."""
    est = fitted("classifier", early_stopping=True, validation_fraction=0.3,
                 n_iter_no_change=20, warm_start=True)
    est.fit(*tiny_problem()[:2])
    n_loss, n_scores = len(est.loss_curve_), len(est.validation_scores_)
    assert n_loss > n_scores
    ax = plot_learning_curves(est)
    scores = lines_by_label(ax)["validation accuracy"]
    np.testing.assert_array_equal(scores.get_xdata(),
                                  np.arange(n_loss - n_scores, n_loss) + 1)


def test_without_early_stopping_only_the_loss_is_drawn_on_the_given_axes(pyplot):
    est = fitted("regressor")
    fig, given = pyplot.subplots()
    ax = plot_learning_curves(est, ax=given)
    assert ax is given and fig.axes == [given]  # no twin axis
    assert list(lines_by_label(ax)) == ["training loss"]
    np.testing.assert_array_equal(ax.get_lines()[0].get_ydata(), est.loss_curve_)
    assert ax.get_ylabel() == "training loss"


def test_unfitted_estimator_raises_not_fitted_error():
    with pytest.raises(NotFittedError):
        plot_learning_curves(SparseMLPClassifier())


def test_missing_matplotlib_says_how_to_install_it(monkeypatch):
    est = fitted("classifier", epochs=1)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    with pytest.raises(ImportError, match=re.escape('pip install "sparse_deep[plot]"')):
        plot_learning_curves(est)


def test_importing_sparse_deep_and_its_plotting_module_leaves_matplotlib_unloaded():
    code = ("import sys, sparse_deep, sparse_deep.plotting; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'matplotlib'))")
    assert run_script(["-c", code]).stdout.strip() == "[]"


# -- the example and the benchmark charts ----------------------------------------

def test_loss_curves_example_writes_its_figure(tmp_path):
    pytest.importorskip("matplotlib")
    empty = tmp_path / "no-data"  # no a9a there: the example trains on synthetic data
    empty.mkdir()
    out = tmp_path / "figures" / "curves.png"
    done = run_script(["examples/loss_curves.py", "--max-iter", "2", "--out", out],
                      env={**os.environ, "SPARSE_DEEP_DATA": str(empty)})
    assert "synthetic" in done.stdout
    assert str(out) in done.stdout
    assert out.read_bytes().startswith(b"\x89PNG")


def svg_texts(svg):
    """The text of an SVG chart (its numbers and labels), in order."""
    return re.findall(r"<text[^>]*>(.*?)</text>", svg, flags=re.S)


def creator(svg):
    """The matplotlib version that wrote an SVG chart, from its metadata."""
    found = re.search(r"Matplotlib v([^,<]+)", svg)
    return found and found.group(1)


def test_committed_charts_are_those_of_the_committed_results(tmp_path):
    """benchmarks/plot_results.py redraws docs/img/*.svg from benchmarks/results/
    byte for byte, so the charts in the docs show the committed results."""
    matplotlib = pytest.importorskip("matplotlib")
    run_script(["benchmarks/plot_results.py", "--out", tmp_path])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(CHARTS)
    for name in CHARTS:
        committed = (CHART_DIR / name).read_text(encoding="utf-8")
        redrawn = (tmp_path / name).read_text(encoding="utf-8")
        # Every number and label, whichever matplotlib drew them.
        assert svg_texts(redrawn) == svg_texts(committed), name
        if creator(committed) == matplotlib.__version__:
            # Bytes only hold for the matplotlib that drew the committed charts.
            assert redrawn == committed, (
                f"{name} differs from a redrawing: run python benchmarks/plot_results.py")

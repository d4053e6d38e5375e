"""Train a classifier with early stopping and plot its learning curves.

Run from the repository root:

    python examples/loss_curves.py [--out loss_curves.png] [--max-iter 100]
        [--data-dir ../shared/data]

It fits SparseMLPClassifier with ``early_stopping=True`` on LIBSVM's a9a
(binary, 32,560 training rows; from ``../shared/data`` or $SPARSE_DEEP_DATA),
or on a small synthetic sparse problem when that folder is missing, and saves
the training loss and validation accuracy per epoch, with the best epoch
marked, to ``--out``. It needs matplotlib (``pip install "sparse_deep[plot]"``).
On a laptop's CPU it takes a few seconds (a9a stops after about 15 epochs of
0.2 s), plus up to a minute of kernel compilation the first time numba runs
on the machine; ``--max-iter 3`` makes it shorter still.
"""

import argparse
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from sparse_deep import SparseMLPClassifier
from sparse_deep.datasets import load_a9a
from sparse_deep.plotting import plot_learning_curves


def synthetic_problem(n_rows=3000, n_features=300, seed=0):
    """Sparse binary rows whose label follows a noisy linear rule."""
    rng = np.random.default_rng(seed)
    X = sp.random(n_rows, n_features, density=0.05, random_state=seed, format="csr",
                  dtype=np.float32)
    X.data[:] = 1.0
    margin = X @ rng.normal(size=n_features) + rng.normal(scale=0.5, size=n_rows)
    y = (margin > np.median(margin)).astype(np.int64)
    split = n_rows * 4 // 5
    return (X[:split], y[:split], X[split:], y[split:]), "synthetic"


def load(data_dir):
    """a9a if the data folder has it, else the synthetic problem."""
    try:
        return load_a9a(data_dir), "a9a"
    except FileNotFoundError as exc:
        print(f"{exc}\n-> running on synthetic data instead.\n")
        return synthetic_problem()


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="loss_curves.png",
                        help="where to save the figure (its suffix picks the format)")
    parser.add_argument("--max-iter", type=int, default=100,
                        help="most epochs to train (early stopping may stop sooner)")
    parser.add_argument("--data-dir", default=None, help="folder holding a9a/")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    # Agg: the figure only goes to a file, so no display is needed.
    import matplotlib

    matplotlib.use("Agg")

    (X_train, y_train, X_test, y_test), name = load(args.data_dir)
    print(f"{name}: {X_train.shape[0]} training rows x {X_train.shape[1]} features")
    model = SparseMLPClassifier(epochs=args.max_iter, early_stopping=True,
                                validation_fraction=0.1, random_state=0)
    model.fit(X_train, y_train)
    best = int(np.argmax(model.validation_scores_)) + 1
    print(f"{model.n_iter_} epochs; best validation accuracy "
          f"{model.best_validation_score_:.4f} at epoch {best} (its weights are kept); "
          f"test accuracy {model.score(X_test, y_test):.4f}")

    ax = plot_learning_curves(model)
    ax.set_title(f"SparseMLPClassifier on {name}, early stopping")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    ax.figure.savefig(out, dpi=120, bbox_inches="tight")
    print(f"saved the learning curves to {out.resolve()}")


if __name__ == "__main__":
    main()

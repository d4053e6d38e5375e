"""Recommendation quality of sparse_deep against two baselines.

For each data set, every model is fitted on the training matrix, then ranks
all items for each user with at least one test item, the user's training items
excluded. The table reports recall@20 and NDCG@20 (sparse_deep.metrics,
averaged over those users) and the fit time in seconds.

Models
    popularity   items ranked by their number of training interactions
    implicit-als implicit.als.AlternatingLeastSquares, default parameters
    sparse_deep  sparse_deep.SparseAutoencoderRecommender, default parameters

Data (see /work/shared/data/README.md)
    lastfm  the pre-split Last.fm train/test files
    ml100k  MovieLens 100K, per-user 80/20 split with seed 0

Usage
    python benchmarks/bench_recommender_quality.py [--data-dir DIR]
        [--datasets lastfm ml100k] [--output PATH] [--epochs N]
"""

import argparse
import os
import platform
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np

# Benchmark the working tree even when the package is not installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _results import write_json  # noqa: E402

from sparse_deep.datasets import load_lastfm, load_movielens_100k  # noqa: E402
from sparse_deep.metrics import ndcg_at_k, recall_at_k  # noqa: E402

K = 20
LOADERS = {
    "lastfm": load_lastfm,
    "ml100k": partial(load_movielens_100k, test_fraction=0.2, random_state=0),
}


# ---------------------------------------------------------------------------
# Models: each runner fits on train and returns (fit seconds, top-k ids of the
# evaluated users).
# ---------------------------------------------------------------------------


def run_popularity(train, users):
    """Rank unseen items by how many training users interacted with them."""
    start = time.perf_counter()
    counts = np.bincount(train.indices, minlength=train.shape[1]).astype(np.float64)
    fit_seconds = time.perf_counter() - start

    rows = train[users]
    scores = np.broadcast_to(counts, (len(users), train.shape[1])).copy()
    scores[rows.nonzero()] = -np.inf
    # A stable sort on the negated counts breaks ties by the lower item id.
    ids = np.argsort(-scores, axis=1, kind="stable")[:, :K]
    ids[np.take_along_axis(scores, ids, axis=1) == -np.inf] = -1
    return fit_seconds, ids


def run_implicit_als(train, users):
    """implicit's ALS with its defaults; users are rows of the fitted matrix."""
    from implicit.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    # implicit parallelises itself and asks for single-threaded BLAS; limit BLAS
    # only around it, so the other models keep every core.
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(random_state=0)
        start = time.perf_counter()
        model.fit(train, show_progress=False)
        fit_seconds = time.perf_counter() - start
    ids, _ = model.recommend(users, train[users], N=K, filter_already_liked_items=True)
    return fit_seconds, np.asarray(ids, dtype=np.int64)


def make_sparse_deep_runner(epochs):
    """Runner for SparseAutoencoderRecommender, or None if it can't be imported."""
    try:
        from sparse_deep import SparseAutoencoderRecommender
    except ImportError as err:
        print(f"sparse_deep.SparseAutoencoderRecommender is not available yet ({err}); "
              "running the baselines only.")
        return None
    params = {"random_state": 0}
    if epochs is not None:
        params["epochs"] = epochs

    def run_sparse_deep(train, users):
        start = time.perf_counter()
        model = SparseAutoencoderRecommender(**params).fit(train)
        fit_seconds = time.perf_counter() - start
        return fit_seconds, np.asarray(model.recommend(train[users], k=K, exclude_seen=True))

    return run_sparse_deep


# ---------------------------------------------------------------------------
# Evaluation and reporting
# ---------------------------------------------------------------------------


def evaluate(dataset, train, test, runners):
    """Fit and score every model on one data set; return one row per model."""
    train = train.tocsr().astype(np.float32)
    users = np.flatnonzero(np.diff(test.tocsr().indptr))
    truth = test[users]
    rows = []
    for name, runner in runners.items():
        fit_seconds, ids = runner(train, users)
        row = {
            "dataset": dataset,
            "model": name,
            f"recall@{K}": recall_at_k(truth, ids, k=K),
            f"ndcg@{K}": ndcg_at_k(truth, ids, k=K),
            "fit_seconds": fit_seconds,
            "n_users": int(train.shape[0]),
            "n_items": int(train.shape[1]),
            "n_test_users": int(users.size),
        }
        print(format_row(row), flush=True)
        rows.append(row)
    return rows


HEADER = f"{'dataset':<8} {'model':<13} {'recall@20':>9} {'ndcg@20':>9} {'fit s':>8}"


def format_row(row):
    return (f"{row['dataset']:<8} {row['model']:<13} {row[f'recall@{K}']:>9.4f} "
            f"{row[f'ndcg@{K}']:>9.4f} {row['fit_seconds']:>8.2f}")


def verdict(dataset, rows):
    """One line saying whether sparse_deep beats both baselines on both metrics."""
    by_model = {row["model"]: row for row in rows}
    if "sparse_deep" not in by_model:
        return f"{dataset}: sparse_deep not evaluated (estimator not available)."
    ours = by_model.pop("sparse_deep")
    metrics = (f"recall@{K}", f"ndcg@{K}")
    wins = all(ours[m] > other[m] for other in by_model.values() for m in metrics)
    return (f"{dataset}: sparse_deep {'BEATS' if wins else 'does NOT beat'} "
            f"{' and '.join(by_model)} on both recall@{K} and ndcg@{K}.")


def environment():
    import implicit
    import scipy
    import sklearn

    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "scikit-learn": sklearn.__version__,
        "implicit": implicit.__version__,
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS"),
    }


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None,
                        help="folder holding lastfm/ and ml-100k/ (default: "
                             "$SPARSE_DEEP_DATA, else ../shared/data)")
    parser.add_argument("--datasets", nargs="+", choices=sorted(LOADERS),
                        default=["lastfm", "ml100k"])
    parser.add_argument("--output", type=Path,
                        default=Path("benchmarks/results/recommender_quality.json"))
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs for SparseAutoencoderRecommender (default: its own)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    runners = {"popularity": run_popularity, "implicit-als": run_implicit_als}
    sparse_deep_runner = make_sparse_deep_runner(args.epochs)
    if sparse_deep_runner is not None:
        runners["sparse_deep"] = sparse_deep_runner

    results, verdicts = [], []
    print(HEADER)
    for dataset in args.datasets:
        try:
            train, test = LOADERS[dataset](args.data_dir)
        except FileNotFoundError as err:
            print(f"{dataset}: data not found, skipped. {err}\n"
                  "Get the data folder (see /work/shared/data/README.md) and pass "
                  "--data-dir DIR or set SPARSE_DEEP_DATA=DIR.", file=sys.stderr)
            continue
        rows = evaluate(dataset, train, test, runners)
        results.extend(rows)
        verdicts.append(verdict(dataset, rows))

    if not results:
        print("No data set could be loaded; nothing was measured.", file=sys.stderr)
        return 1
    print()
    print("\n".join(verdicts))
    write_json(args.output, {
        "k": K,
        "protocol": "all items ranked, training items excluded, averaged over "
                    "users with at least one test item",
        "epochs": args.epochs,
        "environment": environment(),
        "results": results,
    })
    print(f"Results written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

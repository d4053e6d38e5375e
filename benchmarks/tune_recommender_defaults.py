"""The evidence behind SparseAutoencoderRecommender's default parameters.

Each candidate setting is fitted on a *validation* split carved out of each
data set's training matrix (per user, 20 %, seed 1), never on its test split,
and scored by recall@20 and NDCG@20 on the validation items. The table is
printed and written to ``benchmarks/results/recommender_defaults.json``.

Usage
    python benchmarks/tune_recommender_defaults.py [--data-dir DIR] [--quick]
"""

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _results import write_json  # noqa: E402

from sparse_deep import SparseAutoencoderRecommender  # noqa: E402
from sparse_deep.datasets import load_lastfm, load_movielens_100k, per_user_split  # noqa: E402
from sparse_deep.metrics import ndcg_at_k, recall_at_k  # noqa: E402

GRID = {
    "hidden_layer_sizes": [(256,), (600,)],
    "epochs": [30, 60],
    "batch_size": [64, 128],
}
# The losses/activations compared: the evidence for a SoftMax output.
VARIANTS = [
    {},
    {"output_activation": "sigmoid", "loss": "cross_entropy", "activation": "sigmoid",
     "normalize_input": False, "input_dropout": 0.0},
    {"output_activation": "sigmoid", "loss": "cross_entropy"},
]


def validation_split(loader, data_dir):
    train, _ = loader(data_dir)
    return per_user_split(train, test_fraction=0.2, random_state=1)


def evaluate(params, fit_rows, val_rows):
    users = np.flatnonzero(val_rows.getnnz(axis=1))
    est = SparseAutoencoderRecommender(random_state=0, **params)
    start = time.perf_counter()
    est.fit(fit_rows)
    seconds = time.perf_counter() - start
    recs = est.recommend(fit_rows[users], k=20)
    return {
        "params": {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()},
        "recall@20": float(recall_at_k(val_rows[users], recs)),
        "ndcg@20": float(ndcg_at_k(val_rows[users], recs)),
        "fit_seconds": seconds,
    }


def candidates(quick):
    if quick:
        yield {}
        return
    for values in itertools.product(*GRID.values()):
        yield dict(zip(GRID, values))
    for variant in VARIANTS[1:]:
        yield {"epochs": 30, **variant}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--quick", action="store_true", help="only the current defaults")
    parser.add_argument("--output", default="benchmarks/results/recommender_defaults.json")
    args = parser.parse_args(argv)
    results = {}
    for name, loader in (("lastfm", load_lastfm), ("ml100k", load_movielens_100k)):
        try:
            fit_rows, val_rows = validation_split(loader, args.data_dir)
        except FileNotFoundError as exc:
            sys.exit(f"{exc}\nPass --data-dir pointing at the shared data folder.")
        results[name] = []
        for params in candidates(args.quick):
            row = evaluate(params, fit_rows, val_rows)
            results[name].append(row)
            print(f"{name:7s} recall@20 {row['recall@20']:.4f}  ndcg@20 {row['ndcg@20']:.4f}  "
                  f"fit {row['fit_seconds']:6.1f}s  {row['params']}", flush=True)
    out = Path(args.output)
    write_json(out, results)


if __name__ == "__main__":
    main()

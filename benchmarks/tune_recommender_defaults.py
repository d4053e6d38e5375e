"""The evidence behind SparseAutoencoderRecommender's default parameters.

Every candidate is fitted on a *validation* split carved out of each data
set's training matrix (``per_user_split(train, 0.2, random_state=1)``: 20 % of
each user's training items held out), never on a test split, and scored by
recall@20 and NDCG@20 of the held-out items, all items ranked, the fitted
items excluded. Data sets: Last.fm, MovieLens-100K and Yelp2018 (see
/work/shared/data/README.md).

Candidates are the defaults and changes of one or two parameters around them,
plus the previous defaults (a full SoftMax output, ``loss="cross_entropy"``).
The default temperature ("auto", ``1.25 / ln(n_items)``) is compared with
fixed ones.
Each is scored by its NDCG@20 relative to the best candidate on the same data
set, averaged over the data sets (so that no data set counts more for the
size of its numbers); the defaults are the candidate with the best average
among those whose Yelp2018 fit stays under three minutes on the 2-core
machine. The table, the averages and every fit time are printed and written
to ``benchmarks/results/recommender_defaults.json``.

A full run takes about an hour on 2 cores (Yelp2018's fits dominate).

Usage
    python benchmarks/tune_recommender_defaults.py [--data-dir DIR]
        [--datasets lastfm ml100k yelp2018] [--quick]
"""

import argparse
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _results import write_json  # noqa: E402

from sparse_deep import SparseAutoencoderRecommender  # noqa: E402
from sparse_deep.datasets import (  # noqa: E402
    load_lastfm,
    load_movielens_100k,
    load_yelp2018,
    per_user_split,
)
from sparse_deep.metrics import ndcg_at_k, recall_at_k  # noqa: E402

LOADERS = {
    "lastfm": load_lastfm,
    "ml100k": partial(load_movielens_100k, test_fraction=0.2, random_state=0),
    "yelp2018": load_yelp2018,
}

# Fits of Yelp2018 longer than this are not eligible as defaults.
TIME_BUDGET_SECONDS = 180

# The previous defaults: a SoftMax over every item, the multinomial cross-entropy.
FULL_SOFTMAX = dict(loss="cross_entropy", hidden_layer_sizes=(256,), activation="tanh",
                    learning_rate=1e-3, learning_rate_decay=0.0, batch_size=128, epochs=30,
                    sparse_input_update=False)

# name -> parameters changed from the estimator's defaults.
CANDIDATES = {
    "defaults": {},
    "temperature 0.1": dict(temperature=0.1),
    "temperature 0.12": dict(temperature=0.12),
    "temperature 0.15": dict(temperature=0.15),
    "temperature 0.2": dict(temperature=0.2),
    "40 epochs": dict(epochs=40),
    "90 epochs": dict(epochs=90),
    "constant learning rate": dict(learning_rate_decay=0.0),
    "batch 256": dict(batch_size=256),
    "hidden 128": dict(hidden_layer_sizes=(128,)),
    "tanh hidden units": dict(activation="tanh"),
    "2000 negatives": dict(n_negatives=2000),
    "uniform sampler": dict(negative_sampler="uniform"),
    "dot scores": dict(scoring="dot", temperature=1.0, learning_rate=1e-3),
    "dense input updates": dict(sparse_input_update=False),
    "input dropout 0.3": dict(input_dropout=0.3),
    "previous defaults (full softmax)": FULL_SOFTMAX,
}


def validation_split(loader, data_dir):
    train, _ = loader(data_dir)
    return per_user_split(train, test_fraction=0.2, random_state=1)


def evaluate(params, fit_rows, val_rows):
    """Fit ``params`` on ``fit_rows``; score the held-out ``val_rows``."""
    users = np.flatnonzero(val_rows.getnnz(axis=1))
    if "n_negatives" in params:  # at most every item (ML-100K has 1,682)
        params = {**params, "n_negatives": min(params["n_negatives"], fit_rows.shape[1])}
    est = SparseAutoencoderRecommender(random_state=0, **params)
    start = time.perf_counter()
    est.fit(fit_rows)
    seconds = time.perf_counter() - start
    recs = est.recommend(fit_rows[users], k=20)
    return {
        "recall@20": float(recall_at_k(val_rows[users], recs)),
        "ndcg@20": float(ndcg_at_k(val_rows[users], recs)),
        "fit_seconds": seconds,
    }


def summarise(results, datasets):
    """Each candidate's NDCG@20 over the best candidate's, per data set and
    averaged; eligibility by the Yelp2018 fit time."""
    summary = {}
    for name in CANDIDATES:
        relative = {d: results[d][name]["ndcg@20"] / max(r["ndcg@20"] for r in results[d].values())
                    for d in datasets}
        yelp = results.get("yelp2018", {}).get(name)
        summary[name] = {
            "relative_ndcg": relative,
            "mean_relative_ndcg": float(np.mean(list(relative.values()))),
            "eligible": yelp is None or yelp["fit_seconds"] <= TIME_BUDGET_SECONDS,
        }
    return summary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--datasets", nargs="+", choices=sorted(LOADERS), default=list(LOADERS))
    parser.add_argument("--quick", action="store_true", help="only the current defaults")
    parser.add_argument("--output", default="benchmarks/results/recommender_defaults.json")
    args = parser.parse_args(argv)
    candidates = {"defaults": {}} if args.quick else CANDIDATES
    results = {}
    for dataset in args.datasets:
        try:
            fit_rows, val_rows = validation_split(LOADERS[dataset], args.data_dir)
        except FileNotFoundError as exc:
            sys.exit(f"{exc}\nPass --data-dir pointing at the shared data folder.")
        results[dataset] = {}
        for name, params in candidates.items():
            row = evaluate(params, fit_rows, val_rows)
            results[dataset][name] = row
            print(f"{dataset:8s} {name:34s} recall@20 {row['recall@20']:.4f}  "
                  f"ndcg@20 {row['ndcg@20']:.4f}  fit {row['fit_seconds']:6.1f}s", flush=True)
    payload = {"protocol": "validation split of each training matrix: per_user_split(train, "
                           "0.2, random_state=1); all items ranked, fitted items excluded",
               "estimator_defaults": SparseAutoencoderRecommender().get_params(),
               "candidates": {name: candidates[name] for name in candidates},
               "results": results}
    if not args.quick:
        summary = summarise(results, args.datasets)
        payload["summary"] = summary
        print()
        ranked = sorted(summary.items(), key=lambda kv: -kv[1]["mean_relative_ndcg"])
        for name, row in ranked:
            flag = "" if row["eligible"] else f"  (Yelp2018 fit over {TIME_BUDGET_SECONDS} s)"
            print(f"{name:34s} mean relative NDCG@20 {row['mean_relative_ndcg']:.4f}{flag}")
    write_json(Path(args.output), payload)


if __name__ == "__main__":
    main()

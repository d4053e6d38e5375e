"""The evidence behind SparseMLPClassifier's default parameters.

Each candidate setting is fitted on a *validation* split carved out of each
data set's training rows (20 %, seed 1; stratified for a9a), never on its test
split, and scored on the validation rows: bibtex (multi-label) by precision@1
and micro-F1 at 0.5, a9a (binary) by accuracy and log-loss. Candidates change
one setting of a base at a time, and a few combinations of the changes that
helped. The table is printed and written to
``benchmarks/results/mlp_defaults.json``.

Usage
    python benchmarks/tune_mlp_defaults.py [--data-dir DIR] [--quick] [--seeds 0 1]
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, log_loss
from sklearn.model_selection import train_test_split

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _results import write_json  # noqa: E402

from sparse_deep import SparseMLPClassifier  # noqa: E402
from sparse_deep.datasets import load_a9a, load_bibtex  # noqa: E402
from sparse_deep.metrics import precision_at_k  # noqa: E402

# The defaults chosen (SparseMLPClassifier's own); every candidate changes them.
BASE = {name: SparseMLPClassifier().get_params()[name]
        for name in ("hidden_layer_sizes", "activation", "learning_rate", "batch_size", "epochs",
                     "dropout", "input_dropout", "normalize_input")}
CHANGES = [
    {},
    {"dropout": 0.0},
    {"dropout": 0.5},
    {"input_dropout": 0.2},
    {"epochs": 10},
    {"epochs": 30},
    {"epochs": 40},
    {"learning_rate": 3e-3},
    {"batch_size": 64},
    {"batch_size": 256},
    {"hidden_layer_sizes": (128,)},
    {"hidden_layer_sizes": (512,)},
    {"activation": "tanh"},
    {"normalize_input": True},
    {"input_dropout": 0.2, "epochs": 30},
    {"dropout": 0.5, "epochs": 40},
]


def bibtex_split(data_dir):
    X, Y, _, _ = load_bibtex(data_dir)
    train, val = train_test_split(np.arange(X.shape[0]), test_size=0.2, random_state=1)
    return X[train], Y[train], X[val], Y[val]


def a9a_split(data_dir):
    X, y, _, _ = load_a9a(data_dir)
    train, val = train_test_split(np.arange(X.shape[0]), test_size=0.2, random_state=1,
                                  stratify=y)
    return X[train], y[train], X[val], y[val]


def multilabel_quality(est, X, Y):
    top = est.predict_top_k(X, 1)
    predicted = est.predict(X)
    return {"precision@1": float(precision_at_k(Y, top)),
            "micro_f1": float(f1_score(Y, predicted, average="micro"))}


def binary_quality(est, X, y):
    proba = est.predict_proba(X)
    return {"accuracy": float(accuracy_score(y, est.predict(X))),
            "log_loss": float(log_loss(y, proba))}


DATA = {"bibtex": (bibtex_split, multilabel_quality), "a9a": (a9a_split, binary_quality)}


def evaluate(params, seed, split, quality):
    X_fit, y_fit, X_val, y_val = split
    est = SparseMLPClassifier(random_state=seed, **params)
    start = time.perf_counter()
    est.fit(X_fit, y_fit)
    seconds = time.perf_counter() - start
    return {**quality(est, X_val, y_val), "fit_seconds": seconds, "epochs_run": est.n_iter_}


def jsonable(params):
    return {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--quick", action="store_true", help="only the base setting")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--output", default="benchmarks/results/mlp_defaults.json")
    args = parser.parse_args(argv)
    results = {"protocol": __doc__.split("\n\n")[1].replace("\n", " "), "base": jsonable(BASE),
               "seeds": args.seeds, "rows": {}}
    for name, (splitter, quality) in DATA.items():
        try:
            split = splitter(args.data_dir)
        except FileNotFoundError as exc:
            sys.exit(f"{exc}\nPass --data-dir pointing at the shared data folder.")
        SparseMLPClassifier(epochs=1).fit(split[0][:256], split[1][:256])  # compile first
        results["rows"][name] = []
        for change in CHANGES[:1] if args.quick else CHANGES:
            runs = [evaluate({**BASE, **change}, seed, split, quality) for seed in args.seeds]
            mean = {k: float(np.mean([r[k] for r in runs])) for k in runs[0]}
            results["rows"][name].append({"change": jsonable(change), "mean": mean,
                                          "runs": runs})
            shown = "  ".join(f"{k} {v:.4f}" for k, v in mean.items())
            print(f"{name:6s} {shown}  {jsonable(change) or 'base'}", flush=True)
    out = Path(args.output)
    write_json(out, results)


if __name__ == "__main__":
    main()

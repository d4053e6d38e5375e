"""SparseMLPClassifier against scikit-learn's MLPClassifier on bibtex and a9a.

Both estimators are trained in the same run, on the same training split, with
the same hidden layer sizes, epochs, batch size, optimizer (Adam) and learning
rate, for several seeds; scikit-learn runs every epoch (early stopping off,
``n_iter_no_change`` above the epoch count). Everything else stays at each
estimator's defaults. Test quality: bibtex (159 labels, multi-label) by
precision@1 (the top-scored label of each paper) and micro-F1 (labels with
probability above 0.5); a9a (binary) by accuracy and log-loss. Fit times are
wall-clock seconds of ``fit``, the median over seeds; sparse_deep's kernels are
compiled before timing (numba caches them on disk, so only a fresh install
pays that once). Prints a table and writes ``benchmarks/results/mlp_vs_sklearn.json``.

Usage
    python benchmarks/bench_mlp_vs_sklearn.py [--data-dir DIR] [--seeds 0 1 2]
"""

import argparse
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import sklearn
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, f1_score, log_loss
from sklearn.neural_network import MLPClassifier

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _results import write_json  # noqa: E402

import sparse_deep  # noqa: E402
from sparse_deep import SparseMLPClassifier  # noqa: E402
from sparse_deep.datasets import load_a9a, load_bibtex  # noqa: E402
from sparse_deep.metrics import precision_at_k  # noqa: E402

# The shared settings: sparse_deep's defaults for these four, given to both.
SHARED = {
    name: SparseMLPClassifier().get_params()[name]
    for name in ("hidden_layer_sizes", "epochs", "batch_size", "learning_rate")
}


def sparse_deep_model(seed):
    return SparseMLPClassifier(random_state=seed, **SHARED)


def sklearn_model(seed):
    return MLPClassifier(
        hidden_layer_sizes=SHARED["hidden_layer_sizes"], max_iter=SHARED["epochs"],
        batch_size=SHARED["batch_size"], learning_rate_init=SHARED["learning_rate"],
        solver="adam", early_stopping=False, n_iter_no_change=SHARED["epochs"] + 1,
        random_state=seed,
    )


def multilabel_quality(est, X, Y):
    proba = est.predict_proba(X)
    top = np.argmax(proba, axis=1)[:, None]
    return {"precision@1": float(precision_at_k(Y, top)),
            "micro_f1": float(f1_score(Y, est.predict(X), average="micro"))}


def binary_quality(est, X, y):
    return {"accuracy": float(accuracy_score(y, est.predict(X))),
            "log_loss": float(log_loss(y, est.predict_proba(X)))}


def bibtex(data_dir):
    X_train, Y_train, X_test, Y_test = load_bibtex(data_dir)
    # scikit-learn's MLP densifies a multi-label target anyway; give it the dense form.
    return X_train, Y_train, X_test, Y_test, Y_train.toarray(), multilabel_quality


def a9a(data_dir):
    X_train, y_train, X_test, y_test = load_a9a(data_dir)
    return X_train, y_train, X_test, y_test, y_train, binary_quality


def timed_fit(est, X, y):
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y)
    return time.perf_counter() - start


def compare(name, data, seeds):
    X_train, Y_train, X_test, Y_test, Y_train_sklearn, quality = data
    sparse_deep_model(0).set_params(epochs=1).fit(X_train[:512], Y_train[:512])  # compile
    rows = {"sparse_deep": [], "sklearn": []}
    for seed in seeds:
        for who, make, y in (("sparse_deep", sparse_deep_model, Y_train),
                             ("sklearn", sklearn_model, Y_train_sklearn)):
            est = make(seed)
            seconds = timed_fit(est, X_train, y)
            rows[who].append({"seed": seed, "fit_seconds": seconds,
                              "epochs_run": int(est.n_iter_),
                              **quality(est, X_test, Y_test)})
    summary = {}
    for who, runs in rows.items():
        metrics = [k for k in runs[0] if k not in ("seed", "fit_seconds", "epochs_run")]
        summary[who] = {
            "fit_seconds_median": float(np.median([r["fit_seconds"] for r in runs])),
            **{f"{m}_mean": float(np.mean([r[m] for r in runs])) for m in metrics},
            **{f"{m}_std": float(np.std([r[m] for r in runs])) for m in metrics},
        }
    summary["fit_time_ratio_sklearn_over_sparse_deep"] = (
        summary["sklearn"]["fit_seconds_median"] / summary["sparse_deep"]["fit_seconds_median"]
    )
    return {"data_set": name, "train_shape": list(X_train.shape),
            "n_outputs": int(Y_train.shape[1]) if Y_train.ndim == 2 else 1,
            "runs": rows, "summary": summary}


def print_table(results):
    print(f"\nshared settings: {SHARED}; seeds {results['seeds']}")
    print(f"{'data set':8s} {'estimator':12s} {'fit s':>7s}  quality (mean +- std over seeds)")
    for entry in results["data_sets"]:
        for who in ("sparse_deep", "sklearn"):
            s = entry["summary"][who]
            metrics = [k[:-5] for k in s if k.endswith("_mean")]
            shown = "  ".join(f"{m} {s[m + '_mean']:.4f} +- {s[m + '_std']:.4f}"
                              for m in metrics)
            print(f"{entry['data_set']:8s} {who:12s} {s['fit_seconds_median']:7.2f}  {shown}")
        ratio = entry["summary"]["fit_time_ratio_sklearn_over_sparse_deep"]
        print(f"{'':8s} fit time ratio sklearn / sparse_deep: {ratio:.2f}x")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--note", default="",
                        help="recorded in the JSON, e.g. whether the machine was quiet")
    parser.add_argument("--output", default="benchmarks/results/mlp_vs_sklearn.json")
    args = parser.parse_args(argv)
    loaded = {}
    for name, loader in (("bibtex", bibtex), ("a9a", a9a)):
        try:
            loaded[name] = loader(args.data_dir)
        except FileNotFoundError as exc:
            sys.exit(f"{exc}\nPass --data-dir pointing at the shared data folder.")
    results = {
        "protocol": __doc__.split("\n\n")[1].replace("\n", " "),
        "shared_settings": {k: list(v) if isinstance(v, tuple) else v
                            for k, v in SHARED.items()},
        "seeds": args.seeds,
        "versions": {"sparse_deep": sparse_deep.__version__, "sklearn": sklearn.__version__,
                     "python": platform.python_version()},
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor()},
        "note": args.note,
        "data_sets": [compare(name, data, args.seeds) for name, data in loaded.items()],
    }
    print_table(results)
    out = Path(args.output)
    write_json(out, results)


if __name__ == "__main__":
    main()

"""What a new user waits for: the first fit with an empty kernel cache against a cached one.

Each case runs in fresh processes, first with an empty ``NUMBA_CACHE_DIR``
(numba compiles every kernel the fit uses), then twice more with that cache
filled (the median of the two is the warm figure). A process times its
import, its fit and its first ``recommend`` / ``predict`` separately.

Cases
    recommender  SparseAutoencoderRecommender() on MovieLens-100K's training
                 split (the quickstart's fit), then recommend(k=20) for 100 users
    classifier   SparseMLPClassifier() on bibtex, then predict on its test set;
                 scikit-learn's MLPClassifier at the same settings is timed in
                 the same process as the peer

    python benchmarks/bench_first_fit.py [--data-dir DIR]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _results import write_json

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import sparse_deep
t1 = time.perf_counter()
case, data_dir = sys.argv[1], sys.argv[2] or None
if case == "recommender":
    from sparse_deep.datasets import load_movielens_100k
    train, _ = load_movielens_100k(data_dir)
    model = sparse_deep.SparseAutoencoderRecommender(random_state=0)
    t2 = time.perf_counter(); model.fit(train); t3 = time.perf_counter()
    model.recommend(train[:100], k=20); t4 = time.perf_counter()
    peer = None
else:
    from sklearn.neural_network import MLPClassifier
    from sparse_deep.datasets import load_bibtex
    X, Y, X_test, _ = load_bibtex(data_dir)
    model = sparse_deep.SparseMLPClassifier(random_state=0)
    t2 = time.perf_counter(); model.fit(X, Y); t3 = time.perf_counter()
    model.predict(X_test); t4 = time.perf_counter()
    p = model.get_params()
    mlp = MLPClassifier(hidden_layer_sizes=p["hidden_layer_sizes"], batch_size=p["batch_size"],
                        learning_rate_init=p["learning_rate"], max_iter=p["epochs"],
                        solver="adam", early_stopping=False,
                        n_iter_no_change=p["epochs"] + 1, random_state=0)
    dense_Y = Y.toarray() if hasattr(Y, "toarray") else Y
    t5 = time.perf_counter(); mlp.fit(X, dense_Y); peer = time.perf_counter() - t5
print(json.dumps({"import_s": t1 - t0, "fit_s": t3 - t2, "first_predict_s": t4 - t3,
                  "sklearn_fit_s": peer}))
"""


def run(case, data_dir, cache):
    env = {**os.environ, "NUMBA_CACHE_DIR": cache}
    out = subprocess.run([sys.executable, "-c", CHILD, case, data_dir or ""], env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--cases", nargs="+", default=["recommender", "classifier"])
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"
                                              / "first_fit.json"))
    args = parser.parse_args()
    rows = []
    for case in args.cases:
        with tempfile.TemporaryDirectory() as cache:
            cold = run(case, args.data_dir, cache)
            warm = [run(case, args.data_dir, cache) for _ in range(2)]
        row = {"case": case, "cold": cold, "warm": warm}
        row["warm_fit_s"] = statistics.median(w["fit_s"] for w in warm)
        row["cold_over_warm_fit"] = round(cold["fit_s"] / row["warm_fit_s"], 2)
        rows.append(row)
        print(f"{case:12s} fit cold {cold['fit_s']:6.1f} s  warm {row['warm_fit_s']:5.1f} s  "
              f"ratio {row['cold_over_warm_fit']:.1f}x  first predict cold "
              f"{cold['first_predict_s']:.1f} s"
              + (f"  scikit-learn fit {cold['sklearn_fit_s']:.1f} s"
                 if cold["sklearn_fit_s"] else ""))
    write_json(args.out, {"cpus": os.cpu_count(), "cases": rows})


if __name__ == "__main__":
    main()

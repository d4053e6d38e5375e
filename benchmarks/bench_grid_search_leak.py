"""Tuning a recommender honestly against the recipe that leaks the test set.

On MovieLens-100K's fixed split (80 % of each user's ratings to train, seeded)
one grid is searched twice:

* honest: ``GridSearchCV(model, grid, cv=UserHoldoutSplit(...),
  scoring=cv.scorer("ndcg", k=20)).fit(train)``. Each fold fits the other
  folds' users and scores 20 % held out of each of its own users' items. The
  test matrix never reaches ``fit``.
* leaking: ``GridSearchCV(model, grid, cv=3, scoring=...).fit(train, test)``:
  ``y=test`` makes every candidate, and the refitted model, learn to predict
  the test items.

The refitted model of each is scored on the test split with
``sparse_deep.metrics.evaluate`` (all items ranked, training items excluded).

    python benchmarks/bench_grid_search_leak.py
"""

import argparse
import time
from pathlib import Path

from sklearn.model_selection import GridSearchCV

from _results import write_json
from sparse_deep import SparseAutoencoderRecommender
from sparse_deep.datasets import load_movielens_100k
from sparse_deep.metrics import evaluate, make_recommendation_scorer
from sparse_deep.model_selection import UserHoldoutSplit

GRID = {"hidden_layer_sizes": [(128,), (256,)], "learning_rate_decay": [0.0, 0.15]}


def search(train, test, honest, epochs):
    model = SparseAutoencoderRecommender(random_state=0, epochs=epochs)
    start = time.perf_counter()
    if honest:
        cv = UserHoldoutSplit(n_splits=3, holdout=0.2, random_state=0)
        grid = GridSearchCV(model, GRID, cv=cv, scoring=cv.scorer("ndcg", k=20)).fit(train)
    else:
        grid = GridSearchCV(model, GRID, cv=3,
                            scoring=make_recommendation_scorer("ndcg", k=20)).fit(train, test)
    seconds = time.perf_counter() - start
    report = evaluate(grid.best_estimator_, train, test, k=20)
    return {
        "recipe": "cv=UserHoldoutSplit, fit(train)" if honest else "cv=3, fit(train, test)",
        "best_params": {k: list(v) if isinstance(v, tuple) else v
                        for k, v in grid.best_params_.items()},
        "cv_ndcg@20": round(float(grid.best_score_), 4),
        "test_ndcg@20": round(report[20]["ndcg"], 4),
        "test_recall@20": round(report[20]["recall"], 4),
        "seconds": round(seconds, 1),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"
                                              / "grid_search_leak.json"))
    args = parser.parse_args()
    train, test = load_movielens_100k()
    rows = [search(train, test, honest, args.epochs) for honest in (True, False)]
    for row in rows:
        print(row)
    write_json(args.out, {
        "data": "MovieLens-100K, load_movielens_100k() split (test_fraction=0.2, seed 0)",
        "protocol": "test NDCG@20 / recall@20 of the refitted model: all items ranked, "
                    "training items excluded",
        "grid": {k: [list(v) if isinstance(v, tuple) else v for v in vs]
                 for k, vs in GRID.items()},
        "epochs": args.epochs,
        "searches": rows,
    })


if __name__ == "__main__":
    main()

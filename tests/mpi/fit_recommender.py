"""Run under mpiexec by tests/test_mpi.py: fit one recommender, save what it learned.

Also saves the fitted model with save_model (OUT.nc) and checks that loading it
on the same ranks recommends the same items.

Usage: fit_recommender.py OUT.npz [--nan-on-rank R] [--limit BYTES] [--network movielens]
                          [--loss NAME] [--scoring NAME]
Every rank builds the same synthetic data (as a user's unchanged script would
load the same file); rank 0 writes the whole model's weights and the results.
"""

import argparse
import sys
import time

import numpy as np
import scipy.sparse as sp

from sparse_deep import SparseAutoencoderRecommender, SparseMLPClassifier
from sparse_deep.distributed import world
from sparse_deep.distributed.shards import gather_model
from sparse_deep.io import load_model, save_model
from sparse_deep.network.samples import movielens_config


def synthetic(n_users=90, n_items=61, seed=3):
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, n_items + 1)
    popularity /= popularity.sum()
    rows, cols = [], []
    for u in range(n_users):
        items = rng.choice(n_items, size=rng.integers(2, 9), replace=False, p=popularity)
        rows += [u] * len(items)
        cols += list(items)
    return sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n_users, n_items))


def fit_classifier(comm, X, out):
    """A multi-label classifier (labels: the 23 most popular items, a SoftMax-free
    output) and a multiclass one, sharded like the recommender."""
    labels = X[:, :23].copy()
    X_in = X[:, 23:]
    results = {}
    for name, y in (("multilabel", labels), ("multiclass", np.asarray(X.argmax(axis=1)).ravel() % 5)):
        model = SparseMLPClassifier(hidden_layer_sizes=(8,), epochs=3, batch_size=16,
                                    random_state=0).fit(X_in, y)
        whole = gather_model(model.model_, comm)
        results[f"{name}_proba"] = model.predict_proba(X_in[:30])
        results[f"{name}_top"] = model.predict_top_k(X_in[:30], 3)
        results[f"{name}_loss"] = np.array(model.loss_curve_)
        for i, w in enumerate(whole.weights):
            results[f"{name}_w{i}"] = w
    if comm.rank == 0:
        np.savez(out, ranks=comm.size, **results)
    return 0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--nan-on-rank", type=int, default=None)
    parser.add_argument("--limit", default=None)
    parser.add_argument("--network", default="default")
    parser.add_argument("--estimator", default="recommender", choices=["recommender", "mlp"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--loss", default=None)
    parser.add_argument("--scoring", default=None)
    args = parser.parse_args()
    comm = world()
    X = synthetic()
    if args.nan_on_rank == comm.rank:
        X = X.copy()
        X.data[0] = np.nan
    params = dict(hidden_layer_sizes=(8,), epochs=3, batch_size=16, random_state=0,
                  input_dropout=0.3, dropout=0.2, weight_memory_limit=args.limit,
                  device=args.device)
    if args.loss is not None:
        params["loss"] = args.loss
    if args.scoring is not None:
        params["scoring"] = args.scoring
    if args.network == "movielens":
        params.update(network=movielens_config(), normalize_input=False)
    if args.estimator == "mlp":
        return fit_classifier(comm, X, args.out)
    started = time.perf_counter()
    model = SparseAutoencoderRecommender(**params).fit(X)
    seconds = time.perf_counter() - started
    whole = gather_model(model.model_, comm)
    ids, scores = model.recommend(X[:40], k=7, return_scores=True)
    # Saving gathers the shards (rank 0 writes); loading scatters them again.
    model_file = args.out[:-len(".npz")] + ".nc"
    save_model(model, model_file)
    loaded = load_model(model_file)
    assert loaded.n_ranks_ == comm.size
    np.testing.assert_array_equal(loaded.recommend(X[:40], k=7), ids)
    proba = model.predict_proba(X[:10])
    embedding = model.transform(X[:10])
    similar_items = model.similar_items(np.arange(12), k=5)  # vectors joined over ranks
    similar_users = model.similar_users(X[:20], k=3)
    among = model.recommend(X[:40], k=5, items=np.arange(0, 61, 2), filter_items=[4, 30])
    if comm.rank == 0:
        arrays = {f"w{i}": w for i, w in enumerate(whole.weights)}
        arrays.update({f"b{t}": b for t, b in whole.biases.items()})
        np.savez(args.out, ids=ids, scores=scores, proba=proba, embedding=embedding,
                 similar_items=similar_items, similar_users=similar_users, among=among,
                 loss=np.array(model.loss_curve_), ranks=model.n_ranks_, seconds=seconds,
                 local_weight_bytes=sum(w.nbytes for w in model.model_.weights), **arrays)
    return 0


if __name__ == "__main__":
    sys.exit(main())

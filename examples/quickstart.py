"""Train the default recommender on MovieLens-100K and print its quality.

Run from the repository root:

    python examples/quickstart.py [--data-dir ../shared/data] [--max-iter N]

It fits SparseAutoencoderRecommender on a per-user 80/20 split of ML-100K,
compares recall@20 and NDCG@20 with a popularity ranking, and shows one user's
recommendations. If the data folder is missing (it lives beside the repository
as ../shared/data), it says so and runs on a small synthetic data set instead.
"""

import argparse
import time

import numpy as np
import scipy.sparse as sp

from sparse_deep import SparseAutoencoderRecommender
from sparse_deep.datasets import load_movielens_100k, per_user_split
from sparse_deep.metrics import ndcg_at_k, recall_at_k


def synthetic_interactions(n_users=800, n_items=600, seed=0):
    """Users with one of a few tastes, each taste a block of favoured items."""
    rng = np.random.default_rng(seed)
    taste = rng.integers(0, 6, n_users)
    block = np.arange(n_items) * 6 // n_items
    p = np.where(block[None, :] == taste[:, None], 0.15, 0.005)
    return sp.csr_matrix((rng.random((n_users, n_items)) < p).astype(np.float32))


def load(data_dir):
    try:
        return load_movielens_100k(data_dir), "MovieLens-100K"
    except FileNotFoundError as exc:
        print(f"{exc}\n-> running on synthetic data instead.\n")
        return per_user_split(synthetic_interactions(), 0.2, random_state=0), "synthetic"


def popularity_ranking(train, users, k):
    counts = np.asarray(train.sum(axis=0)).ravel()
    order = np.argsort(-counts, kind="stable")
    recs = np.empty((len(users), k), dtype=np.int64)
    for row, u in enumerate(users):
        seen = set(train.indices[train.indptr[u]:train.indptr[u + 1]])
        recs[row] = [i for i in order if i not in seen][:k]
    return recs


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="folder holding ml-100k/")
    parser.add_argument("--max-iter", type=int, default=None,
                        help="epochs (default: the estimator's)")
    args = parser.parse_args()
    (train, test), name = load(args.data_dir)
    print(f"{name}: {train.shape[0]} users x {train.shape[1]} items, "
          f"{train.nnz} training and {test.nnz} test interactions")

    model = SparseAutoencoderRecommender(random_state=0)
    if args.max_iter is not None:
        model.set_params(epochs=args.max_iter)
    start = time.perf_counter()
    model.fit(train)
    print(f"fitted in {time.perf_counter() - start:.1f}s "
          f"(loss {model.loss_curve_[0]:.3f} -> {model.loss_curve_[-1]:.3f})")

    users = np.flatnonzero(test.getnnz(axis=1))
    recs = model.recommend(train[users], k=20)  # seen items are excluded
    popular = popularity_ranking(train, users, 20)
    print(f"{'':12s} recall@20  NDCG@20")
    for label, ids in (("sparse_deep", recs), ("popularity", popular)):
        print(f"{label:12s} {recall_at_k(test[users], ids):9.4f} {ndcg_at_k(test[users], ids):8.4f}")
    print(f"user {users[0]}: top 10 items {recs[0, :10].tolist()}")


if __name__ == "__main__":
    main()

"""Train the recommender with its input and output layers split over MPI ranks.

Run from the repository root, on one process or on several ranks:

    python examples/mpi_train.py [--data-dir ../shared/data] [--max-iter 20] [--out model.nc]
    mpiexec -n 2 python examples/mpi_train.py

The script is the same for any number of ranks: every rank loads the same
data and runs the same calls. Under ``mpiexec -n R`` each rank holds about
1/R of the weights of the input and output layers (DSSTNE's model
parallelism); the fitted model, the metrics and the saved file are those of
one process (docs/distributed.md). Inference (``evaluate`` here) is collective:
every rank calls it with the same rows. Only rank 0 prints.

The data is MovieLens-100K from ../shared/data (or $SPARSE_DEEP_DATA); when
that folder is missing it says so and uses a small synthetic data set.
"""

import argparse
import time

from sparse_deep import SparseAutoencoderRecommender
from sparse_deep.datasets import load_movielens_100k, per_user_split
from sparse_deep.distributed import world
from sparse_deep.io import load_model, save_model
from sparse_deep.metrics import evaluate


def load_data(data_dir, say):
    try:
        return load_movielens_100k(data_dir)
    except FileNotFoundError as error:
        from quickstart import synthetic_interactions  # examples/ is on sys.path

        say(f"MovieLens-100K not found ({error})\nusing synthetic data instead")
        return per_user_split(synthetic_interactions(), 0.2, random_state=0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="folder holding ml-100k/ (default: ../shared/data)")
    parser.add_argument("--max-iter", type=int, default=20, help="epochs (default 20)")
    parser.add_argument("--out", help="save the fitted model to this file, then load it back")
    args = parser.parse_args()
    comm = world()

    def say(message):
        if comm.rank == 0:
            print(message, flush=True)

    train, test = load_data(args.data_dir, say)
    say(f"{comm.size} rank(s); {train.shape[0]:,} users x {train.shape[1]:,} items")
    started = time.perf_counter()
    model = SparseAutoencoderRecommender(epochs=args.max_iter, random_state=0).fit(train)
    say(f"fit: {time.perf_counter() - started:.1f} s")

    report = evaluate(model, train, test, k=20)  # collective: every rank calls it
    say(f"test recall@20 {report[20]['recall']:.4f}, NDCG@20 {report[20]['ndcg']:.4f}")
    if args.out:
        save_model(model, args.out)  # every rank: the shards are gathered, rank 0 writes
        again = load_model(args.out)  # under mpiexec, scattered to the same ranks again
        same = (again.recommend(test[:50], k=20) == model.recommend(test[:50], k=20)).all()
        say(f"saved to {args.out}; the loaded model recommends the same items: {same}")


if __name__ == "__main__":
    main()

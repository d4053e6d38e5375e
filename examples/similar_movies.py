"""Movies similar to well-known ones, and a one-call evaluation, on MovieLens-100K.

Fits the recommender with its defaults, prints the ten movies most similar to
a few classics (cosine of the items' output weight vectors, see
docs/quickstart.md, "Similar items and users") with their titles, and the
test-split report of ``sparse_deep.metrics.evaluate``.

Usage
    python examples/similar_movies.py [--data-dir ../shared/data]
"""

import argparse
import csv
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sparse_deep import SparseAutoencoderRecommender  # noqa: E402
from sparse_deep.datasets import load_movielens_100k  # noqa: E402
from sparse_deep.metrics import evaluate  # noqa: E402

QUERIES = ("Star Wars", "Toy Story", "Fargo", "Pulp Fiction")


def movie_titles(data_dir):
    """Column -> "Title (year)", from ml-100k.item (item i is column i - 1)."""
    base = Path(data_dir) if data_dir else Path(__file__).resolve().parents[2] / "shared" / "data"
    path = base / "ml-100k" / "ml-100k.item"
    with open(path, encoding="utf-8", newline="") as handle:
        rows = csv.reader(handle, delimiter="\t")
        next(rows)  # header
        return {int(item) - 1: f"{title} ({year})" for item, title, year, *_ in rows}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None,
                        help="folder holding ml-100k/ (default: ../shared/data)")
    args = parser.parse_args(argv)
    train, test = load_movielens_100k(args.data_dir)
    titles = movie_titles(args.data_dir)
    model = SparseAutoencoderRecommender(random_state=0).fit(train)
    by_title = {title.rsplit(" (", 1)[0]: item for item, title in titles.items()}
    for query in QUERIES:
        ids, scores = model.similar_items(by_title[query], k=10, return_scores=True)
        print(f"\n{titles[by_title[query]]}:")
        for item, score in zip(ids, scores):
            print(f"  {score:5.3f}  {titles[int(item)]}")
    report = evaluate(model, train, test, k=(10, 20))
    print(f"\ntest split, {report['n_users']} users ({report['protocol']}):")
    for k in (10, 20):
        print(f"  @{k}: " + ", ".join(f"{name} {value:.4f}" for name, value in report[k].items()))


if __name__ == "__main__":
    main()

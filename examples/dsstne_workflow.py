"""DSSTNE's MovieLens workflow with the sparse-deep command: generate, train, predict.

Run from the repository root:

    python examples/dsstne_workflow.py [--data-dir ../shared/data] [--out DIR] [--epochs 5]

It runs the steps of DSSTNE's ``samples/movielens/run_movielens_sample.sh`` on
DSSTNE's own sample (the first 1,024 MovieLens-20M users in DSSTNE's text
format, ``dsstne-ml20m-sample/movielens_input_1024.txt``), with DSSTNE's
``config.json`` unchanged (``examples/dsstne_movielens_config.json``):

1. ``generate`` the input data set, creating the feature and sample indices;
2. ``generate`` the output data set with its own feature index and the same
   sample index, so that rows line up;
3. ``train`` the autoencoder (DSSTNE's flags: -b 256, a few epochs);
4. ``predict`` the top 16 movies of every user, filtering out the movies the
   user has rated (DSSTNE's example passes the ratings file as the filter).

Each step is the ``sparse-deep`` command line shown before it, run in-process.
The files go to --out (default: a new temporary folder), which is printed at
the end with a few recommendation lines.
"""

import argparse
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

from sparse_deep.cli import main as sparse_deep

HERE = Path(__file__).resolve().parent
CONFIG = HERE / "dsstne_movielens_config.json"
SAMPLE = Path("dsstne-ml20m-sample") / "movielens_input_1024.txt"


def find_sample(data_dir):
    """The sample file under --data-dir, $SPARSE_DEEP_DATA or ../shared/data."""
    if data_dir is not None:
        candidates = [Path(data_dir)]
    else:
        candidates = [Path(os.environ[v]) for v in ("SPARSE_DEEP_DATA",) if os.environ.get(v)]
        candidates += [Path("../shared/data"), HERE.parent.parent / "shared" / "data"]
    for folder in candidates:
        if (folder / SAMPLE).is_file():
            return (folder / SAMPLE).resolve()
    tried = "\n  ".join(str(folder / SAMPLE) for folder in candidates)
    sys.exit(f"DSSTNE's MovieLens sample was not found; tried:\n  {tried}\n"
             "Pass --data-dir with the folder holding dsstne-ml20m-sample/ (the project's "
             "shared data folder, ../shared/data beside the repository).")


def step(title, *argv):
    """Print a step and its command line, then run it."""
    line = " ".join(shlex.quote(str(a)) for a in ("sparse-deep", *argv))
    print(f"\n== {title}\n$ {line}", flush=True)
    started = time.perf_counter()
    code = sparse_deep([str(a) for a in argv])
    if code != 0:
        sys.exit(f"step failed with exit code {code}")
    print(f"({time.perf_counter() - started:.1f} s)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="folder holding dsstne-ml20m-sample/")
    parser.add_argument("--out", help="folder for the files (default: a new temporary one)")
    parser.add_argument("--epochs", type=int, default=5, help="training epochs (default 5)")
    args = parser.parse_args()
    ratings = find_sample(args.data_dir)
    out = Path(args.out or tempfile.mkdtemp(prefix="sparse_deep_dsstne_")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    os.chdir(out)  # DSSTNE's commands name their files relative to the working folder
    print(f"data: {ratings}\nworking folder: {out}")

    step("1. input data set (new feature and sample indices)",
         "generate", "-d", "gl_input", "-i", ratings, "-o", "gl_input.nc",
         "-f", "features_input", "-s", "samples_input", "-c")
    step("2. output data set (same sample index, so the rows line up)",
         "generate", "-d", "gl_output", "-i", ratings, "-o", "gl_output.nc",
         "-f", "features_output", "-s", "samples_input", "-c")
    step("3. train DSSTNE's MovieLens autoencoder (config.json unchanged)",
         "train", "-c", CONFIG, "-i", "gl_input.nc", "-o", "gl_output.nc", "-n", "gl.nc",
         "-b", 256, "-e", args.epochs, "--overwrite")
    step("4. top 16 movies per user, without the ones already rated",
         "predict", "-b", 256, "-d", "gl", "-i", "features_input", "-o", "features_output",
         "-k", 16, "-n", "gl.nc", "-f", ratings, "-s", "recs", "-r", ratings)

    print(f"\nfiles in {out}:")
    for path in sorted(out.iterdir()):
        print(f"  {path.name:18s} {path.stat().st_size:>10,d} bytes")
    print("\nfirst recommendations (user<TAB>movie,score:...):")
    with open(out / "recs", encoding="utf-8") as handle:
        for _, line in zip(range(3), handle):
            user, _, items = line.rstrip("\n").partition("\t")
            shown = ":".join(items.split(":")[:6])
            print(f"  {user}\t{shown}:...")
    print("\nContinue training later with:\n  sparse-deep train --continue gl.nc "
          "-i gl_input.nc -o gl_output.nc -n gl.nc -e 5")


if __name__ == "__main__":
    main()

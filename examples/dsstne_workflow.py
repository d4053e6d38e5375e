"""DSSTNE's MovieLens workflow with the sparse-deep command: generate, train, predict.

Run from the repository root:

    python examples/dsstne_workflow.py [--data-dir ../shared/data] [--out DIR] [--epochs 5]
    python examples/dsstne_workflow.py --prepare-only --out DIR

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
the end with a few recommendation lines. The sample and the config are
copied there first as ``ml-20m_ratings`` and ``config.json``, the names the
README's DSSTNE lines use; --prepare-only stops after that.
"""

import argparse
import os
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

from sparse_deep.cli import main as sparse_deep
from sparse_deep.datasets import dsstne_movielens_sample

HERE = Path(__file__).resolve().parent
CONFIG = HERE / "dsstne_movielens_config.json"
RATINGS = "ml-20m_ratings"


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
    parser.add_argument("--prepare-only", action="store_true",
                        help="only write ml-20m_ratings and config.json into --out")
    args = parser.parse_args()
    try:
        sample = dsstne_movielens_sample(args.data_dir).resolve()
    except FileNotFoundError as error:
        sys.exit(f"DSSTNE's MovieLens sample was not found. {error}")
    out = Path(args.out or tempfile.mkdtemp(prefix="sparse_deep_dsstne_")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    os.chdir(out)  # DSSTNE's commands name their files relative to the working folder
    # The names of DSSTNE's run_movielens_sample.sh, so that its lines run as they are.
    shutil.copyfile(sample, RATINGS)
    shutil.copyfile(CONFIG, "config.json")
    print(f"working folder: {out}\n  {RATINGS}: DSSTNE's sample ({sample})\n"
          "  config.json: DSSTNE's MovieLens network")
    if args.prepare_only:
        return
    ratings = RATINGS

    step("1. input data set (new feature and sample indices)",
         "generate", "-d", "gl_input", "-i", ratings, "-o", "gl_input.nc",
         "-f", "features_input", "-s", "samples_input", "-c")
    step("2. output data set (same sample index, so the rows line up)",
         "generate", "-d", "gl_output", "-i", ratings, "-o", "gl_output.nc",
         "-f", "features_output", "-s", "samples_input", "-c")
    step("3. train DSSTNE's MovieLens autoencoder (config.json unchanged)",
         "train", "-c", "config.json", "-i", "gl_input.nc", "-o", "gl_output.nc", "-n", "gl.nc",
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

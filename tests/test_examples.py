"""Every script in examples/ runs as a user would run it, on small settings.

Each runs in a fresh process from a scratch folder, on the project's data
when ../shared/data is there; a script added to examples/ without an entry
here fails test_every_example_is_run.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
PYTHON = sys.executable
MPIEXEC = str(Path(sys.executable).parent / "mpiexec")

# script: (command line before the script's path, its arguments, what its output must hold)
RUNS = {
    "quickstart.py": ([PYTHON], ["--max-iter", "3"], "recall@20"),
    "grid_search_pipeline.py": ([PYTHON], ["--max-iter", "2"], "test micro-F1"),
    "dsstne_workflow.py": ([PYTHON], ["--epochs", "1", "--out", "dsstne"],
                           "first recommendations"),
    "mpi_train.py": ([MPIEXEC, "-n", "2", PYTHON], ["--max-iter", "2", "--out", "model.nc"],
                     "the loaded model recommends the same items: True"),
    "loss_curves.py": ([PYTHON], ["--max-iter", "3", "--out", "curves.png"], "curves.png"),
    # examples/similar_movies.py: run on the real data, its output checked, by
    # test_recommender.py::test_similar_movies_on_movielens_are_ones_a_reader_would_accept
    "similar_movies.py": None,
}


def test_every_example_is_run():
    scripts = {path.name for path in EXAMPLES.glob("*.py")}
    assert scripts == set(RUNS), f"give each example an entry in RUNS: {scripts ^ set(RUNS)}"


@pytest.mark.parametrize("script", [name for name, run in RUNS.items() if run is not None])
def test_example_runs(script, tmp_path, shared_data):
    if script == "loss_curves.py":
        pytest.importorskip("matplotlib")
    launcher, arguments, expected = RUNS[script]
    env = dict(os.environ, SPARSE_DEEP_DATA=str(shared_data))
    if launcher[0] == MPIEXEC:  # ranks share the 2 cores, as tests/test_mpi.py runs them
        env.update(OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
    done = subprocess.run([*launcher, str(EXAMPLES / script), *arguments], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert expected in done.stdout, done.stdout[-3000:]

"""Model parallelism under real MPI: ``mpiexec -n 1, 2, 3`` train the same model.

Each case launches tests/mpi/fit_recommender.py, which fits a small
recommender with the same seed on every rank and saves the gathered weights
and its results from rank 0. Three ranks split 61 items and 61 features
unevenly (20/20/21).
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).parent / "mpi" / "fit_recommender.py"
# Float sums over ranks are grouped differently from one process's sums.
WEIGHT_TOLERANCE = 1e-6


def mpiexec():
    """The mpiexec of the MPI installed with the package (mpich from PyPI)."""
    here = Path(sys.executable).parent / "mpiexec"
    assert here.exists(), f"no mpiexec next to {sys.executable}; install the package (mpich)"
    return str(here)


def launch(ranks, out, *args, timeout=240):
    env = dict(os.environ, OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
    return subprocess.run(
        [mpiexec(), "-n", str(ranks), sys.executable, str(SCRIPT), str(out), *args],
        capture_output=True, text=True, timeout=timeout, env=env,
    )


def fit(ranks, tmp_path, *args):
    out = tmp_path / f"run{ranks}{'_'.join(a.strip('-') for a in args)}.npz"
    done = launch(ranks, out, *args)
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(np.load(out))


def assert_same_model(one, many):
    for name in one:
        if name.startswith(("w", "b")):
            np.testing.assert_allclose(many[name], one[name], rtol=0, atol=WEIGHT_TOLERANCE,
                                       err_msg=name)
    np.testing.assert_allclose(many["loss"], one["loss"], rtol=1e-6)
    np.testing.assert_array_equal(many["ids"], one["ids"])
    np.testing.assert_allclose(many["scores"], one["scores"], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(many["proba"], one["proba"], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(many["embedding"], one["embedding"], atol=1e-6)
    np.testing.assert_array_equal(many["similar_items"], one["similar_items"])
    np.testing.assert_array_equal(many["similar_users"], one["similar_users"])
    np.testing.assert_array_equal(many["among"], one["among"])


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return fit(1, tmp_path_factory.mktemp("mpi"))


def _synthetic():
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import fit_recommender
    finally:
        sys.path.pop(0)
    return fit_recommender.synthetic()


def test_one_rank_equals_a_plain_fit_bit_for_bit(reference):
    from sparse_deep import SparseAutoencoderRecommender

    X = _synthetic()
    model = SparseAutoencoderRecommender(hidden_layer_sizes=(8,), epochs=3, batch_size=16,
                                         random_state=0, input_dropout=0.3, dropout=0.2).fit(X)
    for i, w in enumerate(model.model_.weights):
        np.testing.assert_array_equal(w, reference[f"w{i}"])
    np.testing.assert_array_equal(model.recommend(X[:40], k=7), reference["ids"])
    assert int(reference["ranks"]) == 1


@pytest.mark.parametrize("ranks", [2, 3])
def test_sharded_ranks_train_the_same_model(reference, ranks, tmp_path):
    # A per-rank limit that one process exceeds (checked in the next test).
    many = fit(ranks, tmp_path, "--limit", "10000")
    assert int(many["ranks"]) == ranks
    assert_same_model(reference, many)
    # Each rank holds about 1/R of the weights (61 features and items split).
    share = many["local_weight_bytes"] / reference["local_weight_bytes"]
    assert share == pytest.approx(1 / ranks, rel=0.1)
    # The model file written from the shards loads in one process, whole.
    from sparse_deep.io import load_model

    X = _synthetic()
    loaded = load_model(tmp_path / f"run{ranks}limit_10000.nc")
    assert loaded.n_ranks_ == 1 and loaded.model_.shards is None
    np.testing.assert_array_equal(loaded.recommend(X[:40], k=7), reference["ids"])


@pytest.mark.parametrize("options", [("--loss", "cross_entropy"),
                                     ("--scoring", "dot"),
                                     ("--loss", "cosine_contrastive")],
                         ids=["full-softmax", "sampled-dot", "cosine-contrastive"])
def test_sharded_output_variants_train_the_same_model(tmp_path, options):
    """The full SoftMax output, and sampled outputs whose negatives and
    targets fall on different ranks (61 items over 3 ranks)."""
    one = fit(1, tmp_path, *options)
    three = fit(3, tmp_path, *options)
    assert int(three["ranks"]) == 3
    assert_same_model(one, three)


def test_sharded_bpr_is_refused_with_the_reason(tmp_path):
    done = launch(2, tmp_path / "bpr.npz", "--loss", "bpr", "--scoring", "dot", timeout=120)
    assert done.returncode != 0
    assert "'BPR' compares every target of a row with every negative" in done.stderr
    assert not (tmp_path / "bpr.npz").exists()


def test_sharded_softmax_free_network_trains_the_same_model(tmp_path):
    """DSSTNE's MovieLens network: sigmoid output, sparseness penalty, no shuffle."""
    one = fit(1, tmp_path, "--network", "movielens")
    three = fit(3, tmp_path, "--network", "movielens")
    assert_same_model(one, three)


def test_model_over_the_memory_limit_is_refused_on_one_process(tmp_path):
    done = launch(1, tmp_path / "refused.npz", "--limit", "10000")
    assert done.returncode != 0
    assert "MemoryError" in done.stderr
    assert "above weight_memory_limit" in done.stderr
    assert "mpiexec -n 2" in done.stderr
    assert not (tmp_path / "refused.npz").exists()


def test_an_error_on_one_rank_ends_every_rank(tmp_path):
    done = launch(2, tmp_path / "nan.npz", "--nan-on-rank", "1", timeout=60)
    assert done.returncode != 0
    assert "on rank 1 of 2" in done.stderr and "NaN" in done.stderr
    assert not (tmp_path / "nan.npz").exists()


def test_sharded_classifier_trains_the_same_model(tmp_path):
    """SparseMLPClassifier shares the sharding: multi-label (Sigmoid) and
    multiclass (SoftMax) outputs split over 3 ranks, 23 and 5 units."""
    one = fit(1, tmp_path, "--estimator", "mlp")
    three = fit(3, tmp_path, "--estimator", "mlp")
    assert int(three["ranks"]) == 3
    for name in one:
        if name == "ranks":
            continue
        if name.endswith("_top"):
            np.testing.assert_array_equal(three[name], one[name], err_msg=name)
        else:
            np.testing.assert_allclose(three[name], one[name], rtol=1e-5, atol=1e-6,
                                       err_msg=name)

"""The sparse-deep command: DSSTNE's generate / train / predict workflow."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sparse_deep import SparseAutoencoderRecommender, load_model
from sparse_deep.cli import main
from sparse_deep.io import read_dataset, read_index, read_recommendations
from sparse_deep.network import load_network
from sparse_deep.network.samples import movielens_config

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "examples" / "dsstne_movielens_config.json"  # DSSTNE's file, verbatim
SHARED_SAMPLE = ROOT.parent / "shared" / "data" / "dsstne-ml20m-sample" / \
    "movielens_input_1024.txt"
RECS_LINE = re.compile(r"[^\t]+\t([^,:\t]+,-?\d+\.\d{3}:)*")


def run(*argv):
    code = main([str(a) for a in argv])
    assert code == 0, f"sparse-deep {' '.join(map(str, argv))} returned {code}"


def write_ratings(path, n_users=48, n_items=30, seed=0):
    """MovieLens-like lines in DSSTNE's format, 'user<TAB>item,timestamp:...',
    with two tastes so that there is something to learn."""
    rng = np.random.default_rng(seed)
    lines = []
    for user in range(n_users):
        half = np.arange(n_items // 2) + (n_items // 2 if user % 2 else 0)
        items = rng.choice(half, size=rng.integers(3, 8), replace=False)
        points = ":".join(f"{100 + i},{1112486027 + 7 * j}" for j, i in enumerate(items))
        lines.append(f"{1000 + user}\t{points}\n")
    path.write_text("".join(lines))
    return path


def workflow(tmp_path, ratings, epochs=2, k=5, batch=16, extra_train=()):
    """DSSTNE's MovieLens steps 3 to 6 (dsstne.md section 4), in tmp_path."""
    os.chdir(tmp_path)
    run("generate", "-d", "gl_input", "-i", ratings, "-o", "gl_input.nc", "-f", "features_input",
        "-s", "samples_input", "-c", "-q")
    run("generate", "-d", "gl_output", "-i", ratings, "-o", "gl_output.nc", "-f",
        "features_output", "-s", "samples_input", "-c", "-q")
    run("train", "-c", CONFIG, "-i", "gl_input.nc", "-o", "gl_output.nc", "-n", "gl.nc", "-b",
        batch, "-e", epochs, "-q", *extra_train)
    run("predict", "-b", batch, "-d", "gl", "-i", "features_input", "-o", "features_output",
        "-k", k, "-n", "gl.nc", "-f", ratings, "-s", "recs", "-r", ratings, "-q")
    return read_recommendations(tmp_path / "recs")


@pytest.fixture(autouse=True)
def keep_cwd():
    cwd = os.getcwd()
    yield
    os.chdir(cwd)


def test_config_file_is_dsstnes_movielens_config():
    assert json.loads(CONFIG.read_text()) == movielens_config()
    assert load_network(CONFIG).layers[0].dataset == "gl_input"


def check_recommendations(recs, ratings, k):
    """Every sample once, in file order; k labelled items each; no seen item."""
    seen = {}
    for line in ratings.read_text().splitlines():
        user, _, data = line.partition("\t")
        seen[user] = {point.split(",")[0] for point in data.split(":") if point}
    assert [user for user, _ in recs] == list(seen)
    features = read_index("features_output")
    for user, items in recs:
        names = [name for name, _ in items]
        assert len(names) == min(k, len(features) - len(seen[user])) == len(set(names))
        assert set(names) <= set(features) and not set(names) & seen[user]
        scores = [score for _, score in items]
        assert scores == sorted(scores, reverse=True)
    for line in Path("recs").read_text().splitlines():
        assert RECS_LINE.fullmatch(line), line


def test_workflow_on_synthetic_dsstne_text(tmp_path):
    ratings = write_ratings(tmp_path / "ratings.txt")
    recs = workflow(tmp_path, ratings)
    check_recommendations(recs, ratings, 5)
    input_set = read_dataset("gl_input.nc", "gl_input")
    assert input_set.indicator and input_set.data.shape == (48, 30)
    assert read_index("samples_input") == {str(1000 + u): u for u in range(48)}


def test_workflow_on_dsstne_sample(tmp_path):
    """DSSTNE's own MovieLens sample (a slice: its first 40 users), from ../shared.

    The MovieLens ratings are not committed (GroupLens's terms are not the
    project's licence); CI has ../shared beside the clone, and the synthetic
    test above runs the same workflow everywhere.
    """
    if not SHARED_SAMPLE.exists():
        pytest.skip(f"{SHARED_SAMPLE} is not present")
    lines = SHARED_SAMPLE.read_text().splitlines(keepends=True)[:40]
    source = tmp_path / "slice.txt"
    source.write_text("".join(lines))
    recs = workflow(tmp_path, source, epochs=2, k=16)
    check_recommendations(recs, source, 16)


def test_cli_train_equals_estimator_fit(tmp_path):
    ratings = write_ratings(tmp_path / "ratings.txt")
    workflow(tmp_path, ratings, epochs=3, extra_train=("-alpha", 0.1, "-lambda", 0.001))
    cli_model = load_model(tmp_path / "gl.nc")
    X = read_dataset("gl_input.nc").data
    Y = read_dataset("gl_output.nc").data
    direct = SparseAutoencoderRecommender(
        network=movielens_config(), epochs=3, batch_size=16, learning_rate=0.1, l2=0.001,
        l1=0.0, momentum=0.5, optimizer="sgd", random_state=12134, normalize_input=False,
        learning_rate_decay=0.0,
    ).fit(X, Y)
    assert cli_model.loss_curve_ == direct.loss_curve_
    for a, b in zip(cli_model.model_.weights, direct.model_.weights):
        assert np.array_equal(a, b)
    params = cli_model.get_params()
    assert (params["learning_rate"], params["l2"], params["optimizer"]) == (0.1, 0.001, "sgd")


def test_continue_training_equals_one_longer_run(tmp_path):
    ratings = write_ratings(tmp_path / "ratings.txt")
    workflow(tmp_path, ratings, epochs=3, extra_train=("--optimizer", "adam", "-alpha", 0.01))
    longer = load_model("gl.nc")
    run("train", "-c", CONFIG, "-i", "gl_input.nc", "-o", "gl_output.nc", "-n", "part.nc",
        "-b", 16, "-e", 1, "--optimizer", "adam", "-alpha", 0.01, "-q")
    # Flags left out (batch, optimizer, alpha) keep the saved model's values.
    run("train", "--continue", "part.nc", "-i", "gl_input.nc", "-o", "gl_output.nc", "-n",
        "part.nc", "-e", 2, "-q")
    resumed = load_model("part.nc")
    assert resumed.n_epochs_ == 3 and resumed.loss_curve_ == longer.loss_curve_
    for a, b in zip(resumed.model_.weights, longer.model_.weights):
        assert np.array_equal(a, b)


def test_a_sampled_config_trains_predicts_and_continues_exactly(tmp_path):
    """DSSTNE's config with the sparse_deep extension keys: a sampled SoftMax
    output (cosine scores, 8 popularity-drawn negatives per step)."""
    config = json.loads(CONFIG.read_text())
    output = config["Layers"][-1]
    output.update(Activation="SoftMax", Sampling={"Negatives": 8}, Scoring="Cosine",
                  Temperature=0.2)
    config["ErrorFunction"] = "SampledSoftmax"
    sampled = tmp_path / "sampled.json"
    sampled.write_text(json.dumps(config))
    ratings = write_ratings(tmp_path / "ratings.txt")
    train = ("--optimizer", "adam", "-alpha", 0.01)
    recs = workflow(tmp_path, ratings, epochs=3, extra_train=train)
    assert len(recs) == 48
    run("train", "-c", sampled, "-i", "gl_input.nc", "-o", "gl_output.nc", "-n", "longer.nc",
        "-b", 16, "-e", 3, *train, "-q")
    run("train", "-c", sampled, "-i", "gl_input.nc", "-o", "gl_output.nc", "-n", "part.nc",
        "-b", 16, "-e", 1, *train, "-q")
    run("train", "--continue", "part.nc", "-i", "gl_input.nc", "-o", "gl_output.nc", "-n",
        "part.nc", "-e", 2, "-q")
    longer, resumed = load_model("longer.nc"), load_model("part.nc")
    assert resumed.model_.output.is_sampled and resumed.loss_curve_ == longer.loss_curve_
    for a, b in zip(resumed.model_.weights, longer.model_.weights):
        assert np.array_equal(a, b)
    run("predict", "-b", 16, "-d", "gl", "-i", "features_input", "-o", "features_output",
        "-k", 5, "-n", "part.nc", "-f", ratings, "-s", "recs_sampled", "-r", ratings, "-q")
    assert len(read_recommendations(tmp_path / "recs_sampled")) == 48


def test_large_k_and_score_format(tmp_path):
    ratings = write_ratings(tmp_path / "ratings.txt", n_users=80, n_items=300)
    workflow(tmp_path, ratings, epochs=1, k=5)
    assert len(read_index("features_output")) > 150
    # DSSTNE's predict refused k >= 128.
    run("predict", "-i", "features_input", "-o", "features_output", "-k", 150, "-n", "gl.nc",
        "-s", "recs150", "-r", ratings, "-p", ".5f", "-q")
    recs = read_recommendations("recs150")
    assert len(recs) == 80 and all(len(items) == 150 for _, items in recs)
    assert re.fullmatch(r"[^\t]+\t(\w+,\d\.\d{5}:)+",
                        Path("recs150").read_text().splitlines()[0])


def test_generate_merge_keeps_existing_indices(tmp_path):
    os.chdir(tmp_path)
    Path("a.txt").write_text("u1\tx:y\n")
    Path("b.txt").write_text("u2\ty:z\n")
    run("generate", "-d", "a", "-i", "a.txt", "-o", "a.nc", "-f", "feat", "-s", "samp", "-c",
        "-q")
    run("generate", "-d", "b", "-i", "b.txt", "-o", "b.nc", "-f", "feat", "-s", "samp", "-m",
        "-t", "analog", "-q")
    assert read_index("feat") == {"x": 0, "y": 1, "z": 2}
    assert read_index("samp") == {"u1": 0, "u2": 1}
    b = read_dataset("b.nc")
    assert not b.indicator and np.array_equal(b.data.toarray(), [[0, 0, 0], [0, 1, 1]])


def test_command_errors(tmp_path, capsys):
    ratings = write_ratings(tmp_path / "ratings.txt", n_users=12)
    workflow(tmp_path, ratings, epochs=1)
    capsys.readouterr()
    cases = [
        (["generate", "-d", "x", "-i", ratings, "-o", "x.nc", "-f", "nofile", "-s", "s"],
         "feature index nofile does not exist; pass -c"),
        (["generate", "-d", "x", "-i", "missing.txt", "-o", "x.nc", "-f", "f", "-s", "s", "-c"],
         "data file not found"),
        (["train", "-c", CONFIG, "-i", "gl_input.nc", "-o", "gl_output.nc", "-n", "gl.nc"],
         "gl.nc already exists; pass --overwrite"),
        (["train", "-c", CONFIG, "-i", "gl_output.nc", "-o", "gl_output.nc", "-n", "new.nc"],
         "reads data set 'gl_input', which is not in gl_output.nc; it holds: gl_output"),
        (["train", "-i", "gl_input.nc", "-o", "gl_output.nc", "-n", "new.nc"],
         "-c/--config is required"),
        (["predict", "-d", "movies", "-n", "gl.nc", "-r", ratings, "-i", "features_input",
          "-o", "features_output", "-s", "out"], "pass -d gl"),
        (["predict", "-n", "gl_input.nc", "-r", ratings, "-i", "features_input", "-o",
          "features_output", "-s", "out"], "data set file, not a model file"),
        (["predict", "-n", "gl.nc", "-r", ratings, "-i", "wide_index", "-o",
          "features_output", "-s", "out"], "has index 999, but the network's input"),
        (["predict", "-n", "gl.nc", "-r", ratings, "-i", "features_input", "-o",
          "features_output", "-s", "out", "-p", "%d"], "printf float format"),
        (["predict", "-n", "gl.nc", "-r", ratings, "-i", "features_input", "-o",
          "features_output", "-s", "no/such/folder/out"], "does not exist"),
    ]
    Path("wide_index").write_text("a\t999\n")
    for argv, message in cases:
        assert main([str(a) for a in argv]) == 1, argv
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert not Path("out").exists() and not Path("new.nc").exists()
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", "-d", "x", "-i", "a", "-o", "b", "-f", "c", "-s", "d", "-c", "-m"])
    assert exit_info.value.code == 2
    run("train", "-c", CONFIG, "-i", "gl_input.nc", "-o", "gl_output.nc", "-n", "gl.nc",
        "-b", 16, "-e", 1, "--overwrite", "-q")


def test_hostile_inputs_get_one_line_and_leave_files_alone(tmp_path, capsys):
    ratings = write_ratings(tmp_path / "ratings.txt", n_users=12)
    workflow(tmp_path, ratings, epochs=1)
    capsys.readouterr()
    Path("huge.txt").write_text("u1\tx,1e39:y,2\n")
    Path("latin1.txt").write_bytes("u1\tx:y\nu2\tz:caf\xe9\n".encode("latin-1"))
    Path("deep.json").write_text("[" * 100000 + "]" * 100000)
    os.mkfifo("fifo")
    predict = ["predict", "-n", "gl.nc", "-r", ratings, "-i", "features_input", "-o",
               "features_output"]
    cases = [
        (["generate", "-d", "x", "-i", "huge.txt", "-o", "x.nc", "-f", "f", "-s", "s", "-c",
          "-t", "analog"], "huge.txt:1: value '1e39' of feature 'x' does not fit"),
        (["generate", "-d", "x", "-i", "latin1.txt", "-o", "x.nc", "-f", "f", "-s", "s", "-c"],
         "latin1.txt:2: byte 9 of the line (0xe9) is not UTF-8"),
        (["generate", "-d", "x", "-i", "fifo", "-o", "x.nc", "-f", "f", "-s", "s", "-c"],
         "fifo is not a regular file"),
        (["train", "-c", "deep.json", "-i", "gl_input.nc", "-o", "gl_output.nc", "-n", "n.nc"],
         "error: "),
        (predict + ["-s", "fifo"], "-s fifo is not a regular file"),
        (predict + ["-s", "out", "-p", "1000000000f"], "printf float format"),
    ]
    for argv, message in cases:
        assert main([str(a) for a in argv]) == 1, argv
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert not any(Path(name).exists() for name in ("x.nc", "f", "s", "n.nc", "out"))
    assert Path("fifo").is_fifo()
    assert not [name for name in os.listdir() if name.endswith(".tmp")]


def test_a_byte_order_mark_is_not_part_of_the_first_label(tmp_path):
    os.chdir(tmp_path)
    Path("bom.txt").write_bytes(b"\xef\xbb\xbfu1\tx:y\nu2\ty\n")
    run("generate", "-d", "a", "-i", "bom.txt", "-o", "a.nc", "-f", "feat", "-s", "samp", "-c",
        "-q")
    assert read_index("samp") == {"u1": 0, "u2": 1}


def test_predict_to_standard_output(tmp_path, capsys):
    ratings = write_ratings(tmp_path / "ratings.txt", n_users=12)
    workflow(tmp_path, ratings, epochs=1)
    capsys.readouterr()
    run("predict", "-b", 16, "-d", "gl", "-i", "features_input", "-o", "features_output",
        "-k", 5, "-n", "gl.nc", "-f", ratings, "-s", "-", "-r", ratings)
    captured = capsys.readouterr()
    assert captured.out == Path("recs").read_text()
    assert not Path("-").exists() and "wrote -" in captured.err


_SLOW_TRAIN = [sys.executable, "-m", "sparse_deep", "train", "-c", str(CONFIG), "-i",
               "gl_input.nc", "-o", "gl_output.nc", "-n", "slow.nc", "-b", "1", "-e", "100000",
               "--checkpoint-interval", "1"]


@pytest.mark.parametrize("signal_name,code", [("SIGTERM", 143), ("SIGINT", 130)])
def test_a_signal_during_train_leaves_whole_files_only(tmp_path, signal_name, code):
    import signal
    import time

    ratings = write_ratings(tmp_path / "ratings.txt", n_users=12)
    workflow(tmp_path, ratings, epochs=1)
    child = subprocess.Popen(_SLOW_TRAIN, cwd=tmp_path, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (tmp_path / "slow.nc").exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # the first checkpoint: training is under way
    time.sleep(0.2)
    child.send_signal(getattr(signal, signal_name))
    out, err = child.communicate(timeout=60)
    assert child.returncode == code, err
    assert "Traceback" not in err and err.strip().endswith("half-written)"), err
    assert load_model(tmp_path / "slow.nc").n_epochs_ >= 1  # a whole checkpoint
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]


def test_info(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for word in ("sparse_deep ", "numpy ", "netCDF4 ", "mpi4py ", "cpu: available", "cuda: ",
                 "MPI: "):
        assert word in out


def test_console_script_entry_point():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"sparse-deep": "sparse_deep.cli:main"}


def test_python_m_sparse_deep():
    done = subprocess.run([sys.executable, "-m", "sparse_deep", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert all(command in done.stdout for command in ("generate", "train", "predict", "info"))


def test_every_command_has_help(capsys):
    for command in ("generate", "train", "predict", "info"):
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0
        assert f"usage: sparse-deep {command}" in capsys.readouterr().out

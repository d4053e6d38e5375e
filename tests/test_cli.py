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


# -- --version, closed pipes, DSSTNE's flags, a light --help, the compile bar -----------


def _python(code_or_argv, **kwargs):
    argv = ["-c", code_or_argv] if isinstance(code_or_argv, str) else code_or_argv
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True,
                          timeout=300, **kwargs)


def test_version_is_the_installed_package_version(monkeypatch, capsys):
    from importlib import metadata

    import sparse_deep

    done = _python(["-m", "sparse_deep", "--version"])
    installed = metadata.version("sparse_deep")
    assert done.returncode == 0 and done.stdout == f"sparse-deep {installed}\n"
    # Run from a source tree without being installed: the package's own version.
    def not_installed(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", not_installed)
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"sparse-deep {sparse_deep.__version__}\n"


def _with_stdout_closed_by_its_reader(argv, cwd=ROOT):
    """Run ``python -m sparse_deep argv`` with standard output a pipe that its
    reader has closed (`| head -0`, deterministically): (status, stderr)."""
    child = subprocess.Popen([sys.executable, "-m", "sparse_deep", *map(str, argv)], cwd=cwd,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    child.stdout.close()
    _, err = child.communicate(timeout=300)
    return child.returncode, err


def test_info_to_a_closed_pipe_ends_quietly():
    code, err = _with_stdout_closed_by_its_reader(["info"])
    assert code == 141 and err == "", err


def test_predict_to_a_closed_pipe_ends_quietly(tmp_path):
    ratings = write_ratings(tmp_path / "ratings.txt", n_users=12)
    workflow(tmp_path, ratings, epochs=1)
    code, err = _with_stdout_closed_by_its_reader(
        ["predict", "-i", "features_input", "-o", "features_output", "-k", 5, "-n", "gl.nc",
         "-s", "-", "-r", ratings, "-q"], cwd=tmp_path)
    assert code == 141 and err == "", err


def test_a_closed_pipe_in_a_shell_pipeline(tmp_path):
    """`sparse-deep info | head -3`: three lines, no message, status 141."""
    done = subprocess.run(["bash", "-c", "set -o pipefail; "
                           f"'{sys.executable}' -m sparse_deep info | head -3"],
                          capture_output=True, text=True, timeout=300)
    assert done.stdout.count("\n") == 3 and done.stderr == "", done.stderr
    assert done.returncode in (0, 141)  # 0 when info wrote all before head left


# Each command's flags as DSSTNE's programs list them (Train.cpp, Predict.cpp with
# its usage's -l, NetCDFGenerator.cpp), in one command line, with where each lands.
DSSTNE_COMMAND_LINES = {
    "generate": (["-d", "gl_input", "-i", "ratings", "-o", "gl_input.nc", "-f", "features",
                  "-s", "samples", "-c", "-t", "analog"],
                 {"dataset": "gl_input", "input": "ratings", "output": "gl_input.nc",
                  "features": "features", "samples": "samples", "create_features": True,
                  "type": "analog"}),
    "train": (["-c", "config.json", "-i", "in.nc", "-o", "out.nc", "-n", "gl.nc", "-b", "256",
               "-e", "10", "-alpha", "0.1", "-lambda", "0.001", "-lambda1", "0.0001", "-mu",
               "0.7", "-mu1", "0.999", "-d", "gl"],
              {"config": "config.json", "input": "in.nc", "output": "out.nc", "network": "gl.nc",
               "batch_size": 256, "epochs": 10, "alpha": 0.1, "l2": 0.001, "l1": 0.0001,
               "mu": 0.7, "ignored_mu1": "0.999", "ignored_d": "gl"}),
    "predict": (["-b", "256", "-d", "gl", "-i", "features_input", "-o", "features_output", "-k",
                 "10", "-n", "gl.nc", "-f", "ratings", "-s", "recs", "-r", "ratings", "-p",
                 "5.2f", "-l", "Output"],
                {"batch_size": 256, "dataset": "gl", "input_features": "features_input",
                 "output_features": "features_output", "k": 10, "network": "gl.nc",
                 "filter": "ratings", "output": "recs", "records": "ratings",
                 "score_format": "5.2f", "ignored_l": "Output"}),
}


@pytest.mark.parametrize("command", DSSTNE_COMMAND_LINES)
def test_every_dsstne_flag_is_accepted(command):
    from sparse_deep.cli import build_parser

    argv, expected = DSSTNE_COMMAND_LINES[command]
    args = build_parser().parse_args([command, *argv])
    assert {name: getattr(args, name) for name in expected} == expected
    # generate's -m is the alternative to -c.
    if command == "generate":
        merge = [flag if flag != "-c" else "-m" for flag in argv]
        assert build_parser().parse_args([command, *merge]).merge_features


def test_flags_without_effect_are_noted_unless_quiet(tmp_path, capsys):
    ratings = write_ratings(tmp_path / "ratings.txt", n_users=12)
    workflow(tmp_path, ratings, epochs=1)
    capsys.readouterr()
    train = ["train", "-c", CONFIG, "-i", "gl_input.nc", "-o", "gl_output.nc", "-b", 16, "-e", 1,
             "-mu", 0.7, "-mu1", 0.999, "-d", "gl"]
    run(*train, "-n", "noted.nc")
    err = capsys.readouterr().err
    assert "sparse-deep train: note: -mu1 is accepted for DSSTNE compatibility and ignored: " \
        in err
    assert "sparse-deep train: note: -d is accepted for DSSTNE compatibility and ignored: " in err
    run(*train, "-n", "quiet.nc", "-q")
    assert capsys.readouterr().err == ""
    # -mu still sets the momentum; the ignored flags change nothing.
    run(*train[:-4], "-n", "plain.nc", "-q")
    noted, plain = load_model("noted.nc"), load_model("plain.nc")
    assert noted.get_params()["momentum"] == 0.7 and noted.loss_curve_ == plain.loss_curve_
    run("predict", "-i", "features_input", "-o", "features_output", "-n", "gl.nc", "-s", "recs",
        "-r", ratings, "-l", "Output")
    assert "sparse-deep predict: note: -l is accepted" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["generate", "train", "predict", "info"])
def test_an_unknown_flag_gets_the_commands_usage(command, capsys):
    argv = DSSTNE_COMMAND_LINES.get(command, ([], {}))[0]
    with pytest.raises(SystemExit) as exit_info:
        main([command, *argv, "--no-such-flag", "3"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"usage: sparse-deep {command} ")
    assert err.endswith(f"sparse-deep {command}: error: unrecognized arguments: "
                        "--no-such-flag 3\n")


HEAVY_MODULES = ("numba", "sklearn", "numpy", "scipy", "netCDF4", "mpi4py", "tqdm",
                 "sparse_deep.estimators", "sparse_deep.engine", "sparse_deep.backends",
                 "sparse_deep.io")


def test_help_and_version_import_no_engine():
    code = (
        "import json, sys\n"
        f"heavy = {HEAVY_MODULES!r}\n"
        "def loaded():\n"
        "    return sorted(m for m in sys.modules if m.startswith(heavy))\n"
        "from sparse_deep.cli import main\n"
        "found = {'import': loaded()}\n"
        "for argv in (['--help'], ['train', '--help'], ['predict', '--help'], ['--version']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "    found[' '.join(argv)] = loaded()\n"
        "print(json.dumps(found), file=sys.stderr)\n"
    )
    done = _python(code)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stderr.splitlines()[-1])
    assert found == {key: [] for key in found} and len(found) == 5, found


def test_the_package_imports_its_names_on_first_use(tmp_path):
    """`import sparse_deep` is light; its names load when used, and a model
    file loads through sparse_deep.io alone (the estimators register then)."""
    import sparse_deep

    assert sorted(sparse_deep.__all__) == sorted(sparse_deep._EXPORTS)
    assert set(sparse_deep.__all__) <= set(dir(sparse_deep))
    assert sparse_deep.SparseAutoencoderRecommender is SparseAutoencoderRecommender
    assert sparse_deep.load_model is load_model and sparse_deep.io.load_model is load_model
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        sparse_deep.nothing  # noqa: B018
    ratings = write_ratings(tmp_path / "ratings.txt", n_users=12)
    workflow(tmp_path, ratings, epochs=1)
    done = _python("import sys, sparse_deep\n"
                   "assert 'sklearn' not in sys.modules\n"
                   "from sparse_deep.io import load_model\n"
                   "print(type(load_model('gl.nc')).__name__)\n", cwd=tmp_path)
    assert done.returncode == 0 and done.stdout == "SparseAutoencoderRecommender\n", done.stderr


def test_train_bar_says_compiling_and_leaves_compile_time_out_of_its_eta(monkeypatch, capsys):
    from tqdm import tqdm

    from sparse_deep.backends.cpu import compile_notice
    from sparse_deep.cli import COMPILING, TRAINING, _EpochProgress

    clock = [1000.0]
    monkeypatch.setattr("tqdm.std.time", lambda: clock[0])
    monkeypatch.setattr(compile_notice, "_said", False)  # as in a fresh process
    with tqdm(total=10, desc=TRAINING, file=sys.stderr, mininterval=0) as bar:
        progress = _EpochProgress(bar)
        with compile_notice.report_compiles_to(progress.compiling):
            compile_notice.compile_started()  # what numba's compile event calls
            assert bar.desc == COMPILING
            clock[0] += 60.0  # compiling, then the epoch
            progress.epoch_done(0.5)
            assert bar.desc == TRAINING and bar.n == 1
            assert "1/10 [00:00<?" in str(bar)  # no ETA from a compiling epoch
            clock[0] += 2.0  # an epoch without compiling
            progress.epoch_done(0.4)
            # 8 epochs left at 2 s each; counting the compile it would say minutes.
            assert "2/10 [00:02<00:16" in str(bar), str(bar)
    err = capsys.readouterr().err
    assert compile_notice.NOTICE.strip() in err and COMPILING in err


def test_cli_train_reports_compiles_on_its_bar(tmp_path, monkeypatch, capsys):
    from sparse_deep.backends.cpu import compile_notice
    from sparse_deep.cli import COMPILING

    ratings = write_ratings(tmp_path / "ratings.txt", n_users=12)
    workflow(tmp_path, ratings, epochs=1)
    capsys.readouterr()
    fit = SparseAutoencoderRecommender.fit

    def fit_compiling_on_first_epoch(self, *args, **kwargs):
        if not getattr(self, "n_epochs_", 0):
            compile_notice.compile_started()  # as numba does on a cold cache
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(SparseAutoencoderRecommender, "fit", fit_compiling_on_first_epoch)
    monkeypatch.setattr(compile_notice, "_said", False)
    monkeypatch.setattr("sparse_deep.cli._is_tty", lambda stream: True)  # the bar shows
    run("train", "-c", CONFIG, "-i", "gl_input.nc", "-o", "gl_output.nc", "-n", "bar.nc",
        "-b", 16, "-e", 2)
    err = capsys.readouterr().err
    assert COMPILING in err and err.count(compile_notice.NOTICE.strip()) == 1

"""Checkpoints in the Python API, resuming after a kill, divergence, and fits
that fail leaving the estimator as it was."""

import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import scipy.sparse as sp

from sparse_deep import SparseAutoencoderRecommender, SparseMLPClassifier, SparseMLPRegressor
from sparse_deep.estimators import _base


def _data(seed=0, n=90, d=30):
    rng = np.random.default_rng(seed)
    X = sp.random(n, d, density=0.2, format="csr", dtype=np.float32, random_state=rng)
    X.data[:] = 1.0
    X = X[np.diff(X.indptr) > 0]
    y_class = (np.asarray(X[:, : d // 2].sum(axis=1)).ravel() > 2).astype(int)
    y_value = np.asarray(X.sum(axis=1)).ravel().astype(np.float32)
    return X, y_class, y_value


X, Y_CLASS, Y_VALUE = _data()
ESTIMATORS = {
    "recommender": (SparseAutoencoderRecommender, dict(hidden_layer_sizes=(8,)), ()),
    "classifier": (SparseMLPClassifier, dict(hidden_layer_sizes=(8,)), (Y_CLASS,)),
    "regressor": (SparseMLPRegressor, dict(hidden_layer_sizes=(8,)), (Y_VALUE,)),
}


def _parameters(est):
    return est.model_.weights + [est.model_.biases[t] for t in sorted(est.model_.biases)]


def _assert_same_model(a, b):
    assert a.loss_curve_ == b.loss_curve_
    assert (a.n_steps_, a.n_epochs_) == (b.n_steps_, b.n_epochs_)
    for x, y in zip(_parameters(a), _parameters(b)):
        np.testing.assert_array_equal(x, y)


class _Interrupt(BaseException):
    """Stands in for a kill: not an Exception, so nothing catches it on the way."""


def _interrupt_after(monkeypatch, n_epochs):
    run_epoch = _base.TrainingSession.run_epoch
    calls = []

    def run_then_stop(session):
        if len(calls) == n_epochs:
            raise _Interrupt
        calls.append(1)
        return run_epoch(session)

    monkeypatch.setattr(_base.TrainingSession, "run_epoch", run_then_stop)


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_a_fit_resumed_from_its_checkpoint_equals_an_uninterrupted_one(name, tmp_path,
                                                                       monkeypatch):
    cls, params, y = ESTIMATORS[name]
    path = tmp_path / "fit.nc"
    make = lambda: cls(**params, epochs=6, random_state=0, checkpoint_path=path,  # noqa: E731
                       checkpoint_every=2)
    whole = cls(**params, epochs=6, random_state=0).fit(X, *y)
    with monkeypatch.context() as patch:
        _interrupt_after(patch, 5)  # the checkpoint of epoch 4 survives
        with pytest.raises(_Interrupt):
            make().fit(X, *y)
    assert path.exists()
    resumed = make().fit(X, *y)
    _assert_same_model(resumed, whole)
    assert [f for f in os.listdir(tmp_path) if f != "fit.nc"] == []  # no temporary left


def test_a_checkpoint_of_other_parameters_is_replaced_with_a_warning(tmp_path):
    path = tmp_path / "fit.nc"
    SparseAutoencoderRecommender(hidden_layer_sizes=(8,), epochs=2, random_state=0,
                                 checkpoint_path=path).fit(X)
    other = SparseAutoencoderRecommender(hidden_layer_sizes=(8,), epochs=2, random_state=0,
                                         learning_rate=3e-3, checkpoint_path=path)
    with pytest.warns(UserWarning, match="another fit.*learning_rate"):
        other.fit(X)
    fresh = SparseAutoencoderRecommender(hidden_layer_sizes=(8,), epochs=2, random_state=0,
                                         learning_rate=3e-3).fit(X)
    _assert_same_model(other, fresh)


def test_a_checkpoint_of_other_data_is_not_resumed(tmp_path):
    path = tmp_path / "fit.nc"
    make = lambda: SparseAutoencoderRecommender(  # noqa: E731
        hidden_layer_sizes=(8,), epochs=2, random_state=0, checkpoint_path=path)
    make().fit(X)
    other = X.copy()
    other.data[0] = 2.0
    with pytest.warns(UserWarning, match="other training data"):
        make().fit(other)


@pytest.mark.parametrize("params,match", [
    (dict(checkpoint_every=0), "checkpoint_every must be a positive integer"),
    (dict(early_stopping=True), "cannot be combined with early_stopping"),
])
def test_bad_checkpoint_parameters_are_refused_before_training(tmp_path, params, match):
    est = SparseAutoencoderRecommender(checkpoint_path=tmp_path / "c.nc", **params)
    with pytest.raises(ValueError, match=match):
        est.fit(X)
    assert not (tmp_path / "c.nc").exists()
    missing = SparseAutoencoderRecommender(checkpoint_path=tmp_path / "no" / "c.nc")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        missing.fit(X)


_KILLED_FIT = """
import sys
import numpy as np, scipy.sparse as sp
from sparse_deep import SparseAutoencoderRecommender
X = sp.load_npz(sys.argv[1])
SparseAutoencoderRecommender(hidden_layer_sizes=(32,), epochs=int(sys.argv[3]),
                             random_state=0, checkpoint_path=sys.argv[2]).fit(X)
"""


def test_sigkill_during_fit_then_resume_gives_the_uninterrupted_weights(tmp_path):
    """A real SIGKILL of a process in the middle of fit (at whatever point it
    is: mid-epoch or mid-write), then a fit in this process resumes."""
    rng = np.random.default_rng(1)
    data = sp.random(3000, 400, density=0.03, format="csr", dtype=np.float32,
                     random_state=rng)
    data.data[:] = 1.0
    data = data[np.diff(data.indptr) > 0]
    sp.save_npz(tmp_path / "X.npz", data)
    path, epochs = tmp_path / "fit.nc", 40
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(_KILLED_FIT),
                              str(tmp_path / "X.npz"), str(path), str(epochs)])
    deadline = time.monotonic() + 120
    while not path.exists() and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.02)
    time.sleep(0.3)  # into a later epoch
    child.send_signal(signal.SIGKILL)
    assert child.wait(timeout=30) == -signal.SIGKILL, "the fit ended before it was killed"
    make = lambda **kw: SparseAutoencoderRecommender(  # noqa: E731
        hidden_layer_sizes=(32,), epochs=epochs, random_state=0, **kw)
    from sparse_deep.io import load_model

    killed_at = load_model(path).n_epochs_
    assert 0 < killed_at < epochs
    resumed = make(checkpoint_path=path).fit(data)
    _assert_same_model(resumed, make().fit(data))
    # A temporary file of a write the kill cut short is gone with the next write.
    assert sorted(os.listdir(tmp_path)) == ["X.npz", "fit.nc"]


def test_a_write_removes_temporary_files_of_dead_writers_only(tmp_path):
    from sparse_deep.io import save_model

    est = SparseAutoencoderRecommender(hidden_layer_sizes=(8,), epochs=1, random_state=0).fit(X)
    dead = tmp_path / f".model.nc.{2**22 + 7}-{'0' * 32}.tmp"  # above Linux's pid_max
    live = tmp_path / f".model.nc.{os.getpid()}-{'1' * 32}.tmp"
    other = tmp_path / f".other.nc.{2**22 + 7}-{'2' * 32}.tmp"
    for orphan in (dead, live, other):
        orphan.write_bytes(b"half a file")
    save_model(est, tmp_path / "model.nc")
    assert sorted(os.listdir(tmp_path)) == sorted(["model.nc", live.name, other.name])


# -- divergence --------------------------------------------------------------------
# (estimator, parameters, learning rate at which it diverges, data scale, fit arguments):
# the classifier's clipped log-loss stays finite; its weights do not, on extreme data.
DIVERGING = {
    "recommender": (SparseAutoencoderRecommender,
                    dict(optimizer="sgd", scoring="dot", temperature=1.0, activation="relu"),
                    1e6, 1.0, ()),
    "classifier": (SparseMLPClassifier, dict(optimizer="sgd"), 1e-3, 1e20, (Y_CLASS,)),
    "regressor": (SparseMLPRegressor, dict(optimizer="sgd"), 10.0, 1.0, (Y_VALUE * 1e3,)),
}


@pytest.mark.parametrize("warm_start", [False, True], ids=["refit", "warm_start"])
@pytest.mark.parametrize("name", list(DIVERGING))
def test_divergence_names_epoch_and_batch_and_leaves_the_estimator_as_it_was(name,
                                                                             warm_start):
    cls, params, learning_rate, scale, y = DIVERGING[name]
    est = cls(hidden_layer_sizes=(8,), epochs=2, random_state=0, learning_rate=1e-3,
              **params).fit(X, *y)
    before = {k: v for k, v in vars(est).items() if k != "_kept_training_runner"}
    curve, weights = list(est.loss_curve_), [p.copy() for p in _parameters(est)]
    est.set_params(learning_rate=learning_rate, epochs=50, warm_start=warm_start)
    with pytest.raises(FloatingPointError,
                       match=r"diverged at epoch \d+, (by )?batch \d+ of \d+"):
        est.fit(X * scale, *y)
    assert vars(est).keys() - {"_kept_training_runner"} == before.keys()
    assert est.model_ is before["_model_"] and est.loss_curve_ == curve
    for saved, now in zip(weights, _parameters(est)):
        np.testing.assert_array_equal(saved, now)


def test_continued_fits_copy_into_kept_buffers_that_are_never_pickled():
    """The copy a continued fit takes, to restore a failed call, goes into
    the buffers the previous call used (fresh memory costs page faults)."""
    cls, params, _, _, y = DIVERGING["regressor"]
    est = cls(hidden_layer_sizes=(8,), epochs=1, random_state=0, warm_start=True,
              **params).fit(X, *y)
    assert not hasattr(est, "_restore_buffers")
    buffers = est.fit(X, *y)._restore_buffers
    again = est.fit(X, *y)._restore_buffers
    assert again is buffers and len(buffers) == len(_parameters(est)) + sum(
        len(s) for s in est._optimizer_state_.states)
    assert not hasattr(pickle.loads(pickle.dumps(est)), "_restore_buffers")


def diverging_fit(monkeypatch, read_steps):
    """The regressor's loss curve on X, then the batch a diverging refit names
    and the steps it ran, with the losses read every ``read_steps`` steps."""
    from sparse_deep.engine.runner import Runner

    monkeypatch.setattr(_base, "LOSS_READ_STEPS", read_steps)
    cls, params, learning_rate, scale, y = DIVERGING["regressor"]
    est = cls(hidden_layer_sizes=(8,), epochs=3, batch_size=4, random_state=0, **params)
    curve = list(est.fit(X, *y).loss_curve_)
    steps = []
    train_step = Runner.train_step
    with monkeypatch.context() as patch:
        patch.setattr(Runner, "train_step",
                      lambda self, *a, **k: steps.append(1) or train_step(self, *a, **k))
        est.set_params(learning_rate=learning_rate, epochs=50)
        with pytest.raises(FloatingPointError, match=r"epoch 1, batch \d+ of") as error:
            est.fit(X * scale, *y)
    batch = int(error.value.args[0].split("batch ")[1].split(" ")[0])
    return curve, batch, len(steps)


@pytest.mark.parametrize("read_steps", [2, 5, 1000])
def test_losses_read_every_few_steps_give_the_same_fit_and_stop_a_divergence(read_steps,
                                                                            monkeypatch):
    """The batches' losses stay on the backend between reads (every
    LOSS_READ_STEPS steps, and at an epoch's end): the loss curve is the same
    however often they are read, a divergence names the same batch, and
    training stops by the read after it."""
    curve, batch, steps = diverging_fit(monkeypatch, read_steps)
    want_curve, want_batch, want_steps = diverging_fit(monkeypatch, 1)
    n_batches = -(-X.shape[0] // 4)
    assert curve == want_curve and batch == want_batch and want_steps == batch
    assert steps == min(-(-batch // read_steps) * read_steps, n_batches)


def test_a_model_too_large_to_copy_is_dropped_not_kept_half_trained(monkeypatch):
    monkeypatch.setattr(_base, "RESTORE_COPY_BYTES", 0)
    cls, params, learning_rate, scale, y = DIVERGING["regressor"]
    est = cls(hidden_layer_sizes=(8,), epochs=2, random_state=0, **params).fit(X, *y)
    est.set_params(learning_rate=learning_rate, epochs=50, warm_start=True)
    with pytest.warns(RuntimeWarning, match="no longer fitted"), \
            pytest.raises(FloatingPointError, match="diverged"):
        est.fit(X * scale, *y)
    assert not [name for name in vars(est) if name.endswith("_")]
    est.set_params(learning_rate=1e-3, epochs=1).fit(X, *y)  # and it fits again from scratch

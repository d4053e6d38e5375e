"""Checkpoints of a fit in progress, and the fit that resumes from one.

With ``checkpoint_path`` set, ``fit`` writes the estimator as it stands every
``checkpoint_every`` epochs, in the model file format (atomically, so a killed
process leaves the previous checkpoint or the new one, never half of one). A
later ``fit`` with the same parameters on the same data finds the file and
trains only the epochs that remain, from the saved weights, optimizer state
and step counters: the same bits as a fit never interrupted, because every
random stream is keyed by the seed, the step and the epoch.
"""

import copy
import json
import os
import warnings
import zlib

import numpy as np
import scipy.sparse as sp

# Parameters that do not change what a fit computes: a checkpoint written under
# other values of these still resumes.
_NEUTRAL_PARAMS = ("checkpoint_path", "checkpoint_every", "verbose", "warm_start")


def data_checksum(*arrays):
    """CRC-32 of the training data (CSR matrices, dense arrays or None), with
    their shapes, so that a checkpoint resumes only on the data it was fitted on."""
    crc = 0
    for array in arrays:
        if array is None:
            crc = zlib.crc32(b"none", crc)
            continue
        parts = (array.indptr, array.indices, array.data) if sp.issparse(array) else (array,)
        crc = zlib.crc32(np.asarray(array.shape, dtype=np.int64).tobytes(), crc)
        for part in parts:
            crc = zlib.crc32(np.ascontiguousarray(part).tobytes(), crc)
    return crc


class Checkpoint:
    """The checkpoint file of one ``fit``.

    Parameters
    ----------
    estimator : SparseNetworkEstimator
        The estimator being fitted; its ``checkpoint_path`` is set.
    data_crc : int
        :func:`data_checksum` of the fit's inputs, targets and row weights.
    """

    def __init__(self, estimator, data_crc):
        self.path = os.fspath(estimator.checkpoint_path)
        self.every = int(estimator.checkpoint_every)
        self.data_crc = int(data_crc)
        self.first_epoch = None

    def restore(self, estimator, spec):
        """Put the checkpoint's training state into ``estimator`` if the file
        exists and belongs to this fit (same class, parameters, network and
        data). Returns whether it did; a checkpoint of another fit is warned
        about and will be replaced."""
        from ..io.model_file import load_model

        if not os.path.exists(self.path):
            return False
        saved = load_model(self.path)
        mismatch = _mismatch(saved, estimator, spec, self.data_crc)
        if mismatch:
            warnings.warn(f"{self.path} is a checkpoint of another fit ({mismatch}); training "
                          "from the start and replacing it", stacklevel=4)
            return False
        for name in ("model_", "_optimizer_state_", "_seed_", "n_steps_", "n_epochs_",
                     "n_ranks_", "network_"):
            setattr(estimator, name, getattr(saved, name))
        estimator.loss_curve_ = list(saved.loss_curve_)
        self.first_epoch = int(saved._checkpoint_["first_epoch"])
        return True

    def due(self, session):
        """Whether the epoch ``session`` just finished is one to checkpoint."""
        return session.epoch % self.every == 0

    def write(self, estimator, session):
        """Save ``estimator`` with ``session``'s current training state."""
        from ..io.model_file import save_model

        session.runner.sync_to_model()
        snapshot = copy.copy(estimator)
        snapshot.model_, snapshot._seed_ = session.runner.model, session.seed
        snapshot._optimizer_state_ = session.optimizer
        snapshot.n_steps_, snapshot.n_epochs_ = session.step, session.epoch
        snapshot.n_ranks_ = session.comm.size
        snapshot.network_ = session.runner.model.spec.to_dict()
        snapshot.loss_curve_ = list(estimator.loss_curve_)
        snapshot._checkpoint_ = {"data_crc32": self.data_crc, "first_epoch": self.first_epoch}
        save_model(snapshot, self.path)


def _mismatch(saved, estimator, spec, data_crc):
    """Why ``saved`` is not a checkpoint of this fit, or "" when it is."""
    if type(saved) is not type(estimator):
        return f"a {type(saved).__name__}, not a {type(estimator).__name__}"
    record = getattr(saved, "_checkpoint_", None)
    if not isinstance(record, dict):
        return "a model file, not a checkpoint"
    theirs, ours = _fit_params(saved), _fit_params(estimator)
    changed = sorted(k for k in ours if theirs.get(k) != ours[k])
    if changed:
        return f"other values of {', '.join(changed)}"
    if saved.model_.spec != spec:
        return "another network"
    if record.get("data_crc32") != data_crc:
        return "other training data"
    return ""


def _fit_params(estimator):
    """The parameters that decide what a fit computes, as comparable JSON text."""
    from ..io.model_file import _params_to_json

    seeded = isinstance(estimator.random_state, (int, np.integer, type(None)))
    if not seeded:  # a generator cannot be saved; the checkpoint's seed is what matters
        estimator = copy.copy(estimator)
        estimator.random_state = None
    params = _params_to_json(estimator)
    if not seeded:
        params.pop("random_state")
    return {k: json.dumps(v, sort_keys=True) for k, v in params.items()
            if k not in _NEUTRAL_PARAMS}

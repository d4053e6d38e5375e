"""Fitted estimators as one NetCDF file: network, parameters, weights and the
state that training resumes from.

The weights use the names of DSSTNE's trained-network files
(``weight<i>_weights``, ``weight<i>_bias`` and their attributes, see
docs/io.md); everything DSSTNE's files do not hold is under names starting
with ``sparse_deep_``. Nothing in the file is executable: parameters and
fitted scalars are JSON, arrays are plain NetCDF variables, and the estimator
class is looked up by name among the classes registered with
:func:`register_estimator`, the only classes loading ever instantiates.
"""

import dataclasses
import json
import os
import warnings
from dataclasses import dataclass

import netCDF4
import numpy as np
from sklearn.exceptions import NotFittedError

from ..backends import get_backend
from ..distributed.comm import SerialComm, ranks_agree
from ..distributed.shards import (
    gather_model,
    gather_optimizer_state,
    scatter_model,
    scatter_optimizer_state,
)
from ..engine.model import Model
from ..engine.optim import OptimizerConfig, OptimizerState
from ..network import NetworkSpec, parse_network
from ._files import atomic_path, open_netcdf, read_variable

__all__ = ["load_model", "register_estimator", "registered_estimators", "save_model"]

FORMAT = "sparse_deep model"
FORMAT_VERSION = 1
_WHAT = "a sparse_deep model file"

# Fitted attributes every network estimator has, stored as JSON scalars.
_COMMON_SCALARS = ("_seed_", "n_steps_", "n_epochs_", "n_features_in_")


@dataclass(frozen=True)
class _Entry:
    cls: type
    json_attributes: tuple
    array_attributes: tuple


_REGISTRY = {}


def register_estimator(cls, json_attributes=(), array_attributes=()):
    """Allow :func:`save_model` and :func:`load_model` for an estimator class.

    The model file records the class by name; loading instantiates only
    registered classes. Besides the attributes every network estimator has
    (``model_``, its optimizer state and counters, ``loss_curve_``,
    ``network_``, ``n_features_in_``, ``feature_names_in_``), a class lists
    the fitted attributes of its own.

    Parameters
    ----------
    cls : type
        A :class:`~sparse_deep.estimators._base.SparseNetworkEstimator` subclass.
    json_attributes : sequence of str
        Fitted attributes stored as JSON: numbers, strings, lists, dicts, and
        small numpy arrays of numbers, booleans or strings (e.g. ``classes_``).
    array_attributes : sequence of str
        Fitted attributes that are numeric numpy arrays, stored as variables.

    Returns
    -------
    cls
        Unchanged, so this works as a decorator's body.
    """
    name = cls.__name__
    known = _REGISTRY.get(name)
    if known is not None and known.cls is not cls:
        raise ValueError(f"another class named {name!r} is already registered "
                         f"({known.cls.__module__}); class names must be unique")
    _REGISTRY[name] = _Entry(cls, tuple(json_attributes), tuple(array_attributes))
    return cls


def registered_estimators():
    """The classes :func:`load_model` may create, by name."""
    return {name: entry.cls for name, entry in _REGISTRY.items()}


# -- JSON with tuples and small arrays --------------------------------------------


def _to_json(value, where):
    """``value`` as JSON-ready data; tuples and numpy arrays are tagged so that
    they come back as themselves."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return {"__tuple__": [_to_json(v, where) for v in value]}
    if isinstance(value, list):
        return [_to_json(v, where) for v in value]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError(f"{where}: dict keys must be strings to be saved")
        return {k: _to_json(v, where) for k, v in value.items()}
    if isinstance(value, np.ndarray) and value.dtype.kind in "biufUO":
        if value.dtype.kind == "O" and not all(isinstance(v, str) for v in value.ravel()):
            raise TypeError(f"{where}: an object array can be saved only if it holds strings")
        dtype = "str" if value.dtype.kind in "UO" else value.dtype.str
        return {"__ndarray__": {"dtype": dtype, "object": value.dtype.kind == "O",
                                "shape": list(value.shape), "data": value.ravel().tolist()}}
    raise TypeError(f"{where}: a value of type {type(value).__name__} cannot be saved in a "
                    "model file")


def _from_json(value):
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    if isinstance(value, dict):
        if set(value) == {"__tuple__"}:
            return tuple(_from_json(v) for v in value["__tuple__"])
        if set(value) == {"__ndarray__"}:
            spec = value["__ndarray__"]
            if spec["dtype"] == "str":
                array = np.array(spec["data"], dtype=object if spec["object"] else str)
            else:
                array = np.array(spec["data"], dtype=np.dtype(spec["dtype"]))
            return array.reshape(spec["shape"])
        return {k: _from_json(v) for k, v in value.items()}
    return value


def _params_to_json(estimator):
    params = {}
    for name, value in estimator.get_params(deep=False).items():
        if name == "network" and value is not None and not isinstance(value, dict):
            # A path may not exist where the model is loaded; keep the network itself.
            is_text = isinstance(value, str) and value.lstrip().startswith("{")
            value = value if is_text else parse_network(value).to_dict()
        if name == "random_state" and isinstance(value, (np.random.RandomState,
                                                         np.random.Generator)):
            warnings.warn("random_state is a random generator, which cannot be saved; the "
                          "loaded model has random_state=None (it affects only a refit from "
                          "scratch, not predictions or continued training)", stacklevel=3)
            value = None
        params[name] = _to_json(value, f"parameter {name!r}")
    return params


# -- saving --------------------------------------------------------------------------


def save_model(estimator, path):
    """Save a fitted estimator as one NetCDF file, atomically.

    The file holds the trained network (DSSTNE JSON), the estimator's
    parameters, every weight and bias, and the training state (optimizer
    arrays, step and epoch counters, seed, loss curve), so that
    :func:`load_model` gives an estimator that predicts identically and, with
    ``warm_start=True``, continues training exactly where this one stopped.

    Parameters
    ----------
    estimator : fitted estimator of a registered class
    path : str or os.PathLike
        Replaced if it exists; the file appears only once complete.

    Raises
    ------
    TypeError
        If the estimator's class is not registered, or a parameter cannot be
        stored (the message names it).
    sklearn.exceptions.NotFittedError
        If the estimator is not fitted.
    """
    entry = _entry_of(estimator)
    if not hasattr(estimator, "model_"):
        raise NotFittedError(f"this {type(estimator).__name__} is not fitted yet; call fit "
                             "before save_model")
    params = _params_to_json(estimator)
    fitted = {name: int(getattr(estimator, name)) for name in _COMMON_SCALARS}
    if hasattr(estimator, "feature_names_in_"):
        fitted["feature_names_in_"] = _to_json(estimator.feature_names_in_, "feature_names_in_")
    for name in entry.json_attributes:
        if hasattr(estimator, name):
            fitted[name] = _to_json(getattr(estimator, name), f"fitted attribute {name!r}")
    arrays = {name: np.asarray(getattr(estimator, name)) for name in entry.array_attributes
              if hasattr(estimator, name)}
    model, state = estimator.model_, estimator._optimizer_state_
    comm = SerialComm()
    if model.shards is not None:  # sharded over MPI ranks: rank 0 writes the whole model
        comm = estimator._communicator()
        whole = gather_model(model, comm)
        model, state = whole, gather_optimizer_state(state, model, whole, comm)
    with ranks_agree(comm):
        if comm.rank == 0:
            _write_model_file(path, estimator, model, state, params, fitted, arrays)


def _write_model_file(path, estimator, model, state, params, fitted, arrays):
    with atomic_path(path) as temporary:
        with netCDF4.Dataset(temporary, "w", format="NETCDF4") as nc:
            _write_network_attributes(nc, model.spec)
            _write_layers(nc, model)
            _write_weights(nc, model)
            nc.setncattr("sparse_deep_format", FORMAT)
            nc.setncattr("sparse_deep_format_version", np.int32(FORMAT_VERSION))
            nc.setncattr("sparse_deep_version", _package_version())
            nc.setncattr("sparse_deep_estimator", type(estimator).__name__)
            nc.setncattr("sparse_deep_network", json.dumps(model.spec.to_dict()))
            nc.setncattr("sparse_deep_params", json.dumps(params))
            nc.setncattr("sparse_deep_fitted", json.dumps(fitted))
            _write_array(nc, "sparse_deep_loss_curve",
                         np.asarray(estimator.loss_curve_, dtype=np.float64))
            for name, array in arrays.items():
                _write_array(nc, f"sparse_deep_fitted_{name}", array)
            _write_optimizer_state(nc, state)


def _entry_of(estimator):
    entry = _REGISTRY.get(type(estimator).__name__)
    if entry is None or entry.cls is not type(estimator):
        raise TypeError(f"{type(estimator).__name__} cannot be saved: model files hold only "
                        f"registered estimators ({', '.join(sorted(_REGISTRY))})")
    return entry


def _package_version():
    from .. import __version__

    return __version__


def _write_network_attributes(nc, spec):
    """DSSTNE's global network attributes, for anyone reading the file with ncdump."""
    nc.setncattr("version", np.float32(spec.version))
    nc.setncattr("name", spec.name)
    nc.setncattr("ShuffleIndices", np.uint32(spec.shuffle_indices))
    nc.setncattr("decay", np.float32(spec.decay))
    nc.setncattr("bDenoising", np.uint32(spec.denoising_p > 0))
    nc.setncattr("denoising_p", np.float32(spec.denoising_p))
    penalty = spec.sparseness_penalty
    nc.setncattr("bSparsenessPenalty", np.uint32(penalty.enabled))
    nc.setncattr("sparsenessPenalty_p", np.float32(penalty.p))
    nc.setncattr("sparsenessPenalty_beta", np.float32(penalty.beta))
    nc.setncattr("deltaBoost_one", np.float32(spec.delta_boost.one))
    nc.setncattr("deltaBoost_zero", np.float32(spec.delta_boost.zero))
    nc.setncattr("SMCE_oneTarget", np.float32(spec.smce.one_target))
    nc.setncattr("SMCE_zeroTarget", np.float32(spec.smce.zero_target))
    nc.setncattr("SMCE_oneScale", np.float32(spec.smce.one_scale))
    nc.setncattr("SMCE_zeroScale", np.float32(spec.smce.zero_scale))


def _write_layers(nc, model):
    nc.setncattr("layers", np.uint32(len(model.layers)))
    for i, (plan, layer) in enumerate(zip(model.layers, model.spec.layers)):
        nc.setncattr(f"layer{i}_name", plan.name)
        nc.setncattr(f"layer{i}_dataSet", layer.dataset or "")
        nc.setncattr(f"layer{i}_Nx", np.uint32(plan.n))


def _write_weights(nc, model):
    """``weight<i>_*`` as DSSTNE: the matrix of link i row-major with one row per
    source unit (DSSTNE's W[source][target]); the target layer's bias on its
    first incoming link and zeros on any further one (DSSTNE adds them up)."""
    nc.setncattr("weights", np.uint32(len(model.links)))
    biased = set()
    for i, (w, (s, t)) in enumerate(zip(model.weights, model.links)):
        prefix = f"weight{i}_"
        nc.setncattr(prefix + "inputLayer", model.layers[s].name)
        nc.setncattr(prefix + "outputLayer", model.layers[t].name)
        nc.setncattr(prefix + "width", np.uint64(w.shape[1]))
        nc.setncattr(prefix + "height", np.uint64(w.shape[0]))
        nc.setncattr(prefix + "length", np.uint64(1))
        nc.setncattr(prefix + "bShared", np.uint32(0))
        nc.setncattr(prefix + "bLocked", np.uint32(0))
        nc.setncattr(prefix + "norm", np.float32(model.layers[t].weight_norm))
        bias = model.biases[t] if t not in biased else np.zeros_like(model.biases[t])
        biased.add(t)
        _write_array(nc, prefix + "bias", bias, dim=prefix + "biasDim")
        _write_array(nc, prefix + "weights", w.reshape(-1), dim=prefix + "weightDim")


def _write_array(nc, name, array, dim=None):
    """A variable holding ``array`` flattened; its shape is an attribute when 2-D+."""
    flat = np.ascontiguousarray(array).reshape(-1)
    dim = dim or f"{name}_dim"
    nc.createDimension(dim, flat.size if flat.size else None)
    var = nc.createVariable(name, flat.dtype, (dim,))
    if flat.size:
        var[:] = flat
    var.setncattr("shape", np.asarray(np.shape(array), dtype=np.int64))


def _write_optimizer_state(nc, state):
    nc.setncattr("sparse_deep_optimizer", json.dumps(dataclasses.asdict(state.config)))
    nc.setncattr("sparse_deep_optimizer_parameters", np.uint32(len(state.states)))
    for p, slots in enumerate(state.states):
        for s, array in enumerate(slots, start=1):
            _write_array(nc, f"sparse_deep_optimizer{p}_state{s}", _host_copy(array))


def _host_copy(array):
    """An optimizer array's values on the host (numba.cuda device arrays have
    ``copy_to_host``; CPU arrays are numpy already)."""
    if hasattr(array, "copy_to_host"):
        return array.copy_to_host()
    return np.asarray(array)


# -- loading -------------------------------------------------------------------------


def load_model(path):
    """Load an estimator saved by :func:`save_model`.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    estimator
        Fitted, with the saved parameters; ``predict``, ``recommend`` and the
        like give the same results as the saved estimator, and after
        ``set_params(warm_start=True)`` a ``fit`` continues its training.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not a sparse_deep model file (DSSTNE's own network
        files included), was written by a newer format version, names an
        estimator class that is not registered, or is missing or has
        inconsistent variables; the message names the file and the problem.
    """
    path = os.fspath(path)
    with open_netcdf(path, _WHAT) as nc:
        _check_format(nc, path)
        entry = _registered(_text_attr(nc, "sparse_deep_estimator", path), path)
        params = _from_json(_json_attr(nc, "sparse_deep_params", path))
        try:
            estimator = entry.cls(**params)
        except TypeError as error:
            raise ValueError(f"{path}: the saved parameters do not fit "
                             f"{entry.cls.__name__} ({error})") from None
        spec = _network(nc, path)
        model = _read_model(nc, spec, path)
        fitted = _from_json(_json_attr(nc, "sparse_deep_fitted", path))
        missing = [name for name in _COMMON_SCALARS if name not in fitted]
        if missing:
            raise ValueError(f"{path}: sparse_deep_fitted lacks {', '.join(missing)}")
        for name, value in fitted.items():
            setattr(estimator, name, value)
        estimator.loss_curve_ = [float(v) for v in
                                 _read_array(nc, "sparse_deep_loss_curve", path)]
        for name in entry.array_attributes:
            var = f"sparse_deep_fitted_{name}"
            if var in nc.variables:
                setattr(estimator, name, _read_array(nc, var, path))
        state = _read_optimizer_state(nc, model, path)
    # Under mpiexec with a sharding estimator, each rank keeps its shard.
    comm = estimator._communicator()
    if comm.size > 1:
        local = scatter_model(model, comm)
        model, state = local, scatter_optimizer_state(state, model, local, comm)
    estimator.model_, estimator._optimizer_state_ = model, state
    estimator.network_ = spec.to_dict()
    estimator.n_ranks_ = comm.size
    return estimator


def _check_format(nc, path):
    attributes = nc.ncattrs()
    if "sparse_deep_format" not in attributes:
        if "weights" in attributes and "weight0_inputLayer" in attributes:
            raise ValueError(f"{path} looks like a network file written by DSSTNE itself; it "
                             "holds no training state or estimator parameters and cannot be "
                             "loaded. Train with `sparse-deep train` to get a model file.")
        if "datasets" in attributes:
            raise ValueError(f"{path} is a DSSTNE data set file, not a model file")
        raise ValueError(f"{path} is not a sparse_deep model file (no 'sparse_deep_format' "
                         "attribute)")
    version = int(np.asarray(nc.getncattr("sparse_deep_format_version")).reshape(()))
    if nc.getncattr("sparse_deep_format") != FORMAT or version > FORMAT_VERSION:
        raise ValueError(f"{path} is a model file of format version {version}; this version of "
                         f"sparse_deep reads version {FORMAT_VERSION} or older. Upgrade "
                         "sparse_deep to load it.")


def _text_attr(nc, name, path):
    if name not in nc.ncattrs():
        raise ValueError(f"{path}: missing global attribute {name!r}")
    value = nc.getncattr(name)
    if not isinstance(value, str):
        raise ValueError(f"{path}: attribute {name!r} must be text")
    return value


def _json_attr(nc, name, path):
    try:
        return json.loads(_text_attr(nc, name, path))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: attribute {name!r} is not valid JSON ({error.msg})") from None


def _registered(name, path):
    entry = _REGISTRY.get(name)
    if entry is None:
        raise ValueError(f"{path} holds a {name!r}, which is not a registered estimator; known: "
                         f"{', '.join(sorted(_REGISTRY)) or 'none'}")
    return entry


def _network(nc, path):
    try:
        spec = parse_network(_json_attr(nc, "sparse_deep_network", path))
    except ValueError as error:
        raise ValueError(f"{path}: the saved network is invalid ({error})") from None
    if not isinstance(spec, NetworkSpec) or not spec.is_resolved:
        raise ValueError(f"{path}: the saved network still has 'auto' layer sizes")
    return spec


def _read_array(nc, name, path, shape=None):
    """Variable ``name`` in the shape it was saved with (its ``shape`` attribute),
    checked against ``shape`` when given."""
    if name not in nc.variables:
        raise ValueError(f"{path}: missing variable {name!r}")
    values = np.asarray(read_variable(nc, name, path))
    var = nc.variables[name]
    saved = values.shape
    if "shape" in var.ncattrs():
        saved = tuple(int(d) for d in np.atleast_1d(var.getncattr("shape")))
    if int(np.prod(saved)) != values.size:
        raise ValueError(f"{path}: variable {name!r} holds {values.size} values but its shape "
                         f"attribute says {saved}")
    values = values.reshape(saved)
    if shape is not None and values.shape != tuple(shape):
        raise ValueError(f"{path}: variable {name!r} has shape {values.shape}; the network "
                         f"needs {tuple(shape)}")
    return values


def _read_model(nc, spec, path):
    weights0 = nc.variables.get("weight0_weights")
    model = Model(spec, np.float32 if weights0 is None else weights0.dtype)
    count = _attr_or_none(nc, "weights")
    if count is None or int(count) != len(model.links):
        raise ValueError(f"{path}: the file holds {count} weight matrices but the network has "
                         f"{len(model.links)} connections")
    biases = {}
    for i, (w, (s, t)) in enumerate(zip(model.weights, model.links)):
        prefix = f"weight{i}_"
        ends = (_attr_or_none(nc, prefix + "inputLayer"), _attr_or_none(nc, prefix + "outputLayer"))
        if ends != (model.layers[s].name, model.layers[t].name):
            raise ValueError(f"{path}: weight{i} connects {ends[0]!r} -> {ends[1]!r}, but the "
                             f"network's connection {i} is {model.layers[s].name!r} -> "
                             f"{model.layers[t].name!r}")
        w[...] = _read_array(nc, prefix + "weights", path, shape=(w.size,)).reshape(w.shape)
        bias = _read_array(nc, prefix + "bias", path, shape=model.biases[t].shape)
        if t not in biases:
            biases[t] = bias
        elif np.any(bias != 0):
            biases[t] = biases[t] + bias  # DSSTNE adds up the biases of every incoming link
    for t, bias in biases.items():
        model.biases[t][...] = bias
    return model


def _attr_or_none(nc, name):
    return nc.getncattr(name) if name in nc.ncattrs() else None


def _read_optimizer_state(nc, model, path):
    try:
        config = OptimizerConfig(**_json_attr(nc, "sparse_deep_optimizer", path))
    except TypeError as error:
        raise ValueError(f"{path}: sparse_deep_optimizer is invalid ({error})") from None
    backend = get_backend("cpu")
    state = OptimizerState(config, model.parameters(), backend)
    for p, slots in enumerate(state.states):
        for s, array in enumerate(slots, start=1):
            array[...] = _read_array(nc, f"sparse_deep_optimizer{p}_state{s}", path,
                                     shape=array.shape)
    return state

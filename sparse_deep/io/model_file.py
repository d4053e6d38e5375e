"""Fitted estimators as one NetCDF file: network, parameters, weights and the
state that training resumes from.

The weights use the names of DSSTNE's trained-network files
(``weight<i>_weights``, ``weight<i>_bias`` and their attributes, see
docs/io.md); everything DSSTNE's files do not hold is under names starting
with ``sparse_deep_``. Nothing in the file is executable: parameters and
fitted scalars are JSON, arrays are plain NetCDF variables, and the estimator
class is looked up by name among the classes registered with
:func:`register_estimator`, the only classes loading ever instantiates.

Nothing in the file is trusted either. Loading checks every size, shape and
type against the network and against the machine's memory before reading any
array, reads weights only as finite floating-point numbers, restores only the
fitted attributes the class registered, and (format version 2) verifies a
CRC-32 of every variable and attribute, so that a damaged file is refused
rather than loaded with other weights. docs/io.md lists the checks.
"""

import dataclasses
import json
import math
import numbers
import os
import warnings
import zlib
from dataclasses import dataclass

import netCDF4
import numpy as np
from sklearn.exceptions import NotFittedError

from ..backends import get_backend
from .._validation import check_memory_budget
from ..engine.model import Model, build_plan, link_shape
from ..core.optimizers import get_optimizer
from ..engine.optim import OptimizerConfig, OptimizerState
from ..network import NetworkSpec, parse_network
from ._files import atomic_path, open_netcdf, read_variable, reading, variable_layout

__all__ = ["load_model", "register_estimator", "registered_estimators", "save_model"]

FORMAT = "sparse_deep model"
# 2: a CRC-32 of every variable and attribute (sparse_deep_checksums). Files
# of version 1 have none and still load.
FORMAT_VERSION = 2
_WHAT = "a sparse_deep model file"
_CHECKSUMS = "sparse_deep_checksums"

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
    if isinstance(value, os.PathLike):
        return os.fspath(value)
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
    """The value :func:`_to_json` made JSON of. A tagged array is rebuilt only
    from a flat list of numbers or strings whose length its shape matches,
    and only as numbers or text: its dtype is the file's claim."""
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    if isinstance(value, dict):
        if set(value) == {"__tuple__"}:
            return tuple(_from_json(v) for v in value["__tuple__"])
        if set(value) == {"__ndarray__"}:
            return _array_from_json(value["__ndarray__"])
        return {k: _from_json(v) for k, v in value.items()}
    return value


def _array_from_json(spec):
    if not isinstance(spec, dict) or set(spec) != {"dtype", "object", "shape", "data"}:
        raise ValueError("a tagged array must have exactly dtype, object, shape and data")
    data, shape = spec["data"], spec["shape"]
    if not isinstance(data, list) or not all(isinstance(v, (bool, int, float, str))
                                             for v in data):
        raise ValueError("a tagged array's data must be a flat list of numbers or strings")
    if (not isinstance(shape, list) or not all(_is_count(d) for d in shape)
            or math.prod(shape) != len(data)):
        raise ValueError(f"a tagged array's shape {shape!r} does not fit its {len(data)} values")
    if spec["dtype"] == "str":
        if not all(isinstance(v, str) for v in data):
            raise ValueError("a tagged text array holds values that are not strings")
        return np.array(data, dtype=object if spec["object"] is True else str).reshape(shape)
    dtype = np.dtype(spec["dtype"]) if isinstance(spec["dtype"], str) else None
    # Only the types _to_json writes: numbers of at most 8 bytes, never objects.
    if dtype is None or dtype.kind not in "biuf" or dtype.itemsize > 8:
        raise ValueError(f"a tagged array's dtype {spec['dtype']!r} is not a numeric type")
    if any(isinstance(v, str) for v in data):
        raise ValueError("a tagged numeric array holds strings")
    return np.array(data, dtype=dtype).reshape(shape)


def _is_count(value):
    """A non-negative int that is not a bool (JSON's true is a Python bool)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 0


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
    estimator._with_whole_model(
        lambda model, state: _write_model_file(path, estimator, model, state, params, fitted,
                                               arrays))


def _write_model_file(path, estimator, model, state, params, fitted, arrays):
    with atomic_path(path) as temporary:
        with netCDF4.Dataset(temporary, "w", format="NETCDF4") as nc:
            sums = {}  # variable name -> CRC-32, filled in by _write_array
            _write_network_attributes(nc, model.spec)
            _write_layers(nc, model)
            _write_weights(nc, model, sums)
            nc.setncattr("sparse_deep_format", FORMAT)
            nc.setncattr("sparse_deep_format_version", np.int32(FORMAT_VERSION))
            nc.setncattr("sparse_deep_version", _package_version())
            nc.setncattr("sparse_deep_estimator", type(estimator).__name__)
            nc.setncattr("sparse_deep_network", json.dumps(model.spec.to_dict()))
            nc.setncattr("sparse_deep_params", json.dumps(params))
            nc.setncattr("sparse_deep_fitted", json.dumps(fitted))
            _write_array(nc, "sparse_deep_loss_curve",
                         np.asarray(estimator.loss_curve_, dtype=np.float64), sums)
            for name, array in arrays.items():
                _write_array(nc, f"sparse_deep_fitted_{name}", array, sums)
            _write_optimizer_state(nc, state, sums)
            _write_checksums(nc, sums)


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


def _write_weights(nc, model, sums):
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
        _write_array(nc, prefix + "bias", bias, sums, dim=prefix + "biasDim")
        _write_array(nc, prefix + "weights", w.reshape(-1), sums, dim=prefix + "weightDim")


def _write_array(nc, name, array, sums, dim=None):
    """A variable holding ``array`` flattened, with its shape as an attribute;
    its checksum goes into ``sums``."""
    flat = np.ascontiguousarray(array).reshape(-1)
    dim = dim or f"{name}_dim"
    nc.createDimension(dim, flat.size if flat.size else None)
    var = nc.createVariable(name, flat.dtype, (dim,))
    if flat.size:
        var[:] = flat
    shape = np.asarray(np.shape(array), dtype=np.int64)
    var.setncattr("shape", shape)
    # From the values in memory: reading them back would cost another pass.
    sums[name] = _variable_checksum(flat, {"shape": shape})


def _write_optimizer_state(nc, state, sums):
    nc.setncattr("sparse_deep_optimizer", json.dumps(dataclasses.asdict(state.config)))
    nc.setncattr("sparse_deep_optimizer_parameters", np.uint32(len(state.states)))
    for p, slots in enumerate(state.states):
        for s, array in enumerate(slots, start=1):
            _write_array(nc, f"sparse_deep_optimizer{p}_state{s}", _host_copy(array), sums)


def _write_checksums(nc, variables):
    """The last attribute: the CRC-32 of every other attribute (as read back)
    and of every variable."""
    attributes = {name: _attribute_checksum(nc.getncattr(name)) for name in nc.ncattrs()}
    nc.setncattr(_CHECKSUMS, json.dumps({"attributes": attributes, "variables": variables}))


def _host_copy(array):
    """An optimizer array's values on the host (numba.cuda device arrays have
    ``copy_to_host``; CPU arrays are numpy already)."""
    if hasattr(array, "copy_to_host"):
        return array.copy_to_host()
    return np.asarray(array)


# -- checksums -----------------------------------------------------------------------


def _little_endian(values):
    """``values`` as a C-contiguous little-endian array, so that a checksum is
    the same whichever byte order the file or the machine has."""
    values = np.asarray(values)
    return np.ascontiguousarray(values, dtype=values.dtype.newbyteorder("<"))


def _attribute_checksum(value, crc=0):
    """CRC-32 of an attribute's value: text as UTF-8, numbers as their
    little-endian bytes after their type (a scalar and a one-element array
    give the same bytes, as netCDF4 reads either back as the other)."""
    if isinstance(value, str):
        return zlib.crc32(b"text:" + value.encode("utf-8"), crc)
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        return zlib.crc32(b"other:" + repr(array.tolist()).encode("utf-8"), crc)
    array = _little_endian(array)
    return zlib.crc32(array.tobytes(), zlib.crc32(array.dtype.str.encode("ascii"), crc))


def _variable_checksum(values, attributes):
    """CRC-32 of a variable: its type, its attributes (by name) and its values."""
    values = _little_endian(values).reshape(-1)
    crc = zlib.crc32(values.dtype.str.encode("ascii"))
    for name in sorted(attributes):
        crc = _attribute_checksum(attributes[name], zlib.crc32(name.encode("utf-8"), crc))
    return zlib.crc32(memoryview(values).cast("B"), crc)


def _checksums(nc, path, version):
    """Verify the CRC-32 of every global attribute; return those of the
    variables (checked as each is read), or None for a file without any
    (format version 1).

    A file that has checksums has them verified whatever version it claims,
    so that a damaged version number does not switch the check off.
    """
    if _CHECKSUMS not in nc.ncattrs():
        if version >= 2:
            raise ValueError(f"{path}: a model file of format version {version} must have the "
                             f"attribute {_CHECKSUMS!r}; the file is damaged")
        return None
    sums = _json_attr(nc, _CHECKSUMS, path)
    if (not isinstance(sums, dict) or set(sums) != {"attributes", "variables"}
            or not all(isinstance(part, dict) and all(_is_count(v) for v in part.values())
                       for part in sums.values())):
        raise ValueError(f"{path}: attribute {_CHECKSUMS!r} must map 'attributes' and "
                         "'variables' each to CRC-32 values by name; the file is damaged")
    expected = sums["attributes"]
    present = [name for name in nc.ncattrs() if name != _CHECKSUMS]
    _same_names(present, expected, "global attribute", path)
    for name in present:
        if _attribute_checksum(nc.getncattr(name)) != expected[name]:
            raise ValueError(f"{path}: global attribute {name!r} fails its checksum; the file "
                             "is damaged")
    _same_names(list(nc.variables), sums["variables"], "variable", path)
    return sums["variables"]


def _same_names(present, listed, what, path):
    """Every name in the file has a checksum and every checksum a name."""
    unlisted = sorted(set(present) - set(listed))
    if unlisted:
        raise ValueError(f"{path}: {what} {unlisted[0]!r} has no checksum; the file is damaged "
                         "or was changed after it was saved")
    missing = sorted(set(listed) - set(present))
    if missing:
        raise ValueError(f"{path}: {what} {missing[0]!r} is missing; the file is damaged")


# -- loading -------------------------------------------------------------------------


def load_model(path):
    """Load an estimator saved by :func:`save_model`.

    The file is not trusted: every size, shape and type is checked against
    the network and against this machine's memory before any array is read;
    weights, biases and optimizer arrays must be finite floating-point
    numbers; only the fitted attributes the estimator's class registered are
    restored; and the checksums of a format-2 file must match.

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
    FileNotFoundError, IsADirectoryError, PermissionError
        If ``path`` does not exist, is a directory or cannot be read.
    ValueError
        If the file is not a regular file or not a sparse_deep model file
        (DSSTNE's own network files included), was written by a newer format
        version, is damaged (a checksum fails, the HDF5 library cannot read
        it), names an estimator class that is not registered, needs more
        memory than this machine has, or holds a missing, misshapen,
        non-float or non-finite array, an unknown fitted attribute or values
        that disagree with the network; the message names the file and the
        problem.
    """
    path = os.fspath(path)
    with reading(path), open_netcdf(path, _WHAT) as nc:
        reader = _Reader(nc, path, _checksums(nc, path, _check_format(nc, path)))
        entry = _registered(_text_attr(nc, "sparse_deep_estimator", path), path)
        estimator = _new_estimator(nc, entry, path)
        spec = _network(nc, path)
        config = _optimizer_config(nc, path)
        layout = _Layout(spec, config, nc, entry, path)
        fitted = _fitted_attributes(nc, entry, layout, path)
        model = _read_model(nc, reader, layout, path)
        state = _read_optimizer_state(reader, model, config)
        loss_curve = reader.floats("sparse_deep_loss_curve")
        arrays = {name: reader.numbers(f"sparse_deep_fitted_{name}")
                  for name in layout.array_attributes}
    for name, value in {**fitted, **arrays}.items():
        setattr(estimator, name, value)
    estimator.loss_curve_ = [float(v) for v in loss_curve]
    estimator._adopt_whole_model(model, state)
    estimator.network_ = spec.to_dict()
    return estimator


def _check_format(nc, path):
    """The file's format version, once it is known to be a model file this
    version of sparse_deep reads."""
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
    if _text_attr(nc, "sparse_deep_format", path) != FORMAT:
        raise ValueError(f"{path}: attribute 'sparse_deep_format' is "
                         f"{nc.getncattr('sparse_deep_format')!r}; expected {FORMAT!r}")
    version = _int_attr(nc, "sparse_deep_format_version", path)
    if version < 1:
        raise ValueError(f"{path}: format version {version} does not exist; the file is damaged")
    if version > FORMAT_VERSION:
        raise ValueError(f"{path} is a model file of format version {version}; this version of "
                         f"sparse_deep reads version {FORMAT_VERSION} or older. Upgrade "
                         "sparse_deep to load it.")
    return version


def _int_attr(nc, name, path):
    value = nc.getncattr(name) if name in nc.ncattrs() else None
    array = np.asarray(value)
    if array.size != 1 or array.dtype.kind not in "iu":
        raise ValueError(f"{path}: attribute {name!r} must be one integer; got {value!r}")
    return int(array.reshape(()))


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
    except RecursionError:
        raise ValueError(f"{path}: attribute {name!r} nests too deeply") from None


def _tagged_json_attr(nc, name, path):
    """A JSON object written by :func:`_to_json`, as Python values."""
    value = _json_attr(nc, name, path)
    if not isinstance(value, dict):
        raise ValueError(f"{path}: attribute {name!r} must be a JSON object")
    try:
        return _from_json(value)
    except (ValueError, TypeError, OverflowError) as error:
        raise ValueError(f"{path}: attribute {name!r}: {error}") from None


def _registered(name, path):
    if name not in _REGISTRY:
        # The package's own estimators register themselves when imported, which
        # `import sparse_deep` no longer does eagerly (it imports on first use).
        from .. import estimators  # noqa: F401
    entry = _REGISTRY.get(name)
    if entry is None:
        raise ValueError(f"{path} holds a {name!r}, which is not a registered estimator; known: "
                         f"{', '.join(sorted(_REGISTRY)) or 'none'}")
    return entry


def _new_estimator(nc, entry, path):
    """The registered class with the saved parameters (its ``__init__`` only
    stores them; they are checked as a fit or a prediction uses them)."""
    params = _tagged_json_attr(nc, "sparse_deep_params", path)
    try:
        return entry.cls(**params)
    except TypeError as error:
        raise ValueError(f"{path}: the saved parameters do not fit "
                         f"{entry.cls.__name__} ({error})") from None


def _network(nc, path):
    try:
        spec = parse_network(_json_attr(nc, "sparse_deep_network", path))
    except (ValueError, TypeError) as error:
        if path in str(error):
            raise
        raise ValueError(f"{path}: the saved network is invalid ({error})") from None
    if not isinstance(spec, NetworkSpec) or not spec.is_resolved:
        raise ValueError(f"{path}: the saved network still has 'auto' layer sizes")
    return spec


def _optimizer_config(nc, path):
    """The saved OptimizerConfig: a known optimizer and finite numbers."""
    raw = _json_attr(nc, "sparse_deep_optimizer", path)
    fields = {f.name for f in dataclasses.fields(OptimizerConfig)}
    if not isinstance(raw, dict) or not set(raw) <= fields:
        raise ValueError(f"{path}: sparse_deep_optimizer must be a JSON object with keys among "
                         f"{', '.join(sorted(fields))}")
    for key, value in raw.items():
        ok = (isinstance(value, str) if key == "name" else
              isinstance(value, (int, float)) and not isinstance(value, bool)
              and math.isfinite(value))
        if not ok:
            raise ValueError(f"{path}: sparse_deep_optimizer's {key!r} is {value!r}; expected "
                             f"{'an optimizer name' if key == 'name' else 'a finite number'}")
    config = OptimizerConfig(**raw)
    try:
        get_optimizer(config.name)
    except ValueError as error:
        raise ValueError(f"{path}: sparse_deep_optimizer: {error}") from None
    return config


class _Layout:
    """What the file must hold for its network, worked out from the network
    and the file's metadata only: every array's name, length and type, and the
    memory the model will need, checked against this machine's before anything
    is allocated or read.

    Attributes
    ----------
    spec : NetworkSpec
    plans, links : list
        The network's layer plans and connections (:func:`build_plan`).
    input, output : LayerPlan
        Its input and output layers.
    shapes : list of tuple
        The full shape of each connection's weight.
    dtype : numpy dtype
        The model's: float32 or float64, that of every weight, bias and
        optimizer array.
    array_attributes : list of str
        The registered fitted arrays the file holds.
    """

    def __init__(self, spec, config, nc, entry, path):
        self.spec, self.path = spec, path
        try:
            self.plans, self.links = build_plan(spec)
        except ValueError as error:
            raise ValueError(f"{path}: the saved network is invalid ({error})") from None
        self.shapes = [link_shape(self.plans, s, t) for s, t in self.links]
        self.input = next(p for p in self.plans if p.is_input)
        self.output = next(p for p in self.plans if p.is_output)
        self.dtype = self._model_dtype(nc)
        lengths = self._lengths(config)
        self.array_attributes = [name for name in entry.array_attributes
                                 if f"sparse_deep_fitted_{name}" in nc.variables]
        self._check_budget(nc, lengths)
        self._check_variables(nc, lengths)

    def _model_dtype(self, nc):
        if "weight0_weights" not in nc.variables:
            raise ValueError(f"{self.path}: missing variable 'weight0_weights'")
        dtype, _ = variable_layout(nc, "weight0_weights", self.path)
        if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise ValueError(f"{self.path}: variable 'weight0_weights' holds {dtype} values; "
                             "weights must be float32 or float64")
        return dtype

    def _lengths(self, config):
        """Name -> number of values of every weight, bias and optimizer array
        the network has, in :meth:`Model.parameters` order for the optimizer
        (whose slots mirror :class:`OptimizerState`: full size for the slots
        the optimizer uses, one row otherwise)."""
        lengths, params = {}, []
        for i, ((s, t), shape) in enumerate(zip(self.links, self.shapes)):
            lengths[f"weight{i}_weights"] = shape[0] * shape[1]
            lengths[f"weight{i}_bias"] = self.plans[t].n
            params.append(shape)
        params += [(1, p.n) for p in self.plans if not p.is_input]
        n_states = get_optimizer(config.name).n_states
        for p, (rows, cols) in enumerate(params):
            for slot in (1, 2):
                used = n_states >= slot
                lengths[f"sparse_deep_optimizer{p}_state{slot}"] = (rows if used else 1) * cols
        return lengths

    def _check_budget(self, nc, lengths):
        """Refuse a model bigger than this machine's memory: its parameters and
        optimizer arrays, plus the largest array while it is copied in, plus
        the loss curve and fitted arrays at the sizes the file claims."""
        itemsize = self.dtype.itemsize
        # Biases are held once per layer although a file may repeat them per link.
        held = sum(v for k, v in lengths.items() if not k.endswith("_bias"))
        held += sum(p.n for p in self.plans if not p.is_input)
        needed = (held + max(lengths.values())) * itemsize
        for name in ["sparse_deep_loss_curve"] + [f"sparse_deep_fitted_{a}"
                                                  for a in self.array_attributes]:
            if name in nc.variables:
                dtype, length = variable_layout(nc, name, self.path)
                needed += length * dtype.itemsize
        check_memory_budget(needed, f"{self.path}: the network needs {{needed}} for its "
                                    "weights, biases and optimizer state")

    def _check_variables(self, nc, lengths):
        """Every variable the file holds is one the network has, of the right
        length and type; nothing else is there."""
        for name, length in lengths.items():
            dtype, found = variable_layout(nc, name, self.path)
            if found != length:
                raise ValueError(f"{self.path}: variable {name!r} holds {found} values; the "
                                 f"network needs {length}")
            if dtype != self.dtype:
                raise ValueError(f"{self.path}: variable {name!r} holds {dtype} values; every "
                                 f"weight, bias and optimizer array must be {self.dtype} like "
                                 "'weight0_weights'")
        known = set(lengths) | {"sparse_deep_loss_curve"} | {
            f"sparse_deep_fitted_{name}" for name in self.array_attributes}
        unknown = sorted(set(nc.variables) - known)
        if unknown:
            raise ValueError(f"{self.path}: variable {unknown[0]!r} is not part of a "
                             f"{FORMAT} for this network")
        dtype, _ = variable_layout(nc, "sparse_deep_loss_curve", self.path)
        if dtype.kind != "f":
            raise ValueError(f"{self.path}: variable 'sparse_deep_loss_curve' holds {dtype} "
                             "values; expected floats")


class _Reader:
    """Reads arrays whose layout :class:`_Layout` checked, verifying each one's
    checksum (when the file has them) and values."""

    def __init__(self, nc, path, sums):
        self.nc, self.path, self.sums = nc, path, sums

    def numbers(self, name, shape=None):
        """Variable ``name`` in the shape it was saved with (its ``shape``
        attribute), checked against ``shape`` when given."""
        var = self.nc.variables[name]
        attributes = {a: var.getncattr(a) for a in var.ncattrs()}
        saved = self._saved_shape(name, attributes, var.size)
        if shape is not None and saved != tuple(shape):
            raise ValueError(f"{self.path}: variable {name!r} has shape {saved}; the network "
                             f"needs {tuple(shape)}")
        values = read_variable(self.nc, name, self.path)
        if values.size != var.size:
            raise ValueError(f"{self.path}: variable {name!r} gave {values.size} values where "
                             f"its dimension says {var.size}; the file is damaged")
        if self.sums is not None and _variable_checksum(values, attributes) != self.sums[name]:
            raise ValueError(f"{self.path}: variable {name!r} fails its checksum; the file is "
                             "damaged")
        if values.dtype.kind == "f" and not _all_finite(values):
            raise ValueError(f"{self.path}: variable {name!r} holds NaN or infinite values")
        return values.reshape(saved)

    def floats(self, name, shape=None):
        """Like :meth:`numbers`, for arrays that must be floating point
        (their type was checked from the metadata; this is the last guard)."""
        values = self.numbers(name, shape)
        if values.dtype.kind != "f":
            raise ValueError(f"{self.path}: variable {name!r} holds {values.dtype} values; "
                             "expected floats")
        return values

    def _saved_shape(self, name, attributes, size):
        if "shape" not in attributes:
            return (size,)
        shape = np.atleast_1d(np.asarray(attributes["shape"]))
        if shape.dtype.kind not in "iu" or shape.ndim != 1 or np.any(shape < 0):
            raise ValueError(f"{self.path}: variable {name!r} has a shape attribute "
                             f"{attributes['shape']!r}; expected non-negative integers")
        saved = tuple(int(d) for d in shape)
        if math.prod(saved) != size:
            raise ValueError(f"{self.path}: variable {name!r} holds {size} values but its "
                             f"shape attribute says {saved}")
        return saved


# Values checked for finiteness at a time: np.isfinite makes a bool array as
# large as its input, a quarter of a float32 model at once.
_FINITE_CHUNK = 1 << 22


def _all_finite(values):
    flat = values.reshape(-1)
    return all(np.isfinite(flat[i:i + _FINITE_CHUNK]).all()
               for i in range(0, flat.size, _FINITE_CHUNK))


# Fitted attributes that count something, and those equal to a layer's width.
_WIDTHS = {"n_features_in_": "input", "n_items_": "output", "n_outputs_": "output"}


def _fitted_attributes(nc, entry, layout, path):
    """The fitted attributes to set, from ``sparse_deep_fitted``: only those of
    the closed list (the common scalars, ``feature_names_in_`` and the
    class's registered ``json_attributes``), checked where their meaning is
    known to this module."""
    fitted = _tagged_json_attr(nc, "sparse_deep_fitted", path)
    allowed = set(_COMMON_SCALARS) | {"feature_names_in_"} | set(entry.json_attributes)
    unknown = sorted(set(fitted) - allowed)
    if unknown:
        raise ValueError(f"{path}: sparse_deep_fitted names {unknown[0]!r}, which is not a "
                         f"fitted attribute of {entry.cls.__name__}; expected among "
                         f"{', '.join(sorted(allowed))}")
    missing = [name for name in _COMMON_SCALARS if name not in fitted]
    if missing:
        raise ValueError(f"{path}: sparse_deep_fitted lacks {', '.join(missing)}")
    for name, value in fitted.items():
        # Counters, the seed (numpy seeds are non-negative) and widths.
        if (name.startswith("n_") or name == "_seed_") and not _is_count(value):
            raise ValueError(f"{path}: fitted attribute {name!r} is {value!r}; expected a "
                             "non-negative integer")
    for name, layer in _WIDTHS.items():
        plan = layout.input if layer == "input" else layout.output
        if name in fitted and fitted[name] != plan.n:
            raise ValueError(f"{path}: fitted attribute {name!r} is {fitted[name]}, but the "
                             f"network's {layer} layer {plan.name!r} has {plan.n} units")
    names = fitted.get("feature_names_in_")
    if names is not None and not (isinstance(names, np.ndarray) and names.ndim == 1
                                  and names.size == fitted["n_features_in_"]
                                  and all(isinstance(v, str) for v in names.tolist())):
        raise ValueError(f"{path}: fitted attribute 'feature_names_in_' must be "
                         f"{fitted['n_features_in_']} strings, one per input feature")
    return fitted


def _read_model(nc, reader, layout, path):
    """The model, its weights and biases read from the file (whose layout was
    checked, so the allocation is the one budgeted)."""
    count = _int_attr(nc, "weights", path)
    if count != len(layout.links):
        raise ValueError(f"{path}: the file holds {count} weight matrices but the network has "
                         f"{len(layout.links)} connections")
    model = Model(layout.spec, layout.dtype)
    biases = {}
    for i, (w, (s, t)) in enumerate(zip(model.weights, model.links)):
        prefix = f"weight{i}_"
        ends = tuple(str(_attr_or_none(nc, prefix + end)) for end in ("inputLayer", "outputLayer"))
        if ends != (model.layers[s].name, model.layers[t].name):
            raise ValueError(f"{path}: weight{i} connects {ends[0]!r} -> {ends[1]!r}, but the "
                             f"network's connection {i} is {model.layers[s].name!r} -> "
                             f"{model.layers[t].name!r}")
        w[...] = reader.floats(prefix + "weights", shape=(w.size,)).reshape(w.shape)
        bias = reader.floats(prefix + "bias", shape=model.biases[t].shape)
        if t not in biases:
            biases[t] = bias
        elif np.any(bias != 0):
            biases[t] = biases[t] + bias  # DSSTNE adds up the biases of every incoming link
    for t, bias in biases.items():
        model.biases[t][...] = bias
    if not all(_all_finite(b) for b in model.biases.values()):  # a sum can overflow
        raise ValueError(f"{path}: the biases of a layer add up to infinity")
    return model


def _attr_or_none(nc, name):
    return nc.getncattr(name) if name in nc.ncattrs() else None


def _read_optimizer_state(reader, model, config):
    state = OptimizerState(config, model.parameters(), get_backend("cpu"))
    for p, slots in enumerate(state.states):
        for s, array in enumerate(slots, start=1):
            array[...] = reader.floats(f"sparse_deep_optimizer{p}_state{s}", shape=array.shape)
    return state

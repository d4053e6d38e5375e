"""Model and data set files are not trusted (issue 16): sizes are checked
before anything is read, weights must be finite floats, only registered fitted
attributes are restored, checksums catch damage, and only regular files are
read or replaced."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import netCDF4
import numpy as np
import pytest

from sparse_deep import SparseAutoencoderRecommender, load_model, save_model
from sparse_deep import _validation
from sparse_deep.io import read_datasets, write_dataset
from sparse_deep.io import model_file

from .test_io import interactions, reseal

SMALL = dict(hidden_layer_sizes=(8, 6), batch_size=16, random_state=0)

# The byte-flip test's damage: how many files, from which seed.
N_FLIPS, FLIP_SEED = 300, 20240616


@pytest.fixture(scope="module")
def data():
    return interactions()


@pytest.fixture(scope="module")
def fitted(data):
    return SparseAutoencoderRecommender(epochs=2, **SMALL).fit(data)


@pytest.fixture
def saved(fitted, tmp_path):
    path = tmp_path / "m.nc"
    save_model(fitted, path)
    return path


def rewrite(src, dst, attributes=None, variables=None, lazy=None, drop=(), seal=True):
    """Copy a NetCDF file, changing it as a forger would.

    ``attributes`` and ``variables`` (name -> array, in the array's dtype)
    replace or add global attributes and variables; ``lazy`` (name -> length)
    declares variables of that length whose chunks are never written, so that
    a file of a few KB claims any size; ``drop`` names what to leave out. With
    ``seal`` the copy gets fresh model-file checksums.
    """
    attributes, variables, lazy = attributes or {}, variables or {}, lazy or {}
    with netCDF4.Dataset(src) as old, netCDF4.Dataset(dst, "w", format="NETCDF4") as new:
        old.set_auto_mask(False)
        for name in old.ncattrs():
            if name not in drop and name not in attributes:
                new.setncattr(name, old.getncattr(name))
        for name, value in attributes.items():
            new.setncattr(name, value)
        names = [n for n in old.variables if n not in drop] + [
            n for n in list(variables) + list(lazy) if n not in old.variables]
        for name in names:
            var = old.variables.get(name)
            dim = f"{name}_dim"
            if name in lazy:
                new.createDimension(dim, lazy[name])
                out = new.createVariable(name, var.dtype if var is not None else "f4", (dim,),
                                         chunksizes=(1 << 16,))
            else:
                values = variables[name] if name in variables else var[...]
                new.createDimension(dim, len(values))
                dtype = str if np.asarray(values).dtype.kind in "UO" else np.asarray(values).dtype
                out = new.createVariable(name, dtype, (dim,))
                out[:] = np.asarray(values, dtype=object if dtype is str else None)
            if var is not None:
                for a in var.ncattrs():
                    out.setncattr(a, var.getncattr(a))
        if seal:
            reseal(new)


# -- sizes before reading -------------------------------------------------------------


_MEASURE = textwrap.dedent("""
    import json, resource, sys, time
    from sparse_deep import load_model
    from sparse_deep.io import read_datasets


    def status_kib(key):
        with open("/proc/self/status") as status:
            return int(next(line for line in status if line.startswith(key + ":")).split()[1])


    def peak_kib():
        try:  # Linux: the peak since the reset below
            return status_kib("VmHWM")
        except OSError:  # elsewhere ru_maxrss (which may include the parent's, before exec)
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


    try:  # Linux: reset the peak to the present size, so that growth from here shows
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
    except OSError:
        pass
    start_kib, results = peak_kib(), []
    for kind, path in json.loads(sys.argv[1]):
        started = time.perf_counter()
        try:
            (load_model if kind == "model" else read_datasets)(path)
            outcome = "loaded"
        except Exception as error:
            outcome = f"{type(error).__name__}: {error}"
        results.append([path, time.perf_counter() - started, outcome])
    print(json.dumps({"results": results, "grown_mib": (peak_kib() - start_kib) / 1024}))
""")


def test_huge_claims_are_refused_at_once_in_little_memory(saved, tmp_path):
    """Files of some 10-50 KB claiming 10**12-value arrays (a 4 TB weight) are
    refused in well under a second, without allocating: measured in a fresh
    process, whose peak resident memory must not grow by 100 MB."""
    network = json.loads(netCDF4.Dataset(saved).getncattr("sparse_deep_network"))
    for layer in network["Layers"]:
        if layer["Name"] in ("Input", "Hidden1"):
            layer["N"] = 10**6  # weight0: 10**6 x 10**6
    huge_network = json.dumps(network)
    files = {
        "network_v2": dict(attributes={"sparse_deep_network": huge_network}),
        "network_v1": dict(attributes={"sparse_deep_network": huge_network,
                                       "sparse_deep_format_version": np.int32(1)},
                           drop=("sparse_deep_checksums",), seal=False),
        "variable": dict(lazy={"weight0_weights": 10**12}),
    }
    jobs = []
    for name, change in files.items():
        rewrite(saved, tmp_path / f"{name}.nc", **change)
        jobs.append(["model", str(tmp_path / f"{name}.nc")])
    with netCDF4.Dataset(tmp_path / "data.nc", "w") as nc:
        for key, value in dict(datasets=1, name0="x", attributes0=1, dataType0=4,
                               dimensions0=1, width0=2**31).items():
            nc.setncattr(key, value if isinstance(value, str) else np.uint32(value))
        nc.createDimension("examplesDim0", 10)
        nc.createDimension("sparseDataDim0", 10**12)
        for var in ("sparseStart0", "sparseEnd0"):
            nc.createVariable(var, "u8", ("examplesDim0",))[:] = 0
        for var, dtype in (("sparseIndex0", "u4"), ("sparseData0", "f4")):
            nc.createVariable(var, dtype, ("sparseDataDim0",), chunksizes=(1 << 16,))
    jobs.append(["data", str(tmp_path / "data.nc")])
    assert max(os.path.getsize(path) for _, path in jobs) < 100_000

    run = subprocess.run([sys.executable, "-c", _MEASURE, json.dumps(jobs)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout.strip().splitlines()[-1])
    print(f"\nhuge claims: peak memory grew {report['grown_mib']:.1f} MiB")
    expected = ["the network needs", "the network needs",
                "variable 'weight0_weights' holds 1000000000000 values; the network needs 120",
                "data set(s) needs about"]
    for (path, seconds, outcome), message in zip(report["results"], expected):
        print(f"  {os.path.basename(path)}: {seconds * 1000:.1f} ms, {outcome}")
        assert outcome.startswith("ValueError: ") and path in outcome and message in outcome
        assert seconds < 1.0
    assert "TiB" in report["results"][0][2]
    assert report["grown_mib"] < 100


def test_budget_is_the_machines_memory(monkeypatch):
    assert _validation.physical_memory() > 2**28
    monkeypatch.setattr(_validation.os, "sysconf", lambda name: (_ for _ in ()).throw(
        ValueError(name)))
    assert _validation.physical_memory() == _validation.FALLBACK_MEMORY_BYTES
    with pytest.raises(ValueError, match=r"^f\{x\}: needs 20 GiB; this machine has 16 GiB"):
        _validation.check_memory_budget(20 * 2**30, "f{x}: needs {needed}")
    _validation.check_memory_budget(2**30, "fits: {needed}")


def hand_dataset(path, attributes=(), dimensions=(), variables=()):
    """A one-data-set DSSTNE file written with netCDF4: 3 examples of 5
    features, 4 entries, with ``attributes``, ``dimensions`` and ``variables``
    (name -> (dimension, values), or None to leave it out) changed."""
    attrs = dict(datasets=1, name0="x", attributes0=1, dataType0=4, dimensions0=1, width0=5)
    dims = dict(examplesDim0=3, sparseDataDim0=4)
    vars_ = dict(sparseStart0=("examplesDim0", np.array([0, 1, 2], np.uint32)),
                 sparseEnd0=("examplesDim0", np.array([1, 2, 4], np.uint32)),
                 sparseIndex0=("sparseDataDim0", np.array([0, 1, 2, 4], np.uint32)),
                 sparseData0=("sparseDataDim0", np.array([1, 2, 3, 4], np.float32)))
    attrs.update(attributes)
    dims.update(dimensions)
    vars_.update(variables)
    with netCDF4.Dataset(path, "w") as nc:
        for key, value in attrs.items():
            nc.setncattr(key, value if isinstance(value, str) else np.uint32(value))
        for key, size in dims.items():
            nc.createDimension(key, size)
        for key, item in vars_.items():
            if item is not None:
                dim, values = item
                kind = str if values.dtype.kind in "UO" else values.dtype
                nc.createVariable(key, kind, (dim,))[:] = values.astype(
                    object if kind is str else values.dtype)


@pytest.mark.parametrize("change,message", [
    (dict(variables=dict(sparseIndex0=("sparseDataDim0", np.arange(4, dtype=np.float32)))),
     "variable 'sparseIndex0' must hold integers; it holds float32"),
    (dict(dimensions=dict(two=2), variables=dict(sparseStart0=("two", np.zeros(2, "u4")))),
     "variable 'sparseStart0' holds 2 values; expected 3"),
    (dict(variables=dict(sparseData0=("sparseDataDim0", np.array(["1", "2", "3", "4"],
                                                                  dtype=object)))),
     "variable 'sparseData0' holds .* values; expected numbers"),
    (dict(attributes=dict(attributes0=0), dimensions=dict(dataDim0=14),
          variables=dict(data0=("dataDim0", np.zeros(14, np.float32)))),
     "dataDim0 is 14, but 3 examples of 5 values need 15"),
    (dict(attributes=dict(dimensions0=3, width0=2**31, height0=2**31, length0=2**31)),
     "more than a sparse matrix can index"),
])
def test_data_set_layout_is_checked_before_reading(tmp_path, change, message):
    hand_dataset(tmp_path / "bad.nc", **change)
    with pytest.raises(ValueError, match=message) as info:
        read_datasets(tmp_path / "bad.nc")
    assert str(tmp_path / "bad.nc") in str(info.value)


def test_data_set_expansions_are_budgeted(tmp_path, monkeypatch):
    """Examples that share entries, and indexed examples, make a matrix larger
    than the file: its size is checked once known, before it is built."""
    hand_dataset(tmp_path / "shared.nc", dimensions=dict(examplesDim0=1000), variables=dict(
        sparseStart0=("examplesDim0", np.zeros(1000, np.uint32)),
        sparseEnd0=("examplesDim0", np.full(1000, 4, np.uint32))))
    hand_dataset(tmp_path / "indexed.nc", attributes=dict(attributes0=1 | 64),
                 dimensions=dict(examplesDim0=2000, uniqueExamplesDim0=3), variables=dict(
        sparseStart0=("uniqueExamplesDim0", np.array([0, 1, 2], np.uint32)),
        sparseEnd0=("uniqueExamplesDim0", np.array([4, 2, 4], np.uint32)),
        index0=("examplesDim0", np.zeros(2000, np.uint32))))
    assert read_datasets(tmp_path / "shared.nc")["x"].data.nnz == 4000
    assert read_datasets(tmp_path / "indexed.nc")["x"].data.nnz == 8000
    monkeypatch.setattr(_validation, "physical_memory", lambda: 60_000)
    with pytest.raises(ValueError, match="overlapping ranges make 4000 entries, which need "
                                         r"about .*; this machine has 58.6 KiB"):
        read_datasets(tmp_path / "shared.nc")
    with pytest.raises(ValueError, match="expanding index0 to one row per example needs"):
        read_datasets(tmp_path / "indexed.nc")


# -- weights, attributes, checksums ---------------------------------------------------


@pytest.mark.parametrize("variables,message", [
    ({"weight1_weights": np.ones(48, np.int8)}, "'weight1_weights' holds int8 values"),
    ({"weight0_weights": np.ones(120, np.int32)}, "weights must be float32 or float64"),
    ({"weight1_weights": np.array(["1.0"] * 48, dtype=object)}, "'weight1_weights' holds"),
    ({"weight1_weights": np.full(48, np.nan, np.float32)}, "'weight1_weights' holds NaN"),
    ({"weight2_bias": np.full(15, np.inf, np.float32)}, "'weight2_bias' holds NaN or inf"),
    ({"sparse_deep_optimizer0_state2": np.full(120, np.nan, np.float32)},
     "'sparse_deep_optimizer0_state2' holds NaN"),
    ({"weight1_bias": np.zeros(6, np.float64)}, "must be float32 like 'weight0_weights'"),
    ({"weight1_bias": np.zeros(7, np.float32)}, "'weight1_bias' holds 7 values; the network "
                                                "needs 6"),
    ({"sparse_deep_loss_curve": np.array([1.0, np.nan])}, "'sparse_deep_loss_curve' holds NaN"),
    ({"sparse_deep_loss_curve": np.array([1, 2], np.int64)}, "expected floats"),
    ({"sparse_deep_fitted_predict": np.zeros(3)}, "'sparse_deep_fitted_predict' is not part"),
])
def test_arrays_must_be_finite_floats_of_the_networks_sizes(saved, tmp_path, variables,
                                                           message):
    rewrite(saved, tmp_path / "bad.nc", variables=variables)
    with pytest.raises(ValueError, match=message) as info:
        load_model(tmp_path / "bad.nc")
    assert str(tmp_path / "bad.nc") in str(info.value)


def _fitted_with(path, **changes):
    with netCDF4.Dataset(path) as nc:
        fitted = json.loads(nc.getncattr("sparse_deep_fitted"))
    fitted.update(changes)
    return {"sparse_deep_fitted": json.dumps(fitted)}


@pytest.mark.parametrize("changes,message", [
    (dict(predict="a string"), "names 'predict', which is not a fitted attribute of "
                               "SparseAutoencoderRecommender"),
    (dict(__class__=None), "names '__class__'"),
    (dict(n_features_in_=14), "'n_features_in_' is 14, but the network's input layer"),
    (dict(n_items_=16), "'n_items_' is 16, but the network's output layer"),
    (dict(n_steps_=-1), "'n_steps_' is -1; expected a non-negative integer"),
    (dict(n_epochs_=2.5), "'n_epochs_' is 2.5"),
    (dict(_seed_=True), "'_seed_' is True"),
    (dict(feature_names_in_={"__ndarray__": {"dtype": "str", "object": True, "shape": [2],
                                             "data": ["a", "b"]}}),
     "'feature_names_in_' must be 15 strings"),
    (dict(n_items_={"__ndarray__": {"dtype": "V8", "object": False, "shape": [1],
                                    "data": [1]}}), "not a numeric type"),
    (dict(n_items_={"__ndarray__": {"dtype": "<i8", "object": False, "shape": [10**12],
                                    "data": [1]}}), "does not fit its 1 values"),
])
def test_only_known_and_consistent_fitted_attributes(saved, tmp_path, changes, message):
    rewrite(saved, tmp_path / "bad.nc", attributes=_fitted_with(saved, **changes))
    with pytest.raises(ValueError, match=message) as info:
        load_model(tmp_path / "bad.nc")
    assert str(tmp_path / "bad.nc") in str(info.value)


def test_feature_names_round_trip(tmp_path):
    """The check of feature_names_in_ lets the real thing through."""
    named = SparseAutoencoderRecommender(epochs=1, **SMALL).fit(interactions())
    named.feature_names_in_ = np.array([f"item{i}" for i in range(15)], dtype=object)
    save_model(named, tmp_path / "named.nc")
    loaded = load_model(tmp_path / "named.nc")
    assert loaded.feature_names_in_.dtype == object
    np.testing.assert_array_equal(loaded.feature_names_in_, named.feature_names_in_)


@pytest.mark.parametrize("optimizer,message", [
    ('{"name": "os.system"}', "unknown optimizer 'os.system'"),
    ('{"name": "adam", "learning_rate": NaN}', "'learning_rate' is nan"),
    ('{"name": "adam", "beta1": "0.9"}', "'beta1' is '0.9'"),
    ('{"name": "adam", "code": 1}', "keys among"),
])
def test_optimizer_settings_are_checked(saved, tmp_path, optimizer, message):
    rewrite(saved, tmp_path / "bad.nc", attributes={"sparse_deep_optimizer": optimizer})
    with pytest.raises(ValueError, match=message):
        load_model(tmp_path / "bad.nc")


def test_checksums_catch_changes(saved, tmp_path, fitted, data):
    with netCDF4.Dataset(saved) as nc:
        assert nc.getncattr("sparse_deep_format_version") == 2
        sums = json.loads(nc.getncattr("sparse_deep_checksums"))
        assert set(sums["variables"]) == set(nc.variables)
        assert set(sums["attributes"]) == set(nc.ncattrs()) - {"sparse_deep_checksums"}
    weights = fitted.model_.weights[1].ravel().copy()
    weights[5] = np.nextafter(weights[5], np.inf)  # one bit
    cases = {
        "weight": (dict(variables={"weight1_weights": weights}),
                   "variable 'weight1_weights' fails its checksum"),
        "attribute": (dict(attributes={"layer1_dataSet": "x"}),
                      "global attribute 'layer1_dataSet' fails its checksum"),
        "added": (dict(attributes={"extra": "x"}), "global attribute 'extra' has no checksum"),
        "no sums": (dict(drop=("sparse_deep_checksums",)),
                    "version 2 must have the attribute 'sparse_deep_checksums'"),
    }
    for name, (change, message) in cases.items():
        path = tmp_path / f"{name.replace(' ', '_')}.nc"
        rewrite(saved, path, seal=False, **change)
        with pytest.raises(ValueError, match=message) as info:
            load_model(path)
        assert str(path) in str(info.value)
    # A version-1 file (no checksums) still loads, and predicts the same.
    rewrite(saved, tmp_path / "v1.nc", attributes={"sparse_deep_format_version": np.int32(1)},
            drop=("sparse_deep_checksums",), seal=False)
    old = load_model(tmp_path / "v1.nc")
    np.testing.assert_array_equal(old.predict_proba(data), fitted.predict_proba(data))
    # A damaged version number does not switch the checksums off.
    rewrite(saved, tmp_path / "v1_sums.nc", seal=False,
            attributes={"sparse_deep_format_version": np.int32(1)})
    with pytest.raises(ValueError, match="'sparse_deep_format_version' fails its checksum"):
        load_model(tmp_path / "v1_sums.nc")


# The byte-flip tests run in a child process, which the test kills if it takes
# too long: on some damaged files the HDF5 library itself never returns from
# opening them (a loop in its C code, which no Python code can interrupt), or
# could crash. With FLIP_SEED, these files are not among them.
_FLIPS = textwrap.dedent("""
    import json, os, sys
    import numpy as np
    import netCDF4
    from sparse_deep import load_model
    from sparse_deep.io import read_datasets

    model_path, data_path, folder, n_flips, seed = sys.argv[1:]
    n_flips, seed = int(n_flips), int(seed)


    def same_model(loaded, original):
        a, b = loaded.model_, original.model_
        same = all(x.dtype == y.dtype and np.array_equal(x, y)
                   for x, y in zip(a.weights, b.weights))
        same &= all(np.array_equal(a.biases[t], b.biases[t]) for t in b.biases)
        for x, y in zip(loaded._optimizer_state_.states, original._optimizer_state_.states):
            same &= np.array_equal(x[0], y[0]) and np.array_equal(x[1], y[1])
        same &= loaded._optimizer_state_.config == original._optimizer_state_.config
        same &= loaded.loss_curve_ == original.loss_curve_
        same &= loaded.network_ == original.network_ and type(loaded) is type(original)
        same &= loaded.get_params() == original.get_params()
        return same and all(getattr(loaded, n) == getattr(original, n) for n in (
            "_seed_", "n_steps_", "n_epochs_", "n_features_in_", "n_items_"))


    def used_ranges(path, content, model):
        # Where the values are: each array's bytes and each JSON text, found
        # where they occur once (not, say, zeros found elsewhere).
        state = model._optimizer_state_
        chunks = [a.tobytes() for a in [*model.model_.weights, *model.model_.biases.values(),
                                        *(a for slots in state.states for a in slots)]
                  if a.size > 4]
        with netCDF4.Dataset(path) as nc:
            chunks += [nc.getncattr(a).encode() for a in nc.ncattrs()
                       if isinstance(nc.getncattr(a), str) and len(nc.getncattr(a)) > 20]
        return [(content.find(c), content.find(c) + len(c)) for c in chunks
                if content.count(c) == 1]


    def flips(path, rng, ranges, n, tag):
        # Each copy is a new file: after some failed opens the HDF5 library
        # keeps the file's metadata cached and reuses it for a file of the
        # same inode.
        content = open(path, "rb").read()
        for i in range(n):
            aimed = bool(ranges) and i % 2 == 1
            if aimed:
                start, stop = ranges[int(rng.integers(len(ranges)))]
                position = int(rng.integers(start, stop))
            else:
                position = int(rng.integers(len(content)))
            damaged = bytearray(content)
            damaged[position] ^= int(rng.integers(1, 256))
            copy = os.path.join(folder, f"{tag}{i}.nc")
            with open(copy, "wb") as handle:
                handle.write(damaged)
            yield copy, position, aimed


    def attempt(report, read, copy, position):
        # Counts a refusal (ValueError naming the file); anything else the
        # library or loader raises is a problem. Returns what was read.
        try:
            return read(copy)
        except ValueError as error:
            report["refused"] += 1
            if copy not in str(error):
                report["problems"].append(f"byte {position}: no file name in {error}")
        except Exception as error:
            report["problems"].append(f"byte {position}: {type(error).__name__}: {error}")
        return None


    rng = np.random.default_rng(seed)
    original = load_model(model_path)
    content = open(model_path, "rb").read()
    ranges = used_ranges(model_path, content, original)
    model = dict(size=len(content), ranges=len(ranges), tried=0, aimed=0, refused=0,
                 identical=0, problems=[])
    for copy, position, aimed in flips(model_path, rng, ranges, n_flips, "model"):
        model["tried"] += 1
        model["aimed"] += aimed
        loaded = attempt(model, load_model, copy, position)
        if loaded is not None:
            if not same_model(loaded, original):
                model["problems"].append(f"byte {position}: loaded with other values")
            elif aimed:
                model["problems"].append(f"byte {position} holds a value, yet loaded")
            else:
                model["identical"] += 1
    data = dict(tried=0, refused=0, read=0, problems=[])
    for copy, position, _ in flips(data_path, rng, [], n_flips // 2, "data"):
        data["tried"] += 1
        data["read"] += attempt(data, read_datasets, copy, position) is not None
    print(json.dumps(dict(model=model, data=data)))
""")


@pytest.fixture(scope="module")
def flipped(fitted, tmp_path_factory):
    """Run _FLIPS on a saved model and a data set file; its report."""
    folder = tmp_path_factory.mktemp("flips")
    save_model(fitted, folder / "m.nc")
    write_dataset(folder / "d.nc", interactions(), "x")
    run = subprocess.run([sys.executable, "-c", _FLIPS, str(folder / "m.nc"),
                          str(folder / "d.nc"), str(folder), str(N_FLIPS), str(FLIP_SEED)],
                         capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_byte_flipped_model_files_are_refused_or_unchanged(flipped):
    """N_FLIPS copies of a model file with one byte changed (seeded), at random
    positions in the whole file and, one in two, in the bytes holding an
    array's values or a JSON attribute: each either loads bit-identical to the
    original (the byte was not used: padding, free space) or is refused with a
    ValueError naming the file; nothing else is raised, no value changes
    silently, and every change to a value is refused."""
    report = flipped["model"]
    summary = (f"byte flips of a {report['size']}-byte model file: {report['tried']} tried "
               f"({report['aimed']} aimed at values), {report['refused']} refused, "
               f"{report['identical']} loaded identical")
    print("\n" + summary)
    assert report["problems"] == [], summary
    assert report["tried"] == N_FLIPS and report["ranges"] > 10, summary
    assert report["refused"] + report["identical"] == N_FLIPS, summary
    assert report["aimed"] > 0, summary


def test_byte_flipped_data_set_files_read_or_raise_value_errors(flipped):
    """Data set files have no checksums, so a flipped value may read as
    another value; but every failure is a ValueError naming the file."""
    report = flipped["data"]
    print(f"\nbyte flips of a data set file: {report}")
    assert report["problems"] == []
    assert report["refused"] > 0 and report["refused"] + report["read"] == report["tried"]


def test_library_errors_name_the_file(saved, monkeypatch):
    def fail(*args, **kwargs):
        raise RuntimeError("NetCDF: HDF error")

    monkeypatch.setattr(model_file._Layout, "_check_variables", fail)
    with pytest.raises(ValueError, match="RuntimeError: NetCDF: HDF error") as info:
        load_model(saved)
    assert str(saved) in str(info.value)


# -- regular files only ---------------------------------------------------------------


@pytest.fixture
def no_hang():
    """Fail instead of hanging if a FIFO were opened."""
    previous = signal.signal(signal.SIGALRM, lambda *a: pytest.fail("blocked on a FIFO"))
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def test_only_regular_files_are_read(tmp_path, no_hang):
    os.mkfifo(tmp_path / "fifo")
    for read in (load_model, read_datasets):
        with pytest.raises(ValueError, match="fifo is a FIFO"):
            read(tmp_path / "fifo")
        os.symlink("/dev/zero", tmp_path / f"zero_{read.__name__}")
        with pytest.raises(ValueError, match="is a character device"):
            read(tmp_path / f"zero_{read.__name__}")
        with pytest.raises(IsADirectoryError, match=str(tmp_path)):
            read(tmp_path)
        with pytest.raises(FileNotFoundError, match="missing.nc"):
            read(tmp_path / "missing.nc")


def test_only_regular_files_are_replaced(fitted, tmp_path, no_hang):
    os.mkfifo(tmp_path / "fifo")
    os.symlink("/dev/null", tmp_path / "null")
    for target in ("fifo", "null"):
        with pytest.raises(ValueError, match="not a regular file"):
            save_model(fitted, tmp_path / target)
        with pytest.raises(ValueError, match="not a regular file"):
            write_dataset(tmp_path / target, interactions(), "x")
    assert os.path.islink(tmp_path / "null") and not os.path.isfile(tmp_path / "fifo")
    assert sorted(os.listdir(tmp_path)) == ["fifo", "null"]  # no temporary files left
    save_model(fitted, tmp_path / "real.nc")
    os.symlink(tmp_path / "real.nc", tmp_path / "link.nc")  # a link to a regular file is fine
    save_model(fitted, tmp_path / "link.nc")
    load_model(tmp_path / "link.nc")

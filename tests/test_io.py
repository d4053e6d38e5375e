"""sparse_deep.io: DSSTNE NetCDF data sets, text and index files, model files."""

import json
import os

import netCDF4
import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError

from sparse_deep import SparseAutoencoderRecommender, load_model, save_model
from sparse_deep.io import (
    NetCDFDataSet,
    check_score_format,
    format_recommendations,
    index_labels,
    read_dataset,
    read_datasets,
    read_index,
    read_recommendations,
    read_text,
    register_estimator,
    write_dataset,
    write_datasets,
    write_index,
    write_text,
)
from sparse_deep.io import model_file, netcdf_data

# -- a DSSTNE file written by hand, as dsstne.md section 3 lays it out -------------


def example_matrices():
    rng = np.random.default_rng(3)
    indicator = sp.random(7, 300, density=0.05, format="csr", random_state=1, dtype=np.float32)
    indicator.data[:] = 1
    analog = sp.random(7, 40, density=0.2, format="csr", random_state=2, dtype=np.float32)
    analog.data = rng.integers(1, 6, analog.nnz).astype(np.float32)
    return indicator, analog


def write_by_hand(path, sets, type_spelling="dataType", offset_type="u4", index_type="u4",
                  gaps=False):
    """Write ``[(name, csr, indicator)]`` with netCDF4 directly, following
    DSSTNE's reader, independently of sparse_deep's writer."""
    with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
        nc.setncattr("datasets", np.uint32(len(sets)))
        for n, (name, matrix, indicator) in enumerate(sets):
            nc.setncattr(f"name{n}", name)
            nc.setncattr(f"attributes{n}", np.uint32(3 if indicator else 1))
            nc.setncattr(f"kind{n}", np.uint32(0))
            nc.setncattr(f"{type_spelling}{n}", np.uint32(0 if indicator else 4))
            nc.setncattr(f"dimensions{n}", np.uint32(1))
            nc.setncattr(f"width{n}", np.uint32(matrix.shape[1]))
            starts, ends = matrix.indptr[:-1].copy(), matrix.indptr[1:].copy()
            indices, data = matrix.indices.copy(), matrix.data.copy()
            if gaps:  # store the examples in reverse order with a hole between each
                lengths = ends - starts
                new_start = np.cumsum(np.r_[0, lengths[::-1][:-1] + 2])[::-1]
                size = int(new_start.max() + lengths[0] + 2)
                new_indices = np.zeros(size, np.int64)
                new_data = np.zeros(size, np.float32)
                for i in range(matrix.shape[0]):
                    new_indices[new_start[i]:new_start[i] + lengths[i]] = \
                        indices[starts[i]:ends[i]]
                    new_data[new_start[i]:new_start[i] + lengths[i]] = data[starts[i]:ends[i]]
                starts, ends, indices, data = new_start, new_start + lengths, new_indices, \
                    new_data
            nc.createDimension(f"examplesDim{n}", matrix.shape[0])
            nc.createDimension(f"sparseDataDim{n}", indices.size)
            for var, values in ((f"sparseStart{n}", starts), (f"sparseEnd{n}", ends)):
                nc.createVariable(var, offset_type, (f"examplesDim{n}",))[:] = values
            nc.createVariable(f"sparseIndex{n}", index_type, (f"sparseDataDim{n}",))[:] = indices
            if not indicator:
                nc.createVariable(f"sparseData{n}", "f4", (f"sparseDataDim{n}",))[:] = data


@pytest.mark.parametrize("type_spelling", ["dataType", "datatype"])
@pytest.mark.parametrize("offset_type,index_type", [("u4", "u4"), ("u8", "u8"), ("u8", "u4")])
def test_hand_written_dsstne_file_reads_back_equal(tmp_path, type_spelling, offset_type,
                                                   index_type):
    indicator, analog = example_matrices()
    path = tmp_path / "data.nc"
    write_by_hand(path, [("gl_input", indicator, True), ("gl_output", analog, False)],
                  type_spelling, offset_type, index_type)
    sets = read_datasets(path)
    assert list(sets) == ["gl_input", "gl_output"]
    assert sets["gl_input"].indicator and not sets["gl_output"].indicator
    for name, expected in (("gl_input", indicator), ("gl_output", analog)):
        got = sets[name].data
        assert sp.issparse(got) and got.shape == expected.shape
        assert (got != expected).nnz == 0
        assert got.has_sorted_indices
    assert np.array_equal(read_dataset(path, "gl_output").data.toarray(), analog.toarray())


def test_examples_stored_out_of_order_with_gaps(tmp_path):
    _, analog = example_matrices()
    path = tmp_path / "gaps.nc"
    write_by_hand(path, [("x", analog, False)], gaps=True)
    assert (read_dataset(path).data != analog).nnz == 0


def test_written_files_carry_dsstne_names(tmp_path):
    indicator, analog = example_matrices()
    path = tmp_path / "out.nc"
    write_datasets(path, [NetCDFDataSet("gl_input", indicator, indicator=True),
                          NetCDFDataSet("gl_output", analog)])
    with netCDF4.Dataset(path) as nc:
        attrs = {name: nc.getncattr(name) for name in nc.ncattrs()}
        assert attrs["datasets"] == 2
        assert attrs["name0"] == "gl_input" and attrs["name1"] == "gl_output"
        assert attrs["attributes0"] == 3 and attrs["dataType0"] == 0  # Sparse|Boolean, UInt
        assert attrs["attributes1"] == 1 and attrs["dataType1"] == 4  # Sparse, Float
        for n, matrix in ((0, indicator), (1, analog)):
            assert attrs[f"kind{n}"] == 0 and attrs[f"dimensions{n}"] == 1
            assert attrs[f"width{n}"] == matrix.shape[1]
            assert len(nc.dimensions[f"examplesDim{n}"]) == matrix.shape[0]
            assert len(nc.dimensions[f"sparseDataDim{n}"]) == matrix.nnz
            assert nc.variables[f"sparseStart{n}"].dtype == np.uint32
            assert nc.variables[f"sparseEnd{n}"].dtype == np.uint32
            assert nc.variables[f"sparseIndex{n}"].dtype == np.uint32
        assert "sparseData0" not in nc.variables  # indicator data keep no values
        assert nc.variables["sparseData1"].dtype == np.float32
        assert "datatype0" not in attrs


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32])
def test_analog_round_trip_keeps_values_and_dtype(tmp_path, dtype):
    matrix = sp.random(20, 50, density=0.1, format="csr", random_state=0).astype(dtype)
    matrix.data[:] = np.arange(1, matrix.nnz + 1)
    write_dataset(tmp_path / "a.nc", matrix, "a", offset_type="uint64", index_type="uint64")
    back = read_dataset(tmp_path / "a.nc").data
    assert back.dtype == dtype and (back != matrix).nnz == 0


def test_round_trip_never_densifies(tmp_path):
    # 3 billion columns: a dense copy of even one row would need 12 GB.
    width = 3_000_000_000
    matrix = sp.csr_matrix((np.ones(4, np.float32), [0, width - 1, 5, 7], [0, 2, 2, 4]),
                           shape=(3, width))
    write_dataset(tmp_path / "wide.nc", matrix, "wide", indicator=True)
    back = read_dataset(tmp_path / "wide.nc")
    assert back.data.shape == (3, width) and (back.data != matrix).nnz == 0


def test_dense_weighted_and_multidimensional_data_sets(tmp_path):
    dense = np.arange(24, dtype=np.float32).reshape(4, 6)
    weights = np.array([1, 2, 0.5, 1], np.float32)
    images = sp.random(4, 12, density=0.3, format="csr", random_state=4, dtype=np.float32)
    write_datasets(tmp_path / "d.nc", [
        NetCDFDataSet("dense", dense, weights=weights),
        NetCDFDataSet("images", images, dimensions=(3, 2, 2), kind=1, sparse_ignore_zero=True),
    ])
    sets = read_datasets(tmp_path / "d.nc")
    assert isinstance(sets["dense"].data, np.ndarray)
    assert np.array_equal(sets["dense"].data, dense)
    assert np.array_equal(sets["dense"].weights, weights)
    assert sets["images"].dimensions == (3, 2, 2) and sets["images"].kind == 1
    assert sets["images"].sparse_ignore_zero
    assert (sets["images"].data != images).nnz == 0
    with netCDF4.Dataset(tmp_path / "d.nc") as nc:
        assert nc.getncattr("attributes0") == 128  # Weighted, dense
        assert nc.getncattr("height1") == 2 and nc.getncattr("length1") == 2
        assert "dataWeight0" in nc.variables and "data0" in nc.variables


def test_indexed_and_dense_boolean_data_sets(tmp_path):
    path = tmp_path / "indexed.nc"
    with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
        nc.setncattr("datasets", np.uint32(2))
        # Data set 0: two unique examples, four examples by index (Sparse|Boolean|Indexed).
        for key, value in (("name0", "idx"), ("attributes0", np.uint32(1 | 2 | 64)),
                           ("dataType0", np.uint32(0)), ("dimensions0", np.uint32(1)),
                           ("width0", np.uint32(5))):
            nc.setncattr(key, value)
        nc.createDimension("examplesDim0", 4)
        nc.createDimension("uniqueExamplesDim0", 2)
        nc.createDimension("sparseDataDim0", 3)
        nc.createVariable("sparseStart0", "u4", ("uniqueExamplesDim0",))[:] = [0, 2]
        nc.createVariable("sparseEnd0", "u4", ("uniqueExamplesDim0",))[:] = [2, 3]
        nc.createVariable("sparseIndex0", "u4", ("sparseDataDim0",))[:] = [1, 4, 0]
        nc.createVariable("index0", "u4", ("examplesDim0",))[:] = [1, 0, 0, 1]
        # Data set 1: dense Boolean, one hot index per example.
        for key, value in (("name1", "labels"), ("attributes1", np.uint32(2)),
                           ("dataType1", np.uint32(0)), ("dimensions1", np.uint32(1)),
                           ("width1", np.uint32(3))):
            nc.setncattr(key, value)
        nc.createDimension("examplesDim1", 3)
        nc.createDimension("dataDim1", 3)
        nc.createVariable("data1", "u4", ("dataDim1",))[:] = [2, 0, 1]
    sets = read_datasets(path)
    assert np.array_equal(sets["idx"].data.toarray(),
                          [[1, 0, 0, 0, 0], [0, 1, 0, 0, 1], [0, 1, 0, 0, 1], [1, 0, 0, 0, 0]])
    assert np.array_equal(sets["labels"].data.toarray(), [[0, 0, 1], [1, 0, 0], [0, 1, 0]])


# -- bad data set files --------------------------------------------------------------


def _corrupt(path, change):
    with netCDF4.Dataset(path, "a") as nc:
        change(nc)


@pytest.mark.parametrize("change,message", [
    (lambda nc: nc.delncattr("datasets"), "'datasets'"),
    (lambda nc: nc.delncattr("name0"), "'name0'"),
    (lambda nc: nc.delncattr("dataType0"), "dataType0"),
    (lambda nc: nc.delncattr("width0"), "'width0'"),
    (lambda nc: nc.renameVariable("sparseIndex0", "other"), "'sparseIndex0'"),
    (lambda nc: nc.renameVariable("sparseData1", "other"), "'sparseData1'"),
    (lambda nc: nc.setncattr("width0", np.uint32(10)), "past the width"),
    (lambda nc: nc.setncattr("dimensions0", np.uint32(4)), "'dimensions0' is 4"),
    (lambda nc: nc.setncattr("dataType0", np.uint32(12)), "'dataType0' is 12"),
    (lambda nc: nc.variables["sparseEnd0"].__setitem__(0, 10**6), "sparseEnd0=1000000"),
    (lambda nc: nc.setncattr("name1", "gl_input"), "both named 'gl_input'"),
])
def test_bad_files_give_clear_errors(tmp_path, change, message):
    indicator, analog = example_matrices()
    path = tmp_path / "bad.nc"
    write_by_hand(path, [("gl_input", indicator, True), ("gl_output", analog, False)])
    _corrupt(path, change)
    with pytest.raises(ValueError, match=message.replace("(", r"\(")) as info:
        read_datasets(path)
    assert str(path) in str(info.value)


def test_truncated_and_foreign_files(tmp_path):
    indicator, _ = example_matrices()
    path = tmp_path / "whole.nc"
    write_dataset(path, indicator, "x", indicator=True)
    content = path.read_bytes()
    (tmp_path / "half.nc").write_bytes(content[: len(content) // 2])
    with pytest.raises(ValueError, match="truncated"):
        read_datasets(tmp_path / "half.nc")
    (tmp_path / "text.nc").write_text("1\t2,3:4,5\n")
    with pytest.raises(ValueError, match="not a readable NetCDF file"):
        read_datasets(tmp_path / "text.nc")
    with pytest.raises(FileNotFoundError):
        read_datasets(tmp_path / "missing.nc")


def test_interrupted_write_leaves_no_file(tmp_path, monkeypatch):
    indicator, analog = example_matrices()
    target = tmp_path / "out.nc"

    def fail(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(netcdf_data, "_write_sparse", fail)
    with pytest.raises(KeyboardInterrupt):
        write_dataset(target, analog, "x")
    assert os.listdir(tmp_path) == []  # no target, no temporary file
    monkeypatch.undo()
    write_dataset(target, analog, "old")
    monkeypatch.setattr(netcdf_data, "_write_sparse", fail)
    with pytest.raises(KeyboardInterrupt):
        write_dataset(target, indicator, "new", indicator=True)
    assert os.listdir(tmp_path) == ["out.nc"]
    assert read_dataset(target).name == "old"  # the previous file is untouched


def test_writer_rejects_what_dsstne_cannot_read(tmp_path):
    with pytest.raises(ValueError, match="no non-zero entries"):
        write_dataset(tmp_path / "e.nc", sp.csr_matrix((3, 4), dtype=np.float32), "e")
    with pytest.raises(ValueError, match="values other than 1"):
        write_dataset(tmp_path / "v.nc", sp.csr_matrix(np.array([[2.0, 0]])), "v",
                      indicator=True)
    with pytest.raises(TypeError, match="no DSSTNE data type"):
        write_dataset(tmp_path / "t.nc", sp.csr_matrix(np.array([[1, 0]], np.int16)), "t")
    with pytest.raises(ValueError, match="unique"):
        write_datasets(tmp_path / "u.nc", [NetCDFDataSet("a", np.ones((1, 1))),
                                           NetCDFDataSet("a", np.ones((1, 1)))])
    assert not os.listdir(tmp_path)


# -- text data and index files ---------------------------------------------------------


def test_text_indicator_and_analog(tmp_path):
    path = tmp_path / "data.txt"
    path.write_text("u1\ta,5:b,3\nu2\tb:c,2.5,9:\n\nu3\t\n")
    with pytest.warns(UserWarning, match="more than one value"):
        indicator = read_text(path)
    assert indicator.features == {"a": 0, "b": 1, "c": 2}
    assert indicator.samples == {"u1": 0, "u2": 1, "u3": 2}
    assert np.array_equal(indicator.matrix.toarray(), [[1, 1, 0], [0, 1, 1], [0, 0, 0]])
    with pytest.warns(UserWarning):
        analog = read_text(path, analog=True)
    assert np.array_equal(analog.matrix.toarray(), [[5, 3, 0], [0, 1, 2.5], [0, 0, 0]])


def test_shared_sample_index_aligns_rows(tmp_path):
    (tmp_path / "in.txt").write_text("u1\ta:b\nu2\tb\nu3\tc\n")
    (tmp_path / "out.txt").write_text("u3\tx\nu1\ty\n")  # other order, u2 missing
    first = read_text(tmp_path / "in.txt")
    second = read_text(tmp_path / "out.txt", samples=first.samples)
    assert second.samples == first.samples
    assert second.matrix.shape[0] == first.matrix.shape[0] == 3
    assert np.array_equal(second.matrix.toarray(), [[0, 1], [0, 0], [1, 0]])


def test_fixed_feature_index_drops_unknown_features(tmp_path):
    (tmp_path / "d.txt").write_text("s\ta:zz:b:a\n")
    data = read_text(tmp_path / "d.txt", features={"a": 0, "b": 3})
    assert data.dropped == 1 and data.features == {"a": 0, "b": 3}
    assert np.array_equal(data.matrix.toarray(), [[1, 0, 0, 1]])  # repeated "a" counted once
    grown = read_text(tmp_path / "d.txt", features={"a": 0, "b": 3}, add_features=True)
    assert grown.features == {"a": 0, "b": 3, "zz": 4}


def test_directory_input_and_duplicate_samples(tmp_path):
    folder = tmp_path / "parts"
    folder.mkdir()
    (folder / "1.txt").write_text("u1\ta\n")
    (folder / "2.txt").write_text("u2\tb\nu1\tc\n")
    with pytest.raises(ValueError, match=r"sample 'u1' appears again \(first at .*1.txt:1\)"):
        read_text(folder)
    merged = read_text(folder, duplicate_samples="merge")
    assert np.array_equal(merged.matrix.toarray(), [[1, 0, 1], [0, 1, 0]])


@pytest.mark.parametrize("content,message", [
    ("u1 a:b\n", "no TAB"),
    ("\ta\n", "empty sample label"),
    ("u1\ta,x\n", "value 'x' of feature 'a' is not a finite number"),
    ("u1\ta,nan\n", "not a finite number"),
])
def test_malformed_text_lines(tmp_path, content, message):
    path = tmp_path / "bad.txt"
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as info:
        read_text(path, analog=True)
    assert f"{path}:1" in str(info.value)


def test_write_text_round_trip(tmp_path):
    matrix = sp.csr_matrix(np.array([[0, 1.5, 0], [0, 0, 0], [3, 0, 1e-7]], np.float32))
    write_text(tmp_path / "t.txt", matrix, samples=["x", "y", "z"], features={"a": 0, "b": 1,
                                                                              "c": 2})
    assert (tmp_path / "t.txt").read_text().splitlines() == ["x\tb,1.5", "y\t",
                                                             "z\ta,3:c,0.0000001"]
    back = read_text(tmp_path / "t.txt", features={"a": 0, "b": 1, "c": 2}, analog=True)
    assert np.array_equal(back.matrix.toarray(), matrix.toarray())


def test_index_files(tmp_path):
    index = {"b": 1, "a": 0, "z": 5}
    write_index(tmp_path / "idx", index)
    assert (tmp_path / "idx").read_text() == "a\t0\nb\t1\nz\t5\n"
    assert read_index(tmp_path / "idx") == index
    assert index_labels(index) == ["a", "b", None, None, None, "z"]
    cases = {"a\t0\na\t1\n": "label 'a' appears twice",
             "a\t0\nb\t0\n": "index 0 is given to both 'a'",
             "a 0\n": "expected 'label<TAB>index'",
             "a\tx\n": "not an integer",
             "a\t-1\n": "negative"}
    for content, message in cases.items():
        (tmp_path / "bad").write_text(content)
        with pytest.raises(ValueError, match=message):
            read_index(tmp_path / "bad")
    with pytest.raises(FileNotFoundError):
        read_index(tmp_path / "none")


def test_recommendation_lines():
    line = format_recommendations("u7", ["1214", "1196"], [0.98213, 0.5], "4.3f")
    assert line == "u7\t1214,0.982:1196,0.500:\n"
    assert check_score_format(".2e") == ".2e"
    for bad in ("%4.3f", "d", "4.3s", "", "f:"):
        with pytest.raises(ValueError, match="printf float format"):
            check_score_format(bad)


def test_read_recommendations(tmp_path):
    (tmp_path / "recs").write_text("1\t1214,0.982:1196,0.973:\n2\t\n")
    assert read_recommendations(tmp_path / "recs") == [
        ("1", [("1214", 0.982), ("1196", 0.973)]), ("2", [])]


# -- model files ---------------------------------------------------------------------------


def interactions(n_users=40, n_items=15, seed=0):
    rng = np.random.default_rng(seed)
    dense = rng.random((n_users, n_items)) < 0.25
    dense[np.arange(n_users), rng.integers(0, n_items, n_users)] = True
    return sp.csr_matrix(dense.astype(np.float32))


SMALL = dict(hidden_layer_sizes=(8, 6), batch_size=16, random_state=0, dropout=0.1)


@pytest.fixture(scope="module")
def data():
    return interactions()


@pytest.fixture(scope="module")
def fitted(data):
    return SparseAutoencoderRecommender(epochs=3, **SMALL).fit(data)


def test_save_load_predicts_identically(fitted, data, tmp_path):
    save_model(fitted, tmp_path / "m.nc")
    loaded = load_model(tmp_path / "m.nc")
    assert type(loaded) is SparseAutoencoderRecommender
    assert loaded.get_params() == fitted.get_params()
    assert loaded.get_params()["hidden_layer_sizes"] == (8, 6)  # a tuple stays a tuple
    assert np.array_equal(loaded.predict_proba(data), fitted.predict_proba(data))
    ids, scores = loaded.recommend(data, k=5, return_scores=True)
    ids0, scores0 = fitted.recommend(data, k=5, return_scores=True)
    assert np.array_equal(ids, ids0) and np.array_equal(scores, scores0)
    assert loaded.loss_curve_ == fitted.loss_curve_ and loaded.network_ == fitted.network_
    for name in ("n_items_", "n_features_in_", "n_epochs_", "n_steps_", "_seed_"):
        assert getattr(loaded, name) == getattr(fitted, name)


@pytest.mark.parametrize("optimizer", ["adam", "sgd", "adadelta"])
def test_continued_training_equals_one_longer_run(data, tmp_path, optimizer):
    kw = dict(SMALL, optimizer=optimizer, learning_rate=0.01, input_dropout=0.3)
    longer = SparseAutoencoderRecommender(epochs=4, **kw).fit(data)
    first = SparseAutoencoderRecommender(epochs=2, **kw).fit(data)
    save_model(first, tmp_path / "half.nc")
    resumed = load_model(tmp_path / "half.nc").set_params(warm_start=True, epochs=2).fit(data)
    assert resumed.n_epochs_ == 4 and resumed.loss_curve_ == longer.loss_curve_
    for a, b in zip(resumed.model_.weights, longer.model_.weights):
        assert np.array_equal(a, b)
    for t in longer.model_.biases:
        assert np.array_equal(resumed.model_.biases[t], longer.model_.biases[t])
    for (a1, a2), (b1, b2) in zip(resumed._optimizer_state_.states,
                                  longer._optimizer_state_.states):
        assert np.array_equal(a1, b1) and np.array_equal(a2, b2)


def test_model_file_uses_dsstne_weight_layout(fitted, tmp_path):
    save_model(fitted, tmp_path / "m.nc")
    model = fitted.model_
    with netCDF4.Dataset(tmp_path / "m.nc") as nc:
        assert nc.getncattr("weights") == len(model.links) == 3
        assert nc.getncattr("layers") == len(model.layers)
        for i, (w, (s, t)) in enumerate(zip(model.weights, model.links)):
            assert nc.getncattr(f"weight{i}_inputLayer") == model.layers[s].name
            assert nc.getncattr(f"weight{i}_outputLayer") == model.layers[t].name
            assert nc.getncattr(f"weight{i}_width") == w.shape[1]
            assert nc.getncattr(f"weight{i}_height") == w.shape[0]
            assert np.array_equal(nc.variables[f"weight{i}_weights"][:], w.ravel())
            assert np.array_equal(nc.variables[f"weight{i}_bias"][:], model.biases[t])
        assert json.loads(nc.getncattr("sparse_deep_network")) == fitted.network_
        assert nc.getncattr("sparse_deep_estimator") == "SparseAutoencoderRecommender"


def test_network_given_as_a_path_is_stored_as_json(data, tmp_path):
    from sparse_deep.network.samples import movielens_config

    config = tmp_path / "config.json"
    config.write_text(json.dumps(movielens_config()))
    model = SparseAutoencoderRecommender(network=str(config), epochs=1, batch_size=16,
                                         random_state=0).fit(data)
    save_model(model, tmp_path / "m.nc")
    config.unlink()  # the file is not needed any more
    loaded = load_model(tmp_path / "m.nc")
    assert isinstance(loaded.network, dict)
    resumed = loaded.set_params(warm_start=True).fit(data)
    assert resumed.n_epochs_ == 2  # same network, so training continued


def test_random_generator_random_state_is_saved_as_none(data, tmp_path):
    model = SparseAutoencoderRecommender(epochs=1, batch_size=16,
                                         random_state=np.random.RandomState(0)).fit(data)
    with pytest.warns(UserWarning, match="random_state"):
        save_model(model, tmp_path / "m.nc")
    assert load_model(tmp_path / "m.nc").random_state is None


def test_save_errors(tmp_path):
    with pytest.raises(NotFittedError):
        save_model(SparseAutoencoderRecommender(), tmp_path / "m.nc")

    class Unregistered(SparseAutoencoderRecommender):
        pass

    with pytest.raises(TypeError, match="registered"):
        save_model(Unregistered(), tmp_path / "m.nc")
    with pytest.raises(ValueError, match="already registered"):
        register_estimator(type("SparseAutoencoderRecommender", (BaseEstimator,), {}))
    assert not os.listdir(tmp_path)


def _edit(path, change):
    """Apply ``change`` to a model file and seal it again with fresh checksums,
    as a deliberate forger would: what follows must be caught by the checks
    of the content, not by the checksums."""
    with netCDF4.Dataset(path, "a") as nc:
        change(nc)
        reseal(nc)


def reseal(nc):
    """Recompute the ``sparse_deep_checksums`` of an open model file."""
    if "sparse_deep_checksums" in nc.ncattrs():
        nc.delncattr("sparse_deep_checksums")
    nc.set_auto_mask(False)
    variables = {}
    for name, var in nc.variables.items():
        attributes = {a: var.getncattr(a) for a in var.ncattrs()}
        # A forged size or type is refused before any read: no sum needed.
        forged = var.size > 10**7 or not isinstance(var.dtype, np.dtype)
        variables[name] = 0 if forged else model_file._variable_checksum(var[...], attributes)
    model_file._write_checksums(nc, variables)


@pytest.mark.parametrize("change,message", [
    (lambda nc: nc.setncattr("sparse_deep_estimator", "BaseEstimator"),
     "'BaseEstimator', which is not a registered estimator"),
    (lambda nc: nc.setncattr("sparse_deep_estimator", "os.system"), "not a registered"),
    (lambda nc: nc.setncattr("sparse_deep_format_version", np.int32(99)), "format version 99"),
    (lambda nc: nc.renameVariable("weight1_weights", "x"), "'weight1_weights'"),
    (lambda nc: nc.renameVariable("sparse_deep_optimizer0_state1", "x"), "optimizer0_state1"),
    (lambda nc: nc.setncattr("weight0_outputLayer", "Output"), "weight0 connects"),
    (lambda nc: nc.setncattr("sparse_deep_params", '{"nonsense": 1}'), "do not fit"),
    (lambda nc: nc.setncattr("sparse_deep_params", '{"hidden'), "not valid JSON"),
    (lambda nc: nc.delncattr("sparse_deep_format"), "written by DSSTNE itself"),
    (lambda nc: [nc.delncattr(a) for a in ("sparse_deep_format", "weights")],
     "not a sparse_deep model file"),
])
def test_bad_model_files(fitted, tmp_path, change, message):
    path = tmp_path / "m.nc"
    save_model(fitted, path)
    _edit(path, change)
    with pytest.raises(ValueError, match=message):
        load_model(path)


def test_foreign_files_are_not_models(fitted, tmp_path):
    write_dataset(tmp_path / "data.nc", interactions(), "x")
    with pytest.raises(ValueError, match="data set file, not a model"):
        load_model(tmp_path / "data.nc")
    with netCDF4.Dataset(tmp_path / "dsstne.nc", "w") as nc:  # as NNNetwork::SaveNetCDF
        nc.setncattr("weights", np.uint32(1))
        nc.setncattr("weight0_inputLayer", "Input")
    with pytest.raises(ValueError, match="written by DSSTNE itself"):
        load_model(tmp_path / "dsstne.nc")
    save_model(fitted, tmp_path / "m.nc")
    content = (tmp_path / "m.nc").read_bytes()
    (tmp_path / "cut.nc").write_bytes(content[: len(content) // 3])
    with pytest.raises(ValueError, match="truncated"):
        load_model(tmp_path / "cut.nc")


def test_recommend_exclude(fitted, data):
    n_rows, n_items = data.shape
    diagonal = np.arange(min(n_rows, n_items))
    # Ones on the diagonal and a stored zero at (0, 3): only the pattern counts.
    exclude = sp.csr_matrix((np.r_[np.ones(diagonal.size), 0.0].astype(np.float32),
                             (np.r_[diagonal, 0], np.r_[diagonal, 3])), shape=data.shape)
    assert exclude.nnz == diagonal.size + 1
    ids = fitted.recommend(data, k=fitted.n_items_, exclude_seen=False, exclude=exclude)
    for row in range(data.shape[0]):
        banned = set(exclude[row].indices)
        assert banned.isdisjoint(ids[row][ids[row] >= 0])
        assert (ids[row] >= 0).sum() == fitted.n_items_ - len(banned)
    both = fitted.recommend(data, k=3, exclude=exclude)
    for row in range(data.shape[0]):
        assert set(data[row].indices).isdisjoint(both[row])
    with pytest.raises(ValueError, match="exclude must have shape"):
        fitted.recommend(data, exclude=exclude[:3])


@pytest.mark.parametrize("kind", ["multiclass", "binary-strings", "multilabel", "regression"])
def test_mlp_estimators_round_trip_and_continue(tmp_path, kind):
    """Classifier and regressor files predict identically and continue training
    exactly as the estimator they were saved from."""
    from sparse_deep import SparseMLPClassifier, SparseMLPRegressor

    rng = np.random.default_rng(0)
    X = sp.random(60, 30, density=0.2, random_state=0, format="csr", dtype=np.float32)
    y = {"multiclass": rng.integers(0, 3, 60),
         "binary-strings": np.array(["no", "yes"])[rng.integers(0, 2, 60)],
         "multilabel": sp.csr_matrix(rng.random((60, 5)) < 0.3),
         "regression": rng.random(60)}[kind]
    cls = SparseMLPRegressor if kind == "regression" else SparseMLPClassifier
    fitted = cls(epochs=3, hidden_layer_sizes=(8,), random_state=0).fit(X, y)
    save_model(fitted, tmp_path / "mlp.nc")
    loaded = load_model(tmp_path / "mlp.nc")
    assert type(loaded) is cls
    before, after = fitted.predict(X), loaded.predict(X)
    if sp.issparse(before):
        before, after = before.toarray(), after.toarray()
    np.testing.assert_array_equal(after, before)
    if cls is SparseMLPClassifier:
        np.testing.assert_array_equal(loaded.classes_, fitted.classes_)
        np.testing.assert_array_equal(loaded.predict_proba(X), fitted.predict_proba(X))
    for model in (fitted, loaded):
        model.set_params(warm_start=True, epochs=2).fit(X, y)
    for a, b in zip(loaded.model_.weights, fitted.model_.weights):
        np.testing.assert_array_equal(a, b)

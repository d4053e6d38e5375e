"""Property-based tests: whatever the input, a reader or estimator either
works or raises the documented error with a message, never anything else.

The example counts of every suite are printed at the end of the run
(``--hypothesis-show-statistics`` in pyproject.toml's pytest options).
"""

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sparse_deep import SparseAutoencoderRecommender
from sparse_deep.io import read_datasets, read_index, read_text
from sparse_deep.io.netcdf_data import NetCDFDataSet, write_datasets
from sparse_deep.network import NetworkSpec, parse_network

CONFIG = json.loads((Path(__file__).resolve().parent.parent / "examples" /
                     "dsstne_movielens_config.json").read_text())
# Derandomized: CI runs the same examples every time, and a failure reproduces.
SUITE = settings(deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow,
                                       HealthCheck.function_scoped_fixture])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**64, 2**64)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)


def _mutate(value, path, replacement):
    """``value`` with the element at ``path`` (indices into nested dicts and
    lists, taken modulo their sizes) replaced."""
    if not path or not isinstance(value, (dict, list)) or not value:
        return replacement
    keys = list(value) if isinstance(value, dict) else list(range(len(value)))
    key = keys[path[0] % len(keys)]
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[key] = _mutate(value[key], path[1:], replacement)
    return copy


def _parses_or_refuses(obj):
    try:
        assert isinstance(parse_network(obj), NetworkSpec)
    except ValueError as error:
        assert str(error)


@settings(SUITE, max_examples=400)
@given(path=st.lists(st.integers(0, 50), min_size=1, max_size=4), replacement=json_values)
def test_network_parser_on_mutated_dsstne_configs(path, replacement):
    _parses_or_refuses(_mutate(CONFIG, path, replacement))


@settings(SUITE, max_examples=300)
@given(text=st.text(max_size=200) | st.builds(json.dumps, json_values))
def test_network_parser_on_arbitrary_text(text):
    if not text.lstrip().startswith("{"):
        text = "{" + text  # parse_network reads a path otherwise
    _parses_or_refuses(text)


def _written(data):
    """A temporary file holding ``data`` (bytes); the caller removes it."""
    handle, name = tempfile.mkstemp()
    with os.fdopen(handle, "wb") as stream:
        stream.write(data)
    return name


text_bytes = st.binary(max_size=300) | st.text(
    alphabet=st.sampled_from("ab1,.:\t\n\r-e9é\ufeff\x00"), max_size=300).map(
    lambda text: text.encode("utf-8"))


@settings(SUITE, max_examples=400)
@given(data=text_bytes, analog=st.booleans())
def test_text_readers_on_arbitrary_bytes(data, analog):
    name = _written(data)
    try:
        for read in (lambda: read_text(name, analog=analog), lambda: read_index(name)):
            try:
                read()
            except ValueError as error:
                assert name in str(error)
    finally:
        os.remove(name)


class _DataSetFile:
    """A small data set file's bytes and contents (a class: its repr stays short
    in hypothesis's reports)."""

    def __init__(self, directory):
        rng = np.random.default_rng(0)
        X = sp.random(20, 12, density=0.3, format="csr", dtype=np.float32, random_state=rng)
        path = directory / "data.nc"
        write_datasets(path, [NetCDFDataSet("d", X),
                              NetCDFDataSet("e", (X > 0).astype(np.float32), indicator=True)])
        self.original, self.expected = path.read_bytes(), read_datasets(path)

    def __repr__(self):
        return "<data set file>"


@pytest.fixture(scope="module")
def dataset_file(tmp_path_factory):
    return _DataSetFile(tmp_path_factory.mktemp("nc"))


@settings(SUITE, max_examples=300)
@given(flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)),
                      min_size=1, max_size=3))
def test_dataset_reader_on_corrupted_files(dataset_file, flips):
    original, expected = dataset_file.original, dataset_file.expected
    data = bytearray(original)
    for where, mask in flips:
        data[int(where * len(data))] ^= mask
    name = _written(bytes(data))
    try:
        try:
            got = read_datasets(name)
        except (ValueError, OSError) as error:
            assert name in str(error)
            return
        # Loaded: the damage hit bytes that do not matter, or changed values
        # the format has no checksum for; shapes and index ranges still hold.
        assert got.keys() == expected.keys()
        for key, dataset in got.items():
            assert dataset.data.shape == expected[key].data.shape
    finally:
        os.remove(name)


interaction_values = st.sampled_from([1.0, 2.0, 0.5, -1.0, 0.0, np.nan, np.inf, 1e38])


@settings(SUITE, max_examples=60)
@given(rows=st.integers(1, 5), cols=st.integers(1, 5), data=st.data())
def test_recommender_on_arbitrary_small_matrices(rows, cols, data):
    mask = data.draw(st.lists(st.booleans(), min_size=rows * cols, max_size=rows * cols))
    values = data.draw(st.lists(interaction_values, min_size=rows * cols,
                                max_size=rows * cols))
    dense = np.where(mask, values, 0.0).reshape(rows, cols).astype(np.float32)
    est = SparseAutoencoderRecommender(hidden_layer_sizes=(2,), epochs=1, random_state=0)
    try:
        est.fit(sp.csr_matrix(dense))
    except (ValueError, FloatingPointError) as error:  # bad values; or 1e38s overflow
        assert str(error) and not hasattr(est, "model_")
        return
    ids = est.recommend(sp.csr_matrix(dense), k=1)
    assert ids.shape == (rows, 1)
    with pytest.raises(ValueError, match="features"):
        est.recommend(sp.csr_matrix((rows, cols + 1), dtype=np.float32), k=1)

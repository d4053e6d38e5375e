"""Widths past what 32-bit indices hold are refused up front, never narrowed."""

import resource
import time

import numpy as np
import pytest
import scipy.sparse as sp

from sparse_deep import SparseAutoencoderRecommender, SparseMLPClassifier, SparseMLPRegressor
from sparse_deep.backends import get_backend
from sparse_deep.core.blocks import CSRBlock
from sparse_deep.network import parse_network
from sparse_deep.network.spec import MAX_UNITS


def _wide(width, column):
    """Two rows; the second holds one value in ``column`` (no dense allocation)."""
    return sp.csr_matrix((np.ones(2, np.float32), np.array([0, column]), np.array([0, 1, 2])),
                         shape=(2, width))


@pytest.mark.parametrize("make,y", [
    (SparseAutoencoderRecommender, None),
    (SparseMLPClassifier, np.array([0, 1])),
    (SparseMLPRegressor, np.array([0.0, 1.0])),
])
@pytest.mark.parametrize("width", [MAX_UNITS + 1, 3_000_000_000])
def test_a_width_past_32_bits_is_refused_before_any_allocation(make, y, width):
    X = _wide(width, width - 1)  # column 2**31 + k would wrap to a negative int32
    started, rss = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ValueError, match="32-bit integers.*at most 2,147,483,647"):
        make().fit(X, y)
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss
    assert time.perf_counter() - started < 5 and grown < 100 * 1024  # KiB: under 100 MB


def test_a_network_that_claims_too_many_units_is_refused():
    network = {"Layers": [{"Name": "Input", "Kind": "Input", "N": "auto", "Sparse": True},
                          {"Name": "Hidden", "Kind": "Hidden", "N": MAX_UNITS + 1},
                          {"Name": "Output", "Kind": "Output", "N": "auto"}]}
    with pytest.raises(ValueError, match="2,147,483,648 units.*at most 2,147,483,647"):
        parse_network(network)


def test_the_engine_refuses_to_narrow_column_indices():
    with pytest.raises(ValueError, match="cannot be indexed with 32-bit integers"):
        CSRBlock.from_scipy(_wide(MAX_UNITS + 6, MAX_UNITS + 5), get_backend("cpu"))
    block = CSRBlock.from_scipy(_wide(MAX_UNITS, MAX_UNITS - 1), get_backend("cpu"))
    assert block.indices.dtype == np.int32 and block.indices[-1] == MAX_UNITS - 1


def test_a_model_larger_than_the_machine_is_refused_with_the_size_it_needs():
    X = _wide(2_000_000_000, 1_999_999_999)  # fits 32 bits; its weights take terabytes
    started = time.perf_counter()
    with pytest.raises(MemoryError, match=r"needs [\d.e+]+ GiB per rank.*this machine's memory"):
        SparseAutoencoderRecommender().fit(X)
    assert time.perf_counter() - started < 5

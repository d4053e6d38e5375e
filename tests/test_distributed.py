"""The partition arithmetic and the communicator stand-in, without MPI."""

import numpy as np
import pytest

from sparse_deep.distributed import comm as comm_module
from sparse_deep.distributed.partition import (
    COLUMNS,
    REPLICATED,
    ROWS,
    block_owner,
    block_range,
    block_ranges,
    fewest_ranks,
    largest_share,
    link_modes,
    shard_weights,
)


@pytest.mark.parametrize("n", [0, 1, 2, 3, 7, 10, 1000, 1001])
@pytest.mark.parametrize("size", [1, 2, 3, 4, 7])
def test_blocks_tile_the_range_and_differ_by_at_most_one(n, size):
    ranges = block_ranges(n, size)
    assert ranges[0][0] == 0 and ranges[-1][1] == n
    for (a, b), (c, d) in zip(ranges, ranges[1:]):
        assert b == c
    lengths = [b - a for a, b in ranges]
    assert max(lengths) - min(lengths) <= 1


def test_block_range_is_dsstnes_floor_split():
    # DSSTNE: minX = N * id / np, maxX = N * (id + 1) / np.
    assert block_ranges(10, 3) == [(0, 3), (3, 6), (6, 10)]
    assert block_ranges(2, 3) == [(0, 0), (0, 1), (1, 2)]


@pytest.mark.parametrize("n,size", [(10, 3), (7, 4), (1000, 7), (5, 5), (3, 7)])
def test_block_owner_agrees_with_the_ranges(n, size):
    for index in range(n):
        rank = block_owner(index, n, size)
        start, stop = block_range(n, size, rank)
        assert start <= index < stop


def test_bad_ranks_and_indices_are_refused():
    with pytest.raises(ValueError, match="rank must be"):
        block_range(10, 2, 2)
    with pytest.raises(ValueError, match="rank must be"):
        block_range(10, 0, 0)
    with pytest.raises(ValueError, match="index must be"):
        block_owner(10, 10, 2)


def test_link_modes_split_input_rows_and_output_columns():
    # Input 0 -> Hidden 1 -> Hidden 2 -> Output 3, the units of 0 and 3 split
    links = [(0, 1), (1, 2), (2, 3)]
    assert link_modes(links, {0, 3}) == [ROWS, REPLICATED, COLUMNS]
    # the weight into a sampled output layer is stored one row per item
    assert link_modes(links, {0, 3}, [False, False, True]) == [ROWS, REPLICATED, ROWS]
    with pytest.raises(ValueError, match="straight into the Output"):
        link_modes([(0, 3)], {0, 3})


def test_the_layers_say_whose_units_split():
    """Model parallelism splits what the layer classes declare: the input's
    features and the output's units (full or sampled), not hidden units."""
    from sparse_deep.engine.layers import split_layers
    from sparse_deep.engine.model import build_plan
    from sparse_deep.network import parse_network

    full = {"Kind": "Output", "N": "auto", "Activation": "Sigmoid"}
    sampled = {"Kind": "Output", "N": "auto", "Activation": "SoftMax",
               "Sampling": {"Negatives": 8}}
    for output, error in ((full, "CrossEntropy"), (sampled, "SampledSoftmax")):
        spec = parse_network({"Version": 0.9, "ErrorFunction": error, "Layers": [
            {"Kind": "Input", "N": "auto"},
            {"Kind": "Hidden", "N": 4, "Activation": "Tanh"},
            {"Kind": "Hidden", "N": 4, "Activation": "Tanh"}, output]}).resolve(30, 20)
        plans, _ = build_plan(spec)
        assert split_layers(plans) == {0, 3}


def test_shard_weights_take_each_ranks_block():
    links = [(0, 1), (1, 2)]
    shapes = [(10, 4), (4, 7)]
    full = [np.arange(40).reshape(10, 4), np.arange(28).reshape(4, 7)]
    parts = [[], []]
    for rank in range(3):
        shards = shard_weights(links, shapes, {0, 2}, 3, rank)
        for i, shard in enumerate(shards):
            local = shard.take(full[i])
            assert local.shape == shard.local_shape(shapes[i])
            parts[i].append(local)
    np.testing.assert_array_equal(np.vstack(parts[0]), full[0])
    np.testing.assert_array_equal(np.hstack(parts[1]), full[1])


def test_largest_share_and_fewest_ranks():
    shapes, modes = [(1000, 10), (10, 10), (10, 1000)], [ROWS, REPLICATED, COLUMNS]
    one = largest_share(shapes, modes, 4, 1)
    assert one == (10_000 + 100 + 10_000) * 4
    assert largest_share(shapes, modes, 4, 2) == (5_000 + 100 + 5_000) * 4
    assert largest_share(shapes, modes, 4, 3) == (3_340 + 100 + 3_340) * 4  # ceil(1000/3)=334
    limit = largest_share(shapes, modes, 4, 3)
    assert fewest_ranks(shapes, modes, 4, limit) == 3
    assert fewest_ranks(shapes, modes, 4, 100 * 4 - 1) is None  # the replicated part alone


def test_serial_comm_collectives_are_the_identity():
    comm = comm_module.SerialComm()
    x = np.arange(6.0).reshape(2, 3)
    assert comm.sum(x) is x
    np.testing.assert_array_equal(comm.allgather(x)[0], x)
    assert comm.bcast("a") == "a" and comm.allgather_objects(5) == [5]


def test_launched_size_reads_the_launchers_environment(monkeypatch):
    for name in comm_module._SIZE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert comm_module.launched_size() == 1
    monkeypatch.setenv("PMI_SIZE", "3")
    assert comm_module.launched_size() == 3
    monkeypatch.delenv("PMI_SIZE")
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "2")
    assert comm_module.launched_size() == 2


class _FakeComm:
    """Two ranks whose reports are given: for raise_together's logic."""

    size = 2

    def __init__(self, reports):
        self.reports = reports

    def allgather_objects(self, value):
        return self.reports


def test_raise_together_raises_on_every_rank():
    bad = ValueError("X has NaN")
    # The failing rank re-raises its own error.
    with pytest.raises(ValueError, match="X has NaN"):
        comm_module.raise_together(_FakeComm([None, ("ValueError", "X has NaN")]), bad)
    # The other rank raises the same type, naming the rank.
    with pytest.raises(ValueError, match="on rank 1 of 2: X has NaN"):
        comm_module.raise_together(_FakeComm([None, ("ValueError", "X has NaN")]), None)
    # A type that is not a builtin becomes RankFailed.
    with pytest.raises(comm_module.RankFailed, match="on rank 0 of 2: Custom: boom"):
        comm_module.raise_together(_FakeComm([("Custom", "boom"), None]), None)
    comm_module.raise_together(_FakeComm([None, None]), None)  # nobody failed


def test_uncaught_error_aborts_unless_every_rank_raised_it(monkeypatch):
    """An error one rank hits alone must end the others (MPI Abort); an error
    raise_together raised on every rank must not, or the first rank to abort
    kills the others before they print their message."""
    aborted = []

    class _Recorder:
        def abort(self, code=1):
            aborted.append(code)

    monkeypatch.setattr(comm_module.sys, "excepthook", lambda *args: None)
    comm_module._install_abort_on_uncaught_exception(_Recorder())
    hook = comm_module.sys.excepthook
    hook(RuntimeError, RuntimeError("alone"), None)
    assert aborted == [1]
    with pytest.raises(ValueError) as shared:
        comm_module.raise_together(_FakeComm([None, ("ValueError", "X has NaN")]), None)
    hook(ValueError, shared.value, None)
    assert aborted == [1]

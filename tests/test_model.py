"""Model construction: initialisation schemes and their memory-bounded drawing."""

import numpy as np
import pytest

from sparse_deep.engine import model as model_module
from sparse_deep.engine.model import Model
from sparse_deep.network import parse_network


def spec(scheme, scale=1.0, bias=0.0):
    return parse_network({
        "Version": 0.9,
        "Layers": [{"Kind": "Input", "N": "auto"},
                   {"Kind": "Hidden", "N": 40, "Activation": "Tanh",
                    "WeightInit": {"Scheme": scheme, "Scale": scale, "Bias": bias}},
                   {"Kind": "Output", "N": "auto", "Activation": "SoftMax"}],
    }).resolve(300, 50)


@pytest.mark.parametrize("scheme", ["Xavier", "CaffeXavier", "Gaussian", "Uniform", "UnitBall",
                                    "SELU", "Constant"])
def test_chunked_initialisation_draws_the_same_weights(scheme, monkeypatch):
    whole = Model(spec(scheme)).initialize(7)
    monkeypatch.setattr(model_module, "_INIT_CHUNK", 100)  # a few rows per draw
    chunked = Model(spec(scheme)).initialize(7)
    for a, b in zip(whole.weights, chunked.weights):
        np.testing.assert_array_equal(a, b)


def test_initialisation_schemes_follow_their_definitions():
    n_in, n_out = 300, 40
    w = Model(spec("Xavier", 2.0)).initialize(1).weights[0]
    limit = 2.0 * np.sqrt(6 / (n_in + n_out))
    assert np.abs(w).max() <= limit and np.abs(w).max() > 0.9 * limit
    w = Model(spec("UnitBall", 0.5)).initialize(1).weights[0]
    assert w.min() > 0 and w.max() <= 0.5
    w = Model(spec("Gaussian", 0.1)).initialize(1).weights[0]
    assert w.std() == pytest.approx(0.1, rel=0.05)
    w = Model(spec("SELU")).initialize(1).weights[0]
    assert w.std() == pytest.approx(1 / np.sqrt(n_in), rel=0.05)
    m = Model(spec("Constant", 0.25, bias=0.5)).initialize(1)
    assert np.all(m.weights[0] == 0.25) and np.all(m.biases[1] == 0.5)


@pytest.mark.parametrize("size", [2, 3])
@pytest.mark.parametrize("scheme", ["Xavier", "Gaussian"])
def test_sharded_models_hold_blocks_of_the_whole_model(scheme, size, monkeypatch):
    """Each rank's shard holds exactly its rows (input) or columns (output) of the
    whole model's weights, drawn from the same seed, chunked or not."""
    from sparse_deep.distributed.partition import shard_weights
    from sparse_deep.engine.layers import split_layers

    whole = Model(spec(scheme, bias=0.1)).initialize(3)
    monkeypatch.setattr(model_module, "_INIT_CHUNK", 70)
    blocks = [[], []]
    for rank in range(size):
        shards = shard_weights(whole.links, whole.full_shapes, split_layers(whole.layers), size,
                               rank)
        part = Model(spec(scheme, bias=0.1), shards=shards).initialize(3)
        assert part.input_range == (shards[0].start, shards[0].stop)
        for i in range(2):
            blocks[i].append(part.weights[i])
        start, stop = part.output_range
        np.testing.assert_array_equal(part.biases[whole.output.index],
                                      whole.biases[whole.output.index][start:stop])
    np.testing.assert_array_equal(np.vstack(blocks[0]), whole.weights[0])
    np.testing.assert_array_equal(np.hstack(blocks[1]), whole.weights[1])

"""The sampled output layer: its losses and gradients against the slow reference
(tests/naive.py), its negatives, and the network language's rules for it."""

import zlib

import numpy as np
import pytest

from sparse_deep.backends import get_backend
from sparse_deep.engine.model import Model
from sparse_deep.core.blocks import CSRBlock
from sparse_deep.engine.runner import Runner
from sparse_deep.engine.sampling import NegativeSampler, item_counts
from sparse_deep.network import Sampling, parse_network

from . import naive
from .test_gradients import random_batch


def sampled_net(error="SampledSoftmax", scoring="Dot", temperature=1.0, negatives=5,
                sampler="Uniform", activation=None, hidden="Tanh", **top):
    output = {"Name": "out", "Kind": "Output", "N": "auto",
              "Activation": activation or {"SampledSoftmax": "SoftMax",
                                           "CosineContrastive": "Linear",
                                           "BPR": "Sigmoid"}[error],
              "Sampling": {"Negatives": negatives, "Sampler": sampler},
              "Scoring": scoring, "Temperature": temperature}
    return {"Version": 0.9, "ErrorFunction": error, **top, "Layers": [
        {"Name": "in", "Kind": "Input", "N": "auto", "Sparse": True},
        {"Name": "h", "Kind": "Hidden", "N": 5, "Activation": hidden},
        output]}


def engine_step(model, x, t, *, seed=0, step=1, training=False, row_weights=None):
    """One forward/backward of the CPU engine: (loss, full-shape gradients, negatives)."""
    backend = get_backend("cpu")
    runner = Runner(model, backend, x.shape[0], x.nnz, t.nnz, seed=seed)
    sampler = NegativeSampler(model.output.sampling, item_counts(t))
    runner.sampled.prepare(sampler)
    rows = np.arange(x.shape[0])
    b = runner.load_batch(CSRBlock.from_scipy(x, backend), CSRBlock.from_scipy(t, backend),
                          rows, step, training)
    runner.forward(b, step, training=training, stop_at_output=True)
    runner.output_error(b, row_weights, step)
    error = runner.batch_error(runner.row_error[:b], row_weights)
    runner.backward(b, step, training=training)
    grads = []
    sampled = runner.sampled
    touched = sampled.buffers["rows"][:sampled.n_touched]
    for g, w, (s, t_) in zip(runner.weight_grads, model.weights, model.links):
        full = np.zeros_like(w)
        if g is None:
            full[touched] = sampled.buffers["grad"][:sampled.n_touched]
        elif model.layers[s].is_input:
            full[runner.transposed.features[:runner.n_present]] = g[:runner.n_present]
        else:
            full = g.copy()
        grads.append(full)
    for t_ in model.biases:
        if t_ in runner.bias_grads:
            grads.append(runner.bias_grads[t_].copy())
        else:
            full = np.zeros_like(model.biases[t_])
            if not model.output.cosine:
                full[touched] = sampled.buffers["bias_grad"][:sampled.n_touched]
            grads.append(full)
    return error / b, grads, sampler.draw(seed, step)


def numeric(model, f):
    out = []
    for param in model.weights + list(model.biases.values()):
        g = np.zeros_like(param)
        for idx in np.ndindex(param.shape):
            old = param[idx]
            param[idx] = old + 1e-6
            up = f()
            param[idx] = old - 1e-6
            down = f()
            param[idx] = old
            g[idx] = (up - down) / 2e-6
        out.append(g)
    return out


CASES = [
    ("SampledSoftmax", "Dot", 1.0, "Uniform"),
    ("SampledSoftmax", "Cosine", 0.2, "Popularity"),
    ("SampledSoftmax", "Dot", 0.5, "Popularity"),
    ("CosineContrastive", "Cosine", 1.0, "Uniform"),
    ("BPR", "Dot", 1.0, "Popularity"),
    ("BPR", "Cosine", 0.3, "Uniform"),
]


@pytest.mark.parametrize("error,scoring,temperature,sampler", CASES)
def test_sampled_gradients_match_reference(error, scoring, temperature, sampler):
    rng = np.random.default_rng(zlib.crc32(f"{error}-{scoring}-{sampler}".encode()))
    top = {"CosineContrastive": {"Margin": 0.1, "NegativeWeight": 3.0}}
    spec = parse_network(sampled_net(error, scoring, temperature, 6, sampler, **top))
    spec = spec.resolve(7, 9)
    model = Model(spec, np.float64).initialize(int(rng.integers(1 << 30)))
    for b in model.biases.values():
        b[...] = rng.uniform(-0.2, 0.2, b.shape)
    x = random_batch(rng, 4, 7, 0.4, analog=True)
    t = random_batch(rng, 4, 9, 0.3, analog=True)
    weights = rng.uniform(0.5, 2.0, 4)
    loss, analytic, (negatives, corrections) = engine_step(model, x, t, step=3,
                                                           row_weights=weights)

    def reference():
        return naive.sampled_loss(model, x.toarray(), t.toarray(), negatives, corrections,
                                  row_weights=weights)

    np.testing.assert_allclose(loss, reference(), rtol=1e-9)
    for a, n in zip(analytic, numeric(model, reference)):
        scale = max(np.abs(n).max(), 1e-3)
        np.testing.assert_allclose(a, n, rtol=0, atol=2e-6 * scale)


# -- the network language ------------------------------------------------------


def test_sampled_keys_round_trip_and_dsstne_networks_emit_none():
    spec = parse_network(sampled_net("SampledSoftmax", "Cosine", 0.1, 4, "Popularity"))
    text = spec.to_dict()
    out = text["Layers"][-1]
    assert out["Sampling"] == {"Negatives": 4, "Sampler": "Popularity", "Exponent": 0.75}
    assert out["Scoring"] == "Cosine" and out["Temperature"] == 0.1
    assert parse_network(text) == spec
    plain = parse_network("examples/dsstne_movielens_config.json").to_dict()
    assert not {"Sampling", "Scoring", "Temperature"} & set(plain["Layers"][-1])
    assert "CosineContrastive" not in plain


def with_output(**changes):
    net = sampled_net()
    net["Layers"][-1].update(changes)
    return net


@pytest.mark.parametrize("net, message", [
    (with_output(Sampling={"Negatives": 0}), "'Negatives' must be a positive integer"),
    (with_output(Sampling={"Negatives": 2.5}), "'Negatives' must be a positive integer"),
    (with_output(Sampling={"Negatives": 5, "Sampler": "Zipf"}),
     "unknown negative sampler 'Zipf'; expected one of: Uniform, Popularity"),
    (with_output(Sampling={"Negatives": 5, "Exponent": 1.5}), r"'Exponent' must be in \[0, 1\]"),
    (with_output(Sampling={"Negatives": 5, "Count": 3}), "unknown key 'Count'"),
    (with_output(Scoring="Euclid"), "unknown scoring 'Euclid'; expected one of: Dot, Cosine"),
    (with_output(Temperature=0), "'Temperature' must be > 0"),
    (with_output(Sampling=None), "must be a JSON object"),
    (dict(sampled_net(), ErrorFunction="CrossEntropy"),
     "only sampled error functions can train .*SampledSoftmax, CosineContrastive, BPR"),
    (dict(sampled_net(), ErrorFunction="Hinge"), "remove 'Sampling' or change the ErrorFunction"),
    (dict(sampled_net(), CosineContrastive={"Margin": 1.0}), r"'Margin' must be in \[-1, 1\)"),
    (dict(sampled_net(), CosineContrastive={"NegativeWeight": 0}), "'NegativeWeight' must be > 0"),
    (sampled_net("CosineContrastive", "Dot"), "give the Output layer 'out' \"Scoring\": \"Cosine\""),
    (sampled_net("CosineContrastive", "Cosine", 0.5), "'Temperature' 0.5, which it would ignore"),
    (sampled_net("BPR", activation="SoftMax"), "use Sigmoid or Linear"),
])
def test_sampled_network_errors_name_the_value_and_what_is_accepted(net, message):
    with pytest.raises(ValueError, match=message):
        parse_network(net)


def test_sampled_loss_needs_sampling_and_cosine_needs_sampling():
    net = sampled_net()
    del net["Layers"][-1]["Sampling"]
    net["Layers"][-1]["Scoring"] = "Dot"
    with pytest.raises(ValueError, match="give the Output layer 'out' a 'Sampling' object"):
        parse_network(net)
    net["ErrorFunction"], net["Layers"][-1]["Scoring"] = "CrossEntropy", "Cosine"
    with pytest.raises(ValueError, match="Cosine\" is implemented for sampled Output layers only"):
        parse_network(net)


def test_more_negatives_than_items_is_refused_when_the_size_is_known():
    spec = parse_network(sampled_net(negatives=10))
    with pytest.raises(ValueError, match="samples 10 negatives per step but the output data has "
                                         "9 columns; 'Negatives' must be between 1 and 9"):
        spec.resolve(7, 9)
    net = with_output(N=4, Sampling={"Negatives": 5})
    with pytest.raises(ValueError, match="'Negatives' is 5 but the layer has N=4"):
        parse_network(net)


@pytest.mark.parametrize("change, message", [
    ({"Source": ["h", "h2"]}, "exactly one Source and no Skip"),
    ({"Skip": ["h"]}, "exactly one Source and no Skip"),
    ({"WeightNorm": 2.0}, "has a WeightNorm"),
])
def test_sampled_output_layer_shape_rules(change, message):
    net = sampled_net()
    net["Layers"].insert(2, {"Name": "h2", "Kind": "Hidden", "N": 5, "Activation": "Tanh"})
    net["Layers"][-1].update(change)
    if "Skip" in change:
        net["Layers"][-1]["N"] = 5
    spec = parse_network(net).resolve(7, 5)
    with pytest.raises(ValueError, match=message):
        Model(spec)


def test_sampled_output_layer_takes_a_hidden_layer():
    net = sampled_net()
    del net["Layers"][1]
    spec = parse_network(net).resolve(7, 5)
    with pytest.raises(ValueError, match="its Source 'in', an Input layer; its Source must be "
                                         "a Hidden layer"):
        Model(spec)


# -- the negatives ---------------------------------------------------------------


def test_negatives_are_a_sorted_pure_function_of_seed_and_step():
    sampler = NegativeSampler(Sampling(50, "Popularity", 0.75), np.arange(200))
    ids, corrections = sampler.draw(7, 3)
    again, _ = sampler.draw(7, 3)
    other, _ = sampler.draw(7, 4)
    np.testing.assert_array_equal(ids, again)
    assert np.all(np.diff(ids) >= 0) and ids.dtype == np.int64
    assert not np.array_equal(ids, other)
    q = (np.arange(200) + 1.0) ** 0.75
    np.testing.assert_allclose(corrections, np.log(50 * q[ids] / q.sum()))


@pytest.mark.parametrize("sampler, exponent", [("Uniform", 0.0), ("Popularity", 1.0),
                                               ("Popularity", 0.5)])
def test_negatives_follow_the_sampler_distribution(sampler, exponent):
    counts = np.array([0, 1, 3, 7, 15, 31, 63, 127])
    draws = NegativeSampler(Sampling(8, sampler, exponent), counts)
    ids = np.concatenate([draws.draw(1, step)[0] for step in range(4000)])
    expected = np.full(8, 1 / 8) if sampler == "Uniform" else (counts + 1.0) ** exponent
    expected = expected / expected.sum()
    observed = np.bincount(ids, minlength=8) / ids.size
    np.testing.assert_allclose(observed, expected, atol=0.01)


def test_uniform_sampler_reaches_every_item_of_a_huge_catalogue():
    n = 50_000_000  # past 2**24, where a float32 uniform would leave gaps
    counts = np.broadcast_to(np.int64(0), (n,))  # only its length matters here
    ids, corrections = NegativeSampler(Sampling(100_000, "Uniform"), counts).draw(0, 1)
    assert ids.max() > n - 2000 and len(np.unique(ids % 8)) == 8
    np.testing.assert_allclose(corrections, np.log(100_000 / n))

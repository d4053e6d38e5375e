"""A new activation, error function or optimizer is one registration: registered here, in a
test, it trains estimators on the CPU and on the CUDA backend (in numba's
simulator in CI) and is checked against the tests' reference, with no other
file touched."""

import math

import numpy as np
import pytest
import scipy.sparse as sp

from sparse_deep import SparseAutoencoderRecommender, SparseMLPClassifier
from sparse_deep.backends import cuda_device_status
from sparse_deep.backends.cpu import dense as cpu_dense
from sparse_deep.backends.cpu import optim as cpu_optim
from sparse_deep.core import optimizers
from sparse_deep.core.activations import ACTIVATIONS, register_activation
from sparse_deep.core.errors import ERROR_FUNCTIONS, register_error_function
from sparse_deep.core.codes import H_LR, H_MU
from sparse_deep.core.optimizers import OPTIMIZERS, get_optimizer, register_optimizer

from . import naive
# The simulator's tiny launches and quick thread switches (autouse there, and here).
from .test_kernels_cuda import (  # noqa: F401
    fast_thread_switches,
    interactions,
    small_launches,
)


def signum(w, g, v, s2, c):
    """Toy: momentum of the gradient, then a step of fixed size along its sign."""
    v = c[H_MU] * v + g
    sign = 1.0 if v > 0.0 else (-1.0 if v < 0.0 else 0.0)
    return w - c[H_LR] * sign, v, s2


@pytest.fixture
def toy_optimizer(monkeypatch):
    """"signum" registered for one test, as a user's own code would register it."""
    monkeypatch.setattr(optimizers, "OPTIMIZERS", dict(OPTIMIZERS))
    yield register_optimizer("signum", signum, n_states=1, description="sign of momentum")


def atan(z, slope, alpha, lam):
    """Toy activation: the arc tangent, whose derivative through a = atan(z) is cos(a)^2."""
    return math.atan(z)


def atan_derivative(a, slope, alpha, lam):
    c = math.cos(a)
    return c * c


@pytest.fixture
def toy_activation():
    yield register_activation("ToyAtan", atan, atan_derivative, aliases=("ArcTangent",))
    ACTIVATIONS.remove("ToyAtan")


def test_the_registration_is_what_every_part_reads(toy_optimizer):
    assert get_optimizer("SIGNUM") is toy_optimizer
    assert get_optimizer(toy_optimizer.code) is toy_optimizer
    assert toy_optimizer.code == len(optimizers.OPTIMIZERS) - 1
    with pytest.raises(ValueError, match="registered already"):
        register_optimizer("signum", signum, n_states=1)


@pytest.mark.parametrize("n_states", [3, -1, 1.0])
def test_a_bad_registration_is_refused(n_states, monkeypatch):
    monkeypatch.setattr(optimizers, "OPTIMIZERS", dict(OPTIMIZERS))
    with pytest.raises(ValueError, match="n_states must be 0, 1 or 2"):
        register_optimizer("toy", signum, n_states=n_states)
    with pytest.raises(ValueError, match="lower-case"):
        register_optimizer("Toy", signum, n_states=1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_cpu_kernel_of_a_registered_optimizer_matches_the_reference(toy_optimizer, dtype):
    rng = np.random.default_rng(4)
    param = rng.normal(size=(6, 5)).astype(dtype)
    velocity = np.zeros_like(param)
    dummy = np.zeros((1, 5), dtype)
    rows = np.arange(6, dtype=np.int64)
    for step in range(1, 4):
        grad = rng.normal(size=param.shape).astype(dtype)
        hyper = np.array([0.05, 0.8, 0.9, 0.9, 0.999, 1e-8, 1.0, 1.0, 0.0, 0.0])
        want = naive.optimizer_update("signum", param, grad, velocity, np.zeros_like(param),
                                      hyper)
        cpu_optim.update_rows(param, grad, rows, 6, velocity, dummy, toy_optimizer.code, hyper)
        tolerance = 1e-6 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(param, want[0], rtol=tolerance, atol=tolerance)
        np.testing.assert_allclose(velocity, want[1], rtol=tolerance, atol=tolerance)
        assert not dummy.any()  # one state: the second is never touched


def test_an_estimator_trains_with_a_registered_optimizer(toy_optimizer):
    X = interactions(n_users=24, n_items=9)
    model = SparseAutoencoderRecommender(optimizer="signum", hidden_layer_sizes=(4,),
                                         learning_rate=0.01, epochs=8, batch_size=8,
                                         random_state=0).fit(X)
    assert model.loss_curve_[-1] < model.loss_curve_[0]
    # The state the estimator keeps is the registration's one array per weight.
    assert all(s1.shape == w.shape for (s1, _), w in
               zip(model._optimizer_state_.states, model.model_.weights))


@pytest.mark.skipif(not cuda_device_status()[0], reason="no CUDA device or simulator")
def test_a_registered_optimizer_trains_the_same_model_on_the_cuda_backend(toy_optimizer):
    X = interactions(n_users=12, n_items=6)
    params = dict(optimizer="signum", hidden_layer_sizes=(3,), learning_rate=0.01, epochs=2,
                  batch_size=4, random_state=0)
    cpu = SparseAutoencoderRecommender(device="cpu", **params).fit(X)
    gpu = SparseAutoencoderRecommender(device="cuda", **params).fit(X)
    np.testing.assert_allclose(gpu.loss_curve_, cpu.loss_curve_, rtol=1e-5)
    for a, b in zip(gpu.model_.weights, cpu.model_.weights):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)


# -- activations -------------------------------------------------------------------------

def test_a_registered_activation_is_a_name_of_the_network_language(toy_activation):
    from sparse_deep.network import parse_network

    spec = parse_network({"Kind": "FeedForward", "Layers": [
        {"Name": "Input", "Kind": "Input", "N": 4, "DataSet": "in", "Sparse": True},
        {"Name": "Hidden", "Kind": "Hidden", "N": 3, "Source": "Input",
         "Activation": "arc tangent"},
        {"Name": "Output", "Kind": "Output", "N": 2, "DataSet": "out", "Source": "Hidden",
         "Activation": "Sigmoid"}]})
    assert spec.layer("Hidden").activation == "ToyAtan"
    with pytest.raises(ValueError, match="registered already"):
        register_activation("toy_atan", atan, atan_derivative)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_cpu_kernels_of_a_registered_activation_match_the_reference(toy_activation, dtype):
    rng = np.random.default_rng(2)
    z = rng.normal(scale=2.0, size=(5, 7)).astype(dtype)
    a = z.copy()
    cpu_dense.activate_rows(a, toy_activation.code, 0.0, 1.0, 1.0)
    np.testing.assert_allclose(a, naive.activation("ToyAtan", z.astype(np.float64)), rtol=1e-6)
    delta = rng.normal(size=z.shape).astype(dtype)
    want = delta * np.cos(a.astype(np.float64)) ** 2
    cpu_dense.hidden_delta(delta, a, toy_activation.code, 0.0, 1.0, 1.0, 0, np.arange(5), 0.0,
                           np.zeros(7, dtype))
    np.testing.assert_allclose(delta, want, rtol=1e-5)


def test_an_estimator_trains_with_a_registered_activation(toy_activation):
    X = sp.random(80, 12, density=0.3, format="csr", random_state=0, dtype=np.float32)
    y = (X[:, :6].sum(axis=1).A.ravel() > X[:, 6:].sum(axis=1).A.ravel()).astype(int)
    model = SparseMLPClassifier(activation="toyatan", hidden_layer_sizes=(6,), epochs=30,
                                batch_size=16, learning_rate=0.05, random_state=0).fit(X, y)
    assert model.loss_curve_[-1] < 0.8 * model.loss_curve_[0]
    assert model.score(X, y) > 0.8


@pytest.mark.skipif(not cuda_device_status()[0], reason="no CUDA device or simulator")
def test_a_registered_activation_trains_the_same_model_on_the_cuda_backend(toy_activation):
    X = interactions(n_users=12, n_items=6)
    params = dict(activation="ToyAtan", output_activation="ToyAtan", loss="l2",
                  hidden_layer_sizes=(3,), epochs=2, batch_size=4, random_state=0)
    cpu = SparseAutoencoderRecommender(device="cpu", **params).fit(X)
    gpu = SparseAutoencoderRecommender(device="cuda", **params).fit(X)
    np.testing.assert_allclose(gpu.loss_curve_, cpu.loss_curve_, rtol=1e-5)
    for a, b in zip(gpu.model_.weights, cpu.model_.weights):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)


# -- error functions ---------------------------------------------------------------------

def log_cosh(a, t, is_one):
    """Toy error: log cosh of the difference (L2 near 0, L1 far from it)."""
    d = a - t
    return math.log(math.cosh(d)), math.tanh(d)


@pytest.fixture
def toy_error():
    yield register_error_function("ToyLogCosh", log_cosh, aliases=("LogCoshToy",))
    ERROR_FUNCTIONS.remove("ToyLogCosh")


@pytest.mark.parametrize("act", ["Linear", "Tanh", "SoftMax"])
def test_the_cpu_output_pass_of_a_registered_error_matches_the_reference(toy_error, act):
    from .test_kernels_cpu import (naive_error_matrix, numeric_delta, pre_activations,
                                   random_targets, run_output_pass)

    rng = np.random.default_rng(5)
    z = pre_activations(rng, (4, 6), np.float64)
    t = random_targets(rng, z.shape, np.float64, "L2")
    _, delta, row_error = run_output_pass(act, "ToyLogCosh", z, t)
    np.testing.assert_allclose(row_error, naive_error_matrix(act, "ToyLogCosh", z, t).sum(axis=1),
                               rtol=1e-10)
    want = numeric_delta(act, "ToyLogCosh", z, t)
    np.testing.assert_allclose(delta, want, rtol=0, atol=1e-6 * max(np.abs(want).max(), 1e-3))


def test_a_registered_error_trains_the_same_model_on_the_cpu_and_the_cuda_backend(toy_error):
    X = interactions(n_users=12, n_items=6)
    network = {"Kind": "AutoEncoder", "ErrorFunction": "log cosh toy", "Layers": [
        {"Name": "Input", "Kind": "Input", "N": "auto", "DataSet": "input", "Sparse": True},
        {"Name": "Hidden", "Kind": "Hidden", "N": 3, "Source": "Input", "Activation": "Tanh"},
        {"Name": "Output", "Kind": "Output", "N": "auto", "DataSet": "output",
         "Source": "Hidden", "Activation": "Linear"}]}
    params = dict(network=network, epochs=2, batch_size=4, random_state=0)
    cpu = SparseAutoencoderRecommender(device="cpu", **params).fit(X)
    assert cpu.network_["ErrorFunction"] == "ToyLogCosh"
    if not cuda_device_status()[0]:
        pytest.skip("no CUDA device or simulator")
    gpu = SparseAutoencoderRecommender(device="cuda", **params).fit(X)
    np.testing.assert_allclose(gpu.loss_curve_, cpu.loss_curve_, rtol=1e-5)
    for a, b in zip(gpu.model_.weights, cpu.model_.weights):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)

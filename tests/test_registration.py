"""A new activation, error function, optimizer or layer type is one registration: registered
here, in a test, it trains estimators on the CPU and on the CUDA backend (in numba's
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
from sparse_deep.engine.layers import DenseLayer, register_layer_type
from sparse_deep.network import LAYER_TYPES

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
def toy_optimizer():
    """"signum" registered for one test, as a user's own code would register it."""
    yield register_optimizer("signum", signum, n_states=1, description="sign of momentum")
    OPTIMIZERS.remove("signum")


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


# -- the disk cache ------------------------------------------------------------------

CHILD = r"""
import numpy as np, scipy.sparse as sp
from numba.core import event
compiled = []
class Count(event.Listener):
    def on_start(self, ev):
        if ev.data["dispatcher"].py_func.__module__.startswith("sparse_deep"):
            compiled.append(ev.data["dispatcher"].py_func.__qualname__)
    def on_end(self, ev):
        pass
event.register("numba:compile", Count())
from sparse_deep import SparseAutoencoderRecommender, SparseMLPClassifier
X = sp.random(40, 12, density=0.3, format="csr", random_state=0, dtype=np.float32)
SparseAutoencoderRecommender(activation="tanh", loss="cross_entropy", epochs=1,
                             random_state=0).fit(X)
SparseMLPClassifier(activation="sigmoid", hidden_layer_sizes=(4,), epochs=1,
                    random_state=0).fit(X, np.arange(40) % 2)
print(compiled)
"""


def test_a_second_process_compiles_no_kernel_of_the_same_fits():
    """Kernels specialised to a registered definition are cached under its
    fingerprint, which must be the same in every process: a fingerprint that
    read a memory address (Tanh's did) made every new process compile them
    again."""
    import ast
    import subprocess
    import sys

    runs = [subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True,
                           check=True) for _ in range(2)]
    assert ast.literal_eval(runs[1].stdout.strip().splitlines()[-1]) == []


def test_fingerprints_tell_definitions_apart():
    """A definition edited (here, the function it calls) gets another
    fingerprint, so that its cached kernels are not reused for it."""
    from sparse_deep.core.registry import fingerprint

    def exp_of(z, slope, alpha, lam):
        return math.exp(z)

    def log_of(z, slope, alpha, lam):
        return math.log(z)

    def real_of(z, slope, alpha, lam):
        return z.real

    def imag_of(z, slope, alpha, lam):
        return z.imag

    assert fingerprint(exp_of) != fingerprint(log_of)
    assert fingerprint(real_of) != fingerprint(imag_of)
    assert fingerprint(exp_of) == fingerprint(exp_of)


def test_fingerprints_are_the_same_in_every_process():
    import subprocess
    import sys

    script = ("from sparse_deep.core import activations, errors, optimizers\n"
              "print([activations.get_activation(n).fingerprint for n in activations.ACTIVATIONS]"
              " + [errors.get_error_function(n).fingerprint for n in errors.ERROR_FUNCTIONS]"
              " + [optimizers.get_optimizer(n).fingerprint for n in optimizers.OPTIMIZERS])")
    runs = {subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                           check=True).stdout for _ in range(2)}
    assert len(runs) == 1


# -- layer types ---------------------------------------------------------------------

class L2Normalized(DenseLayer):
    """Toy layer type: a hidden layer whose output is its activation divided by
    each row's L2 norm, written with the backends' existing operations."""

    @staticmethod
    def check(plan):
        if plan.p_dropout > 0:
            raise ValueError(f"layer {plan.name!r}: an L2Normalized layer takes no pDropout")

    def allocate(self, runner, inference):
        super().allocate(runner, inference)
        bk, n, dt = runner.backend, runner.batch_size, runner.model.dtype
        runner.out[self.index] = bk.zeros((n, self.n), dt)
        self.norms = bk.zeros(n, dt)

    def forward(self, runner, b, batch, step, training, stop_at_output):
        super().forward(runner, b, batch, step, training, stop_at_output)
        bk = runner.backend
        bk.normalize_rows(bk.head(runner.pre[self.index], b), bk.head(runner.out[self.index], b),
                          bk.head(self.norms, b))

    def hidden_delta(self, runner, b, step, training, delta):
        bk = runner.backend
        bk.project_hidden(delta, bk.head(runner.out[self.index], b), bk.head(self.norms, b),
                          delta, False)
        return super().hidden_delta(runner, b, step, training, delta)


@pytest.fixture
def toy_layer_type():
    yield register_layer_type("ToyL2Normalized", L2Normalized)
    LAYER_TYPES.remove("ToyL2Normalized")


def normalized_network(**hidden):
    return {"Version": 0.9, "ErrorFunction": "CrossEntropy", "Layers": [
        {"Kind": "Input", "N": "auto", "Sparse": True},
        {"Kind": "Hidden", "N": 4, "Activation": "Tanh", "Type": "ToyL2Normalized", **hidden},
        {"Kind": "Output", "N": "auto", "Activation": "SoftMax"}]}


def test_a_registered_layer_type_computes_its_definition_and_its_gradient(toy_layer_type):
    """Its output is the unit rows of the activation, and the engine's
    gradients match central differences of the engine's own loss."""
    from sparse_deep.backends import get_backend
    from sparse_deep.core.blocks import CSRBlock
    from sparse_deep.engine.model import Model
    from sparse_deep.engine.runner import Runner
    from sparse_deep.network import parse_network

    spec = parse_network(normalized_network()).resolve(6, 6)
    model = Model(spec, np.float64).initialize(3)
    rng = np.random.default_rng(0)
    dense = rng.uniform(0.5, 1.5, (4, 6)) * (rng.random((4, 6)) < 0.6)
    dense[np.arange(4), np.arange(4)] = 1.0  # no empty row
    x = sp.csr_matrix(dense)
    t = sp.csr_matrix(np.eye(4, 6))

    def step():
        bk = get_backend("cpu")
        runner = Runner(model, bk, 4, x.nnz, t.nnz)
        b = runner.load_batch(CSRBlock.from_scipy(x, bk), CSRBlock.from_scipy(t, bk),
                              np.arange(4), 0, False)
        runner.forward(b, 0, training=False, stop_at_output=True)
        runner.output_error(b)
        return runner, runner.batch_error(runner.row_error[:b]) / b

    runner, _ = step()
    a = np.tanh(x.toarray() @ model.weights[0] + model.biases[1])
    np.testing.assert_allclose(runner.out[1][:4], a / np.linalg.norm(a, axis=1, keepdims=True),
                               rtol=1e-12)
    runner.backward(4, 0, training=False)
    analytic = runner.weight_grads[1].copy()  # hidden -> output
    w = model.weights[1]
    numeric = np.zeros_like(w)
    for idx in np.ndindex(w.shape):
        old = w[idx]
        w[idx] = old + 1e-6
        up = step()[1]
        w[idx] = old - 1e-6
        down = step()[1]
        w[idx] = old
        numeric[idx] = (up - down) / 2e-6
    np.testing.assert_allclose(analytic, numeric, rtol=0, atol=1e-7)
    # the input weight's gradient runs through the normalisation's chain rule
    features = runner.transposed.features[: runner.n_present]
    w = model.weights[0]
    for f in features[:3]:
        for j in range(w.shape[1]):
            old = w[f, j]
            w[f, j] = old + 1e-6
            up = step()[1]
            w[f, j] = old - 1e-6
            down = step()[1]
            w[f, j] = old
            row = list(features).index(f)
            assert abs(runner.weight_grads[0][row, j] - (up - down) / 2e-6) < 1e-7


def test_a_layer_type_with_an_update_connection_is_refused():
    """The runner collects each weight's optimizer steps (connection_steps) to
    apply them together; a type still defining update_connection would have
    it ignored, so it is refused."""
    class OldStyle(DenseLayer):
        def update_connection(self, runner, w, s1, s2, code, hyper):
            pass

    with pytest.raises(TypeError, match="connection_steps"):
        register_layer_type("ToyOldStyle", OldStyle)
    assert "ToyOldStyle" not in LAYER_TYPES


def test_a_registered_layer_type_is_refused_where_it_does_not_serve(toy_layer_type):
    from sparse_deep.engine.model import Model
    from sparse_deep.network import parse_network

    with pytest.raises(ValueError, match="takes no pDropout"):
        Model(parse_network(normalized_network(pDropout=0.2)).resolve(6, 6))
    for where in (0, 2):  # the Input, the Output layer
        network = normalized_network()
        network["Layers"][where]["Type"] = "ToyL2Normalized"
        with pytest.raises(ValueError, match="serves Hidden layers"):
            Model(parse_network(network).resolve(6, 6))


@pytest.mark.skipif(not cuda_device_status()[0], reason="no CUDA device or simulator")
def test_a_registered_layer_type_trains_the_same_model_on_cpu_and_cuda(toy_layer_type,
                                                                        tmp_path):
    from sparse_deep.io import load_model, save_model

    X = interactions(n_users=12, n_items=6)
    params = dict(network=normalized_network(), epochs=2, batch_size=4, random_state=0)
    cpu = SparseAutoencoderRecommender(device="cpu", **params).fit(X)
    gpu = SparseAutoencoderRecommender(device="cuda", **params).fit(X)
    np.testing.assert_allclose(gpu.loss_curve_, cpu.loss_curve_, rtol=1e-5)
    for a, b in zip(gpu.model_.weights, cpu.model_.weights):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
    save_model(cpu, tmp_path / "m.nc")
    np.testing.assert_array_equal(load_model(tmp_path / "m.nc").predict_proba(X[:3]),
                                  cpu.predict_proba(X[:3]))

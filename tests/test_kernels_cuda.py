"""The CUDA backend, kernel by kernel, against the CPU backend and the references.

These tests run in numba's CUDA simulator (tests/conftest.py turns it on; set
SPARSE_DEEP_REAL_GPU=1 to run them on a GPU). The simulator executes every
thread as Python, so inputs are a few rows by a few columns and the launch
sizes of :mod:`sparse_deep.backends.cuda.launch` are shrunk (blocks of 4
threads, at most 3 blocks, 4 x 4 GEMM tiles): every kernel then runs its
multi-block, grid-stride and multi-tile paths. Where the CUDA kernel makes the
same floating-point operations in the same order as the CPU kernel, results
are compared exactly; elsewhere to a tolerance that fits a different
summation order.
"""

import itertools
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from sparse_deep import SparseAutoencoderRecommender
from sparse_deep.backends import CPUBackend, cuda_device_status, get_backend
from sparse_deep.backends.cpu import dense as cpu_dense
from sparse_deep.backends.cpu import optim as cpu_optim
from sparse_deep.backends.cpu import sparse as cpu_sparse
from sparse_deep.backends.cpu import topk as cpu_topk
from sparse_deep.core import rng as crng
from sparse_deep.core.activations import ACTIVATIONS as REGISTERED_ACTIVATIONS
from sparse_deep.core.errors import ERROR_FUNCTIONS as REGISTERED_ERRORS
from sparse_deep.core.optimizers import OPTIMIZERS as REGISTERED_OPTIMIZERS
from sparse_deep.engine.model import Model
from sparse_deep.engine.optim import OptimizerConfig, OptimizerState
from sparse_deep.core.blocks import CSRBlock, TransposedBlock
from sparse_deep.engine.runner import Runner, runner_bytes
from sparse_deep.network import parse_network

from . import naive
from .test_kernels_cpu import (
    ACTIVATIONS,
    BOOST,
    LAM,
    PAIRS,
    SLOPE,
    SMCE,
    TOPK_SCENARIOS,
    kernel_alpha,
    make_states,
    naive_act,
    output_hyper,
    pack_hyper,
    pre_activations,
    random_csr,
    random_exclusions,
    random_param,
    random_targets,
    ref_topk,
    ref_update_rows,
    score_matrix,
    to_dense,
)

usable, simulated, report = cuda_device_status()
pytestmark = pytest.mark.skipif(not usable, reason=f"no CUDA device: {report}")

DTYPES = [np.float32, np.float64]


def close(dtype):
    """A different summation order (or fused multiply-adds on a real GPU)."""
    return {"rtol": 2e-6, "atol": 1e-6} if dtype == np.float32 else {"rtol": 1e-12,
                                                                      "atol": 1e-13}


@pytest.fixture(autouse=True)
def small_launches(monkeypatch):
    """Tiny blocks and grids, so that tiny inputs span several of them."""
    from sparse_deep.backends.cuda import launch

    for name, value in dict(THREADS=4, MAX_BLOCKS=3, ROW_THREADS=4,
                            GEMM_THREADS=2, GEMM_WORK=2, GEMM_TILE_K=2,
                            GEMM_SPLIT_MIN_K=2).items():
        monkeypatch.setattr(launch, name, value)


@pytest.fixture(autouse=True, scope="module")
def fast_thread_switches():
    """The simulator's threads meet at every syncthreads; Python's default 5 ms
    switch interval would make each meeting slow."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)
    yield
    sys.setswitchinterval(old)


@pytest.fixture
def bk():
    return get_backend("cuda")


def dev(bk, x):
    return bk.to_device(np.ascontiguousarray(x))


@pytest.fixture(params=["gemm-kernel", "cublas"])
def products(request, bk, monkeypatch):
    """What computes ``bk``'s dense products: its own GEMM kernel, or cuBLAS
    (the real one on a GPU; in the simulator, tests/naive.py's emulation),
    which must then take every product."""
    from sparse_deep.backends.cuda import backend as cuda_backend
    from sparse_deep.backends.cuda.blas import CuBLAS

    if request.param == "gemm-kernel":
        bk.blas = None
        return request.param
    if simulated:
        bk.blas = CuBLAS(naive.EmulatedCuBLAS(), stream=0)
    elif bk.blas is None:
        pytest.fail(f"cuBLAS is not in use on this GPU: {bk.gemm_report}")

    def refused(*args, **kwargs):
        raise AssertionError("a product went to the GEMM kernel, not to cuBLAS")

    monkeypatch.setattr(cuda_backend, "gemm", refused)
    return request.param


def device_csr(bk, indptr, indices, data):
    return CSRBlock(dev(bk, indptr), dev(bk, indices), dev(bk, data))


# --------------------------------------------------------------------------------------
# Device selection, memory check
# --------------------------------------------------------------------------------------

def test_cuda_without_a_usable_gpu_says_what_was_found(monkeypatch):
    import sparse_deep.backends as backends

    found = (False, False, "numba.cuda found no usable GPU: CUDA driver library cannot be found")
    monkeypatch.setattr(backends, "cuda_device_status", lambda: found)
    with pytest.raises(ValueError, match="device='cuda' was requested, but numba.cuda found no "
                                         "usable GPU: CUDA driver library cannot be found"):
        get_backend("cuda")
    assert isinstance(get_backend("auto"), CPUBackend)
    est = SparseAutoencoderRecommender(device="cuda", epochs=1)
    with pytest.raises(ValueError, match="driver library"):
        est.fit(sp.eye(4, format="csr", dtype=np.float32))
    assert not hasattr(est, "model_")


def test_a_cuda_compiler_that_cannot_load_is_reported_before_any_work():
    """numba-cuda 0.30.4 under numpy 2.5 failed at the first kernel compile,
    inside a fit; the check finds it when the device is chosen."""
    from sparse_deep.backends import cuda_compiler_problem

    def numpy_2_5(name):
        raise AttributeError("module 'numpy' has no attribute 'row_stack'")

    def other_layout(name):
        raise ModuleNotFoundError(name)

    report = cuda_compiler_problem(numpy_2_5)
    assert "cannot compile kernels" in report and "install numpy<2.5" in report
    assert cuda_compiler_problem(other_layout) is None
    if not simulated:  # the simulator replaces numba.cuda's modules; the check skips it
        assert cuda_compiler_problem() is None


def test_auto_never_picks_the_simulator(bk):
    assert bk.name == "cuda"
    if simulated:
        assert isinstance(get_backend("auto"), CPUBackend)
    else:
        assert get_backend("auto").name == "cuda"


def test_every_kernel_compiles_for_a_real_gpu():
    """The simulator runs kernels as Python and would accept code numba's CUDA
    compiler rejects: compile them all to PTX (sm_90) in a process without it."""
    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    env["PYTHONPATH"] = os.pathsep.join([str(root)] + [p for p in [env.get("PYTHONPATH")] if p])
    result = subprocess.run([sys.executable, str(root / "tests" / "_cuda_compile.py")], env=env,
                            capture_output=True, text=True, timeout=900)
    if result.returncode == 3:
        pytest.skip(result.stdout.strip())
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"compiled \d+ kernels", result.stdout), result.stdout


def tiny_model(n_items=9, hidden=4):
    spec = parse_network(SparseAutoencoderRecommender(hidden_layer_sizes=(hidden,))
                         ._default_network(n_items, n_items)).resolve(n_items, n_items)
    return Model(spec, np.float32).initialize(0)


def test_check_fits_reports_every_part_and_both_totals():
    from sparse_deep.backends.cuda.memory import check_fits, format_bytes

    needed = {"weights": 3 << 30, "optimizer state": 6 << 30, "batch buffers": 5 << 20}
    assert check_fits(needed, free=10 << 30, total=16 << 30) == sum(needed.values())
    with pytest.raises(MemoryError) as info:
        check_fits(needed, free=8 << 30, total=16 << 30)
    message = str(info.value)
    for part in ("needs 9.00 GiB", "weights 3.00 GiB", "optimizer state 6.00 GiB",
                 "batch buffers 5.0 MiB", "8.00 GiB free of 16.00 GiB"):
        assert part in message
    assert format_bytes(512 << 10) == "512.0 KiB"


def test_runner_refuses_a_model_larger_than_free_gpu_memory(bk, monkeypatch):
    from sparse_deep.backends.cuda import memory

    model = tiny_model()
    state = OptimizerState(OptimizerConfig(), model.parameters())
    needed = runner_bytes(model, 4, 10, 10, state, backend_scratch=bk.scratch_bytes(4, 10, 10, 4),
                          backend=bk)
    total = sum(needed.values())
    monkeypatch.setattr(memory, "memory_info", lambda: (total - 1, 10 * total))
    from sparse_deep.backends.cuda.memory import format_bytes

    with pytest.raises(MemoryError, match=f"needs {format_bytes(total)} .*"
                                          f"{format_bytes(total - 1)} free of"):
        Runner(model, bk, 4, 10, 10, optimizer=state)
    monkeypatch.setattr(memory, "memory_info", lambda: (total, 10 * total))
    Runner(model, bk, 4, 10, 10, optimizer=state)  # exactly enough
    # Buffers sized by the call, as top-k's results, are checked when they grow.
    monkeypatch.setattr(memory, "memory_info", lambda: (1000, 2000))
    scores = bk.zeros((30, 9), np.float32)
    with pytest.raises(MemoryError, match=r"scratch for topk ids 2\.1 KiB"):
        bk.topk(scores, 9, np.zeros(31, np.int64), np.zeros(0, np.int32),
                np.empty((30, 9), np.int64), np.empty((30, 9), np.float32))


@pytest.mark.parametrize("sparse_input_update", [False, True])
def test_runner_bytes_counts_what_the_runner_allocates(sparse_input_update):
    """On the CPU every buffer is a numpy array: their sizes must add up to the
    estimate the GPU's memory check uses."""
    spec = parse_network({
        "Version": 0.9, "ErrorFunction": "CrossEntropy",
        "SparsenessPenalty": {"p": 0.2, "beta": 0.5},
        "Layers": [{"Name": "in", "Kind": "Input", "N": "auto", "Sparse": True},
                   {"Name": "h", "Kind": "Hidden", "N": 5, "Activation": "Sigmoid",
                    "Sparse": True, "pDropout": 0.2},
                   {"Name": "out", "Kind": "Output", "N": "auto", "Activation": "Sigmoid",
                    "Source": ["h", "in"]}]}).resolve(11, 7)
    model = Model(spec, np.float32).initialize(1)
    state = OptimizerState(OptimizerConfig(name="adam"), model.parameters())
    runner = Runner(model, CPUBackend(), 4, 13, 9, optimizer=state,
                    sparse_input_update=sparse_input_update)
    x = sp.random(6, 11, density=0.4, format="csr", dtype=np.float32, random_state=0)
    t = sp.random(6, 7, density=0.3, format="csr", dtype=np.float32, random_state=1)
    bk = runner.backend
    runner.train_step(bk.batch_source(x), bk.batch_source(t), np.arange(4), 1, state)
    arrays = {}

    def collect(obj):
        if isinstance(obj, np.ndarray):
            arrays[id(obj)] = obj
        elif isinstance(obj, (list, tuple)):
            for item in obj:
                collect(item)
        elif isinstance(obj, dict):
            for item in obj.values():
                collect(item)
        elif isinstance(obj, (CSRBlock, TransposedBlock)):
            # (not the transpose's slot: host scratch on every backend)
            collect([v for k, v in vars(obj).items() if k != "slot"])

    collect([v for k, v in vars(runner).items() if k not in ("model", "backend", "output_hyper",
                                                             "_optimizer")])
    expected = runner_bytes(model, 4, 13, 9, state, sparse_input_update=sparse_input_update,
                            backend=bk)
    assert sum(a.nbytes for a in arrays.values()) == sum(expected.values())
    # A backend without its own dense input update keeps a full-size gradient
    # per input-fed weight (11 x 5 and 11 x 7 float32) where the CPU keeps one
    # int64 slot per input row.
    generic = runner_bytes(model, 4, 13, 9, state, sparse_input_update=sparse_input_update)
    extra = 0 if sparse_input_update else (11 * 5 * 4 - 11 * 8) + (11 * 7 * 4 - 11 * 8)
    assert sum(generic.values()) - sum(expected.values()) == extra
    assert expected["optimizer state"] == 2 * expected["weights"]
    # A batch can hold more non-zeros (13) than there are features (11); the
    # input-fed weights' gradients hold at most one row per feature.
    input_fed = [i for i, (s, _) in enumerate(model.links) if model.layers[s].is_input]
    assert [runner.weight_grads[i].shape[0] for i in input_fed] == [11, 11]


# --------------------------------------------------------------------------------------
# Batches: gather, denoise, transpose
# --------------------------------------------------------------------------------------

def load_batches(backend, x, t, batches, n_features, denoising=None):
    """Load each batch of rows of ``x`` (inputs) and ``t`` (targets) with
    ``backend.load_batch`` into one set of buffers; the host copies of what
    each load wrote, and its count of features present."""
    b, cap = max(len(r) for r in batches), max(x.nnz, t.nnz, 1)
    dtype = x.dtype
    bufs = (backend.zeros(b, np.int64), CSRBlock.empty(b, cap, dtype, backend),
            CSRBlock.empty(b, cap, dtype, backend),
            TransposedBlock.empty(n_features, cap, dtype, backend))
    sources = backend.batch_source(x), backend.batch_source(t)
    loads = []
    for rows in batches:
        rows = np.asarray(rows, dtype=np.int64)
        row_ids, inputs, targets, transposed = bufs
        n_present = backend.load_batch(rows, row_ids, sources[0], inputs, sources[1], targets,
                                       denoising, transposed)
        n = len(rows)
        nnz = [int(backend.to_host(blk.indptr)[n]) for blk in (inputs, targets)]
        host = [row_ids, n]
        for blk, k in zip((inputs, targets), nnz):
            host += [blk.indptr, n + 1, blk.indices, k, blk.data, k]
        host += [transposed.features, n_present, transposed.indptr, n_present + 1,
                 transposed.rows, nnz[0], transposed.data, nnz[0]]
        host = [np.array(backend.to_host(a)[:k]) for a, k in zip(host[::2], host[1::2])]
        host.append(transposed.slot.copy())
        loads.append((n_present, host))
    return loads


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("denoising", [None, (13, crng.stream_key_host(0, 17, 0), 0.3, 0),
                                       (30, crng.stream_key_host(1, 5, 0), 0.6, 17)])
def test_load_batch_gives_the_cpus_batch_exactly(bk, dtype, denoising):
    """The GPU's batch is the CPU's, prepared on the host and uploaded: the
    same rows, denoising mask and scaling (a model-parallel slice keys its
    draws by the global feature id), transposition and count of features
    present, over loads of several sizes into the same buffers; the
    transpose's scratch is all -1 again after each."""
    rng = np.random.default_rng(1)
    x = sp.csr_matrix(np.where(rng.random((10, 13)) < 0.4, rng.uniform(0.5, 2, (10, 13)), 0)
                      .astype(dtype))
    t = sp.csr_matrix((rng.random((10, 9)) < 0.3).astype(dtype))
    batches = [[3, 1, 4, 1, 5, 9], [2, 7], [], [0, 8, 6]]
    got = load_batches(bk, x, t, batches, 13, denoising)
    want = load_batches(CPUBackend(), x, t, batches, 13, denoising)
    for (got_n, got_arrays), (want_n, want_arrays) in zip(got, want):
        assert got_n == want_n
        for g, w in zip(got_arrays, want_arrays):
            assert np.array_equal(g, w)
        assert (got_arrays[-1] == -1).all()
    assert want[0][0] > 0 and want[2][0] == 0


@pytest.mark.parametrize("dtype", DTYPES)
def test_sparse_matmul_add_and_weight_gradient(bk, dtype):
    rng = np.random.default_rng(3)
    b, n_in, n_out = 5, 12, 7
    indptr, indices, data = random_csr(rng, b, n_in, 0.4, dtype, shuffle=True)
    w = rng.normal(0, 1, (n_in, n_out)).astype(dtype)
    buf = rng.normal(0, 1, (b + 2, n_out)).astype(dtype)
    want = buf.copy()
    cpu_sparse.sparse_matmul_add(indptr, indices, data, w, want[:b])
    out = dev(bk, buf)
    batch = device_csr(bk, indptr, indices, data)
    bk.sparse_matmul_add(batch, dev(bk, w), out[:b])
    got = bk.to_host(out)
    np.testing.assert_allclose(got, want, **close(dtype))
    assert np.array_equal(got[b:], buf[b:])
    dense_x = to_dense(indptr, indices, data, n_in)
    np.testing.assert_allclose(got[:b], buf[:b] + dense_x @ w, **close(dtype))
    # The input layer's gradient, for the present features only.
    delta = rng.normal(0, 1, (b, n_out)).astype(dtype)
    t = TransposedBlock.empty(n_in, int(indptr[-1]), dtype, CPUBackend())
    n_present = CPUBackend().transpose_batch(CSRBlock(indptr, indices, data), t)
    t = TransposedBlock(t.slot, *(dev(bk, a) for a in (t.features, t.indptr, t.rows, t.data)))
    grad = dev(bk, np.full((int(indptr[-1]) + 2, n_out), 7.0, dtype))
    bk.sparse_weight_gradient(t, n_present, dev(bk, delta), grad)
    got = bk.to_host(grad)
    features = bk.to_host(t.features)[:n_present]
    np.testing.assert_allclose(got[:n_present], (dense_x.T @ delta)[features], **close(dtype))
    assert (got[n_present:] == 7.0).all()


def test_scatter_and_zero_rows(bk):
    rng = np.random.default_rng(5)
    rows = rng.permutation(20)[:9].astype(np.int64)
    src = rng.standard_normal((12, 3)).astype(np.float32)
    dst = bk.zeros((20, 3), np.float32)
    bk.scatter_rows(dst, dev(bk, rows), dev(bk, src))
    want = np.zeros((20, 3), np.float32)
    cpu_sparse.scatter_rows(want, rows, src)
    assert np.array_equal(bk.to_host(dst), want)
    bk.zero_rows(dst, dev(bk, rows))
    assert not bk.to_host(dst).any()


# --------------------------------------------------------------------------------------
# Dense kernels
# --------------------------------------------------------------------------------------

def test_fills_copies_adds_and_sums(bk):
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, (7, 5)).astype(np.float32)
    bias = rng.normal(0, 1, 5).astype(np.float32)
    d = dev(bk, x)
    bk.fill_rows(d[:4], dev(bk, bias))
    bk.add(d[4:], dev(bk, x[:3]))
    got = bk.to_host(d)
    assert np.array_equal(got[:4], np.tile(bias, (4, 1)))
    assert np.array_equal(got[4:], x[4:] + x[:3])
    other = bk.zeros((7, 5), np.float32)
    bk.copy(other[1:3], d[5:7])
    assert np.array_equal(bk.to_host(other)[1:3], got[5:7]) and not bk.to_host(other)[3:].any()
    bk.zero(d[2:5])
    assert not bk.to_host(d)[2:5].any()
    col = bk.zeros(5, np.float32)
    bk.column_sums(dev(bk, x), col)
    np.testing.assert_allclose(bk.to_host(col), x.sum(axis=0), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ACTIVATIONS)
def test_activate(bk, act, dtype):
    rng = np.random.default_rng(REGISTERED_ACTIVATIONS.info(act).code)
    buf = pre_activations(rng, (5, 6), dtype, spread=4.0)
    buf[0, :3] = [30.0, -30.0, 0.0]
    want = buf.copy()
    cpu_dense.activate_rows(want[:4], REGISTERED_ACTIVATIONS.info(act).code, SLOPE, kernel_alpha(act), LAM)
    d = dev(bk, buf)
    bk.activate(d[:4], REGISTERED_ACTIVATIONS.info(act).code, SLOPE, kernel_alpha(act), LAM)
    got = bk.to_host(d)
    np.testing.assert_allclose(got, want, **close(dtype))
    np.testing.assert_allclose(got[:4], naive_act(act, buf[:4].astype(np.float64)),
                               **close(dtype))
    assert np.array_equal(got[4:], buf[4:])


def run_output_passes(bk, act, err, z, t):
    tc = sp.csr_matrix(t)
    parts = (tc.indptr.astype(np.int64), tc.indices.astype(np.int32), tc.data.astype(z.dtype))
    want = [z.copy(), np.full_like(z, np.nan), np.full(z.shape[0], np.nan)]
    cpu_dense.output_pass(want[0], *parts, REGISTERED_ACTIVATIONS.info(act).code, REGISTERED_ERRORS.info(err).code,
                          output_hyper(act), 1.0 / z.shape[0], want[1], want[2])
    got = [dev(bk, z), dev(bk, want[1]), dev(bk, want[2])]
    bk.output_pass(got[0], device_csr(bk, *parts), REGISTERED_ACTIVATIONS.info(act).code, REGISTERED_ERRORS.info(err).code,
                   output_hyper(act), 1.0 / z.shape[0], got[1], got[2])
    return [bk.to_host(g) for g in got], want


@pytest.mark.parametrize("act,err", PAIRS)
def test_output_pass_every_pair(bk, act, err):
    """Activation, row error and delta of every (activation, error) pair, in
    float64 (the CPU kernel is checked against the reference and numerical
    derivatives in test_kernels_cpu.py)."""
    rng = np.random.default_rng(REGISTERED_ACTIVATIONS.info(act).code * 10 + REGISTERED_ERRORS.info(err).code)
    z = pre_activations(rng, (5, 6), np.float64)
    t = random_targets(rng, z.shape, np.float64, err)
    got, want = run_output_passes(bk, act, err, z, t)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-11, atol=1e-13)
    errors = naive.output_error(err, act, naive_act(act, z), t, SMCE, BOOST)
    np.testing.assert_allclose(got[2], errors.sum(axis=1), rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("act,err", [("SoftMax", "CrossEntropy"), ("Sigmoid", "CrossEntropy"),
                                     ("Sigmoid", "ScaledMarginalCrossEntropy"), ("Relu", "L2")])
def test_output_pass_float32(bk, act, err):
    rng = np.random.default_rng(REGISTERED_ERRORS.info(err).code)
    z = pre_activations(rng, (5, 7), np.float32)
    t = random_targets(rng, z.shape, np.float32, err)
    got, want = run_output_passes(bk, act, err, z, t)
    np.testing.assert_allclose(got[0], want[0], rtol=2e-6, atol=1e-7)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(got[2], want[2], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_mask_is_the_cpus(bk, dtype):
    rng = np.random.default_rng(2)
    a = rng.uniform(0.1, 2.0, (6, 9)).astype(dtype)
    row_ids = rng.choice(500, 6, replace=False).astype(np.int64)
    key = crng.stream_key_host(4, 21, 2)
    want = np.full_like(a, np.nan)
    cpu_dense.dropout_forward(a, want, key, row_ids, 0.4)
    out = dev(bk, np.full_like(a, np.nan))
    bk.dropout(dev(bk, a), out, key, dev(bk, row_ids), 0.4)
    got = bk.to_host(out)
    assert np.array_equal(got, want)  # same mask, same scaling, bit for bit
    assert np.array_equal(got != 0, naive.mask(4, 21, 2, row_ids, 9, 0.4))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [0.0, 0.35])
@pytest.mark.parametrize("act", [a for a in ACTIVATIONS if a != "SoftMax"])
def test_hidden_delta(bk, act, p, dtype):
    rng = np.random.default_rng(REGISTERED_ACTIVATIONS.info(act).code)
    z = pre_activations(rng, (4, 6), np.float64)
    a = naive_act(act, z).astype(dtype)
    delta = rng.normal(0, 1, (4, 6)).astype(dtype)
    penalty = rng.normal(0, 0.1, 6).astype(dtype)
    row_ids = rng.choice(300, 4, replace=False).astype(np.int64)
    key = crng.stream_key_host(4, 21, 3)
    code = REGISTERED_ACTIVATIONS.info(act).code
    want = delta.copy()
    cpu_dense.hidden_delta(want, a, code, SLOPE, kernel_alpha(act), LAM, key, row_ids, p, penalty)
    got = dev(bk, delta)
    bk.hidden_delta(got, dev(bk, a), code, SLOPE, kernel_alpha(act), LAM, key, dev(bk, row_ids),
                    p, dev(bk, penalty))
    np.testing.assert_allclose(bk.to_host(got), want, **close(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_sparseness_penalty_and_scale_rows(bk, dtype):
    rng = np.random.default_rng(7)
    a = rng.uniform(0, 1, (6, 7)).astype(dtype)
    a[:, 0] = 0
    want_grad = np.full(7, np.nan, dtype)
    want = cpu_dense.sparseness_penalty(a, 0.1, 2.0, 1 / 6, want_grad)
    grad = dev(bk, np.full(7, np.nan, dtype))
    loss = dev(bk, np.full(3, np.nan))
    bk.sparseness_penalty(dev(bk, a), 0.1, 2.0, 1 / 6, grad, loss[1:2])
    np.testing.assert_allclose(bk.to_host(loss)[1], want, rtol=1e-12)
    assert np.isnan(bk.to_host(loss)[[0, 2]]).all()
    np.testing.assert_allclose(bk.to_host(grad), want_grad, **close(dtype))
    weights = rng.random(4)
    want_x = a.copy()
    cpu_dense.scale_rows(want_x, weights)
    x = dev(bk, a)
    bk.scale_rows(x, weights)
    assert np.array_equal(bk.to_host(x), want_x)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("trans_a,trans_b", list(itertools.product([False, True], repeat=2)))
@pytest.mark.parametrize("products,min_blocks", [("gemm-kernel", 1), ("gemm-kernel", 64),
                                                 ("cublas", 1)],
                         ids=["whole-K", "split-K", "cublas"], indirect=["products"])
def test_gemm(bk, products, dtype, trans_a, trans_b, min_blocks, monkeypatch):
    """Shapes that are not multiples of the 4 x 4 tile or of the K step; C a row
    slice of a larger buffer (rows past it untouched); beta 0 ignores NaN in C.
    With the GEMM kernel and min_blocks 64 every product here splits K (its
    chunks added by a second kernel); with 1 none does."""
    from sparse_deep.backends.cuda import gemm, launch

    monkeypatch.setattr(launch, "GEMM_MIN_BLOCKS", min_blocks)
    assert (gemm.split_k(5, 7, 9)[0] > 1) == (min_blocks > 1)
    rng = np.random.default_rng(int(trans_a) * 2 + int(trans_b))
    for (m, n, k), (alpha, beta) in zip([(5, 7, 9), (9, 2, 5), (1, 6, 1)],
                                        [(1.0, 0.0), (1.0, 1.0), (-0.5, 0.3)]):
        a = rng.normal(0, 1, (k, m) if trans_a else (m, k)).astype(dtype)
        b = rng.normal(0, 1, (n, k) if trans_b else (k, n)).astype(dtype)
        buf = rng.normal(0, 1, (m + 2, n)).astype(dtype)
        if beta == 0:
            buf[:m] = np.nan
        c = dev(bk, buf)
        bk.gemm(dev(bk, a), dev(bk, b), c[:m], alpha=alpha, beta=beta, trans_a=trans_a,
                trans_b=trans_b)
        want = alpha * ((a.T if trans_a else a).astype(np.float64)
                        @ (b.T if trans_b else b).astype(np.float64))
        if beta:
            want += beta * buf[:m]
        got = bk.to_host(c)
        np.testing.assert_allclose(got[:m], want, **close(dtype))
        assert np.array_equal(got[m:], buf[m:])


def test_products_repeat_bit_for_bit(bk, products):
    """The same product on the same inputs gives the same bits every time
    (cuBLAS: one handle, one stream)."""
    rng = np.random.default_rng(5)
    a, b = (dev(bk, rng.normal(0, 1, shape).astype(np.float32)) for shape in [(9, 40), (40, 7)])
    results = []
    for _ in range(3):
        c = dev(bk, np.zeros((9, 7), np.float32))
        bk.gemm(a, b, c)
        results.append(bk.to_host(c))
    assert all(np.array_equal(results[0], again) for again in results[1:])


def test_a_gpu_without_cublas_warns_and_uses_the_gemm_kernel(monkeypatch):
    from sparse_deep.backends.cuda import backend as cuda_backend

    monkeypatch.setattr(cuda_backend, "SIMULATED", False)
    monkeypatch.setattr(cuda_backend, "load_cublas",
                        lambda stream: (None, "nvmath-python is not installed (no nvmath)"))
    bk = cuda_backend.CUDABackend()  # cuBLAS is loaded at the first product, not here
    with pytest.warns(RuntimeWarning, match=r"sparse_deep's own GEMM kernel, several times "
                                            r"slower than cuBLAS: nvmath-python is not installed "
                                            r"\(no nvmath\)\. pip install 'sparse_deep\[cuda\]'"):
        a = dev(bk, np.eye(3))
        c = dev(bk, np.zeros((3, 3)))
        bk.gemm(a, a, c)
    np.testing.assert_array_equal(bk.to_host(c), np.eye(3))
    assert bk.blas is None and "nvmath-python is not installed" in bk.gemm_report


# --------------------------------------------------------------------------------------
# Optimizers
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(REGISTERED_OPTIMIZERS))
def test_update_rows_every_optimizer(bk, name):
    """Dense rows, then a row subset (stale entries past n_rows), over three
    steps; dummy states of optimizers that keep fewer stay untouched."""
    rng = np.random.default_rng(REGISTERED_OPTIMIZERS[name].code)
    shape = (7, 5)
    param = random_param(rng, shape, np.float64)
    s1, s2 = make_states(name, shape, np.float64)
    d = [dev(bk, a) for a in (param, s1, s2)]
    for step in range(1, 4):
        n_rows = shape[0] if step == 1 else 4
        rows = (np.arange(shape[0]) if step == 1 else rng.permutation(shape[0])).astype(np.int64)
        grad = rng.normal(0, 1, shape)
        want = ref_update_rows(param, grad, rows, n_rows, s1, s2, name, pack_hyper(step))
        cpu_optim.update_rows(param, grad, rows, n_rows, s1, s2, REGISTERED_OPTIMIZERS[name].code,
                              pack_hyper(step))
        bk.update_rows(d[0], dev(bk, grad), dev(bk, rows), n_rows, d[1], d[2],
                       REGISTERED_OPTIMIZERS[name].code, pack_hyper(step))
        for got, cpu, ref in zip(d, (param, s1, s2), want):
            np.testing.assert_allclose(bk.to_host(got), ref, rtol=1e-12, atol=1e-14)
            np.testing.assert_allclose(bk.to_host(got), cpu, rtol=1e-12, atol=1e-14)


def test_update_params_steps_every_parameter_as_update_rows_does(bk, monkeypatch):
    """A step's parameters go GROUPS to a launch (arrays of another dtype in
    a launch of their own), each with its own rows and hyper-parameters, and
    end bit for bit where one update_rows call each leaves them."""
    from numba.cuda.simulator.kernel import FakeCUDAKernel
    from sparse_deep.backends.base import ParameterStep
    from sparse_deep.backends.cuda import optim

    code = REGISTERED_OPTIMIZERS["adam"].code
    shapes = [(7, 5), (1, 3), (6, 2), (4, 4), (1, 5), (3, 3)]
    dtypes = [np.float64] * 5 + [np.float32]

    def arrays():
        rng = np.random.default_rng(7)
        out = []
        for i, (shape, dtype) in enumerate(zip(shapes, dtypes)):
            param = random_param(rng, shape, dtype)
            s1, s2 = make_states("adam", shape, dtype)
            n_rows = int(rng.integers(1, shape[0] + 1))
            rows = rng.permutation(shape[0]).astype(np.int64)
            grad = rng.normal(0, 1, shape).astype(dtype)
            out.append(ParameterStep(*(dev(bk, a) for a in (param, grad, rows)), n_rows,
                                     dev(bk, s1), dev(bk, s2), pack_hyper(2, l2=0.01 * i)))
        return out

    together, one_by_one = arrays(), arrays()
    launches = []
    call = FakeCUDAKernel.__call__
    monkeypatch.setattr(FakeCUDAKernel, "__call__",
                        lambda self, *a, **k: launches.append(self._device) or call(self, *a, **k))
    bk.update_params(together, code)
    if simulated:  # (launches are counted in the simulator; not device functions)
        assert launches.count(False) == -(-5 // optim.GROUPS) + 1
    for s in one_by_one:
        bk.update_rows(s.param, s.grad, s.rows, s.n_rows, s.state1, s.state2, code, s.hyper)
    for a, b in zip(together, one_by_one):
        for x, y in ((a.param, b.param), (a.state1, b.state1), (a.state2, b.state2)):
            assert np.array_equal(bk.to_host(x), bk.to_host(y))
    assert not np.array_equal(bk.to_host(together[0].param), arrays()[0].param)


def test_update_all_rows_matches_the_cpu(bk):
    """The dense input update through the slot map, stamped anew each step."""
    rng = np.random.default_rng(5)
    shape = (9, 4)
    param = random_param(rng, shape, np.float64)
    s1, s2 = make_states("adam", shape, np.float64)
    d = [dev(bk, a) for a in (param, s1, s2)]
    cpu_slots = CPUBackend().all_rows_scratch(shape, np.float64)
    scratch = bk.all_rows_scratch(shape, np.float64)
    all_rows = np.arange(shape[0], dtype=np.int64)
    for step in range(1, 4):
        rows = rng.permutation(shape[0]).astype(np.int64)
        row_grads = rng.normal(0, 1, shape)
        cpu_optim.update_all_rows(param, row_grads, rows[:3], all_rows, cpu_slots, s1, s2,
                                  REGISTERED_OPTIMIZERS["adam"].code, pack_hyper(step))
        bk.update_all_rows(d[0], dev(bk, row_grads), dev(bk, rows), 3, dev(bk, all_rows),
                           scratch, d[1], d[2], REGISTERED_OPTIMIZERS["adam"].code, pack_hyper(step))
        for got, cpu in zip(d, (param, s1, s2)):
            np.testing.assert_allclose(bk.to_host(got), cpu, rtol=1e-12, atol=1e-14)
    assert scratch.stamp == 3 and bk.to_host(scratch.slots).shape == (shape[0],)


@pytest.mark.parametrize("dtype", DTYPES)
def test_parameters_updated_whole_go_with_the_others_bit_for_bit(bk, dtype, monkeypatch):
    """A step whose input weight is updated whole (every row; absent features
    with a zero gradient) takes two launches with its bias and the output
    weight, the slot map's stamp and the update, and leaves every parameter
    where the base class's scatter into a full-size gradient, update and
    zeroing leave it; a stamp from an earlier step is no gradient."""
    from numba.cuda.simulator.kernel import FakeCUDAKernel
    from sparse_deep.backends.base import Backend, ParameterStep

    code = REGISTERED_OPTIMIZERS["adam"].code
    shapes = [(9, 3), (1, 3), (3, 5)]

    def train(all_rows_scratch, launches):
        rng = np.random.default_rng(8)
        params = [dev(bk, random_param(rng, shape, dtype)) for shape in shapes]
        states = [[dev(bk, s) for s in make_states("adam", shape, dtype)] for shape in shapes]
        scratch = all_rows_scratch(bk, shapes[0], dtype)
        for step, n_present in enumerate([4, 0, 2], start=1):
            features = rng.permutation(shapes[0][0]).astype(np.int64)
            grads = [rng.normal(0, 1, shape).astype(dtype) for shape in shapes]
            steps = [ParameterStep(p, dev(bk, g), dev(bk, np.arange(len(g), dtype=np.int64)),
                                   len(g), s[0], s[1], pack_hyper(step, l2=0.01))
                     for p, g, s in zip(params, grads, states)]
            steps[0] = steps[0]._replace(rows=dev(bk, features), n_rows=n_present,
                                         all_rows=dev(bk, np.arange(9, dtype=np.int64)),
                                         scratch=scratch)
            before = len(launches)
            bk.update_params(steps, code)
            if step == 1:
                counted = sum(1 for launched in launches[before:] if not launched)
        return [bk.to_host(a) for a in params + sum(states, [])], counted

    launches = []
    call = FakeCUDAKernel.__call__
    monkeypatch.setattr(FakeCUDAKernel, "__call__",
                        lambda self, *a, **k: launches.append(self._device) or call(self, *a, **k))
    fused, fused_launches = train(type(bk).all_rows_scratch, launches)
    monkeypatch.setattr(type(bk), "update_params", Backend.update_params)
    monkeypatch.setattr(type(bk), "update_all_rows", Backend.update_all_rows)
    composed, _ = train(Backend.all_rows_scratch, launches)
    for a, b in zip(fused, composed):
        assert np.array_equal(a, b)
    if simulated:
        assert fused_launches == 2


def test_all_finite_is_the_cpus_answer_from_sums_made_on_the_gpu(bk):
    """A NaN or an infinity anywhere makes an array not finite; values as
    large as float32 holds do not (their sums are float64's)."""
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(7, 5)).astype(np.float32)
    bias = rng.normal(size=5).astype(np.float32)
    largest = np.full((6, 3), np.finfo(np.float32).max, np.float32)
    cases = [(None, None, None), (0, (3, 2), np.nan), (0, (6, 4), np.inf),
             (1, (2,), -np.inf)]
    for which, where, value in cases:
        arrays = [weights.copy(), bias.copy(), largest]
        if where is not None:
            arrays[which][where] = value
        expected = where is None
        assert CPUBackend().all_finite(arrays) == expected
        assert bk.all_finite([dev(bk, a) for a in arrays]) == expected


def test_cap_column_norms(bk):
    rng = np.random.default_rng(4)
    w = rng.normal(0, 1, (6, 9)).astype(np.float32)
    w[:, 0] = 0
    want = w.copy()
    cpu_optim.cap_column_norms(want, 1.5)
    d = dev(bk, w)
    bk.cap_column_norms(d, 1.5)
    assert np.array_equal(bk.to_host(d), want)


# --------------------------------------------------------------------------------------
# Top-k
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_topk_matches_cpu_for_any_k(bk, dtype):
    """Continuous scores, ties (the id decides) and -inf scores; no, some and
    heavy exclusions (rows padded with -1/-inf); k from 1 to every column."""
    rng = np.random.default_rng(0)
    n_cols = 11
    blocks, ptr, idx = [], [0], []
    for kind, exclusions in TOPK_SCENARIOS:
        blocks.append(score_matrix(rng, kind, (1, n_cols), dtype))
        p, i = random_exclusions(rng, 1, n_cols, exclusions == "heavy")
        if exclusions == "none":
            p, i = np.zeros(2, np.int64), i[:0]
        ptr.append(ptr[-1] + int(p[1]))
        idx.extend(i.tolist())
    scores = np.vstack(blocks)
    scores[0, :4] = [0.0, -0.0, 0.0, -0.0]  # -0 ties +0: the lower id wins, as on the CPU
    ex_indptr, ex_indices = np.array(ptr, np.int64), np.array(idx, np.int32)
    d_scores = dev(bk, scores)
    d_ptr, d_idx = dev(bk, ex_indptr), dev(bk, ex_indices)
    for k in (1, 3, 6, n_cols):
        want_ids = np.empty((len(scores), k), np.int64)
        want_vals = np.empty((len(scores), k), dtype)
        cpu_topk.topk_rows(scores, k, ex_indptr, ex_indices, want_ids, want_vals)
        ids = np.full((len(scores), k), 12345, np.int64)
        vals = np.full((len(scores), k), np.nan, dtype)
        bk.topk(d_scores, k, d_ptr, d_idx, ids, vals)
        assert np.array_equal(ids, want_ids), k
        assert np.array_equal(vals, want_vals), k
        ref_ids, _ = ref_topk(scores, k, ex_indptr, ex_indices)
        assert np.array_equal(ids, ref_ids)


def test_topk_with_many_tied_scores_and_no_exclusions(bk):
    """The k-th score shared by more candidates than places left: the tie is
    settled by id inside the selection, across several radix passes."""
    rng = np.random.default_rng(3)
    scores = np.full((3, 40), 0.5, np.float32)
    scores[0, rng.choice(40, 5, replace=False)] = 1.0
    scores[2] = rng.choice([0.25, 0.5], 40)
    ids = np.empty((3, 9), np.int64)
    vals = np.empty((3, 9), np.float32)
    bk.topk(dev(bk, scores), 9, np.zeros(4, np.int64), np.zeros(0, np.int32), ids, vals)
    want_ids, want_vals = ref_topk(scores, 9, np.zeros(4, np.int64), np.zeros(0, np.int32))
    assert np.array_equal(ids, want_ids) and np.array_equal(vals, want_vals)


# --------------------------------------------------------------------------------------
# Whole steps, whole fits, determinism
# --------------------------------------------------------------------------------------

def busy_network():
    """Denoising, dropout, a sparseness penalty, two input-fed layers, a Skip
    and a WeightNorm: every branch of the Runner."""
    return parse_network({
        "Version": 0.9, "ErrorFunction": "CrossEntropy",
        "Denoising": {"p": 0.25}, "SparsenessPenalty": {"p": 0.2, "beta": 0.5},
        "DeltaBoost": {"one": 1.5, "zero": 0.8},
        "Layers": [
            {"Name": "in", "Kind": "Input", "N": "auto", "Sparse": True},
            {"Name": "h1", "Kind": "Hidden", "N": 6, "Activation": "Sigmoid", "Sparse": True,
             "pDropout": 0.3},
            {"Name": "h2", "Kind": "Hidden", "N": 6, "Activation": "Tanh", "Source": "h1",
             "WeightNorm": 0.8},
            {"Name": "h3", "Kind": "Hidden", "N": 6, "Activation": "ELU",
             "Source": ["in", "h2"], "Skip": "h1"},
            {"Name": "out", "Kind": "Output", "N": "auto", "Activation": "Sigmoid",
             "Source": ["h3", "h1"]}]}).resolve(9, 8)


def train_steps(backend, sparse_input_update, n_steps=2):
    rng = np.random.default_rng(3)
    x = sp.csr_matrix(np.where(rng.random((7, 9)) < 0.5, rng.uniform(0.5, 1.5, (7, 9)), 0.0))
    t = sp.csr_matrix((rng.random((7, 8)) < 0.3).astype(np.float64))
    model = Model(busy_network(), np.float64).initialize(11)
    state = OptimizerState(OptimizerConfig(name="adam", learning_rate=0.01, l2=0.01, l1=0.001),
                           model.parameters())
    runner = Runner(model, backend, 4, 30, 30, seed=5, optimizer=state,
                    sparse_input_update=sparse_input_update)
    xs, ts = backend.batch_source(x), backend.batch_source(t)
    losses = [step_loss(runner, xs, ts, rows, step, state)
              for step, rows in enumerate([np.array([6, 0, 3, 2]), np.array([1, 5, 4])][:n_steps],
                                          start=1)]
    runner.sync_to_model()
    runner.load_batch(xs, None, np.arange(4), 0, training=False)
    runner.forward(4, training=False)
    outputs = backend.to_host(runner.out[model.output.index])[:4]
    return model, state, losses, outputs


@pytest.mark.parametrize("sparse_input_update", [False, True])
def test_training_steps_match_the_cpu(bk, products, sparse_input_update):
    """Two float64 training steps through every Runner branch, then inference:
    losses, weights, optimizer state and outputs agree with the CPU."""
    cpu = train_steps(CPUBackend(), sparse_input_update)
    gpu = train_steps(bk, sparse_input_update)
    np.testing.assert_allclose(gpu[2], cpu[2], rtol=1e-10)
    for a, b in zip(gpu[0].weights + list(gpu[0].biases.values()),
                    cpu[0].weights + list(cpu[0].biases.values())):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    for (a1, a2), (b1, b2) in zip(gpu[1].states, cpu[1].states):
        assert isinstance(a1, np.ndarray)  # copied back to the host
        np.testing.assert_allclose(a1, b1, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(a2, b2, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(gpu[3], cpu[3], rtol=1e-9, atol=1e-12)


def step_loss(runner, inputs, targets, rows, step, optimizer):
    """One training step; its data error and sparseness penalty per row."""
    runner.train_step(inputs, targets, rows, step, optimizer)
    return runner.batch_error(runner.row_error[:len(rows)]) / len(rows) + runner.penalty_loss()


def sampled_network(error, scoring):
    top = {"CosineContrastive": {"Margin": 0.2, "NegativeWeight": 2.0}}
    output = {"Name": "out", "Kind": "Output", "N": "auto",
              "Activation": {"SampledSoftmax": "SoftMax", "CosineContrastive": "Linear",
                             "BPR": "Sigmoid"}[error],
              "Sampling": {"Negatives": 5, "Sampler": "Popularity"}, "Scoring": scoring,
              "Temperature": 0.5 if error != "CosineContrastive" else 1.0}
    return parse_network({"ErrorFunction": error, "Denoising": {"p": 0.25}, **top, "Layers": [
        {"Name": "in", "Kind": "Input", "N": "auto", "Sparse": True},
        {"Name": "h", "Kind": "Hidden", "N": 6, "Activation": "Tanh", "pDropout": 0.2},
        output]}).resolve(9, 8)


def train_sampled_steps(backend, error, scoring):
    from sparse_deep.engine.sampling import NegativeSampler, item_counts

    rng = np.random.default_rng(4)
    x = sp.csr_matrix(np.where(rng.random((7, 9)) < 0.5, rng.uniform(0.5, 1.5, (7, 9)), 0.0))
    t = sp.csr_matrix(np.where(rng.random((7, 8)) < 0.4, rng.uniform(0.5, 1.5, (7, 8)), 0.0))
    model = Model(sampled_network(error, scoring), np.float64).initialize(12)
    for b in model.biases.values():
        b[...] = rng.uniform(-0.2, 0.2, b.shape)
    state = OptimizerState(OptimizerConfig(name="adam", learning_rate=0.01, l2=0.01),
                           model.parameters())
    runner = Runner(model, backend, 4, 40, 40, seed=5, optimizer=state)
    runner.sampled.prepare(NegativeSampler(model.output.sampling, item_counts(t)))
    xs, ts = backend.batch_source(x), backend.batch_source(t)
    losses = [step_loss(runner, xs, ts, rows, step, state)
              for step, rows in enumerate([np.array([6, 0, 3, 2]), np.array([1, 5, 4])],
                                          start=1)]
    runner.sync_to_model()
    scorer = Runner(model, backend, 4, 40, inference=True)
    scorer.load_batch(xs, None, np.arange(4), 0, training=False)
    scorer.forward(4, training=False)
    return model, losses, backend.to_host(scorer.out[model.output.index])[:4]


@pytest.mark.parametrize("error,scoring", [("SampledSoftmax", "Cosine"), ("SampledSoftmax", "Dot"),
                                           ("CosineContrastive", "Cosine"), ("BPR", "Dot")])
def test_sampled_training_steps_match_the_cpu(bk, products, error, scoring):
    """Two float64 steps of a sampled output layer (negatives, losses, compact
    gradients, touched-row updates), then every item's score at inference."""
    cpu = train_sampled_steps(CPUBackend(), error, scoring)
    gpu = train_sampled_steps(bk, error, scoring)
    np.testing.assert_allclose(gpu[1], cpu[1], rtol=1e-10)
    for a, b in zip(gpu[0].weights + list(gpu[0].biases.values()),
                    cpu[0].weights + list(cpu[0].biases.values())):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(gpu[2], cpu[2], rtol=1e-9, atol=1e-12)


# Backend operations the CUDA backend fuses into one launch each, where the
# base class composes them from others.
FUSED_OPERATIONS = ("unit_operands", "sampled_rows", "positive_deltas_into_hidden",
                    "compact_unit_gradient", "sparse_affine", "activated_sparse_affine",
                    "input_gradients", "update_params", "update_all_rows", "all_rows_scratch",
                    "all_rows_scratch_bytes")


def unfused(bk, monkeypatch):
    from sparse_deep.backends.base import Backend

    for name in FUSED_OPERATIONS:
        monkeypatch.setattr(type(bk), name, getattr(Backend, name))


def assert_same_training(fused, composed):
    """Same losses and parameters: bit for bit in the simulator, which runs
    both as Python; on a GPU to float64's last bits, since the compiler may
    contract multiply-adds differently in a fused kernel."""
    same = {"rtol": 0 if simulated else 1e-13, "atol": 0}
    np.testing.assert_allclose(fused[0], composed[0], **same)
    for a, b in zip(fused[1], composed[1]):
        np.testing.assert_allclose(a, b, **same)


def parameters(model):
    return model.weights + list(model.biases.values())


@pytest.mark.parametrize("sparse_input_update", [True, False])
def test_fused_kernels_give_their_compositions_bits(bk, sparse_input_update, monkeypatch):
    """A dense network's steps (the input layer's product with its bias and
    activation, its gradient with the bias gradient and, when every input
    row steps, the slot map's stamps; the optimizer's launches) end where
    the separate kernels leave them."""
    fused = train_steps(bk, sparse_input_update)
    unfused(bk, monkeypatch)
    composed = train_steps(bk, sparse_input_update)
    assert_same_training((fused[2], parameters(fused[0])),
                         (composed[2], parameters(composed[0])))


@pytest.mark.parametrize("error,scoring", [("SampledSoftmax", "Cosine"), ("SampledSoftmax", "Dot"),
                                           ("CosineContrastive", "Cosine")])
def test_fused_sampled_kernels_give_their_compositions_bits(bk, error, scoring, monkeypatch):
    """Each fused launch of the sampled step computes what the base class's
    composition of the separate kernels computes, in the same order."""
    fused = train_sampled_steps(bk, error, scoring)
    unfused(bk, monkeypatch)
    composed = train_sampled_steps(bk, error, scoring)
    assert_same_training((fused[1], parameters(fused[0])),
                         (composed[1], parameters(composed[0])))


class PendingEvent:
    """An event whose marked copies are done only once waited for."""

    def __init__(self, log):
        self.log, self.done = log, True

    def record(self, stream):
        self.log.append("record")
        self.done = False

    def query(self):
        self.log.append("query")
        return self.done

    def synchronize(self):
        self.log.append("wait")
        self.done = True


def test_the_upload_ring_marks_a_batch_of_copies_with_one_event(monkeypatch):
    """One event per seal, not per copy; a buffer is reused only after its
    copy's seal is known done (asked once: later reuses of that seal or an
    earlier one ask nothing); a copy not yet sealed is sealed before its
    buffer is waited for; staged values are what is copied."""
    from sparse_deep.backends.cuda import backend as cuda_backend

    log = []
    monkeypatch.setattr(cuda_backend, "_event", lambda: PendingEvent(log))
    monkeypatch.setattr(cuda_backend._UploadRing, "SLOTS", 4)
    monkeypatch.setattr(cuda_backend._UploadRing, "EVENTS", 2)
    ring = cuda_backend._UploadRing(stream=None)

    def stage(n):
        for i in range(n):
            values = np.arange(3, dtype=np.int64) + i
            assert np.array_equal(ring.stage(values), values)

    stage(4)
    ring.seal()
    ring.seal()  # nothing new to mark
    assert log == ["record"]
    stage(4)  # reuses the four buffers of seal 1
    assert log == ["record", "query", "wait"]
    stage(4)  # seal 2 was never made: made now, then waited for
    assert log[3:] == ["record", "query", "wait"]
    ring.seal()
    stage(4)
    assert log[6:] == ["record", "query", "wait"]


def test_views_of_a_buffer_are_made_once_and_go_with_it(bk):
    import gc

    x = dev(bk, np.arange(12.0).reshape(4, 3))
    assert bk.head(x, 4) is x and bk.head(x, 4, 3) is x
    assert bk.head(x, 2) is bk.head(x, 2) and bk.head(x, 2, 1) is bk.head(x, 2, 1)
    np.testing.assert_array_equal(bk.to_host(bk.head(x, 2, 1)), [[0.0], [3.0]])
    assert len(bk._views) == 1
    del x
    gc.collect()
    assert not bk._views


@pytest.mark.parametrize("shape", [(7,), (4, 3)])
def test_uploads_fill_a_buffers_head_and_leave_the_rest(bk, shape):
    before = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    x = dev(bk, before)
    values = -np.ones((2,) + shape[1:], dtype=np.float32)
    bk.upload(x, values)
    want = before.copy()
    want[:2] = values
    np.testing.assert_array_equal(bk.to_host(x), want)


def test_host_mirrors_last_as_long_as_their_buffers(bk):
    """The host copies a CUDA step prepares its batch in are made once per
    device buffer (not per step), and go when the runner's buffers go."""
    import gc

    train_sampled_steps(bk, "SampledSoftmax", "Cosine")
    gc.collect()
    after_one_fit = len(bk._mirrors)
    train_sampled_steps(bk, "SampledSoftmax", "Cosine")
    gc.collect()
    assert len(bk._mirrors) == after_one_fit


def test_same_seed_gives_the_same_weights_run_after_run(bk):
    """The simulator schedules its threads differently on every run; atomics
    (transpose buckets, top-k counters) must not let that reach the results."""
    first = train_steps(bk, False, n_steps=1)
    again = train_steps(bk, False, n_steps=1)
    for a, b in zip(first[0].weights, again[0].weights):
        assert np.array_equal(a, b)
    assert first[2] == again[2]


def interactions(seed=0, n_users=10, n_items=9):
    rng = np.random.default_rng(seed)
    dense = rng.random((n_users, n_items)) < 0.35
    dense[np.arange(n_users), rng.integers(0, n_items, n_users)] = True
    return sp.csr_matrix(dense.astype(np.float32))


def test_fit_on_cuda_matches_cpu_and_predicts_anywhere(bk):
    """SparseAutoencoderRecommender's defaults (float32, Adam, denoising, SoftMax
    output), 2 epochs of 3 steps: weights within 1e-5 of the CPU's, the same
    recommendations; the GPU's model predicts on the CPU and continues there."""
    X = interactions()
    params = dict(hidden_layer_sizes=(4,), epochs=2, batch_size=4, random_state=0)
    cpu = SparseAutoencoderRecommender(device="cpu", **params).fit(X)
    gpu = SparseAutoencoderRecommender(device="cuda", **params).fit(X)
    np.testing.assert_allclose(gpu.loss_curve_, cpu.loss_curve_, rtol=1e-5)
    for a, b in zip(gpu.model_.weights, cpu.model_.weights):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
    on_gpu = gpu.recommend(X, k=4, return_scores=True)
    np.testing.assert_allclose(on_gpu[1], cpu.recommend(X, k=4, return_scores=True)[1],
                               rtol=1e-4)
    gpu.set_params(device="cpu")
    on_cpu = gpu.recommend(X, k=4, return_scores=True)
    assert np.array_equal(on_cpu[0], on_gpu[0])
    np.testing.assert_allclose(on_cpu[1], on_gpu[1], rtol=1e-5)
    gpu.set_params(warm_start=True, epochs=1).fit(X)  # resumes on the CPU from GPU state
    assert gpu.n_epochs_ == 3


def test_kept_gpu_buffers_take_the_model_afresh(bk, monkeypatch):
    """partial_fit keeps the GPU runner's buffers between calls; a call after
    model_ was read uploads the model's parameters again, so a change made to
    them on the host in between is trained on, exactly as with buffers made
    afresh."""
    from sparse_deep.estimators import _base

    X = interactions()
    weights = []
    for keep in (1 << 30, 0):
        monkeypatch.setattr(_base, "KEEP_TRAINING_BUFFERS_BYTES", keep)
        est = SparseAutoencoderRecommender(device="cuda", hidden_layer_sizes=(4,), batch_size=4,
                                           random_state=0).partial_fit(X)
        assert (getattr(est, "_kept_training_runner", None) is not None) == bool(keep)
        est.model_.weights[1][:, :2] = 0.25
        weights.append([w.copy() for w in est.partial_fit(X).model_.weights])
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)


def small_gpu_recommender():
    return SparseAutoencoderRecommender(device="cuda", hidden_layer_sizes=(4,), batch_size=4,
                                        random_state=0)


def trained_arrays(est):
    """Copies of the weights, biases and optimizer state of a fitted estimator."""
    model = est.model_
    return [a.copy() for _, a, _ in model.parameters()] + [
        a.copy() for pair in est._optimizer_state_.states for a in pair]


def assert_same_arrays(these, those):
    assert len(these) == len(those)
    for a, b in zip(these, those):
        np.testing.assert_array_equal(a, b)


def test_partial_fit_calls_on_the_gpu_copy_no_parameters_between_them(bk, monkeypatch):
    """After a partial_fit on a GPU the newest parameters stay there: the next
    call neither uploads the model nor reads it back; reading model_ brings
    them back once. The bits are those of calls that read the model back
    every time (and so upload it again)."""
    from sparse_deep.backends.cuda import CUDABackend

    X = interactions()
    counts = {"uploads": 0, "read backs": 0}
    bind, sync = Runner._bind_parameters, Runner.sync_to_model

    def counted(name, method):
        def call(self, *args):
            counts[name] += isinstance(self.backend, CUDABackend)  # not runner_bytes's count
            return method(self, *args)
        return call

    monkeypatch.setattr(Runner, "_bind_parameters", counted("uploads", bind))
    monkeypatch.setattr(Runner, "sync_to_model", counted("read backs", sync))
    lazy = small_gpu_recommender()
    for _ in range(3):
        lazy.partial_fit(X)
    assert counts == {"uploads": 1, "read backs": 0}
    eager = small_gpu_recommender()
    for _ in range(3):
        eager.partial_fit(X).model_  # noqa: B018 (reading it brings it back)
    assert counts == {"uploads": 4, "read backs": 3}
    assert_same_arrays(trained_arrays(lazy), trained_arrays(eager))
    assert counts["read backs"] == 4 and lazy.n_steps_ == eager.n_steps_ == 9
    lazy.partial_fit(X)  # after a read, the arrays are taken afresh
    assert counts["uploads"] == 5
    eager.partial_fit(X)
    restored = pickle.loads(pickle.dumps(lazy))  # pickling reads them back
    assert counts["read backs"] == 5 and counts["uploads"] == 6
    assert_same_arrays(trained_arrays(restored), trained_arrays(lazy))
    for est in (lazy, eager):  # a new optimizer setting: its state is made afresh
        est.partial_fit(X).set_params(learning_rate=0.01).partial_fit(X)
    assert_same_arrays(trained_arrays(lazy), trained_arrays(eager))


def test_a_failed_partial_fit_on_the_gpu_leaves_the_gpus_newer_model(bk, monkeypatch):
    """A call that fails midway puts back the parameters it started from,
    which were the GPU's (never read back): the estimator reads as after the
    last call that ended, and goes on with that call's bits."""
    X = interactions()
    failing, reference = small_gpu_recommender(), small_gpu_recommender()
    for est in (failing, reference):
        est.partial_fit(X).partial_fit(X)
    steps = []
    train_step = Runner.train_step

    def interrupted_at_the_second_step(self, *args, **kwargs):
        steps.append(1)
        if len(steps) == 2:
            raise KeyboardInterrupt
        return train_step(self, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(Runner, "train_step", interrupted_at_the_second_step)
        with pytest.raises(KeyboardInterrupt):
            failing.partial_fit(X)
    assert failing.n_steps_ == 6 and len(failing.loss_curve_) == 2
    assert_same_arrays(trained_arrays(failing), trained_arrays(reference))
    assert_same_arrays(trained_arrays(failing.partial_fit(X)),
                       trained_arrays(reference.partial_fit(X)))


def sharded_softmax_flow(bk, err, z, t, bounds, inv_batch):
    """The output pass of a SoftMax split in column slices, through a backend's
    ops, as ShardedRunner runs it on each rank (the sums over ranks on the host)."""
    from sparse_deep.distributed.runner import combine_softmax_partials

    slices = []
    for lo, hi in zip(bounds, bounds[1:]):
        ts = sp.csr_matrix(t[:, lo:hi])
        targets = device_csr(bk, ts.indptr.astype(np.int64), ts.indices.astype(np.int32),
                             ts.data.astype(z.dtype))
        slices.append((dev(bk, np.ascontiguousarray(z[:, lo:hi])), targets))
    parts = np.zeros((len(slices), z.shape[0], 3))
    for r, (zs, targets) in enumerate(slices):
        bk.softmax_partials(zs, targets, parts[r])
    stats = combine_softmax_partials(parts)
    outs, h_sums, errors = [], [], []
    for zs, targets in slices:
        delta, row_error = dev(bk, np.zeros(zs.shape, z.dtype)), dev(bk, np.zeros(z.shape[0]))
        own = stats.copy()
        bk.output_pass(zs, targets, REGISTERED_ACTIVATIONS.info("SoftMax").code, REGISTERED_ERRORS.info(err).code,
                       output_hyper("SoftMax"), inv_batch, delta, row_error, own)
        outs.append((zs, delta))
        h_sums.append(own[:, 3])
        errors.append(bk.to_host(row_error))
    h_sum = np.sum(h_sums, axis=0)
    for zs, delta in outs:
        bk.softmax_jacobian(delta, zs, bk.to_device(h_sum), inv_batch)
    inference = [dev(bk, np.ascontiguousarray(z[:, lo:hi])) for lo, hi in zip(bounds, bounds[1:])]
    for zs in inference:
        bk.softmax_apply(zs, stats)
    return (np.hstack([bk.to_host(a) for a, _ in outs]),
            np.hstack([bk.to_host(d) for _, d in outs]), np.sum(errors, axis=0),
            np.hstack([bk.to_host(a) for a in inference]))


@pytest.mark.parametrize("err", ["CrossEntropy", "L2"])
def test_sharded_softmax_ops_match_the_cpu_and_the_whole_row(bk, err):
    """Model parallelism's SoftMax ops (partials, sharded output pass, Jacobian,
    inference) on 3 uneven slices, one empty: as the CPU backend, and as the
    whole row's output pass."""
    rng = np.random.default_rng(REGISTERED_ERRORS.info(err).code)
    z = pre_activations(rng, (5, 9), np.float64)
    t = random_targets(rng, z.shape, np.float64, err)
    bounds = [0, 4, 4, 9]
    got = sharded_softmax_flow(bk, err, z, t, bounds, 0.2)
    want = sharded_softmax_flow(CPUBackend(), err, z, t, bounds, 0.2)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-11, atol=1e-13)
    whole = run_output_passes(bk, "SoftMax", err, z, t)[1]
    np.testing.assert_allclose(got[0], whole[0], rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(got[3], whole[0], rtol=1e-11, atol=1e-13)

"""Seconds per training epoch: sparse_deep against the same network in PyTorch.

Both train the same autoencoder on the same data on the CPU, with every core
(torch.set_num_threads(os.cpu_count()), numba's default), or with
``--device cuda`` both on the GPU (ours with device="cuda", torch's tensors
on "cuda", torch.cuda.synchronize() before each epoch's clock stops), the same hidden size,
batch size, optimizer and learning rate. Epochs alternate between the two after
one warm-up epoch each (which also compiles numba's kernels), one epoch a turn,
or ``--block N`` epochs a turn (epochs run back to back, as a real fit runs
them); the median of the timed epochs is reported with the ratio
torch / sparse_deep (> 1: we are faster). After the timed epochs (30 in all
on Last.fm and ML-100K, the estimator's default; 4 on the larger yelp2018
and synth100k) both models
are scored on the test split by recall@20 (all items ranked, training items
excluded).

Networks
    softmax    sparse input -> 256 tanh -> SoftMax output, multinomial
               cross-entropy, L2-normalised input, denoising p=0.5, Adam 1e-3
               (SparseAutoencoderRecommender with loss="cross_entropy"; its
               defaults until they moved to a sampled output layer, and the
               "default" network of results written before then)
    movielens  DSSTNE's MovieLens config.json: 128 sigmoid hidden units with a
               sparseness penalty (p 0.5, beta 2), sigmoid output, scaled
               marginal cross-entropy with targets 1/0 (= binary
               cross-entropy), denoising p=0.2, unshuffled; Adam 1e-3

Data
    lastfm     the Last.fm train/test split (1,892 x 4,489)
    ml100k     MovieLens-100K, per-user 80/20 split, seed 0 (943 x 1,682)
    yelp2018   Yelp2018 in the LightGCN split (31,668 x 38,048; by default
               with --device cuda only: on 2 cores its SoftMax epochs take minutes)
    synth100k  synthetic: 5,000 users x 100,000 items, power-law item
               popularity (Zipf exponent 1.1), ~25 items per user, 80/20 split

Each framework runs in its own worker process, driven epoch by epoch from
this one: they would otherwise share one OpenMP runtime, whose settings suit
one or the other (sparse_deep wants passive waiting, torch its default), so
each gets its own. The parent alternates the workers, so both see the same
machine load. Before it starts a timed epoch it waits until the other worker
has used no CPU for 2 ms (read from /proc/PID/task/*/schedstat): torch's
OpenMP threads keep spinning for about 8 ms after its epoch returns (7.3 ms
of CPU, measured here), and an epoch started inside that window shares a core
with them (our ML-100K epoch: 51 ms instead of 32). Our workers sleep at once,
so the wait before torch's epochs is just the 2 ms quiet window. Where
schedstat cannot be read, no wait is made and the results say so.

The PyTorch model is written the way a user would: torch.sparse CSR batches
built from scipy row slices, torch.sparse.mm for the input layer, dense
matmul, torch's log_softmax / BCE-with-logits, torch.optim.Adam.

Usage
    python benchmarks/bench_epoch_vs_pytorch.py [--data-dir DIR]
        [--datasets lastfm ml100k [yelp2018] synth100k] [--networks softmax movielens]
        [--epochs N] [--block N] [--device cpu|cuda]
        [--output benchmarks/results/epoch_vs_pytorch[_cuda].json]

Needs torch (``pip install torch``; benchmark-only, not a dependency); for
``--device cuda`` a CUDA build of torch and a GPU numba.cuda can use.
"""

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import multiprocessing

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _results import write_json  # noqa: E402

# torch is imported inside its worker process only (see worker()).
torch = None
from sparse_deep.datasets import (  # noqa: E402
    load_lastfm,
    load_movielens_100k,
    load_yelp2018,
    per_user_split,
)
from sparse_deep.metrics import recall_at_k  # noqa: E402
from sparse_deep.network.samples import movielens_config  # noqa: E402

BATCH = 128
# Timed for 3 epochs by default, not 29.
LARGE_DATASETS = ("yelp2018", "synth100k")
LEARNING_RATE = 1e-3

MOVIELENS_CONFIG = movielens_config()

NETWORKS = {
    "softmax": dict(hidden=256, activation="tanh", output="softmax", normalize=True,
                    denoise=0.5, shuffle=True, penalty=None,
                    estimator={"activation": "tanh", "loss": "cross_entropy",
                               "learning_rate_decay": 0.0, "sparse_input_update": False}),
    "movielens": dict(hidden=128, activation="sigmoid", output="sigmoid", normalize=False,
                      denoise=0.2, shuffle=False, penalty=(0.5, 2.0),
                      estimator={"network": MOVIELENS_CONFIG, "normalize_input": False,
                                 "learning_rate_decay": 0.0, "sparse_input_update": False}),
}


def estimator_params(net):
    """SparseAutoencoderRecommender's parameters for one of NETWORKS."""
    return dict(hidden_layer_sizes=(net["hidden"],), batch_size=BATCH,
                learning_rate=LEARNING_RATE, **net["estimator"])


# -- data ---------------------------------------------------------------------------
def synthetic_power_law(n_users=5000, n_items=100_000, per_user=25, exponent=1.1, seed=0):
    """Users x items with Zipf-distributed item popularity (a long tail)."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, n_items + 1) ** exponent
    weights /= weights.sum()
    lengths = np.maximum(1, rng.poisson(per_user, n_users))
    items = rng.choice(n_items, size=lengths.sum(), p=weights)
    rows = np.repeat(np.arange(n_users), lengths)
    X = sp.csr_matrix((np.ones(items.size, np.float32), (rows, items)), shape=(n_users, n_items))
    X.data[:] = 1.0  # repeated draws of an item count once
    return per_user_split(X, test_fraction=0.2, random_state=0)


def load(name, data_dir):
    if name == "lastfm":
        return load_lastfm(data_dir)
    if name == "ml100k":
        return load_movielens_100k(data_dir)
    if name == "yelp2018":
        return load_yelp2018(data_dir)
    return synthetic_power_law()


# -- the PyTorch model --------------------------------------------------------------
class TorchAutoencoder:
    """The same network as sparse_deep's, written directly in PyTorch."""

    def __init__(self, n_items, net, seed=0, device="cpu"):
        torch.set_num_threads(os.cpu_count())
        torch.manual_seed(seed)
        self.device = torch.device(device)
        h = net["hidden"]
        limit_1 = (6.0 / (n_items + h)) ** 0.5  # Xavier, as sparse_deep

        def param(tensor):
            return torch.nn.Parameter(tensor.to(self.device))

        self.w1 = param(torch.empty(n_items, h).uniform_(-limit_1, limit_1))
        self.b1 = param(torch.zeros(h))
        self.w2 = param(torch.empty(h, n_items).uniform_(-limit_1, limit_1))
        self.b2 = param(torch.zeros(n_items))
        self.params = [self.w1, self.b1, self.w2, self.b2]
        self.optimizer = torch.optim.Adam(self.params, lr=LEARNING_RATE)
        self.net = net
        self.act = torch.tanh if net["activation"] == "tanh" else torch.sigmoid
        self.epoch = 0

    def _batch(self, X):
        X = X.tocsr()
        return torch.sparse_csr_tensor(
            torch.from_numpy(X.indptr.astype(np.int64)), torch.from_numpy(X.indices.astype(np.int64)),
            torch.from_numpy(X.data.astype(np.float32)), size=X.shape,
        ).to(self.device)

    def synchronize(self):
        """Wait for the GPU's queued work (a no-op on the CPU)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _hidden(self, x):
        return self.act(torch.sparse.mm(x, self.w1) + self.b1)

    def _loss(self, z, hidden, targets):
        if self.net["output"] == "softmax":
            t = targets / targets.sum(dim=1, keepdim=True).clamp_min(1e-12)
            loss = -(torch.log_softmax(z, dim=1) * t).sum() / z.shape[0]
        else:
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                z, targets, reduction="sum") / z.shape[0]
        if self.net["penalty"] is not None:
            p, beta = self.net["penalty"]
            rho = hidden.mean(dim=0).clamp(1e-6, 1 - 1e-6)
            loss = loss + beta * (p * torch.log(p / rho)
                                  + (1 - p) * torch.log((1 - p) / (1 - rho))).sum()
        return loss

    def _inputs(self, X):
        if self.net["normalize"]:
            norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=1)).ravel())
            X = sp.diags(1.0 / np.maximum(norms, 1e-12)) @ X
        return X.tocsr().astype(np.float32)

    def fit_epoch(self, X):
        rng = np.random.default_rng(self.epoch)
        order = rng.permutation(X.shape[0]) if self.net["shuffle"] else np.arange(X.shape[0])
        inputs, p = self._inputs(X), self.net["denoise"]
        for start in range(0, X.shape[0], BATCH):
            rows = order[start:start + BATCH]
            x = inputs[rows]
            if p > 0:  # denoising: drop each non-zero input, scale survivors
                keep = rng.random(x.nnz) >= p
                x = x.copy()
                x.data = np.where(keep, x.data / (1 - p), 0).astype(np.float32)
                x.eliminate_zeros()
            targets = torch.from_numpy(X[rows].toarray()).to(self.device)
            hidden = self._hidden(self._batch(x))
            z = hidden @ self.w2 + self.b2
            loss = self._loss(z, hidden, targets)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        self.epoch += 1

    def recommend(self, X, k):
        with torch.no_grad():
            return self._recommend(X, k)

    def _recommend(self, X, k):
        z = self._hidden(self._batch(self._inputs(X))) @ self.w2 + self.b2
        z[torch.from_numpy(X.toarray() > 0).to(self.device)] = -torch.inf
        return torch.topk(z, k, dim=1).indices.cpu().numpy()


# -- the benchmark ------------------------------------------------------------------
class OursAutoencoder:
    """SparseAutoencoderRecommender trained one epoch per call (partial_fit)."""

    def __init__(self, n_items, net, device="cpu"):
        from sparse_deep import SparseAutoencoderRecommender

        self.model = SparseAutoencoderRecommender(random_state=0, device=device,
                                                  **estimator_params(net))

    def fit_epoch(self, X):
        self.model.partial_fit(X)  # returns once the weights are back on the host

    def synchronize(self):
        pass

    def recommend(self, X, k):
        return self.model.recommend(X, k)


def worker(framework, dataset, network, data_dir, device, conn):
    """Own one model in its own process; run what the parent asks, reply with results."""
    if framework == "pytorch":
        global torch
        import torch
    train, test = load(dataset, data_dir)
    train = train.astype(np.float32)
    cls = TorchAutoencoder if framework == "pytorch" else OursAutoencoder
    model = cls(train.shape[1], NETWORKS[network], device=device)
    while True:
        command = conn.recv()
        if command == "epoch":
            model.synchronize()
            start = time.perf_counter()
            model.fit_epoch(train)
            model.synchronize()
            conn.send(time.perf_counter() - start)
        elif command == "recall":
            users = np.flatnonzero(test.getnnz(axis=1))
            conn.send(float(recall_at_k(test[users], model.recommend(train[users], 20))))
        else:
            conn.send(None)
            return


def start_worker(framework, dataset, network, data_dir, device):
    parent, child = multiprocessing.get_context("spawn").Pipe()
    process = multiprocessing.get_context("spawn").Process(
        target=worker, args=(framework, dataset, network, data_dir, device, child),
        daemon=True)  # so that this process can exit when the other worker has died
    process.start()
    child.close()  # so that a worker that dies reads as EOF here, not a hang
    return process, parent


def ask(conn, command):
    conn.send(command)
    return conn.recv()


def cpu_time_ns(pid):
    """CPU time used so far by every thread of process ``pid`` (ns), or None."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # a thread that ended while we read
    return total


def wait_until_quiet(pid, quiet_s=0.002, timeout_s=0.2):
    """Wait until process ``pid`` has used no CPU for ``quiet_s``; return the wait (s).

    Returns None where its CPU time cannot be read (no /proc schedstat).
    """
    start = time.perf_counter()
    last = cpu_time_ns(pid)
    if last is None:
        return None
    quiet_since = start
    while time.perf_counter() - start < timeout_s:
        time.sleep(quiet_s / 4)
        now = cpu_time_ns(pid)
        if now != last:
            last, quiet_since = now, time.perf_counter()
        elif time.perf_counter() - quiet_since >= quiet_s:
            break
    return time.perf_counter() - start


def benchmark(dataset, network, data_dir, epochs, shape, nnz, device="cpu", block=1):
    workers = {framework: start_worker(framework, dataset, network, data_dir, device)
               for framework in ("sparse_deep", "pytorch")}
    times = {framework: [] for framework in workers}
    waits = {framework: [] for framework in workers}
    for framework, (_, conn) in workers.items():
        ask(conn, "epoch")  # warm-up: numba compiles, torch allocates
    # Alternate, so that drifts in machine load hit both: ``block`` epochs of
    # one framework, then as many of the other, each turn started once the
    # other worker has gone quiet.
    for start in range(0, epochs, block):
        for framework, (_, conn) in workers.items():
            other = next(p for name, (p, _) in workers.items() if name != framework)
            waits[framework].append(wait_until_quiet(other.pid))
            for _ in range(min(block, epochs - start)):
                times[framework].append(ask(conn, "epoch"))
    recall = {framework: ask(conn, "recall") for framework, (_, conn) in workers.items()}
    for process, conn in workers.values():
        ask(conn, "stop")
        process.join()
    net = NETWORKS[network]
    row = {
        "dataset": dataset, "network": network, "device": device, "shape": list(shape),
        "nnz": int(nnz),
        "hidden": net["hidden"], "batch_size": BATCH, "optimizer": "adam",
        "learning_rate": LEARNING_RATE, "epochs_trained": epochs + 1, "block": block,
        "sparse_deep_s_per_epoch": statistics.median(times["sparse_deep"]),
        "pytorch_s_per_epoch": statistics.median(times["pytorch"]),
        "sparse_deep_epochs_s": times["sparse_deep"], "pytorch_epochs_s": times["pytorch"],
        # how long each turn waited for the other worker to go quiet (None: not measurable)
        "sparse_deep_wait_s": _median_or_none(waits["sparse_deep"]),
        "pytorch_wait_s": _median_or_none(waits["pytorch"]),
        "sparse_deep_recall@20": recall["sparse_deep"], "pytorch_recall@20": recall["pytorch"],
    }
    row["speedup"] = row["pytorch_s_per_epoch"] / row["sparse_deep_s_per_epoch"]
    return row


def _median_or_none(values):
    return None if None in values else statistics.median(values)


def _torch_version():
    try:
        import torch
    except ImportError:
        sys.exit("This benchmark needs PyTorch: pip install torch")
    return torch.__version__


def _check_gpus():
    """Both frameworks must see a GPU, or the comparison means nothing."""
    import torch

    from sparse_deep.backends import cuda_device_status

    if not torch.cuda.is_available():
        sys.exit("--device cuda needs a CUDA build of torch and a GPU; torch sees none")
    usable, simulated, report = cuda_device_status()
    if not usable or simulated:
        sys.exit(f"--device cuda needs a GPU numba.cuda can use; found {report}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--datasets", nargs="+",
                        choices=["lastfm", "ml100k", "yelp2018", "synth100k"],
                        help="default: lastfm ml100k synth100k, and yelp2018 with --device cuda")
    parser.add_argument("--networks", nargs="+", default=["softmax", "movielens"])
    parser.add_argument("--epochs", type=int, default=None,
                        help="timed epochs per model (default: 29 on Last.fm and ML-100K, "
                             "so that recall is compared after the estimator's default 30 "
                             "epochs; 3 on yelp2018 and synth100k)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                        help="where both frameworks train (default: cpu)")
    parser.add_argument("--block", type=int, default=1,
                        help="epochs each framework runs per turn (default 1: strict "
                             "alternation; more measures epochs run back to back, as in "
                             "a real fit, while still alternating)")
    parser.add_argument("--output", default=None,
                        help="default: benchmarks/results/epoch_vs_pytorch.json, "
                             "epoch_vs_pytorch_cuda.json with --device cuda")
    args = parser.parse_args(argv)
    if args.datasets is None:
        args.datasets = ["lastfm", "ml100k", *(["yelp2018"] if args.device == "cuda" else []),
                         "synth100k"]
    if args.output is None:
        suffix = "_cuda" if args.device == "cuda" else ""
        args.output = f"benchmarks/results/epoch_vs_pytorch{suffix}.json"
    _torch_version()
    if args.device == "cuda":
        _check_gpus()
    rows = []
    print(f"{'dataset':10s} {'network':10s} {'ours s/ep':>10s} {'torch s/ep':>10s} {'ratio':>6s} "
          f"{'R@20 ours':>10s} {'R@20 torch':>10s}")
    for dataset in args.datasets:
        try:
            train, _ = load(dataset, args.data_dir)
        except FileNotFoundError as exc:
            sys.exit(f"{exc}\nPass --data-dir pointing at the shared data folder.")
        for network in args.networks:
            epochs = args.epochs or (3 if dataset in LARGE_DATASETS else 29)
            r = benchmark(dataset, network, args.data_dir, epochs, train.shape, train.nnz,
                          args.device, args.block)
            rows.append(r)
            print(f"{dataset:10s} {network:10s} {r['sparse_deep_s_per_epoch']:10.3f} "
                  f"{r['pytorch_s_per_epoch']:10.3f} {r['speedup']:6.2f} "
                  f"{r['sparse_deep_recall@20']:10.4f} {r['pytorch_recall@20']:10.4f}", flush=True)
    machine = {"cpus": os.cpu_count(), "platform": platform.platform(),
               "torch": _torch_version(), "threads": os.cpu_count(), "device": args.device}
    if args.device == "cuda":
        import torch

        from sparse_deep.backends import get_backend
        from sparse_deep.backends.cuda import prepared

        machine["gpu"] = torch.cuda.get_device_name(0)
        machine["dense_products"] = get_backend("cuda").gemm_report
        machine["launches"] = prepared.describe()
    write_json(args.output, {
        "machine": machine,
        "results": rows,
    })


if __name__ == "__main__":
    main()

"""Where a training epoch's time goes, per backend operation.

Fits SparseAutoencoderRecommender (a 256-tanh SoftMax network, or DSSTNE's MovieLens
network with --network movielens) on a data set and times every call the
engine makes into its backend (gather, GEMM, output pass, optimizer updates,
...). On the GPU each timed call waits for the device before and after, so
the figures are the kernels' own time plus their launch cost; the waits slow
the fit down a little, which is why the epoch times are measured separately,
without the timers.

It also separates the cost of a ``fit`` call from that of its epochs: the
benchmark against PyTorch runs one epoch per call (``partial_fit``), so a
large fixed cost per call shows there and not in a long fit.

Usage
    python benchmarks/profile_step.py [--device cpu|cuda] [--data-dir DIR]
        [--dataset lastfm|ml100k] [--network softmax|movielens] [--output FILE.json]
"""

import argparse
import collections
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _results import write_json  # noqa: E402

from bench_epoch_vs_pytorch import NETWORKS, estimator_params  # noqa: E402
from bench_epoch_vs_pytorch import load as load_split  # noqa: E402
from sparse_deep import SparseAutoencoderRecommender  # noqa: E402


def load(name, data_dir):
    """The training split the benchmark against PyTorch trains on."""
    return load_split(name, data_dir)[0].astype(np.float32)


def fit_seconds(X, device, network, epochs, warm_epochs=0):
    """Seconds for one fit of ``epochs`` epochs, after ``warm_epochs`` untimed ones."""
    model = SparseAutoencoderRecommender(epochs=max(warm_epochs, 1), random_state=0,
                                         device=device, warm_start=True,
                                         **estimator_params(NETWORKS[network]))
    model.fit(X)  # compiles the kernels
    model.set_params(epochs=epochs)
    start = time.perf_counter()
    model.fit(X)
    return time.perf_counter() - start


def timed_backend_calls(backend_class, synchronize):
    """Wrap every public method of ``backend_class``; returns the totals dict."""
    totals = collections.defaultdict(lambda: [0, 0.0])

    def wrap(name, method):
        def timed(self, *args, **kwargs):
            synchronize(self)
            start = time.perf_counter()
            result = method(self, *args, **kwargs)
            synchronize(self)
            entry = totals[name]
            entry[0] += 1
            entry[1] += time.perf_counter() - start
            return result
        return timed

    for name in dir(backend_class):
        method = getattr(backend_class, name)
        if not name.startswith("_") and callable(method):
            setattr(backend_class, name, wrap(name, method))
    return totals


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--dataset", choices=["lastfm", "ml100k"], default="lastfm")
    parser.add_argument("--network", choices=sorted(NETWORKS), default="softmax")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)
    X = load(args.dataset, args.data_dir)
    steps_per_epoch = -(-X.shape[0] // 128)

    one = fit_seconds(X, args.device, args.network, 1)
    many = fit_seconds(X, args.device, args.network, args.epochs)
    per_epoch = (many - one) / (args.epochs - 1)
    per_fit = one - per_epoch

    if args.device == "cuda":
        from sparse_deep.backends.cuda.backend import CUDABackend as backend_class

        def synchronize(backend):
            backend.stream.synchronize()
    else:
        from sparse_deep.backends.cpu.backend import CPUBackend as backend_class

        def synchronize(backend):
            pass
    totals = timed_backend_calls(backend_class, synchronize)
    profiled = fit_seconds(X, args.device, args.network, args.epochs, warm_epochs=1)
    steps = args.epochs * steps_per_epoch
    # The warm-up fit ran under the timers too; keep only the timed fit's share.
    rows = sorted(((name, count, seconds) for name, (count, seconds) in totals.items()),
                  key=lambda row: -row[2])
    scale = args.epochs / (args.epochs + 1)
    print(f"{args.dataset} {X.shape}, {args.network} network, on {args.device}: "
          f"{per_epoch:.4f} s/epoch ({1e3 * per_epoch / steps_per_epoch:.2f} ms/step), "
          f"{per_fit:.4f} s fixed per fit call")
    print(f"under the timers: {profiled:.3f} s for {args.epochs} epochs")
    print(f"{'operation':28s} {'calls/step':>10s} {'ms/step':>8s}")
    for name, count, seconds in rows:
        print(f"{name:28s} {scale * count / steps:10.2f} {1e3 * scale * seconds / steps:8.3f}")
    if args.output:
        write_json(args.output, {
            "dataset": args.dataset, "network": args.network, "shape": list(X.shape),
            "device": args.device,
            "s_per_epoch": per_epoch, "s_fixed_per_fit": per_fit,
            "ms_per_step": {name: 1e3 * scale * seconds / steps for name, _, seconds in rows},
            "calls_per_step": {name: scale * count / steps for name, count, _ in rows},
        })


if __name__ == "__main__":
    main()

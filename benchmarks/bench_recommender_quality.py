"""Recommendation quality of sparse_deep against tuned baselines, in one run.

Every model below is fitted and scored on the same data, in the same process,
under the same protocol, and the results are printed as one table per data
set and written as JSON (``benchmarks/results/recommender_quality.json``).

Protocol
--------
* Every model is fitted on the training matrix only (binary implicit
  feedback, users x items). The test matrix is used for scoring alone.
* For every user with at least one test item, all items are ranked, the
  user's training items excluded, and the top 20 are kept.
* recall@K and NDCG@K for K = 10 and 20 (``sparse_deep.metrics.recall_at_k``
  and ``ndcg_at_k``: recall = hits / the user's number of test items, NDCG
  with binary gains and the ideal DCG over min(test items, K) positions),
  averaged over those users. This is the LightGCN / NGCF protocol, so the
  Yelp2018 figures compare with published ones (see
  ``/work/shared/data/README.md``).
* ``fit s``: wall-clock seconds of the final ``fit`` alone (no data loading,
  no tuning, no scoring). ``rec s``: wall-clock seconds to produce the top-20
  lists of all test users (scores, exclusion of training items, top-k).
  ``tune s``: wall-clock seconds of the validation search, reported apart.

Hyper-parameter selection
-------------------------
Hyper-parameters are never chosen on the test split. For each data set a
validation split is carved out of the training matrix,
``sparse_deep.datasets.per_user_split(train, 0.2, random_state=1)`` (20 % of
each user's training items held out). Every candidate is fitted on the
remaining 80 % and scored on the held-out 20 % with the protocol above; the
candidate with the best validation NDCG@20 (ties: the first in grid order)
is refitted on the full training matrix and that refit is what is timed and
tested. The JSON records every candidate tried, its validation scores, and
the choice. A choice at the edge of a grid of three or more values, or a
Mult-DAE still improving at its epoch cap, is flagged in the table.

Models
------
popularity          items ranked by their number of training users.
implicit-als        implicit.als.AlternatingLeastSquares with implicit's
                    defaults (factors 100, regularization 0.01, alpha 1,
                    15 iterations), random_state 0.
implicit-als-tuned  the same, 15 iterations, grid on validation: factors
                    {64, 128} x alpha {1, 10} x regularization {0.5, 5, 50}
                    (12 fits). Regularization 0.05-0.5 alone was too weak a
                    range: on the ML-100K validation split the best of it
                    gave NDCG@20 0.24, regularization 50 gave 0.30 (100 and
                    300 were worse again).
ease                EASE (Steck 2019), closed form: G = X^T X + lambda I,
                    P = G^-1, B = -P / diag(P) (column j divided by P_jj),
                    diag(B) = 0, scores = X B. lambda on validation over
                    {50, 200, 500, 1000, 2000} on the small sets and
                    {250, 500, 1000} on Yelp2018. float64 when one
                    n_items^2 float64 matrix takes at most 2 GiB, else
                    float32 (Yelp2018: 38,048^2 x 4 bytes = 5.8 GB). G is
                    built dense from sparse row blocks of X^T X, inverted
                    through its Cholesky factor (PyTorch, MKL; the inverse
                    written back into G's memory), turned into B in place;
                    at most two such matrices exist at a time. Scores are
                    computed 1,024 users at a time.
mult-dae-torch      Mult-DAE (Liang et al. 2018) in PyTorch, the published
                    architecture: L2-normalised input rows, input dropout
                    0.5, n_items -> 600 -> 200 -> 600 -> n_items with tanh on
                    every hidden layer, multinomial log-likelihood
                    (log_softmax over all items, summed over the user's
                    items, averaged over the batch), Adam lr 1e-3, batch
                    500, Xavier weights, seed 0. L2 as in the authors'
                    notebook, a loss term 0.01 / batch_size x sum of squared
                    weights (biases excluded), applied as its gradient
                    through Adam's (coupled) weight_decay = 2 x 0.01 / 500.
                    The number of epochs is chosen on validation: one run up
                    to a cap (100 epochs on the small sets, 16 on Yelp2018;
                    ``--dae-max-epochs``), NDCG@20 measured every 5 epochs
                    (every 2 on Yelp2018), then a fresh fit on the full
                    training matrix for the best number of epochs.
sparse_deep         sparse_deep.SparseAutoencoderRecommender(random_state=0)
                    with the library's default parameters (recorded in the
                    JSON), ``--epochs`` passed through if given. Not tuned
                    here: its defaults come from
                    ``benchmarks/tune_recommender_defaults.py``, which used
                    the same validation splits of all three data sets.

Data (see /work/shared/data/README.md)
--------------------------------------
lastfm    the pre-split Last.fm train/test files (1,892 x 4,489)
ml100k    MovieLens 100K, per-user 80/20 split with seed 0 (943 x 1,682)
yelp2018  Yelp2018 in the LightGCN split (31,668 x 38,048)

Cost on this project's 2-core machine
-------------------------------------
Last.fm and ML-100K: a few minutes in all (apart from sparse_deep's own
fit), mostly the Mult-DAE search: 0.18 s an epoch on ML-100K and 0.6 s on
Last.fm, measured with another job on the machine.

Yelp2018 takes about an hour or more:
* implicit-als-tuned: 12 fits of 5-8 s plus their scoring, about 2 minutes.
* mult-dae-torch: an epoch costs about 64 steps x 1.4 CPU-seconds (steps on
  synthetic batches of Yelp2018's shape), about 47 s on two idle cores, so
  16 epochs of search, 8 validation scorings and up to 16 epochs of refit
  take up to about 30 minutes (twice that on a machine shared with another
  job). The cap of 16 epochs keeps it there; the table flags a best epoch
  at the cap.
* ease: one Cholesky inversion of a 38,048^2 float32 matrix per lambda and
  one for the refit, 4 in all. An inversion costs n^3 = 5.5e13 flops; a
  float32 one at n = 17,000 took 54 s here (91 GFLOP/s, one core's worth
  with another job running; peak memory that one matrix plus 0.3 GB), so
  about 10 minutes each at n = 38,048, perhaps 5-6 on two idle cores: 20 to
  40 minutes in all, plus about 40 s of scoring per fit (scipy's sparse x
  dense product runs on one core).
* sparse_deep: its own fit with its defaults.
``--models`` (or ``--skip``) runs a subset, e.g. ``--skip ease mult-dae-torch``.

Threads: every model may use every core: implicit with single-threaded BLAS
around its fit, as it asks; PyTorch with torch.set_num_threads(os.cpu_count());
EASE through OpenBLAS's threads. Every model shares this process, so the
script sets OMP_WAIT_POLICY=PASSIVE and GOMP_SPINCOUNT=10000 (unless set)
before anything starts OpenMP: torch's runtime then sleeps about 0.3 ms after
its work, as numba's does, instead of holding the cores into the next model's
fit.

Usage
-----
    python benchmarks/bench_recommender_quality.py [--data-dir DIR]
        [--datasets lastfm ml100k yelp2018] [--models NAME ...] [--skip NAME ...]
        [--epochs N] [--dae-max-epochs N] [--output PATH]
"""

import argparse
import importlib.util
import itertools
import os
import platform
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

for _name, _value in (("OMP_WAIT_POLICY", "PASSIVE"), ("GOMP_SPINCOUNT", "10000")):
    os.environ.setdefault(_name, _value)  # before any OpenMP runtime starts; see above

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

# Benchmark the working tree even when the package is not installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _results import cpu_model, write_json  # noqa: E402

# sparse_deep is imported before torch on purpose (see "Threads" above).
from sparse_deep.datasets import (  # noqa: E402
    load_lastfm,
    load_movielens_100k,
    load_yelp2018,
    per_user_split,
)
from sparse_deep.metrics import ndcg_at_k, recall_at_k  # noqa: E402

K = 20
CUTOFFS = (10, 20)
SELECTION_METRIC = f"ndcg@{K}"
VALIDATION_SPLIT = {"test_fraction": 0.2, "random_state": 1}
SCORE_BATCH = 1024  # users scored at a time: 1024 x 38,048 float32 = 156 MB
EASE_FLOAT64_LIMIT = 2 * 1024**3  # bytes of one n_items^2 float64 matrix

PROTOCOL = {
    "fit_on": "the training matrix only; hyper-parameters chosen on a validation split of it",
    "evaluated_users": "every user with at least one test item",
    "ranking": "all items ranked, the user's training items excluded",
    "metrics": "sparse_deep.metrics.recall_at_k and ndcg_at_k (binary gains, ideal DCG over "
               "min(|test|, k) positions) at k = 10 and 20, averaged over the evaluated users",
    "fit_seconds": "wall clock of the final fit only (no loading, tuning or scoring)",
    "recommend_seconds": "wall clock of the top-20 lists for all evaluated users",
    "validation_split": "sparse_deep.datasets.per_user_split(train, 0.2, random_state=1)",
    "selection": f"best validation {SELECTION_METRIC} (first in grid order on ties), then refitted "
                 "on the full training matrix",
}


@dataclass(frozen=True)
class DatasetSpec:
    """How to load one data set and the per-data-set search settings."""

    loader: object
    ease_lambdas: tuple
    dae_max_epochs: int
    dae_eval_every: int


SMALL_EASE_LAMBDAS = (50.0, 200.0, 500.0, 1000.0, 2000.0)
DATASETS = {
    "lastfm": DatasetSpec(load_lastfm, SMALL_EASE_LAMBDAS, 100, 5),
    "ml100k": DatasetSpec(partial(load_movielens_100k, test_fraction=0.2, random_state=0),
                          SMALL_EASE_LAMBDAS, 100, 5),
    # Each lambda costs one inversion of a 38,048^2 matrix (5-10 min), each
    # Mult-DAE epoch about 47 s: see "Cost" above.
    "yelp2018": DatasetSpec(load_yelp2018, (250.0, 500.0, 1000.0), 16, 2),
}


# ---------------------------------------------------------------------------
# Splits, ranking and scoring, shared by every model
# ---------------------------------------------------------------------------


@dataclass
class Split:
    """A training matrix and the held-out items of the users evaluated on it."""

    train: sp.csr_matrix
    heldout: sp.csr_matrix
    users: np.ndarray = field(init=False)
    truth: sp.csr_matrix = field(init=False)

    def __post_init__(self):
        self.train = sp.csr_matrix(self.train, dtype=np.float32)
        self.heldout = sp.csr_matrix(self.heldout)
        self.users = np.flatnonzero(np.diff(self.heldout.indptr))
        self.truth = self.heldout[self.users]


def validation_split(train):
    """The validation split carved out of a training matrix."""
    return Split(*per_user_split(train, **VALIDATION_SPLIT))


def top_k_unseen(scores, seen, k=K):
    """Top-``k`` item ids per row of ``scores``, excluding ``seen`` items.

    Parameters
    ----------
    scores : ndarray of shape (n_rows, n_items)
        Float scores, overwritten (seen entries become -inf).
    seen : csr_matrix of shape (n_rows, n_items)
        The rows' training items.
    k : int
        Length of the lists.

    Returns
    -------
    ids : ndarray of int64, shape (n_rows, k)
        Best first; -1 where a row has fewer than ``k`` unseen items.
    """
    rows, cols = seen.nonzero()
    scores[rows, cols] = -np.inf
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    ids = np.take_along_axis(part, order, axis=1).astype(np.int64)
    ids[np.take_along_axis(scores, ids, axis=1) == -np.inf] = -1
    return ids


def rank_in_batches(score_rows, train, users, batch_size=SCORE_BATCH):
    """Top-K unseen items of ``users``, scoring ``batch_size`` users at a time.

    ``score_rows(rows)`` maps a CSR block of training rows to a dense float
    array of scores of shape (n_rows, n_items).
    """
    out = []
    for start in range(0, len(users), batch_size):
        rows = train[users[start:start + batch_size]]
        out.append(top_k_unseen(np.asarray(score_rows(rows)), rows))
    return np.concatenate(out) if out else np.empty((0, K), dtype=np.int64)


def scores_of(truth, ids):
    """recall@k and NDCG@k at every cut-off of CUTOFFS."""
    out = {}
    for k in CUTOFFS:
        out[f"recall@{k}"] = float(recall_at_k(truth, ids, k=k))
        out[f"ndcg@{k}"] = float(ndcg_at_k(truth, ids, k=k))
    return out


def timed(func, *args, **kwargs):
    """``(func(*args, **kwargs), wall-clock seconds)``."""
    start = time.perf_counter()
    result = func(*args, **kwargs)
    return result, time.perf_counter() - start


# ---------------------------------------------------------------------------
# Models. Each has the same interface:
#   candidates(spec)              the validation grid, a list of parameter dicts
#   fit(train, params)            a fitted model
#   recommend(fitted, split)      top-K ids of split.users, shape (n_users, K)
#   select(val, spec)             Selection: the chosen parameters and the trials
#   describe(fitted)              extra facts for the JSON (may be empty)
# ---------------------------------------------------------------------------


@dataclass
class Selection:
    """What the validation search tried and what it chose."""

    params: dict
    trials: list = field(default_factory=list)
    seconds: float = 0.0
    warning: str = ""

    def as_json(self):
        return {"tuned": bool(self.trials), "chosen": self.params, "trials": self.trials,
                "seconds": self.seconds, "warning": self.warning or None}


class Model:
    """Base class: a recommender with a grid search on the validation split."""

    name = ""
    description = ""
    requires = ()  # modules that must be importable

    def candidates(self, spec):
        """Parameter dicts tried on validation for data set ``spec`` ([{}]: none)."""
        return [{}]

    def fit(self, train, params):
        """Fit on the CSR matrix ``train`` with ``params``; return the fitted model."""
        raise NotImplementedError

    def recommend(self, fitted, split):
        """Top-K unseen item ids of ``split.users`` (rows of ``split.train``)."""
        raise NotImplementedError

    def describe(self, fitted):
        """Facts about the fitted model for the JSON."""
        return {}

    def select(self, val, spec):
        """Fit every candidate on ``val.train``; keep the best validation score."""
        grid = self.candidates(spec)
        if len(grid) == 1:
            return Selection(grid[0])
        start = time.perf_counter()
        trials = []
        for params in grid:
            fitted = self.fit(val.train, params)
            trials.append({"params": params, **scores_of(val.truth, self.recommend(fitted, val))})
            del fitted  # EASE's matrix is 5.8 GB on Yelp2018: one at a time
            print(f"    {self.name} validation {params}: {SELECTION_METRIC} "
                  f"{trials[-1][SELECTION_METRIC]:.4f}", flush=True)
        best = max(trials, key=lambda trial: trial[SELECTION_METRIC])  # first on ties
        return Selection(best["params"], trials, time.perf_counter() - start,
                         edge_warning(grid, best["params"]))


def edge_warning(grid, chosen):
    """Name the parameters whose choice is an end of a range of 3+ values."""
    edges = []
    for key, value in chosen.items():
        values = sorted({params[key] for params in grid})
        if len(values) >= 3 and value in (values[0], values[-1]):
            edges.append(f"{key}={value} at the grid's edge")
    return "; ".join(edges)


class Popularity(Model):
    """Items ranked by how many training users interacted with them."""

    name = "popularity"
    description = "items ranked by their number of training users"

    def fit(self, train, params):
        return np.bincount(train.indices, minlength=train.shape[1]).astype(np.float32)

    def recommend(self, counts, split):
        return rank_in_batches(lambda rows: np.tile(counts, (rows.shape[0], 1)),
                               split.train, split.users)


class ImplicitALS(Model):
    """implicit's AlternatingLeastSquares; ``grid`` None means its defaults."""

    requires = ("implicit", "threadpoolctl")

    def __init__(self, name, grid=None):
        self.name = name
        self.grid = grid
        self.description = ("implicit.als.AlternatingLeastSquares, "
                            + ("implicit's defaults" if grid is None else
                               f"grid on validation: {grid}") + ", random_state 0")

    def candidates(self, spec):
        if self.grid is None:
            return [{}]
        keys = list(self.grid)
        return [dict(zip(keys, values)) for values in itertools.product(*self.grid.values())]

    def fit(self, train, params):
        from implicit.als import AlternatingLeastSquares
        from threadpoolctl import threadpool_limits

        # implicit parallelises itself and asks for single-threaded BLAS;
        # limit BLAS only around its fit, so other models keep every core.
        with threadpool_limits(1, "blas"):
            model = AlternatingLeastSquares(random_state=0, **params)
            model.fit(train, show_progress=False)
        return model

    def recommend(self, model, split):
        ids, _ = model.recommend(split.users, split.train[split.users], N=K,
                                 filter_already_liked_items=True)
        return np.asarray(ids, dtype=np.int64)

    def describe(self, model):
        return {"factors": model.factors, "regularization": model.regularization,
                "alpha": model.alpha, "iterations": model.iterations}


class EASE(Model):
    """Closed-form EASE, inverted in place (one n_items^2 matrix at a time)."""

    name = "ease"
    description = ("EASE (Steck 2019): B = -P / diag(P), P = (X^T X + lambda I)^-1, diag(B) = 0; "
                   "lambda on validation")

    def candidates(self, spec):
        return [{"lambda": lam} for lam in spec.ease_lambdas]

    def fit(self, train, params):
        n_items = train.shape[1]
        dtype = np.float64 if n_items**2 * 8 <= EASE_FLOAT64_LIMIT else np.float32
        weights = dense_gram(train.astype(dtype))
        weights.flat[::n_items + 1] += params["lambda"]
        invert_spd_in_place(weights)  # now P = G^-1
        diagonal = weights.diagonal().copy()
        weights /= -diagonal  # B_ij = -P_ij / P_jj, column by column
        weights.flat[::n_items + 1] = 0.0
        return weights

    def recommend(self, weights, split):
        train = split.train.astype(weights.dtype)
        return rank_in_batches(lambda rows: rows @ weights, train, split.users)

    def describe(self, weights):
        return {"dtype": weights.dtype.name}


def dense_gram(X, block=2048):
    """Dense X^T X of a sparse matrix, built block of rows by block of rows.

    Only the result and one sparse block product exist at a time (no dense
    temporary of the full size).
    """
    n_items = X.shape[1]
    gram = np.zeros((n_items, n_items), dtype=X.dtype)
    X = sp.csr_matrix(X)
    XT = X.T.tocsr()
    for start in range(0, n_items, block):
        # csr.toarray(out=...) adds into ``out``, which is still zero here.
        (XT[start:start + block] @ X).toarray(out=gram[start:start + block])
    return gram


def invert_spd_in_place(matrix):
    """Replace a symmetric positive definite C-ordered matrix by its inverse.

    PyTorch's Cholesky (MKL's potrf and potri on x86): the factor is a second
    matrix of the same size, the inverse is written back into ``matrix``, so at
    most two such matrices exist at once. scipy's OpenBLAS potrf/potri on the
    matrix's own memory crashed (a segmentation fault) on Yelp2018's 38,048^2
    float32 matrix.
    """
    import torch

    memory = torch.from_numpy(matrix)
    factor = torch.linalg.cholesky(memory)
    torch.cholesky_inverse(factor, out=memory)
    del factor
    if not np.all(np.isfinite(matrix.diagonal())):
        raise np.linalg.LinAlgError("the inverse is not finite; is lambda > 0?")


class MultDAE(Model):
    """Mult-DAE (Liang et al. 2018) in PyTorch; epochs chosen on validation."""

    name = "mult-dae-torch"
    description = ("Mult-DAE (Liang et al. 2018) in PyTorch: n_items-600-200-600-n_items tanh, "
                   "input dropout 0.5 on L2-normalised rows, multinomial log-likelihood + "
                   "0.01/batch x sum W^2, Adam 1e-3, batch 500; epochs on validation")
    requires = ("torch",)
    hidden = (600, 200)
    dropout = 0.5
    learning_rate = 1e-3
    batch_size = 500
    l2 = 0.01  # the authors' lam; the loss term is l2 / batch_size x sum W^2

    def __init__(self, max_epochs=None):
        self.max_epochs = max_epochs  # overrides the data set's cap

    def fit(self, train, params):
        return self._train(train, params["epochs"])

    def select(self, val, spec):
        """Train once up to the cap; score validation NDCG@20 every few epochs."""
        max_epochs = self.max_epochs or spec.dae_max_epochs
        every = min(spec.dae_eval_every, max_epochs)
        trials = []
        start = time.perf_counter()

        def checkpoint(epoch, net):
            if epoch % every == 0 or epoch == max_epochs:
                trials.append({"params": {"epochs": epoch},
                               "elapsed_seconds": time.perf_counter() - start,
                               **scores_of(val.truth, self.recommend(net, val))})

        self._train(val.train, max_epochs, on_epoch=checkpoint)
        best = max(trials, key=lambda trial: trial[SELECTION_METRIC])
        warning = ""
        if best["params"]["epochs"] == max_epochs:
            warning = f"best at the cap of {max_epochs} epochs: may be undertrained"
        curve = " ".join(f"{t['params']['epochs']}:{t[SELECTION_METRIC]:.4f}" for t in trials)
        print(f"    {self.name} validation {SELECTION_METRIC} by epoch: {curve}", flush=True)
        return Selection(best["params"], trials, time.perf_counter() - start, warning)

    def _train(self, train, epochs, on_epoch=None):
        import torch

        torch.set_num_threads(os.cpu_count())
        torch.manual_seed(0)
        rng = np.random.default_rng(0)
        net = _mult_dae_net(train.shape[1], self.hidden)
        # The loss term (l2 / batch_size) x sum W^2 enters as its gradient:
        # Adam's weight_decay (coupled, unlike AdamW's) adds weight_decay x W.
        optimizer = torch.optim.Adam(
            [{"params": net.weights(), "weight_decay": 2 * self.l2 / self.batch_size},
             {"params": net.biases(), "weight_decay": 0.0}],
            lr=self.learning_rate, fused=True)
        inputs = l2_normalised(train)
        for epoch in range(1, epochs + 1):
            order = rng.permutation(train.shape[0])
            for start in range(0, len(order), self.batch_size):
                rows = order[start:start + self.batch_size]
                x = _torch_csr(dropped_out(inputs[rows], self.dropout, rng))
                targets = torch.from_numpy(train[rows].toarray())
                loss = -(torch.log_softmax(net(x), dim=1) * targets).sum(dim=1).mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            if on_epoch is not None:
                on_epoch(epoch, net)
        return net

    def recommend(self, net, split):
        import torch

        def score_rows(rows):
            with torch.no_grad():
                return net(_torch_csr(l2_normalised(rows))).numpy()

        return rank_in_batches(score_rows, split.train, split.users)

    def describe(self, net):
        return {"layers": [self.hidden[0], self.hidden[1], self.hidden[0]],
                "dropout": self.dropout, "learning_rate": self.learning_rate,
                "batch_size": self.batch_size,
                "l2": f"{self.l2} / batch_size x sum of squared weights, biases excluded"}


def l2_normalised(X):
    """Rows of a CSR matrix scaled to unit L2 norm (a new float32 matrix)."""
    X = sp.csr_matrix(X, dtype=np.float32, copy=True)
    norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=1)).ravel())
    X.data /= np.repeat(np.maximum(norms, 1e-12), np.diff(X.indptr)).astype(np.float32)
    return X


def dropped_out(X, rate, rng):
    """Inverted dropout on the stored entries of a CSR block (a new matrix)."""
    X = X.copy()
    keep = rng.random(X.nnz) >= rate
    X.data = np.where(keep, X.data / (1.0 - rate), 0.0).astype(np.float32)
    X.eliminate_zeros()
    return X


def _torch_csr(X):
    """A scipy CSR matrix as a torch sparse CSR tensor (sharing the values)."""
    import torch

    warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")

    return torch.sparse_csr_tensor(torch.from_numpy(X.indptr.astype(np.int64)),
                                   torch.from_numpy(X.indices.astype(np.int64)),
                                   torch.from_numpy(X.data), size=X.shape,
                                   check_invariants=False)


def _mult_dae_net(n_items, hidden):
    """The Mult-DAE network: sparse input, tanh hidden layers, linear output."""
    import torch

    class MultDAENet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            sizes = [n_items, hidden[0], hidden[1], hidden[0], n_items]
            # The first weight is stored (in, out) for torch.sparse.mm.
            self.w_in = torch.nn.Parameter(torch.empty(sizes[0], sizes[1]))
            self.b_in = torch.nn.Parameter(torch.empty(sizes[1]))
            self.layers = torch.nn.ModuleList(
                torch.nn.Linear(a, b) for a, b in zip(sizes[1:-1], sizes[2:]))
            # As the authors' code: Xavier weights, biases N(0, 0.001) truncated.
            torch.nn.init.xavier_uniform_(self.w_in)
            torch.nn.init.trunc_normal_(self.b_in, std=0.001, a=-0.002, b=0.002)
            for layer in self.layers:
                torch.nn.init.xavier_uniform_(layer.weight)
                torch.nn.init.trunc_normal_(layer.bias, std=0.001, a=-0.002, b=0.002)

        def weights(self):
            return [self.w_in] + [layer.weight for layer in self.layers]

        def biases(self):
            return [self.b_in] + [layer.bias for layer in self.layers]

        def forward(self, x):
            h = torch.tanh(torch.sparse.mm(x, self.w_in) + self.b_in)
            for layer in self.layers[:-1]:
                h = torch.tanh(layer(h))
            return self.layers[-1](h)

    return MultDAENet()


class SparseDeep(Model):
    """SparseAutoencoderRecommender with the library's defaults (not tuned)."""

    name = "sparse_deep"
    description = "SparseAutoencoderRecommender(random_state=0), library defaults, not tuned"
    requires = ("sparse_deep",)

    def __init__(self, epochs=None):
        self.params = {"random_state": 0}
        if epochs is not None:
            self.params["epochs"] = epochs

    def fit(self, train, params):
        from sparse_deep import SparseAutoencoderRecommender

        return SparseAutoencoderRecommender(**self.params, **params).fit(train)

    def recommend(self, model, split):
        return np.asarray(model.recommend(split.train[split.users], k=K, exclude_seen=True))

    def describe(self, model):
        return {"params": jsonable(model.get_params())}


def jsonable(value):
    """Parameters as JSON-friendly values (tuples to lists, objects to repr)."""
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    return repr(value)


ALS_GRID = {"factors": [64, 128], "alpha": [1.0, 10.0], "regularization": [0.5, 5.0, 50.0],
            "iterations": [15]}
MODEL_NAMES = ["popularity", "implicit-als", "implicit-als-tuned", "ease", "mult-dae-torch",
               "sparse_deep"]


def build_models(names, args):
    """The models to run, in table order, leaving out those that can't be imported."""
    factories = {
        "popularity": Popularity,
        "implicit-als": partial(ImplicitALS, "implicit-als"),
        "implicit-als-tuned": partial(ImplicitALS, "implicit-als-tuned", ALS_GRID),
        "ease": EASE,
        "mult-dae-torch": partial(MultDAE, args.dae_max_epochs),
        "sparse_deep": partial(SparseDeep, args.epochs),
    }
    models = []
    for name in MODEL_NAMES:
        if name not in names:
            continue
        model = factories[name]()
        missing = [mod for mod in model.requires if importlib.util.find_spec(mod) is None]
        if missing:
            print(f"{name}: skipped, {', '.join(missing)} not installed "
                  "(pip install -e '.[benchmarks]').", file=sys.stderr)
            continue
        models.append(model)
    return models


# ---------------------------------------------------------------------------
# Running and reporting
# ---------------------------------------------------------------------------


def run_model(model, dataset, spec, test, val):
    """Select on validation, refit on the full training matrix, time and test."""
    selection = model.select(val, spec)
    fitted, fit_seconds = timed(model.fit, test.train, selection.params)
    ids, recommend_seconds = timed(model.recommend, fitted, test)
    return {
        "dataset": dataset,
        "model": model.name,
        **scores_of(test.truth, ids),
        "fit_seconds": fit_seconds,
        "recommend_seconds": recommend_seconds,
        "tuning_seconds": selection.seconds,
        "validation": selection.as_json(),
        "model_info": model.describe(fitted),
    }


def evaluate(dataset, spec, train, test, models):
    """Run every model on one data set; return one row per model."""
    test_split = Split(train, test)
    val_split = validation_split(test_split.train)
    print(f"\n{dataset}: {train.shape[0]:,} users x {train.shape[1]:,} items, "
          f"{test_split.train.nnz:,} training interactions, {test_split.users.size:,} test "
          f"users ({val_split.users.size:,} validation users)", flush=True)
    print(HEADER, flush=True)
    rows = []
    for model in models:
        row = run_model(model, dataset, spec, test_split, val_split)
        row.update(n_users=int(train.shape[0]), n_items=int(train.shape[1]),
                   n_train=int(test_split.train.nnz), n_test_users=int(test_split.users.size),
                   n_validation_users=int(val_split.users.size))
        print(format_row(row), flush=True)
        rows.append(row)
    return rows


HEADER = (f"{'model':<19} {'recall@20':>9} {'ndcg@20':>9} {'recall@10':>9} {'ndcg@10':>9} "
          f"{'fit s':>8} {'rec s':>7} {'tune s':>8}  chosen on validation")


def format_row(row):
    """One line of a data set's table."""
    validation = row["validation"]
    chosen = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                       for k, v in validation["chosen"].items())
    if not validation["tuned"]:
        chosen = "(not tuned)"
    if validation["warning"]:
        chosen += f"  [{validation['warning']}]"
    return (f"{row['model']:<19} {row['recall@20']:>9.4f} {row['ndcg@20']:>9.4f} "
            f"{row['recall@10']:>9.4f} {row['ndcg@10']:>9.4f} {row['fit_seconds']:>8.2f} "
            f"{row['recommend_seconds']:>7.2f} {row['tuning_seconds']:>8.1f}  {chosen}")


def beats(ours, other):
    """True if ``ours`` is strictly better on recall@20 and on NDCG@20."""
    return all(ours[m] > other[m] for m in (f"recall@{K}", f"ndcg@{K}"))


def verdict(dataset, rows):
    """One line: does sparse_deep beat every other model, EASE, tuned ALS?"""
    by_model = {row["model"]: row for row in rows}
    ours = by_model.pop("sparse_deep", None)
    if ours is None:
        return f"{dataset}: sparse_deep not run."
    if not by_model:
        return f"{dataset}: sparse_deep was the only model run."
    losers = [name for name, row in by_model.items() if not beats(ours, row)]
    line = (f"{dataset}: sparse_deep beats all {len(by_model)} other models on both "
            f"recall@{K} and NDCG@{K}: {'YES' if not losers else 'NO'}")
    if losers:
        line += f" (not beaten: {', '.join(losers)})"
    for name in ("ease", "implicit-als-tuned"):
        line += f"; vs {name}: {head_to_head(ours, by_model.get(name))}"
    return line + "."


def head_to_head(ours, other):
    """'YES'/'NO' (sparse_deep beats ``other`` on both metrics) with the numbers."""
    if other is None:
        return "not run"
    numbers = ", ".join(f"{m} {ours[m]:.4f} vs {other[m]:.4f}"
                        for m in (f"recall@{K}", f"ndcg@{K}"))
    return f"{'YES' if beats(ours, other) else 'NO'} ({numbers})"


def environment():
    """Versions, machine and thread settings, for the JSON."""
    import scipy
    import sklearn
    from threadpoolctl import threadpool_info

    versions = {"python": platform.python_version(), "numpy": np.__version__,
                "scipy": scipy.__version__, "scikit-learn": sklearn.__version__}
    for module in ("implicit", "torch"):
        if importlib.util.find_spec(module) is not None:
            versions[module] = __import__(module).__version__
    return {
        **versions,
        "sparse_deep_commit": git_revision(),
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
        "thread_pools": [{key: info.get(key) for key in
                          ("internal_api", "prefix", "version", "num_threads")}
                         for info in threadpool_info()],
        "env": {var: os.environ.get(var) for var in
                ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_WAIT_POLICY",
                 "GOMP_SPINCOUNT", "NUMBA_NUM_THREADS")},
    }


def git_revision():
    """``git describe --always --dirty`` of the working tree, or None."""
    try:
        return subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True,
                              text=True, check=True, cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None,
                        help="folder holding lastfm/, ml-100k/ and yelp2018/ (default: "
                             "$SPARSE_DEEP_DATA, else ../shared/data)")
    parser.add_argument("--datasets", nargs="+", choices=list(DATASETS), default=list(DATASETS),
                        metavar="NAME", help=f"data sets (default: all of {', '.join(DATASETS)})")
    parser.add_argument("--models", nargs="+", choices=MODEL_NAMES, default=MODEL_NAMES,
                        metavar="NAME",
                        help=f"models to run (default: all of {', '.join(MODEL_NAMES)})")
    parser.add_argument("--skip", nargs="+", choices=MODEL_NAMES, default=[],
                        metavar="NAME", help="models not to run, e.g. --skip ease mult-dae-torch")
    parser.add_argument("--output", type=Path,
                        default=Path("benchmarks/results/recommender_quality.json"))
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs for SparseAutoencoderRecommender (default: its own)")
    parser.add_argument("--dae-max-epochs", type=int, default=None,
                        help="cap of the Mult-DAE epoch search (default: 100 on the small "
                             "sets, 16 on yelp2018)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    names = [name for name in args.models if name not in args.skip]
    models = build_models(names, args)
    if not models:
        print("No model to run.", file=sys.stderr)
        return 1
    env = environment()

    results, verdicts = [], []
    for dataset in args.datasets:
        spec = DATASETS[dataset]
        try:
            train, test = spec.loader(args.data_dir)
        except FileNotFoundError as err:
            print(f"{dataset}: data not found, skipped. {err}\n"
                  "Get the data folder (see /work/shared/data/README.md) and pass "
                  "--data-dir DIR or set SPARSE_DEEP_DATA=DIR.", file=sys.stderr)
            continue
        rows = evaluate(dataset, spec, train, test, models)
        results.extend(rows)
        verdicts.append(verdict(dataset, rows))

    if not results:
        print("No data set could be loaded; nothing was measured.", file=sys.stderr)
        return 1
    print()
    print("\n".join(verdicts))
    env["load_average_at_end"] = os.getloadavg()
    write_json(args.output, {
        "k": K,
        "cutoffs": list(CUTOFFS),
        "protocol": PROTOCOL,
        "models": {model.name: model.description for model in models},
        "sparse_deep_epochs": args.epochs,
        "environment": env,
        "verdicts": verdicts,
        "results": results,
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())

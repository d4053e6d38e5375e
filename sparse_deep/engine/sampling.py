"""The negatives of a sampled output layer: which items a training step scores
besides each row's targets.

A step draws ``M`` item ids with replacement from the sampler's distribution
``q`` and every row of the batch shares them. The draws come from the same
counter-based generator as dropout (:mod:`.rng`), keyed by (seed, step), on
the host: they are a pure function of those numbers, so a rerun, a resumed
fit and a fit sharded over any number of ranks all see the same negatives
(each rank keeps those in its own block of items). They are sorted, which
changes nothing in the losses (a sum over a set) and lets each rank's share
be one contiguous run of the list, in the same order for any number of ranks.

The sampled-softmax correction of negative ``j`` is ``log(M q_j)``: subtracted
from its logit, it makes the sampled sum an unbiased estimate of the sum over
every item (Bengio & Senecal, 2008; the "logQ correction" of Yi et al., 2019).
"""

import numpy as np

from ..core.rng import stream_key_host

# Stream of the negative draws; dropout and denoising use 0 .. n_layers.
NEGATIVES_STREAM = 0x5A3D_0001

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MUL1 = np.uint64(0xBF58476D1CE4E5B9)
_MUL2 = np.uint64(0x94D049BB133111EB)


def _mix64(x):
    """splitmix64's finaliser over a uint64 array (wrapping arithmetic)."""
    x = (x ^ (x >> np.uint64(30))) * _MUL1
    x = (x ^ (x >> np.uint64(27))) * _MUL2
    return x ^ (x >> np.uint64(31))


def uniform_draws(key, n):
    """``n`` uniform floats in [0, 1) from stream ``key`` (53 random bits each,
    so every item of a catalogue of any size can be drawn)."""
    counters = np.arange(n, dtype=np.uint64)
    bits = _mix64(np.uint64(key) ^ (counters * _GOLDEN))
    return (bits >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)


def item_counts(targets):
    """How many rows of the CSR ``targets`` hold each column (int64)."""
    return np.bincount(np.asarray(targets.indices), minlength=targets.shape[1]).astype(np.int64)


class NegativeSampler:
    """Draws a step's negatives for a sampled output layer.

    Parameters
    ----------
    sampling : sparse_deep.network.Sampling
        Number of negatives, sampler and exponent.
    counts : ndarray of shape (n_items,)
        Rows holding each item in the training targets (the popularity
        sampler's weights are ``(counts + 1) ** exponent``, so every item can
        be drawn). Ignored by the uniform sampler, but its length is the
        number of items.
    """

    def __init__(self, sampling, counts):
        self.n_items = len(counts)
        self.n_negatives = int(sampling.negatives)
        if self.n_negatives > self.n_items:
            raise ValueError(f"Sampling 'Negatives' is {self.n_negatives} but there are only "
                             f"{self.n_items} items; it must be between 1 and {self.n_items}")
        if sampling.sampler == "Uniform":
            self._cdf = None
            self._log_q = None
        else:
            weights = (np.asarray(counts, dtype=np.float64) + 1.0) ** float(sampling.exponent)
            total = weights.sum()
            self._cdf = np.cumsum(weights) / total
            self._cdf[-1] = 1.0
            self._log_q = np.log(weights / total)

    def draw(self, seed, step):
        """The negatives of training step ``step``: ``(ids, corrections)``, the
        item ids sorted (int64) and ``log(M q_id)`` of each (float64)."""
        u = uniform_draws(stream_key_host(seed, step, NEGATIVES_STREAM), self.n_negatives)
        m = self.n_negatives
        if self._cdf is None:
            ids = np.minimum((u * self.n_items).astype(np.int64), self.n_items - 1)
            ids.sort()
            return ids, np.full(m, np.log(m / self.n_items))
        ids = np.minimum(np.searchsorted(self._cdf, u, side="right"), self.n_items - 1)
        ids = ids.astype(np.int64)
        ids.sort()
        return ids, np.log(m) + self._log_q[ids]

"""Merging per-rank results into what one process would return."""

import numpy as np


def merge_topk(ids, scores, k):
    """The best ``k`` of every row from each rank's own top-k.

    ``ids``/``scores`` have shape ``(ranks, rows, k)``, ids already global and
    -1 for padding. Order as the top-k kernels: higher score first, then lower
    id; padding (-1) last.
    """
    ranks, rows, _ = ids.shape
    flat_ids = np.transpose(ids, (1, 0, 2)).reshape(rows, -1)
    flat_scores = np.transpose(scores, (1, 0, 2)).reshape(rows, -1)
    padding = flat_ids < 0
    # lexsort sorts by the last key first: padding, then -score, then id.
    sort_ids = np.where(padding, np.iinfo(np.int64).max, flat_ids)
    sort_scores = np.where(padding, np.inf, -flat_scores.astype(np.float64))
    order = np.lexsort((sort_ids, sort_scores, padding), axis=-1)[:, :k]
    return (np.take_along_axis(flat_ids, order, axis=1),
            np.take_along_axis(flat_scores, order, axis=1))



def merge_rank_topk(comm, ids, scores, first, k):
    """Every rank's top-k of its own output units (local ids, this rank's units
    starting at ``first``) -> the top-k of all units, the same on every rank."""
    global_ids = np.where(ids >= 0, ids + first, -1)
    return merge_topk(comm.allgather(global_ids), comm.allgather(scores), k)

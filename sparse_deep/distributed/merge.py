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


def gather_model(model, comm):
    """The whole model, on every rank, from each rank's shard (an unsharded copy).

    For saving and for checks; the result holds the whole weights, so it is
    as large as an unsharded model.
    """
    from ..engine.model import Model

    if model.shards is None:
        return model
    whole = Model(model.spec, model.dtype)
    for i, shard in enumerate(model.shards):
        parts = comm.allgather_objects(np.ascontiguousarray(model.weights[i]))
        if shard.mode == "rows":
            whole.weights[i][...] = np.vstack(parts)
        elif shard.mode == "columns":
            whole.weights[i][...] = np.hstack(parts)
        else:
            whole.weights[i][...] = model.weights[i]
    out = model.output.index
    for t, bias in model.biases.items():
        whole.biases[t][...] = np.concatenate(comm.allgather_objects(bias)) if t == out else bias
    return whole

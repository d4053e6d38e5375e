"""Moving between a whole model and its per-rank shards.

``gather_*`` assemble the whole model (and optimizer state) on every rank from
the shards, for saving; ``scatter_*`` cut a rank's shard out of a whole model
(and state), for loading a saved model onto R ranks.
"""

import numpy as np

from ..engine.layers import split_layers
from ..engine.model import Model
from ..engine.optim import OptimizerState
from .partition import COLUMNS, ROWS, shard_weights


def _join(parts, mode):
    if mode == ROWS:
        return np.vstack(parts)
    if mode == COLUMNS:
        return np.hstack(parts)
    return parts[0]


def _gather_array(local, mode, comm):
    if mode not in (ROWS, COLUMNS):
        return local
    return _join(comm.allgather_objects(np.ascontiguousarray(local)), mode)


def _modes(model):
    """Split mode of each parameter in ``model.parameters()`` order (weights, then biases)."""
    modes = [shard.mode for shard in model.shards]
    modes += [COLUMNS if t == model.output.index else "replicated" for t in model.biases]
    return modes


def gather_model(model, comm):
    """The whole model, on every rank, from each rank's shard (an unsharded copy).

    For saving and for checks; the result is as large as an unsharded model.
    """
    if model.shards is None:
        return model
    whole = Model(model.spec, model.dtype)
    modes = _modes(model)
    for i, w in enumerate(model.weights):
        whole.weights[i][...] = _gather_array(w, modes[i], comm)
    for j, (t, bias) in enumerate(model.biases.items()):
        mode = modes[len(model.weights) + j]
        whole.biases[t][...] = _gather_array(bias[None], mode, comm)[0]
    return whole


def gather_optimizer_state(state, model, whole_model, comm):
    """The whole optimizer state for ``whole_model`` from each rank's ``state``."""
    if model.shards is None:
        return state
    whole = OptimizerState(state.config, whole_model.parameters())
    for mode, local_slots, whole_slots in zip(_modes(model), state.states, whole.states):
        # Slots past the optimizer's count are one-row placeholders: they stay zero.
        for local, target in list(zip(local_slots, whole_slots))[:state.uses_state]:
            target[...] = _gather_array(np.asarray(local), mode, comm)
    return whole


def scatter_model(whole, comm):
    """This rank's shard of the whole ``whole`` model (``whole`` itself on one rank)."""
    if comm.size == 1:
        return whole
    shards = shard_weights(whole.links, whole.full_shapes, split_layers(whole.layers),
                           comm.size, comm.rank, whole.item_major)
    local = Model(whole.spec, whole.dtype, shards)
    for i, shard in enumerate(shards):
        local.weights[i][...] = shard.take(whole.weights[i])
    start, stop = local.output_range
    for t, bias in whole.biases.items():
        local.biases[t][...] = bias[start:stop] if t == whole.output.index else bias
    return local


def scatter_optimizer_state(whole_state, whole, local, comm):
    """This rank's part of ``whole_state`` (the state of ``whole``) for ``local``."""
    if comm.size == 1:
        return whole_state
    state = OptimizerState(whole_state.config, local.parameters())
    ranges = [(shard.mode, shard.start, shard.stop) for shard in local.shards]
    ranges += [(COLUMNS, *local.output_range) if t == local.output.index
               else ("replicated", 0, 0) for t in local.biases]
    for (mode, start, stop), whole_slots, local_slots in zip(
            ranges, whole_state.states, state.states):
        for source, target in list(zip(whole_slots, local_slots))[:state.uses_state]:
            if mode == ROWS:
                target[...] = source[start:stop]
            elif mode == COLUMNS:
                target[...] = source[:, start:stop]
            else:
                target[...] = source
    return state

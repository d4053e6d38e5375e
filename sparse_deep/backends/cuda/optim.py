"""Optimizer updates and the weight-norm cap on the GPU.

Each registered optimizer (:mod:`sparse_deep.core.optimizers`) gets one
kernel, compiled the first time a fit uses it, with the optimizer's ``step``
as a device function: the definition the CPU's loops compile too. One thread
per (row, unit) of the rows being updated, of up to GROUPS parameters in one
launch (a step's weights and biases).

The input layer's dense update (every row steps, those of features absent
from the batch with a zero gradient) reads each row's gradient through a
:class:`SlotMap`, as the CPU's does, so no full-size gradient is made; the
map is stamped with the step (by the input gradient's launch, or by
:func:`mark_slots`), so it needs no clearing afterwards.
"""

import dataclasses
import math

import numpy as np
from numba import cuda, float64

from ...core.codes import H_L1, H_L2
from ...core.optimizers import coefficients as coefficients_of
from ...core.optimizers import get_optimizer
from ...core.registry import with_globals
from . import launch, prepared
from ._device import regularised_gradient


# Parameters one update launch steps together; a step of more runs several.
GROUPS = 4
# A slot map's entry: the stamp of the step that wrote it in the high bits,
# the row's place among that step's row gradients in the low SLOT_BITS.
SLOT_BITS = 32
_SLOT_MASK = (1 << SLOT_BITS) - 1
# Stamps stay below this (the map is cleared and stamping starts again).
_LAST_STAMP = (1 << (63 - SLOT_BITS)) - 1


@dataclasses.dataclass
class SlotMap:
    """For a parameter updated whole: each row's place among a step's row
    gradients, ``stamp << SLOT_BITS | place``, written for the step stamped
    ``stamp`` by :func:`mark_slots` or, ``stamped``, already by the launch
    that computed the input gradient (``sparse.sparse_weight_gradient``);
    any other entry (-1 at first) means no gradient in this step."""

    slots: object  # int64, one per row of the parameter
    stamp: int = 0
    stamped: bool = False


def slot_map(n_rows, stream):
    slots = cuda.device_array(n_rows, dtype=np.int64, stream=stream)
    _clear_slots[launch.blocks_for(n_rows), launch.THREADS, stream](slots)
    return SlotMap(slots)


@prepared.jit
def _clear_slots(slots):
    for r in range(cuda.grid(1), slots.shape[0], cuda.gridsize(1)):
        slots[r] = -1


@prepared.jit
def _mark_slots(slots, rows, n_rows, stamp):
    for r in range(cuda.grid(1), n_rows, cuda.gridsize(1)):
        slots[rows[r]] = (stamp << SLOT_BITS) | r


def next_stamp(slot_map, stream):
    """The stamp of a new step in ``slot_map`` (cleared when stamps run out)."""
    if slot_map.stamp == _LAST_STAMP:
        _clear_slots[launch.blocks_for(slot_map.slots.shape[0]), launch.THREADS, stream](
            slot_map.slots)
        slot_map.stamp = 0
    slot_map.stamp += 1
    return slot_map.stamp


def mark_slots(slot_map, rows, n_rows, stream):
    """Stamp a new step into ``slot_map``: row ``rows[r]`` takes gradient row
    ``r`` for ``r < n_rows``. Returns the step's stamp."""
    stamp = next_stamp(slot_map, stream)
    if n_rows:
        _mark_slots[launch.blocks_for(n_rows), launch.THREADS, stream](
            slot_map.slots, rows, int(n_rows), stamp)
    return stamp


def _update_body(params, grads, rows, n_rows, states1, states2, coefficients, slots, stamps):
    """The update kernel of the optimizer whose ``step`` and ``n_states``
    :func:`_kernel` binds as globals, over GROUPS parameters at once: thread
    ``idx`` finds its parameter g, then its (row, unit). Each parameter's
    coefficients are a tuple of scalars (an array would be one more copy to
    the device per call). A parameter with a stamp (not -1) is updated
    whole, each row's gradient row read through its slot map (zero where
    the map holds no entry of that stamp)."""
    total = 0
    for g in range(len(params)):
        total += n_rows[g] * params[g].shape[1]
    for idx in range(cuda.grid(1), total, cuda.gridsize(1)):
        g = 0
        start = 0
        while idx >= start + n_rows[g] * params[g].shape[1]:
            start += n_rows[g] * params[g].shape[1]
            g += 1
        param, grad, s1, s2, k = params[g], grads[g], states1[g], states2[g], coefficients[g]
        n = param.shape[1]
        r = (idx - start) // n
        j = idx - start - r * n
        row = rows[g][r]
        if stamps[g] < 0:
            gradient = grad[r, j]
        else:
            slot = slots[g][row]
            # A float64 zero makes ``gradient`` float64 in both branches:
            # regularised_gradient's result is float64 anyway (its
            # coefficients are), so a float32 gradient's value is unchanged.
            gradient = 0.0
            if slot >> SLOT_BITS == stamps[g]:
                gradient = grad[slot & _SLOT_MASK, j]
        w = param[row, j]
        grad_value = regularised_gradient(gradient, w, k[H_L2], k[H_L1])
        a = s1[row, j] if n_states >= 1 else 0.0
        b = s2[row, j] if n_states >= 2 else 0.0
        w, a, b = step(w, grad_value, a, b, k)
        param[row, j] = w
        if n_states >= 1:
            s1[row, j] = a
        if n_states >= 2:
            s2[row, j] = b


_KERNELS = {}  # (optimizer name, fingerprint) -> its kernel


def _kernel(code):
    optimizer = get_optimizer(code)
    key = optimizer.name, optimizer.fingerprint  # computed once per registration
    kernel = _KERNELS.get(key)
    if kernel is None:
        kernel = _KERNELS[key] = prepared.jit(with_globals(
            _update_body, n_states=optimizer.n_states, step=cuda.jit(device=True)(optimizer.step),
            SLOT_BITS=SLOT_BITS, _SLOT_MASK=_SLOT_MASK))
    return kernel


def update_params(steps, code, stream, no_slots):
    """One optimizer step of each :class:`~sparse_deep.backends.base.ParameterStep`
    in ``steps`` (the CPU kernel's contract: ``grad[r]`` belongs to row
    ``rows[r]``; states an optimizer does not keep may be one-row dummies
    and are never touched; a step with ``all_rows`` updates every row
    through its scratch, a :class:`SlotMap`), GROUPS parameters a launch.
    Parameters whose arrays differ in type (dtype, layout) go in separate
    launches. ``no_slots`` is a one-entry int64 device array, the slot map
    of the parameters that have none."""
    by_type = {}
    for s in steps:
        if s.all_rows is not None:
            if s.scratch.stamped:  # by the input gradient's launch, for this step
                stamp, s.scratch.stamped = s.scratch.stamp, False
            else:
                stamp = mark_slots(s.scratch, s.rows, s.n_rows, stream)
            s = s._replace(rows=s.all_rows, n_rows=s.param.shape[0])
            slots = s.scratch.slots
        else:
            stamp, slots = -1, no_slots
        if s.n_rows:
            key = tuple((a.dtype, a.ndim, a.is_c_contiguous())
                        for a in (s.param, s.grad, s.rows, s.state1, s.state2))
            by_type.setdefault(key, []).append((s, slots, stamp))
    for group in by_type.values():
        for first in range(0, len(group), GROUPS):
            _launch(group[first:first + GROUPS], code, stream)


def _launch(entries, code, stream):
    pad = entries[0][0]._replace(n_rows=0), entries[0][1], -1  # fills unused slots; steps nothing
    entries = entries + [pad] * (GROUPS - len(entries))
    steps = [s for s, _, _ in entries]
    total = sum(s.n_rows * s.param.shape[1] for s in steps)
    blocks, threads = launch.elementwise(total)
    fields = list(zip(*steps))
    coefficients = tuple(tuple(float(x) for x in coefficients_of(s.hyper, "float64"))
                         for s in steps)
    _kernel(code)[blocks, threads, stream](
        tuple(fields[0]), tuple(fields[1]), tuple(fields[2]),
        tuple(int(n) for n in fields[3]), tuple(fields[4]), tuple(fields[5]), coefficients,
        tuple(slots for _, slots, _ in entries), tuple(int(stamp) for _, _, stamp in entries))


@prepared.jit
def _cap_column_norms(weights, max_norm):
    n_in = weights.shape[0]
    for j in range(cuda.grid(1), weights.shape[1], cuda.gridsize(1)):
        s = float64(0.0)
        for i in range(n_in):
            s += weights[i, j] * weights[i, j]
        norm = math.sqrt(s)
        if norm > max_norm:
            scale = max_norm / norm
            for i in range(n_in):
                weights[i, j] = float64(weights[i, j]) * scale


def cap_column_norms(weights, max_norm, stream):
    """DSSTNE's WeightNorm: one thread per output unit rescales its column."""
    blocks, threads = launch.elementwise(weights.shape[1])
    _cap_column_norms[blocks, threads, stream](weights, float(max_norm))

"""Top-k selection per row on the GPU, for any k up to the number of columns.

One block per row. The k-th best candidate is found by radix selection on
order-preserving integer keys: first on the score's bits (8 bits per pass,
a 256-bin histogram in shared memory), then, if the k-th score is shared by
more candidates than there are places left, on the column id among the tied
ones (lower id wins, as on the CPU). The k winners are then written to the
output row and put in order there by a bitonic sort. Ranking is by (score
descending, id ascending), exactly the CPU's order; excluded columns are
skipped and rows with fewer than k candidates are padded with id -1 and score
-inf. Integer counts only: the result is the same on every run.
"""

import math

import numpy as np
from numba import cuda, int32, int64, uint64

from . import launch, prepared
from ._device import block_sum, first_at_least

_BYTE = uint64(255)


@cuda.jit(device=True)
def _excluded(ex_indices, lo, hi, j):
    """Is ``j`` among the sorted ``ex_indices[lo:hi]``?"""
    at = first_at_least(ex_indices, lo, hi, j)
    return at < hi and ex_indices[at] == j


@cuda.jit(device=True)
def _better(s1, i1, s2, i2):
    """Is (s1, i1) ranked above (s2, i2)? Higher score, then lower id."""
    return s1 > s2 or (s1 == s2 and i1 < i2)


@cuda.jit(device=True)
def _compare_swap(ids, scores, r, i, j):
    if _better(scores[r, j], ids[r, j], scores[r, i], ids[r, i]):
        s = scores[r, i]
        scores[r, i] = scores[r, j]
        scores[r, j] = s
        t = ids[r, i]
        ids[r, i] = ids[r, j]
        ids[r, j] = t


@cuda.jit(device=True)
def _bitonic_sort(ids, scores, r, length, tid, threads):
    """Sort ``[0, length)`` of row ``r`` best first, by the whole block.

    The variant whose comparators all point the same way (each merge starts by
    comparing mirrored pairs), so a length that is not a power of two behaves
    as if padded with worst-ranked entries: pairs reaching past it are skipped.
    """
    padded = 1
    while padded < length:
        padded *= 2
    size = 2
    while size <= padded:
        half = size // 2
        for t in range(tid, padded // 2, threads):
            block = t // half
            offset = t - block * half
            i = block * size + offset
            j = block * size + size - 1 - offset
            if j < length:
                _compare_swap(ids, scores, r, i, j)
        cuda.syncthreads()
        stride = half // 2
        while stride > 0:
            for t in range(tid, padded // 2, threads):
                block = t // stride
                i = block * 2 * stride + (t - block * stride)
                j = i + stride
                if j < length:
                    _compare_swap(ids, scores, r, i, j)
            cuda.syncthreads()
            stride //= 2
        size *= 2


def _make_topk(key_bits, threads):
    sign = uint64(1 << (key_bits - 1))
    full = uint64((1 << key_bits) - 1)
    id_full = uint64(0xFFFFFFFF)
    score_passes = key_bits // 8

    @cuda.jit(device=True)
    def score_key(u):
        """Unsigned key ordered as the float whose bits are ``u`` (-0 as +0)."""
        u = uint64(u)
        if u == sign:
            u = uint64(0)
        if u & sign:
            return ~u & full
        return u | sign

    @prepared.jit
    def topk(scores, bits, k, ex_indptr, ex_indices, out_ids, out_scores):
        hist = cuda.shared.array(256, int32)
        # prefix_a, mask_a, prefix_b, mask_b, tie phase?, done?, remaining
        state = cuda.shared.array(8, uint64)
        buf = cuda.shared.array(threads, int64)
        counter = cuda.shared.array(1, int32)
        tid = cuda.threadIdx.x
        n = scores.shape[1]
        for r in range(cuda.blockIdx.x, scores.shape[0], cuda.gridDim.x):
            lo, hi = ex_indptr[r], ex_indptr[r + 1]
            count = 0
            for j in range(tid, n, threads):
                if not _excluded(ex_indices, lo, hi, j):
                    count += 1
            m = block_sum(buf, count, tid, threads)
            kk = k if k < m else m
            if tid == 0:
                for q in range(8):
                    state[q] = uint64(0)
                state[6] = uint64(kk)
                state[5] = uint64(1) if kk == m or kk == 0 else uint64(0)
                counter[0] = 0
            cuda.syncthreads()
            # Radix selection: narrow the k-th key byte by byte, scores first.
            for level in range(score_passes + 4):
                if state[5] != uint64(0):
                    break
                tie_phase = level >= score_passes
                if tie_phase:
                    shift = uint64(32 - 8 * (level - score_passes + 1))
                else:
                    shift = uint64(key_bits - 8 * (level + 1))
                for d in range(tid, 256, threads):
                    hist[d] = 0
                cuda.syncthreads()
                prefix_a, mask_a = state[0], state[1]
                prefix_b, mask_b = state[2], state[3]
                for j in range(tid, n, threads):
                    if _excluded(ex_indices, lo, hi, j):
                        continue
                    ka = score_key(bits[r, j])
                    if tie_phase:
                        kb = id_full - uint64(j)
                        if ka == prefix_a and (kb & mask_b) == prefix_b:
                            cuda.atomic.add(hist, int32((kb >> shift) & _BYTE), 1)
                    elif (ka & mask_a) == prefix_a:
                        cuda.atomic.add(hist, int32((ka >> shift) & _BYTE), 1)
                cuda.syncthreads()
                if tid == 0:
                    remaining = state[6]
                    above = uint64(0)
                    digit = 255
                    while digit > 0 and above + uint64(hist[digit]) < remaining:
                        above += uint64(hist[digit])
                        digit -= 1
                    in_bin = uint64(hist[digit])
                    remaining -= above
                    slot = 2 if tie_phase else 0
                    state[slot] = state[slot] | (uint64(digit) << shift)
                    state[slot + 1] = state[slot + 1] | (_BYTE << shift)
                    state[4] = uint64(1) if tie_phase else uint64(0)
                    state[6] = remaining
                    if in_bin == remaining:
                        state[5] = uint64(1)
                cuda.syncthreads()
            # The winners, in any order, into the output row.
            prefix_a, mask_a = state[0], state[1]
            prefix_b, mask_b = state[2], state[3]
            tie_phase = state[4] != uint64(0)
            if kk > 0:
                for j in range(tid, n, threads):
                    if _excluded(ex_indices, lo, hi, j):
                        continue
                    if kk < m:
                        ka = score_key(bits[r, j])
                        if tie_phase:
                            kb = id_full - uint64(j)
                            chosen = ka > prefix_a or (ka == prefix_a
                                                       and (kb & mask_b) >= prefix_b)
                        else:
                            chosen = (ka & mask_a) >= prefix_a
                        if not chosen:
                            continue
                    q = cuda.atomic.add(counter, 0, 1)
                    out_ids[r, q] = j
                    out_scores[r, q] = scores[r, j]
            cuda.syncthreads()
            _bitonic_sort(out_ids, out_scores, r, kk, tid, threads)
            for q in range(kk + tid, k, threads):
                out_ids[r, q] = -1
                out_scores[r, q] = -math.inf
            cuda.syncthreads()

    return topk


_KERNELS = {}


def topk_rows(scores, k, ex_indptr, ex_indices, out_ids, out_scores, stream):
    """Best ``k`` columns of every row of ``scores``, skipping each row's
    excluded columns (a sorted CSR); the CPU kernel's contract and order."""
    if scores.shape[0] == 0:
        return
    blocks, threads = launch.rows(scores.shape[0])
    key_bits = scores.dtype.itemsize * 8
    kernel = _KERNELS.get((key_bits, threads))
    if kernel is None:
        kernel = _KERNELS[key_bits, threads] = _make_topk(key_bits, threads)
    bits = scores.view(np.uint32 if key_bits == 32 else np.uint64)
    kernel[blocks, threads, stream](scores, bits, int(k), ex_indptr, ex_indices, out_ids,
                                    out_scores)

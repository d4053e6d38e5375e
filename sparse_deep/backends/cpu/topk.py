"""Top-k selection per row, for any k up to the number of columns.

A bounded min-heap per row costs O(n log k) and needs no scratch copy of the
row. Ties are broken by the lower column id, so results are deterministic.
Columns listed in an exclusion CSR (items already seen) are skipped; rows with
fewer than k candidates are padded with id -1 and score -inf.
"""

import numpy as np
from numba import njit, prange


@njit(inline="always")
def _worse(s1, i1, s2, i2):
    """Is candidate (s1, i1) ranked below (s2, i2)?"""
    return s1 < s2 or (s1 == s2 and i1 > i2)


@njit(cache=True)
def _sift_down(hs, hi, start, size):
    pos = start
    while True:
        child = 2 * pos + 1
        if child >= size:
            return
        if child + 1 < size and _worse(hs[child + 1], hi[child + 1], hs[child], hi[child]):
            child += 1
        if _worse(hs[child], hi[child], hs[pos], hi[pos]):
            hs[pos], hs[child] = hs[child], hs[pos]
            hi[pos], hi[child] = hi[child], hi[pos]
            pos = child
        else:
            return


@njit(cache=True)
def _row_topk(scores, k, ex_indices, ex_start, ex_end, out_ids, out_scores):
    hs = out_scores  # the output row doubles as the heap
    hi = out_ids
    size = 0
    p = ex_start
    for j in range(scores.shape[0]):
        while p < ex_end and ex_indices[p] < j:
            p += 1
        if p < ex_end and ex_indices[p] == j:
            continue
        s = scores[j]
        if size < k:
            # Sift the new candidate up from the end of the heap.
            pos = size
            hs[pos] = s
            hi[pos] = j
            size += 1
            while pos > 0:
                parent = (pos - 1) // 2
                if _worse(hs[pos], hi[pos], hs[parent], hi[parent]):
                    hs[pos], hs[parent] = hs[parent], hs[pos]
                    hi[pos], hi[parent] = hi[parent], hi[pos]
                    pos = parent
                else:
                    break
        elif _worse(hs[0], hi[0], s, j):
            hs[0] = s
            hi[0] = j
            _sift_down(hs, hi, 0, size)
    # Heap-sort in place: repeatedly move the worst to the end -> best first.
    for end in range(size - 1, 0, -1):
        hs[0], hs[end] = hs[end], hs[0]
        hi[0], hi[end] = hi[end], hi[0]
        _sift_down(hs, hi, 0, end)
    for q in range(size, k):
        hs[q] = -np.inf
        hi[q] = -1


@njit(parallel=True, cache=True)
def topk_rows(scores, k, ex_indptr, ex_indices, out_ids, out_scores):
    """Best ``k`` columns of every row of ``scores``, excluding a CSR's columns.

    ``ex_indptr``/``ex_indices`` give the excluded columns of each row (sorted);
    pass an all-zero ``ex_indptr`` to exclude nothing.
    """
    for i in prange(scores.shape[0]):
        _row_topk(
            scores[i], k, ex_indices, ex_indptr[i], ex_indptr[i + 1], out_ids[i], out_scores[i]
        )

"""In-place GEMM on C-ordered arrays through scipy's BLAS.

numpy's ``matmul(out=...)`` cannot accumulate (``C += A @ B``), which the
forward pass (bias already in C) and the backward pass (a layer feeding several
others) both need. BLAS can, but wants Fortran order; a C-ordered C is the
Fortran-ordered C^T, so we ask BLAS for ``C^T = op(B)^T op(A)^T`` instead.
"""

import numpy as np
from scipy.linalg import blas as _blas

_GEMM = {np.dtype(np.float32): _blas.sgemm, np.dtype(np.float64): _blas.dgemm}


def gemm(a, b, c, *, alpha=1.0, beta=0.0, trans_a=False, trans_b=False):
    """``c = alpha * op(a) @ op(b) + beta * c`` in place; all arrays C-contiguous.

    ``op(x)`` is ``x.T`` when the matching ``trans_*`` flag is set.
    """
    gemm_f = _GEMM[c.dtype]
    # In Fortran terms: c.T = alpha * op(b).T @ op(a).T + beta * c.T, where a
    # C-ordered x is the Fortran-ordered x.T, so "transposing" flips the flags.
    result = gemm_f(
        alpha, b.T, a.T, beta=beta, c=c.T, trans_a=int(trans_b), trans_b=int(trans_a),
        overwrite_c=1,
    )
    if not np.shares_memory(result, c):  # BLAS had to copy: write back.
        c[...] = result.T
    return c

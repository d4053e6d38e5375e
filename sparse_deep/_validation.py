"""Input checks shared by the estimators: clear errors before any work starts."""

import numbers
import os

import numpy as np
import scipy.sparse as sp
from numba import njit
from sklearn.utils.validation import check_array

FLOAT_DTYPES = (np.float32, np.float64)

# Assumed where the operating system does not report its physical memory
# (os.sysconf is POSIX only): a size most machines that train networks have.
FALLBACK_MEMORY_BYTES = 16 * 2**30


def physical_memory():
    """Bytes of physical memory of this machine (``FALLBACK_MEMORY_BYTES`` when
    the operating system does not say).

    Returns
    -------
    int
    """
    try:
        pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return FALLBACK_MEMORY_BYTES
    if pages <= 0 or page_size <= 0:
        return FALLBACK_MEMORY_BYTES
    return int(pages) * int(page_size)


def format_bytes(n_bytes):
    """``n_bytes`` for a message, in binary units: "512 B", "3.64 TiB"."""
    if n_bytes < 1024:
        return f"{int(n_bytes)} B"
    value = float(n_bytes)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024:
            break
    else:
        unit, value = "PiB", value / 1024
    return f"{value:.3g} {unit}"


def check_memory_budget(n_bytes, message):
    """Refuse, before allocating, work that needs more than this machine's memory.

    Files state the sizes of their arrays; a damaged or hostile file can claim
    any size, and allocating first would exhaust the machine (or fail with a
    numpy error that names no file). Readers compute what the claimed sizes
    need and call this before reading anything.

    Parameters
    ----------
    n_bytes : int
        Bytes needed.
    message : str
        The start of the error, with ``{needed}`` where the size goes, e.g.
        ``"model.nc: the network needs {needed} for its weights"``; the
        machine's memory is appended.

    Raises
    ------
    ValueError
        If ``n_bytes`` exceeds :func:`physical_memory`.
    """
    budget = physical_memory()
    if n_bytes > budget:
        # replace, not format: a path may hold braces
        raise ValueError(message.replace("{needed}", format_bytes(n_bytes))
                         + f"; this machine has {format_bytes(budget)} of memory")


def as_interactions(X, name="X", dtype=np.float32, checked=False):
    """Return ``X`` as canonical CSR (sorted, summed duplicates) of ``dtype``.

    Accepts any scipy.sparse matrix/array or dense array-like. Raises
    ``TypeError`` for non-numeric data and ``ValueError`` for NaN/inf, negative
    values, or a matrix that is not 2-D or has no rows or columns.
    ``checked``: ``X`` comes from scikit-learn's ``validate_data`` with these
    settings (CSR of ``dtype``, finite), so its checks are not run twice.
    """
    if not checked:
        X = check_array(
            X, accept_sparse="csr", dtype=dtype, ensure_all_finite=True, input_name=name,
            ensure_min_samples=1, ensure_min_features=1,
        )
    # A csr_matrix is kept as it is, so that the canonical-format flag scipy
    # caches on it spares the next call (partial_fit) a scan of the indices.
    X = X if type(X) is sp.csr_matrix else sp.csr_matrix(X)
    check_non_negative(X, name)
    if not X.has_canonical_format:
        X = X.copy()
        X.sum_duplicates()  # also sorts indices, which the kernels rely on
    return X


def check_non_negative(X, name):
    data = X.data if sp.issparse(X) else np.asarray(X)
    if data.size and data.min() < 0:
        raise ValueError(
            f"Negative values in data passed to {name} (smallest {data.min():g}); interaction "
            "data must "
            "be non-negative (counts, ratings or 1 for an interaction)"
        )


def check_width(X, expected, name, what):
    if X.shape[1] != expected:
        raise ValueError(
            f"{name} has {X.shape[1]} columns, but this model was fitted with {expected} {what}"
        )


def check_k(k, n_items, name="k"):
    """``k`` must be an integer in [1, n_items]."""
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, numbers.Integral):
        raise TypeError(f"{name} must be an integer; got {k!r}")
    if not 1 <= k <= n_items:
        raise ValueError(f"{name} must be between 1 and the number of items ({n_items}); got {k}")
    return int(k)


def l2_normalize_rows(X):
    """Rows of the CSR matrix ``X`` scaled to unit L2 norm (empty rows stay
    empty); the pattern is shared, the values are new."""
    data = _row_unit_data(X.indptr, X.data)
    return sp.csr_matrix((data, X.indices, X.indptr), shape=X.shape, copy=False)


@njit(cache=True, fastmath={"reassoc", "nsz", "contract"})
def _row_unit_data(indptr, data):
    """``data`` with each row divided by its L2 norm (summed in float64), in
    ``data``'s dtype. scipy's ``X.multiply(X).sum(axis=1)``, used before, took
    5-10x longer, and each ``partial_fit`` call normalises its data again.
    (Reassociation lets the sum vectorise; a compiled kernel still gives the
    same result on every run.)"""
    out = np.empty_like(data)
    for r in range(indptr.shape[0] - 1):
        start, end = indptr[r], indptr[r + 1]
        s = 0.0
        for p in range(start, end):
            s += float(data[p]) * float(data[p])
        scale = 1.0 / np.sqrt(s) if s > 0.0 else 1.0  # a row of stored zeros stays so
        for p in range(start, end):
            out[p] = data[p] * scale
    return out

"""The CSR blocks a batch is loaded into, as the backends' kernels read them."""

from dataclasses import dataclass

import numpy as np

from ..network.spec import MAX_UNITS


@dataclass
class CSRBlock:
    """A CSR matrix as three arrays (indptr int64, indices int32, data float)."""

    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray

    @classmethod
    def from_scipy(cls, matrix, backend):
        if matrix.shape[1] > MAX_UNITS:  # the int32 cast below would wrap around
            raise ValueError(f"a sparse matrix of {matrix.shape[1]:,} columns cannot be "
                             f"indexed with 32-bit integers (at most {MAX_UNITS:,})")
        return cls(
            backend.to_device(np.ascontiguousarray(matrix.indptr, dtype=np.int64)),
            backend.to_device(np.ascontiguousarray(matrix.indices, dtype=np.int32)),
            backend.to_device(np.ascontiguousarray(matrix.data)),
        )

    @classmethod
    def empty(cls, n_rows, max_nnz, dtype, backend):
        return cls(
            backend.zeros(n_rows + 1, np.int64),
            backend.zeros(max(max_nnz, 1), np.int32),
            backend.zeros(max(max_nnz, 1), dtype),
        )


@dataclass
class TransposedBlock:
    """A batch grouped by feature, for the input layer's sparse weight gradient."""

    slot: np.ndarray  # n_features scratch on the host, -1 between calls
    features: np.ndarray  # present feature ids, in order of first appearance
    indptr: np.ndarray
    rows: np.ndarray
    data: np.ndarray

    @classmethod
    def empty(cls, n_features, max_nnz, dtype, backend):
        # Every backend transposes on the host (a GPU's batch is prepared there).
        slot = np.full(n_features, -1, dtype=np.int32)
        size = max(max_nnz, 1)
        return cls(
            slot,
            backend.zeros(size, np.int64),
            backend.zeros(size + 1, np.int64),
            backend.zeros(size, np.int32),
            backend.zeros(size, dtype),
        )

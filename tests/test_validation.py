"""Input preparation shared by the estimators (sparse_deep._validation)."""

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.preprocessing import normalize

from sparse_deep._validation import l2_normalize_rows


@pytest.mark.parametrize("dtype,rtol", [(np.float32, 1e-6), (np.float64, 1e-14)])
def test_l2_normalize_rows_matches_sklearn_and_keeps_the_pattern(dtype, rtol):
    rng = np.random.default_rng(0)
    X = sp.random(40, 30, density=0.2, format="csr", dtype=np.float64, random_state=rng)
    X.data = rng.uniform(-3, 5, X.nnz)
    X = X.astype(dtype)
    X = X.tolil()
    X[3] = 0  # an empty row
    X = X.tocsr()
    X.eliminate_zeros()
    # A row whose only entries are stored zeros: its norm is 0 and it stays 0.
    X = sp.csr_matrix((np.r_[X.data, 0.0, 0.0].astype(dtype),
                       np.r_[X.indices, 1, 4], np.r_[X.indptr, X.nnz + 2]), shape=(41, 30))
    before = X.copy()

    got = l2_normalize_rows(X)

    assert got.dtype == dtype
    np.testing.assert_array_equal(got.indptr, X.indptr)
    np.testing.assert_array_equal(got.indices, X.indices)
    want = normalize(X.astype(np.float64), norm="l2")
    np.testing.assert_allclose(got.toarray(), want.toarray(), rtol=rtol, atol=0)
    assert got.getrow(3).nnz == 0
    assert not got.getrow(40).toarray().any()
    # the input is left as it was
    np.testing.assert_array_equal(X.data, before.data)


def test_shared_parameter_docs_are_filled_in_every_estimator():
    from sparse_deep import (SparseAutoencoderRecommender, SparseMLPClassifier,
                             SparseMLPRegressor)
    from sparse_deep.estimators._docs import SHARED, share_docs

    for cls in (SparseAutoencoderRecommender, SparseMLPClassifier, SparseMLPRegressor):
        assert "%(" not in cls.__doc__
        for name in SHARED:
            assert f"\n    {name} : " in cls.__doc__, (cls.__name__, name)

    class Undocumented:
        """Text.

        %(no_such_entry)s
        """

    with pytest.raises(KeyError, match="no_such_entry"):
        share_docs(Undocumented)

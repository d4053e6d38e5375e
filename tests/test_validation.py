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


@pytest.mark.parametrize("params, message", [
    (dict(learning_rate=0), r"learning_rate must be a number in \(0.0, inf\); got 0"),
    (dict(momentum=True), r"momentum must be a number in \[0.0, 1.0\); got True"),
    (dict(batch_size=2.5), "batch_size must be a positive integer; got 2.5"),
    (dict(device="tpu"), "device must be one of 'cpu', 'cuda', 'auto'; got 'tpu'"),
    (dict(distributed="on"), "distributed must be one of 'auto', 'off'; got 'on'"),
    (dict(hidden_layer_sizes="big"), "hidden_layer_sizes must be a positive integer or a sequence"),
    (dict(tol=float("nan")), r"tol must be a number in \[0.0, inf\); got nan"),
])
def test_every_estimator_checks_its_parameters_declaratively_before_any_work(params, message):
    """One rule table (estimators/_params.py), one message style, checked at
    the start of fit and partial_fit, before the data are looked at (here
    they are not even valid)."""
    from sparse_deep import (SparseAutoencoderRecommender, SparseMLPClassifier,
                             SparseMLPRegressor)

    for est in (SparseAutoencoderRecommender(**params), SparseMLPClassifier(**params),
                SparseMLPRegressor(**params)):
        for call in (lambda: est.fit("not data", "not targets"),
                     lambda: est.partial_fit("not data", "not targets")):
            with pytest.raises(ValueError, match=message):
                call()
        assert not hasattr(est, "model_")

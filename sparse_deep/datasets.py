"""Loaders for the public data sets used by examples and benchmarks.

The files are not shipped with the package. Each loader looks for them in a
data folder that holds ``lastfm/``, ``ml-100k/``, ``yelp2018/``, ``bibtex/``
and ``a9a/``; see :func:`load_lastfm` for how that folder is found.
"""

import numbers
import os
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from sklearn.datasets import load_svmlight_file
from sklearn.utils import check_random_state

__all__ = [
    "per_user_split",
    "last_items_split",
    "load_a9a",
    "load_bibtex",
    "load_lastfm",
    "load_movielens_100k",
    "load_yelp2018",
    "dsstne_movielens_sample",
]

DATA_ENV_VAR = "SPARSE_DEEP_DATA"

_MOVIELENS_USER = "user_id:token"
_MOVIELENS_ITEM = "item_id:token"


# ---------------------------------------------------------------------------
# Splitting
# ---------------------------------------------------------------------------


def per_user_split(X, test_fraction=0.2, random_state=None):
    """Hold out a random share of each user's interactions.

    For every user (row) with ``n`` stored non-zero entries,
    ``floor(test_fraction * n + 0.5)`` of them (rounded half up), chosen
    uniformly at random, go to the test matrix and the rest to the training
    matrix. Every user with at least one interaction keeps at least one in
    training, so users with a single interaction keep it in training.

    Parameters
    ----------
    X : sparse matrix or array-like of shape (n_users, n_items)
        Interactions; every stored non-zero entry is one interaction and its
        value is carried over unchanged.
    test_fraction : float, default=0.2
        Share of each user's interactions to hold out, in the open interval
        (0, 1).
    random_state : int, RandomState instance or None, default=None
        Seed of the random choice; the same seed gives the same split.

    Returns
    -------
    train, test : csr_matrix of shape (n_users, n_items)
        Disjoint matrices whose sum is ``X`` (with duplicates summed and
        explicit zeros dropped).
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(
            f"test_fraction must lie strictly between 0 and 1; got {test_fraction!r}."
        )
    X = canonical_interactions(X)
    rng = check_random_state(random_state)

    counts = np.diff(X.indptr)
    n_test = np.floor(test_fraction * counts + 0.5).astype(np.int64)
    n_test = np.minimum(n_test, np.maximum(counts - 1, 0))

    # Give every interaction a random key, order each row by key, and send
    # the first n_test[user] entries of that order to the test set.
    rows = np.repeat(np.arange(X.shape[0]), counts)
    order = np.lexsort((rng.random_sample(X.nnz), rows))
    rank_in_row = np.empty(X.nnz, dtype=np.int64)
    rank_in_row[order] = np.arange(X.nnz) - X.indptr[rows[order]]
    in_test = rank_in_row < n_test[rows]
    return _select(X, rows, ~in_test), _select(X, rows, in_test)


def last_items_split(X, order, n_last=1):
    """Hold out each user's last ``n_last`` interactions (a chronological split).

    Parameters
    ----------
    X : sparse matrix of shape (n_users, n_items)
        Interactions.
    order : sparse matrix of the same shape and pattern
        When each interaction happened (e.g. timestamps; larger is later).
        Ties keep the item order.
    n_last : int, default=1
        Interactions held out per user. A user with at most ``n_last``
        interactions keeps them all in training (the rule of
        :func:`per_user_split`: every user keeps at least one).

    Returns
    -------
    train, test : csr_matrix of shape (n_users, n_items)
        Disjoint matrices whose sum is ``X``.
    """
    if isinstance(n_last, bool) or not isinstance(n_last, numbers.Integral) or n_last < 1:
        raise ValueError(f"n_last must be a positive integer; got {n_last!r}")
    X = canonical_interactions(X)
    when = sp.csr_matrix(order, copy=True)
    if when.shape != X.shape:
        raise ValueError(f"order must have the shape of X, {X.shape}; got {when.shape}")
    when.sum_duplicates()
    when.sort_indices()
    if not (np.array_equal(when.indptr, X.indptr) and np.array_equal(when.indices, X.indices)):
        raise ValueError("order must hold one value per interaction of X (the same "
                         "non-zero pattern), e.g. its timestamps")
    counts = np.diff(X.indptr)
    rows = np.repeat(np.arange(X.shape[0]), counts)
    # Latest first within each row; a stable sort keeps tied items in item order.
    latest = np.lexsort((-when.data.astype(np.float64), rows))
    rank_in_row = np.empty(X.nnz, dtype=np.int64)
    rank_in_row[latest] = np.arange(X.nnz) - X.indptr[rows[latest]]
    n_test = np.where(counts > n_last, n_last, 0)
    in_test = rank_in_row < n_test[rows]
    return _select(X, rows, ~in_test), _select(X, rows, in_test)


def canonical_interactions(X):
    """A CSR copy of ``X`` with one stored entry per interaction: duplicates
    summed, explicit zeros dropped."""
    X = sp.csr_matrix(X, copy=True)
    X.sum_duplicates()
    X.eliminate_zeros()
    return X


def _select(X, rows, mask):
    """CSR matrix with only the entries of ``X`` where ``mask`` is True."""
    return sp.csr_matrix(
        (X.data[mask], (rows[mask], X.indices[mask])), shape=X.shape, dtype=X.dtype
    )


# ---------------------------------------------------------------------------
# Locating files
# ---------------------------------------------------------------------------


def _default_data_dirs():
    """Candidate data folders in the order they are tried, with their origin."""
    env = os.environ.get(DATA_ENV_VAR)
    if env:
        return [(Path(env), f"from ${DATA_ENV_VAR}")]
    repo_root = Path(__file__).resolve().parent.parent
    return [
        (Path.cwd() / ".." / "shared" / "data", "relative to the current directory"),
        (repo_root / ".." / "shared" / "data", "relative to the repository root"),
    ]


def _find_file(data_dir, *parts):
    """Return the path of ``data_dir/parts``, raising a helpful error if absent."""
    if data_dir is not None:
        candidates = [(Path(data_dir), "from data_dir=")]
    else:
        candidates = _default_data_dirs()
    for folder, _ in candidates:
        path = folder.joinpath(*parts)
        if path.is_file():
            return path
    tried = "; ".join(
        f"{folder.joinpath(*parts)} ({origin})" for folder, origin in candidates
    )
    raise FileNotFoundError(
        f"Could not find {'/'.join(parts)}. Tried: {tried}. Pass data_dir= the "
        "folder that holds lastfm/, ml-100k/, yelp2018/, bibtex/ and a9a/, or set the "
        f"environment variable {DATA_ENV_VAR} to it."
    )


# ---------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------


def _parse_id(text):
    """Parse a 1-based integer id; ValueError if it is not one."""
    value = int(text)
    if value < 1:
        raise ValueError(f"ids start at 1; got {value}")
    return value


def _read_pairs(path, n_fields, user_col, item_col, first_line=1):
    """Read (user, item) ids from a tab-separated file, one record per line.

    Every line must have exactly ``n_fields`` fields; the user and item fields
    must be positive integers and the others numbers. Blank lines are skipped.
    ``first_line`` is the file line number of the first line to read, so that
    errors point at the right line after a header.
    """
    users, items = [], []
    with open(path, encoding="utf-8") as handle:
        for _ in range(first_line - 1):
            next(handle)
        for line_no, line in enumerate(handle, start=first_line):
            fields = line.rstrip("\r\n").split("\t")
            if fields == [""]:
                continue
            try:
                if len(fields) != n_fields:
                    raise ValueError(
                        f"expected {n_fields} tab-separated fields, got {len(fields)}"
                    )
                for col, field in enumerate(fields):
                    if col not in (user_col, item_col):
                        float(field)
                users.append(_parse_id(fields[user_col]))
                items.append(_parse_id(fields[item_col]))
            except ValueError as err:
                raise ValueError(
                    f"{path}, line {line_no}: malformed line {line!r} ({err})."
                ) from None
    return np.asarray(users, dtype=np.int64), np.asarray(items, dtype=np.int64)


def _read_adjacency(path):
    """Read (user, item) ids from lines ``user item item ...`` (ids from 0).

    A line with a user and no items is a user without interactions; blank
    lines are skipped. Every field must be a non-negative integer.
    """
    users, items = [], []
    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            fields = line.split()
            if not fields:
                continue
            try:
                ids = [int(field) for field in fields]
                if min(ids) < 0:
                    raise ValueError("ids start at 0")
            except ValueError as err:
                raise ValueError(
                    f"{path}, line {line_no}: malformed line {line.rstrip()!r} ({err}); "
                    "expected 'user item item ...' with non-negative integer ids."
                ) from None
            users.extend([ids[0]] * (len(ids) - 1))
            items.extend(ids[1:])
    return np.asarray(users, dtype=np.int64), np.asarray(items, dtype=np.int64)


def _interaction_matrix(users, items, shape, first_id=1):
    """Binary CSR float32 matrix with 1.0 at each (user - first_id, item - first_id)."""
    matrix = sp.csr_matrix(
        (np.ones(users.size, dtype=np.float32), (users - first_id, items - first_id)),
        shape=shape,
        dtype=np.float32,
    )
    # Repeated pairs would otherwise sum above 1.
    matrix.data[:] = 1.0
    return matrix


def _movielens_columns(path):
    """Number of fields and the user and item columns from the header line."""
    with open(path, encoding="utf-8") as handle:
        header = handle.readline().rstrip("\r\n").split("\t")
    if _MOVIELENS_USER not in header or _MOVIELENS_ITEM not in header:
        raise ValueError(
            f"{path}, line 1: malformed header {header!r}; expected it to name "
            f"the columns {_MOVIELENS_USER!r} and {_MOVIELENS_ITEM!r}."
        )
    return len(header), header.index(_MOVIELENS_USER), header.index(_MOVIELENS_ITEM)


def _read_arff(path):
    """Read an ARFF file's numeric data, sparse rows (``{index value, ...}``) or
    dense rows (``v1,v2,...``), as a CSR float32 matrix with one column per
    attribute. Comment lines (``%``) and blank lines are skipped."""
    n_attributes, rows, cols, values = 0, [], [], []
    n_rows, in_data = 0, False
    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            text = line.strip()
            if not text or text.startswith("%"):
                continue
            try:
                if not in_data:
                    keyword = text.split(None, 1)[0].lower()
                    if keyword == "@attribute":
                        n_attributes += 1
                    elif keyword == "@data":
                        in_data = True
                    elif keyword != "@relation":
                        raise ValueError("expected @relation, @attribute or @data")
                    continue
                for col, value in _arff_row(text, n_attributes):
                    rows.append(n_rows)
                    cols.append(col)
                    values.append(value)
                n_rows += 1
            except ValueError as err:
                raise ValueError(f"{path}, line {line_no}: malformed line {line!r} ({err}).") \
                    from None
    if not in_data:
        raise ValueError(f"{path}: no @data section; is this an ARFF file?")
    return sp.csr_matrix((np.asarray(values, dtype=np.float32), (rows, cols)),
                         shape=(n_rows, n_attributes), dtype=np.float32)


def _arff_row(text, n_attributes):
    """(column, value) pairs of one ARFF data line."""
    if text.startswith("{"):
        if not text.endswith("}"):
            raise ValueError("a sparse row must end with '}'")
        body = text[1:-1].strip()
        pairs = [item.split() for item in body.split(",")] if body else []
        out = []
        for pair in pairs:
            if len(pair) != 2:
                raise ValueError(f"expected 'index value', got {' '.join(pair)!r}")
            col = int(pair[0])
            if not 0 <= col < n_attributes:
                raise ValueError(f"index {col} outside the {n_attributes} attributes")
            out.append((col, float(pair[1])))
        return out
    fields = text.split(",")
    if len(fields) != n_attributes:
        raise ValueError(f"expected {n_attributes} comma-separated values, got {len(fields)}")
    return [(col, float(v)) for col, v in enumerate(fields) if float(v) != 0.0]


def _split_labels(matrix, n_labels, path):
    """Features and 0/1 label indicator: the last ``n_labels`` attributes are labels."""
    n_features = matrix.shape[1] - n_labels
    if n_features < 1:
        raise ValueError(f"{path}: {matrix.shape[1]} attributes cannot hold {n_labels} labels "
                         "and at least one feature")
    X = matrix[:, :n_features].tocsr()
    Y = matrix[:, n_features:].tocsr()
    Y.eliminate_zeros()
    if Y.nnz and not np.all(Y.data == 1.0):
        raise ValueError(f"{path}: label attributes must be 0 or 1; found "
                         f"{Y.data[Y.data != 1.0][0]:g}")
    return X, Y


# ---------------------------------------------------------------------------
# Public loaders
# ---------------------------------------------------------------------------


def load_lastfm(data_dir=None):
    """Load the pre-split Last.fm (HetRec 2011) listening data.

    Reads ``lastfm/train.tsv`` and ``lastfm/test.tsv`` (tab-separated
    ``user item playcount``, ids from 1). The data is implicit feedback: every
    listed (user, item) pair becomes 1.0 and the play count is discarded.
    User ``u`` and item ``i`` map to row ``u - 1`` and column ``i - 1`` of both
    matrices, whose shape is the largest user and item ids over both files,
    so users without interactions appear as empty rows.

    Parameters
    ----------
    data_dir : str or path-like, default=None
        Folder that holds ``lastfm/`` and ``ml-100k/``. If None, the
        environment variable ``SPARSE_DEEP_DATA`` is used when set; otherwise
        ``../shared/data`` relative to the current directory, then relative to
        the repository root (the parent of the ``sparse_deep`` package).

    Returns
    -------
    train, test : csr_matrix of float32, shape (n_users, n_items)
        Binary interaction matrices sharing one user and one item index.

    Raises
    ------
    FileNotFoundError
        If a file is missing; the message lists the paths tried.
    ValueError
        If a line is malformed; the message names the file and line number.
    """
    train_path = _find_file(data_dir, "lastfm", "train.tsv")
    test_path = _find_file(data_dir, "lastfm", "test.tsv")
    train_users, train_items = _read_pairs(train_path, 3, 0, 1)
    test_users, test_items = _read_pairs(test_path, 3, 0, 1)
    shape = (
        int(max(train_users.max(initial=0), test_users.max(initial=0))),
        int(max(train_items.max(initial=0), test_items.max(initial=0))),
    )
    return (
        _interaction_matrix(train_users, train_items, shape),
        _interaction_matrix(test_users, test_items, shape),
    )


def load_movielens_100k(data_dir=None, test_fraction=0.2, random_state=0):
    """Load MovieLens 100K as implicit feedback and split it per user.

    Reads ``ml-100k/ml-100k.inter`` (RecBole format: tab-separated with the
    header ``user_id:token item_id:token rating:float timestamp:float``).
    Every rating, whatever its value, becomes an interaction of 1.0. User
    ``u`` and item ``i`` map to row ``u - 1`` and column ``i - 1``. The
    matrix is then split with :func:`per_user_split`.

    Parameters
    ----------
    data_dir : str or path-like, default=None
        Folder that holds ``lastfm/`` and ``ml-100k/``. If None, the
        environment variable ``SPARSE_DEEP_DATA`` is used when set; otherwise
        ``../shared/data`` relative to the current directory, then relative to
        the repository root (the parent of the ``sparse_deep`` package).
    test_fraction : float, default=0.2
        Share of each user's ratings held out for testing.
    random_state : int, RandomState instance or None, default=0
        Seed of the split.

    Returns
    -------
    train, test : csr_matrix of float32, shape (n_users, n_items)
        Disjoint binary interaction matrices.

    Raises
    ------
    FileNotFoundError
        If the file is missing; the message lists the paths tried.
    ValueError
        If the header or a line is malformed; the message names the file and
        line number.
    """
    path = _find_file(data_dir, "ml-100k", "ml-100k.inter")
    n_fields, user_col, item_col = _movielens_columns(path)
    users, items = _read_pairs(path, n_fields, user_col, item_col, first_line=2)
    shape = (int(users.max(initial=0)), int(items.max(initial=0)))
    interactions = _interaction_matrix(users, items, shape)
    return per_user_split(interactions, test_fraction, random_state)


def load_yelp2018(data_dir=None):
    """Load Yelp2018 in the LightGCN split (check-ins, pre-split).

    Reads ``yelp2018/train.txt`` and ``yelp2018/test.txt``: one line per user,
    ``user item item ...``, ids from 0. Every listed (user, item) pair becomes
    1.0. User ``u`` and item ``i`` map to row ``u`` and column ``i`` of both
    matrices, whose shape is the largest user and item ids over both files
    plus one (31,668 x 38,048 for the published split).

    This is the split of the NGCF, LightGCN and SimpleX papers, so published
    recall@20 / NDCG@20 figures on it (all items ranked, training items
    excluded) compare directly with :mod:`sparse_deep.metrics` on it.

    Parameters
    ----------
    data_dir : str or path-like, default=None
        Folder that holds ``yelp2018/``; found as in :func:`load_lastfm`.

    Returns
    -------
    train, test : csr_matrix of float32, shape (n_users, n_items)
        Binary interaction matrices sharing one user and one item index.

    Raises
    ------
    FileNotFoundError
        If a file is missing; the message lists the paths tried.
    ValueError
        If a line is malformed; the message names the file and line number.
    """
    train_users, train_items = _read_adjacency(_find_file(data_dir, "yelp2018", "train.txt"))
    test_users, test_items = _read_adjacency(_find_file(data_dir, "yelp2018", "test.txt"))
    shape = (
        int(max(train_users.max(initial=-1), test_users.max(initial=-1))) + 1,
        int(max(train_items.max(initial=-1), test_items.max(initial=-1))) + 1,
    )
    return (
        _interaction_matrix(train_users, train_items, shape, first_id=0),
        _interaction_matrix(test_users, test_items, shape, first_id=0),
    )


def dsstne_movielens_sample(data_dir=None):
    """Path of DSSTNE's own MovieLens sample, a text file in DSSTNE's format.

    The first 1,024 MovieLens-20M users as DSSTNE's ``convert_ratings.awk``
    writes them, ``user<TAB>movie,timestamp:movie,timestamp:...`` (26,744
    distinct movies); the input of DSSTNE's ``run_movielens_sample.sh`` and
    of ``sparse-deep generate``. Read it with :func:`sparse_deep.io.read_text`.

    Parameters
    ----------
    data_dir : str or path-like, default=None
        Folder that holds ``dsstne-ml20m-sample/``; found as in
        :func:`load_lastfm`.

    Returns
    -------
    path : pathlib.Path
        ``dsstne-ml20m-sample/movielens_input_1024.txt`` in that folder.

    Raises
    ------
    FileNotFoundError
        If the file is missing; the message lists the paths tried.
    """
    return _find_file(data_dir, "dsstne-ml20m-sample", "movielens_input_1024.txt")


def load_bibtex(data_dir=None, n_labels=159):
    """Load the Bibtex multi-label text classification data (Mulan split).

    Reads ``bibtex/bibtex-train.arff`` and ``bibtex/bibtex-test.arff`` (sparse
    ARFF): 1,836 binary bag-of-words features and, as the last attributes,
    159 tag labels; about 2.4 tags per row.

    Parameters
    ----------
    data_dir : str or path-like, default=None
        Folder that holds ``bibtex/``; found as in :func:`load_lastfm` when None.
    n_labels : int, default=159
        Number of trailing attributes that are labels.

    Returns
    -------
    X_train : csr_matrix of float32, shape (4880, 1836)
    Y_train : csr_matrix of float32, shape (4880, 159)
        0/1 label indicator.
    X_test : csr_matrix of float32, shape (2515, 1836)
    Y_test : csr_matrix of float32, shape (2515, 159)

    Raises
    ------
    FileNotFoundError
        If a file is missing; the message lists the paths tried.
    ValueError
        If a line is malformed (file and line number given), the two files
        disagree on their attributes, or a label is not 0/1.
    """
    out = []
    widths = []
    for name in ("bibtex-train.arff", "bibtex-test.arff"):
        path = _find_file(data_dir, "bibtex", name)
        matrix = _read_arff(path)
        widths.append(matrix.shape[1])
        out.extend(_split_labels(matrix, n_labels, path))
    if widths[0] != widths[1]:
        raise ValueError(f"bibtex train and test files declare {widths[0]} and {widths[1]} "
                         "attributes; they must match")
    return tuple(out)


def load_a9a(data_dir=None):
    """Load LIBSVM's a9a (Adult) binary classification data.

    Reads ``a9a/a9a.train.svm`` and ``a9a/a9a.test.svm`` (svmlight format,
    123 binary features, about 14 non-zeros per row; labels 0/1).

    Parameters
    ----------
    data_dir : str or path-like, default=None
        Folder that holds ``a9a/``; found as in :func:`load_lastfm` when None.

    Returns
    -------
    X_train : csr_matrix of float32, shape (32560, 123)
    y_train : ndarray of int64, shape (32560,)
    X_test : csr_matrix of float32, shape (16281, 123)
    y_test : ndarray of int64, shape (16281,)

    Raises
    ------
    FileNotFoundError
        If a file is missing; the message lists the paths tried.
    ValueError
        If a file cannot be parsed, or holds labels other than 0 and 1.
    """
    out = []
    for name in ("a9a.train.svm", "a9a.test.svm"):
        path = _find_file(data_dir, "a9a", name)
        try:
            X, y = load_svmlight_file(str(path), n_features=123, dtype=np.float32)
        except ValueError as err:
            raise ValueError(f"{path}: not a valid svmlight file with 123 features ({err})") \
                from None
        if not np.all((y == 0) | (y == 1)):
            raise ValueError(f"{path}: labels must be 0 or 1; found {np.unique(y)[:5]}")
        out.extend([X.tocsr(), y.astype(np.int64)])
    return tuple(out)

import numpy as np
import pytest
import scipy.sparse as sp

from sparse_deep.datasets import (
    load_a9a,
    load_bibtex,
    load_lastfm,
    load_movielens_100k,
    load_yelp2018,
    per_user_split,
)

MOVIELENS_HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"


def interactions(seed=0, n_users=200, n_items=300):
    """Random binary interactions with users of 0, 1, 2 and many items."""
    rng = np.random.default_rng(seed)
    dense = rng.random((n_users, n_items)) < rng.random((n_users, 1)) * 0.2
    dense[0] = False
    dense[1] = False
    dense[1, 7] = True
    dense[2] = False
    dense[2, [3, 4]] = True
    return sp.csr_matrix(dense.astype(np.float32))


# ---------------------------------------------------------------------------
# per_user_split
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("fraction", [0.1, 0.2, 0.5, 0.8])
def test_split_partitions_the_input(fraction):
    X = interactions()
    train, test = per_user_split(X, test_fraction=fraction, random_state=0)
    assert sp.isspmatrix_csr(train) and sp.isspmatrix_csr(test)
    assert train.shape == test.shape == X.shape
    assert train.dtype == test.dtype == X.dtype
    assert train.multiply(test).nnz == 0
    assert (train + test != X).nnz == 0


@pytest.mark.parametrize("fraction", [0.1, 0.2, 0.5, 0.8])
def test_split_fraction_per_user(fraction):
    X = interactions(seed=1)
    train, test = per_user_split(X, test_fraction=fraction, random_state=0)
    counts = np.diff(X.indptr)
    n_test = np.diff(test.indptr)
    expected = np.minimum(np.floor(fraction * counts + 0.5), np.maximum(counts - 1, 0))
    np.testing.assert_array_equal(n_test, expected)
    # Every user with interactions keeps at least one in training.
    assert np.all(np.diff(train.indptr)[counts > 0] >= 1)


def test_split_single_interaction_stays_in_train():
    X = interactions()
    for fraction in (0.5, 0.9):
        train, test = per_user_split(X, test_fraction=fraction, random_state=3)
        assert test[1].nnz == 0 and train[1].nnz == 1
        assert test[0].nnz == 0 and train[0].nnz == 0


def test_split_is_deterministic_per_seed():
    X = interactions()
    first = per_user_split(X, random_state=42)
    second = per_user_split(X, random_state=42)
    other = per_user_split(X, random_state=43)
    for a, b in zip(first, second):
        assert (a != b).nnz == 0
    assert (first[1] != other[1]).nnz > 0


def test_split_accepts_random_state_instance_and_dense_input():
    X = interactions()
    from_seed = per_user_split(X, random_state=5)[1]
    from_instance = per_user_split(X, random_state=np.random.RandomState(5))[1]
    from_dense = per_user_split(X.toarray(), random_state=5)[1]
    assert (from_seed != from_instance).nnz == 0
    assert (from_seed != from_dense).nnz == 0


def test_split_is_random_within_users():
    # Over many seeds, every interaction of a user should land in test at some point.
    X = sp.csr_matrix(np.ones((1, 10)))
    held_out = sum(per_user_split(X, 0.2, random_state=seed)[1] for seed in range(50))
    assert held_out.nnz == 10


def test_split_keeps_values_and_drops_explicit_zeros():
    X = sp.csr_matrix(([3.0, 0.0, 5.0, 7.0], ([0, 0, 0, 0], [0, 1, 2, 3])), shape=(1, 4))
    train, test = per_user_split(X, 0.5, random_state=0)
    assert train.nnz + test.nnz == 3
    assert sorted((train + test).data) == [3.0, 5.0, 7.0]


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_split_rejects_bad_fraction(fraction):
    with pytest.raises(ValueError, match="test_fraction"):
        per_user_split(interactions(), test_fraction=fraction)


# ---------------------------------------------------------------------------
# Loaders on tiny synthetic files
# ---------------------------------------------------------------------------


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


@pytest.fixture
def lastfm_dir(tmp_path):
    # CRLF line ends as in the real files; user 5 and item 6 only in test.
    write(tmp_path / "lastfm" / "train.tsv", "1\t2\t10\r\n1\t3\t4\r\n3\t1\t7\r\n")
    write(tmp_path / "lastfm" / "test.tsv", "1\t4\t2\r\n5\t6\t1\r\n")
    return tmp_path


def test_load_lastfm_shapes_and_ids(lastfm_dir):
    train, test = load_lastfm(lastfm_dir)
    assert train.shape == test.shape == (5, 6)
    assert train.dtype == test.dtype == np.float32
    assert sp.isspmatrix_csr(train) and sp.isspmatrix_csr(test)
    # Ids start at 1; play counts are dropped in favour of 1.0.
    expected_train = {(0, 1), (0, 2), (2, 0)}
    assert set(zip(*train.nonzero())) == expected_train
    assert set(zip(*test.nonzero())) == {(0, 3), (4, 5)}
    assert np.all(train.data == 1.0) and np.all(test.data == 1.0)


def test_load_lastfm_repeated_pair_is_one(tmp_path):
    write(tmp_path / "lastfm" / "train.tsv", "1\t1\t3\n1\t1\t4\n")
    write(tmp_path / "lastfm" / "test.tsv", "1\t2\t1\n")
    train, _ = load_lastfm(tmp_path)
    assert train.nnz == 1 and train[0, 0] == 1.0


def test_load_lastfm_from_environment(lastfm_dir, monkeypatch):
    monkeypatch.setenv("SPARSE_DEEP_DATA", str(lastfm_dir))
    train, _ = load_lastfm()
    assert train.shape == (5, 6)


def test_missing_path_names_the_path_and_the_fix(tmp_path, monkeypatch):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as info:
        load_lastfm(missing)
    message = str(info.value)
    assert str(missing / "lastfm" / "train.tsv") in message
    assert "data_dir=" in message and "SPARSE_DEEP_DATA" in message

    monkeypatch.setenv("SPARSE_DEEP_DATA", str(missing))
    with pytest.raises(FileNotFoundError, match="SPARSE_DEEP_DATA"):
        load_movielens_100k()


def test_default_search_tries_current_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("SPARSE_DEEP_DATA", raising=False)
    data = tmp_path / "shared" / "data"
    write(data / "lastfm" / "train.tsv", "1\t1\t1\n")
    write(data / "lastfm" / "test.tsv", "2\t2\t1\n")
    work = tmp_path / "project"
    work.mkdir()
    monkeypatch.chdir(work)
    train, test = load_lastfm()
    assert train.shape == (2, 2)


@pytest.mark.parametrize(
    "text, line",
    [
        ("1\t2\t3\n1\t2\n", 2),
        ("1\t2\t3\n\n1\tx\t3\n", 3),
        ("0\t2\t3\n", 1),
        ("1\t2\tmany\n", 1),
        ("1 2 3\n", 1),
    ],
)
def test_load_lastfm_malformed_line(tmp_path, text, line):
    write(tmp_path / "lastfm" / "train.tsv", text)
    write(tmp_path / "lastfm" / "test.tsv", "1\t1\t1\n")
    with pytest.raises(ValueError, match=rf"train\.tsv, line {line}: malformed"):
        load_lastfm(tmp_path)


def test_load_yelp2018_shapes_and_ids(tmp_path):
    # Ids from 0; user 2 has no training items; item 5 and user 3 only in test;
    # a repeated item counts once.
    write(tmp_path / "yelp2018" / "train.txt", "0 1 2 2\n1 0\n2\n")
    write(tmp_path / "yelp2018" / "test.txt", "0 3\n\n3 5 0\n")
    train, test = load_yelp2018(tmp_path)
    assert train.shape == test.shape == (4, 6)
    assert train.dtype == test.dtype == np.float32
    assert set(zip(*train.nonzero())) == {(0, 1), (0, 2), (1, 0)}
    assert set(zip(*test.nonzero())) == {(0, 3), (3, 5), (3, 0)}
    assert np.all(train.data == 1.0) and np.all(test.data == 1.0)


@pytest.mark.parametrize("text, line", [("0 1\n1 x\n", 2), ("0 1\n\n-1 2\n", 3),
                                        ("0 1.5\n", 1)])
def test_load_yelp2018_malformed_line(tmp_path, text, line):
    write(tmp_path / "yelp2018" / "train.txt", text)
    write(tmp_path / "yelp2018" / "test.txt", "0 1\n")
    with pytest.raises(ValueError, match=rf"train\.txt, line {line}: malformed"):
        load_yelp2018(tmp_path)


@pytest.fixture
def movielens_dir(tmp_path):
    rows = [(u, i, 1 + (u + i) % 5, 880000000 + u) for u in range(1, 11) for i in range(1, 11)]
    lines = "".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in rows if (u + i) % 3)
    write(tmp_path / "ml-100k" / "ml-100k.inter", MOVIELENS_HEADER + lines + "11\t12\t4\t1\n")
    return tmp_path


def test_load_movielens_shapes_and_split(movielens_dir):
    train, test = load_movielens_100k(movielens_dir)
    assert train.shape == test.shape == (11, 12)
    assert train.dtype == np.float32 and np.all(train.data == 1.0)
    full = train + test
    assert full.nnz == sum(1 for u in range(1, 11) for i in range(1, 11) if (u + i) % 3) + 1
    # User 1 rated item 1 (1 + 1 not divisible by 3) but not item 2.
    assert full[10, 11] == 1.0 and full[0, 0] == 1.0 and full[0, 1] == 0.0
    assert train.multiply(test).nnz == 0


def test_load_movielens_split_is_seeded(movielens_dir):
    a = load_movielens_100k(movielens_dir, random_state=0)[1]
    b = load_movielens_100k(movielens_dir, random_state=0)[1]
    c = load_movielens_100k(movielens_dir, test_fraction=0.5, random_state=0)[1]
    assert (a != b).nnz == 0
    assert c.nnz > a.nnz


def test_load_movielens_malformed_line(tmp_path):
    text = MOVIELENS_HEADER + "1\t2\t3\t4\n1\t2\t3\n"
    write(tmp_path / "ml-100k" / "ml-100k.inter", text)
    with pytest.raises(ValueError, match=r"ml-100k\.inter, line 3: malformed"):
        load_movielens_100k(tmp_path)


def test_load_movielens_bad_header(tmp_path):
    write(tmp_path / "ml-100k" / "ml-100k.inter", "user\titem\n1\t2\n")
    with pytest.raises(ValueError, match=r"ml-100k\.inter, line 1: malformed header"):
        load_movielens_100k(tmp_path)


# ---------------------------------------------------------------------------
# Supervised loaders: bibtex (sparse ARFF) and a9a (svmlight)
# ---------------------------------------------------------------------------

ARFF_HEADER = (
    "% a comment\n@relation tiny\n\n"
    "@attribute w0 {0,1}\n@attribute w1 {0,1}\n@attribute w2 numeric\n"
    "@attribute TAG_a {0,1}\n@attribute TAG_b {0,1}\n\n@data\n"
)


@pytest.fixture
def bibtex_dir(tmp_path):
    write(tmp_path / "bibtex" / "bibtex-train.arff",
          ARFF_HEADER + "{0 1,2 0.5,4 1}\n{}\n0,1,0,1,1\n")
    write(tmp_path / "bibtex" / "bibtex-test.arff", ARFF_HEADER + "{1 1,3 1}\n")
    return tmp_path


def test_load_bibtex_features_and_labels(bibtex_dir):
    X_train, Y_train, X_test, Y_test = load_bibtex(bibtex_dir, n_labels=2)
    assert X_train.shape == (3, 3) and Y_train.shape == (3, 2)
    assert X_test.shape == (1, 3) and Y_test.shape == (1, 2)
    assert all(sp.isspmatrix_csr(m) and m.dtype == np.float32
               for m in (X_train, Y_train, X_test, Y_test))
    np.testing.assert_array_equal(X_train.toarray(), [[1, 0, 0.5], [0, 0, 0], [0, 1, 0]])
    np.testing.assert_array_equal(Y_train.toarray(), [[0, 1], [0, 0], [1, 1]])
    np.testing.assert_array_equal(Y_test.toarray(), [[1, 0]])


@pytest.mark.parametrize("row, message", [
    ("{0 1,9 1}\n", "index 9 outside the 5 attributes"),
    ("{0 1,2}\n", "expected 'index value'"),
    ("{0 1\n", "must end with"),
    ("1,0,1\n", "expected 5 comma-separated values"),
    ("{0 x}\n", "could not convert"),
])
def test_load_bibtex_malformed_line(bibtex_dir, row, message):
    write(bibtex_dir / "bibtex" / "bibtex-train.arff", ARFF_HEADER + "{0 1}\n" + row)
    with pytest.raises(ValueError, match=rf"bibtex-train\.arff, line 12: malformed.*{message}"):
        load_bibtex(bibtex_dir, n_labels=2)


def test_load_bibtex_bad_labels_and_files(bibtex_dir):
    write(bibtex_dir / "bibtex" / "bibtex-test.arff", ARFF_HEADER + "{3 2}\n")
    with pytest.raises(ValueError, match="label attributes must be 0 or 1; found 2"):
        load_bibtex(bibtex_dir, n_labels=2)
    with pytest.raises(ValueError, match="cannot hold 5 labels"):
        load_bibtex(bibtex_dir, n_labels=5)
    write(bibtex_dir / "bibtex" / "bibtex-test.arff", "@relation x\n@attribute a numeric\n")
    with pytest.raises(ValueError, match="no @data section"):
        load_bibtex(bibtex_dir, n_labels=2)
    with pytest.raises(FileNotFoundError, match="bibtex-train.arff"):
        load_bibtex(bibtex_dir / "nowhere")


def test_load_a9a(tmp_path):
    write(tmp_path / "a9a" / "a9a.train.svm", "0 3:1 11:1 123:1\n1 1:1\n")
    write(tmp_path / "a9a" / "a9a.test.svm", "1 2:1\n")
    X_train, y_train, X_test, y_test = load_a9a(tmp_path)
    assert X_train.shape == (2, 123) and X_test.shape == (1, 123)
    assert X_train.dtype == np.float32 and y_train.dtype == np.int64
    np.testing.assert_array_equal(y_train, [0, 1])
    assert X_train[0, 122] == 1.0 and X_train[1, 0] == 1.0  # svmlight ids start at 1
    write(tmp_path / "a9a" / "a9a.test.svm", "-1 2:1\n")
    with pytest.raises(ValueError, match="labels must be 0 or 1"):
        load_a9a(tmp_path)
    write(tmp_path / "a9a" / "a9a.test.svm", "1 2:x\n")
    with pytest.raises(ValueError, match=r"a9a\.test\.svm: not a valid svmlight file"):
        load_a9a(tmp_path)


def test_last_items_split_holds_out_each_users_latest():
    from sparse_deep.datasets import last_items_split

    X = sp.csr_matrix(np.array([[1, 1, 1, 0], [0, 2, 0, 1], [1, 0, 0, 0]], dtype=np.float32))
    when = sp.csr_matrix(np.array([[30, 10, 20, 0], [0, 5, 0, 7], [4, 0, 0, 0]],
                                  dtype=np.float64))
    train, test = last_items_split(X, when, n_last=1)
    assert test.toarray().tolist() == [[1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 0, 0]]
    assert (train + test != X).nnz == 0
    train2, test2 = last_items_split(X, when, n_last=2)
    assert test2.toarray().tolist() == [[1, 0, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    with pytest.raises(ValueError, match="same non-zero pattern"):
        last_items_split(X, when[:, ::-1], n_last=1)
    with pytest.raises(ValueError, match="n_last must be a positive integer"):
        last_items_split(X, when, n_last=0)

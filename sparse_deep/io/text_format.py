"""DSSTNE's text formats: data lines, index files and recommendation lists.

Data lines (what ``generateNetCDF`` reads and ``predict -r`` takes)::

    sample<TAB>feature[,value]:feature[,value]:...

Index files map labels to positions, one ``label<TAB>index`` per line; the
feature index gives a feature's column, the sample index a sample's row.
Recommendation files (what ``predict`` writes) list the top items per sample::

    sample<TAB>feature,score:feature,score:...:

docs/io.md describes each format and where this module departs from DSSTNE.
"""

import codecs
import contextlib
import os
import re
import stat
import warnings
from array import array
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ._files import atomic_text

__all__ = [
    "TextData",
    "check_score_format",
    "format_recommendations",
    "index_labels",
    "read_index",
    "read_recommendations",
    "read_text",
    "text_files",
    "write_index",
    "write_text",
]


# The largest magnitude a data set's float32 values hold.
_FLOAT32_MAX = float(np.finfo(np.float32).max)


# -- index files -------------------------------------------------------------------


def read_index(path):
    """Read a ``label<TAB>index`` file.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    dict of str to int
        Label to position (row of a sample, column of a feature).

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        For a line that is not ``label<TAB>index`` with a non-negative integer
        index, a label given twice or an index given to two labels (DSSTNE
        refused the first and silently mixed up the second); the message
        names the file and line. Blank lines are skipped.
    """
    path = os.fspath(path)
    index, line_of, label_at = {}, {}, {}
    with _numbered_lines(path, "index file") as lines:
        for lineno, line in lines:
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            parts = line.split("\t")
            if len(parts) != 2 or not parts[0]:
                raise ValueError(f"{path}:{lineno}: expected 'label<TAB>index'; got {line!r}")
            label, number = parts
            try:
                position = int(number)
            except ValueError:
                raise ValueError(f"{path}:{lineno}: index {number!r} of label {label!r} is not "
                                 "an integer") from None
            if position < 0:
                raise ValueError(f"{path}:{lineno}: index of label {label!r} is negative "
                                 f"({position})")
            if label in index:
                raise ValueError(f"{path}:{lineno}: label {label!r} appears twice (lines "
                                 f"{line_of[label]} and {lineno}); each label needs one index")
            if position in label_at:
                other = label_at[position]
                raise ValueError(f"{path}:{lineno}: index {position} is given to both {other!r} "
                                 f"(line {line_of[other]}) and {label!r}")
            index[label] = position
            line_of[label] = lineno
            label_at[position] = label
    return index


def write_index(path, index):
    """Write ``label<TAB>index`` lines, in index order, atomically.

    Parameters
    ----------
    path : str or os.PathLike
    index : mapping of str to int
    """
    for label in index:
        _check_label(label, "index label")
    with atomic_text(path) as handle:
        for label, position in sorted(index.items(), key=lambda item: item[1]):
            handle.write(f"{label}\t{int(position)}\n")


def index_labels(index, size=None):
    """Labels by position: ``labels[i]`` is the label whose index is ``i`` (None
    where no label has that index). ``size`` defaults to the largest index + 1."""
    size = (max(index.values()) + 1 if index else 0) if size is None else int(size)
    labels = [None] * size
    for label, position in index.items():
        if position < size:
            labels[position] = label
    return labels


def _check_label(label, what):
    if not isinstance(label, str) or not label or any(c in label for c in "\t\r\n"):
        raise ValueError(f"{what} {label!r} must be a non-empty string without tabs or "
                         "line breaks")


@contextlib.contextmanager
def _numbered_lines(path, what):
    """Iterate ``(line number, line)`` over a UTF-8 text file (a byte-order mark
    at its start is dropped); bytes that are not UTF-8 raise a ValueError
    naming the file and line. Only regular files are opened: a FIFO or a
    device would block or never end."""
    path = os.fspath(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} not found: {path}") from None
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(f"expected {what}, but {path} is a directory")
    if not stat.S_ISREG(mode):
        raise ValueError(f"{path} is not a regular file (a pipe, socket or device); expected "
                         f"{what}")
    with open(path, "rb") as handle:
        yield _decoded_lines(handle, path)


def _decoded_lines(handle, path):
    for lineno, raw in enumerate(handle, 1):
        if lineno == 1 and raw.startswith(codecs.BOM_UTF8):
            raw = raw[len(codecs.BOM_UTF8):]
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise ValueError(f"{path}:{lineno}: byte {error.start + 1} of the line "
                             f"(0x{raw[error.start]:02x}) is not UTF-8 text; save the file "
                             "as UTF-8") from None
        yield lineno, line


# -- data lines -------------------------------------------------------------------


@dataclass
class TextData:
    """What :func:`read_text` returns.

    Attributes
    ----------
    matrix : scipy.sparse.csr_matrix of shape (n_samples, n_features), float32
        Row ``i`` is the sample whose index is ``i``, column ``j`` the feature
        whose index is ``j``; samples of the index absent from the text have
        empty rows.
    features, samples : dict of str to int
        The feature and sample indices after reading (new labels added when
        allowed).
    dropped : int
        Data points skipped because their feature is not in the feature index.
    skipped : int
        Lines skipped because their sample is not in the sample index.
    extra_values : int
        Data points with more than one value (the first was kept).
    """

    matrix: sp.csr_matrix
    features: dict
    samples: dict
    dropped: int = 0
    skipped: int = 0
    extra_values: int = 0


def text_files(source):
    """The files a ``source`` names: a file, every visible regular file of a
    directory (sorted by name, as DSSTNE read directories), or a list of those."""
    if isinstance(source, (list, tuple)):
        return [f for item in source for f in text_files(item)]
    path = os.fspath(source)
    if os.path.isdir(path):
        files = sorted(os.path.join(path, name) for name in os.listdir(path)
                       if not name.startswith(".") and os.path.isfile(os.path.join(path, name)))
        if not files:
            raise ValueError(f"directory {path} holds no data files")
        return files
    if not os.path.exists(path):
        raise FileNotFoundError(f"data file not found: {path}")
    return [path]


def read_text(source, features=None, samples=None, *, analog=False, add_features=None,
              add_samples=True, duplicate_samples="error", progress=None):
    """Read DSSTNE data lines into a CSR matrix.

    Parameters
    ----------
    source : str, os.PathLike, or list of them
        A file, a directory of files, or a list of those.
    features : mapping of str to int, optional
        Feature index (label to column). Default: a new, empty one.
    samples : mapping of str to int, optional
        Sample index (label to row). Default: a new, empty one.
    analog : bool, default=False
        Keep each data point's value (``-t analog``); a data point without a
        value counts 1. Otherwise every data point is a 1 and values are not
        even parsed (``-t indicator``).
    add_features : bool, optional
        Give unknown features the next free column. Default: True when no
        ``features`` were given; otherwise unknown features are dropped and
        counted in ``dropped`` (DSSTNE's behaviour without ``-c``/``-m``).
    add_samples : bool, default=True
        Give unknown samples the next free row; otherwise their lines are
        skipped and counted in ``skipped``.
    duplicate_samples : {"error", "merge"}, default="error"
        What a second line for the same sample does: raise (DSSTNE silently
        kept only the last one), or add its data points to the first's.
    progress : callable, optional
        Called with the number of characters read since the last call.

    Returns
    -------
    TextData

    Raises
    ------
    ValueError
        For a non-blank line without a TAB after the sample label, an empty
        label, a duplicate sample line (with ``duplicate_samples="error"``), or
        (analog) a value that is not a finite number; the message gives the
        file and line.

    Notes
    -----
    Blank lines and empty data points (``a::b``, a trailing ``:``) are skipped.
    A feature listed twice in the same sample keeps its first value.
    """
    if duplicate_samples not in ("error", "merge"):
        raise ValueError(f"duplicate_samples must be 'error' or 'merge'; got "
                         f"{duplicate_samples!r}")
    if add_features is None:
        add_features = features is None
    parser = _Parser(dict(features or {}), dict(samples or {}), bool(analog),
                     bool(add_features), bool(add_samples), duplicate_samples == "merge")
    for path in text_files(source):
        with _numbered_lines(path, "data file") as lines:
            parser.parse(lines, path, progress)
    if parser.extra_values:
        warnings.warn(f"{parser.extra_values} data point(s) had more than one value; the first "
                      "value of each was kept", stacklevel=2)
    return TextData(parser.matrix(), parser.features, parser.samples, parser.dropped,
                    parser.skipped, parser.extra_values)


class _Parser:
    """Accumulates data points of many files into COO arrays."""

    def __init__(self, features, samples, analog, add_features, add_samples, merge):
        self.features, self.samples = features, samples
        self.analog, self.add_features, self.add_samples = analog, add_features, add_samples
        self.merge = merge
        self.next_feature = max(features.values()) + 1 if features else 0
        self.next_sample = max(samples.values()) + 1 if samples else 0
        # Per line: its row and number of points; per point: column and value.
        self.line_rows, self.line_counts = array("q"), array("q")
        self.cols, self.values = array("q"), array("d")
        self.first_line = {}  # row -> "file:line" of its first line
        self.dropped = self.skipped = self.extra_values = 0

    def parse(self, lines, path, progress):
        pending = 0
        for lineno, line in lines:
            if progress is not None:
                pending += len(line)
                if pending >= 1 << 20:
                    progress(pending)
                    pending = 0
            line = line.rstrip("\r\n")
            if not line or line.isspace():
                continue
            label, tab, data = line.partition("\t")
            if not tab:
                raise ValueError(f"{path}:{lineno}: no TAB after the sample label; expected "
                                 "'sample<TAB>feature[,value]:feature[,value]:...'")
            if not label:
                raise ValueError(f"{path}:{lineno}: empty sample label")
            row = self._row(label, path, lineno)
            if row is not None:
                self._parse_points(row, data, path, lineno)
        if progress is not None and pending:
            progress(pending)

    def _row(self, label, path, lineno):
        row = self.samples.get(label)
        if row is None:
            if not self.add_samples:
                self.skipped += 1
                return None
            row = self.samples[label] = self.next_sample
            self.next_sample += 1
        if row in self.first_line and not self.merge:
            raise ValueError(f"{path}:{lineno}: sample {label!r} appears again (first at "
                             f"{self.first_line[row]}); give each sample one line")
        self.first_line.setdefault(row, f"{path}:{lineno}")
        return row

    def _parse_points(self, row, data, path, lineno):
        features, cols, values = self.features, self.cols, self.values
        count = 0
        for point in data.split(":"):
            name, comma, rest = point.partition(",")
            if not name:
                continue
            col = features.get(name)
            if col is None:
                if not self.add_features:
                    self.dropped += 1
                    continue
                col = features[name] = self.next_feature
                self.next_feature += 1
            cols.append(col)
            count += 1
            if self.analog:
                values.append(self._value(name, rest, comma, path, lineno))
            elif "," in rest:
                self.extra_values += 1
        if count:
            self.line_rows.append(row)
            self.line_counts.append(count)

    def _value(self, name, rest, comma, path, lineno):
        if not comma:
            return 1.0
        text, extra, _ = rest.partition(",")
        if extra:
            self.extra_values += 1
        try:
            value = float(text)
        except ValueError:
            value = None
        if value is None or not np.isfinite(value):
            raise ValueError(f"{path}:{lineno}: value {text!r} of feature {name!r} is not a "
                             "finite number")
        if abs(value) > _FLOAT32_MAX:
            raise ValueError(f"{path}:{lineno}: value {text!r} of feature {name!r} does not fit "
                             f"the data set's 32-bit floats (at most {_FLOAT32_MAX:.4g} in "
                             "size)")
        return value

    def matrix(self):
        n_rows = max(self.samples.values()) + 1 if self.samples else 0
        n_cols = max(self.features.values()) + 1 if self.features else 0
        rows = np.repeat(_int64(self.line_rows), _int64(self.line_counts))
        cols = _int64(self.cols)
        # Sort by (row, column) and keep each pair's first occurrence: np.unique's
        # return_index gives the first position of every distinct key.
        keys, first = np.unique(rows * max(n_cols, 1) + cols, return_index=True)
        if self.analog:
            data = np.frombuffer(self.values, dtype=np.float64)[first].astype(np.float32)
        else:
            data = np.ones(first.size, dtype=np.float32)
        indptr = np.zeros(n_rows + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows[first], minlength=n_rows), out=indptr[1:])
        return sp.csr_matrix((data, cols[first], indptr), shape=(n_rows, n_cols))


def _int64(values):
    return np.frombuffer(values, dtype=np.int64) if len(values) else np.zeros(0, np.int64)


def write_text(path, matrix, samples=None, features=None, *, analog=True):
    """Write a matrix as DSSTNE data lines, one per row, atomically.

    Parameters
    ----------
    path : str or os.PathLike
    matrix : scipy.sparse matrix of shape (n_samples, n_features)
    samples, features : mapping of str to int, or sequence of str, optional
        Labels of the rows and columns (an index, or the labels in order).
        Default: the row and column numbers.
    analog : bool, default=True
        Write ``feature,value``; otherwise only ``feature`` (indicator).
        Values are written with the fewest digits that read back to the same
        number in the matrix's dtype.
    """
    matrix = sp.csr_matrix(matrix)
    row_labels = _labels(samples, matrix.shape[0], "sample")
    col_labels = _labels(features, matrix.shape[1], "feature")
    with atomic_text(path) as handle:
        for i in range(matrix.shape[0]):
            lo, hi = matrix.indptr[i], matrix.indptr[i + 1]
            cols = matrix.indices[lo:hi]
            if analog:
                points = (f"{col_labels[c]},{_shortest(v)}"
                          for c, v in zip(cols, matrix.data[lo:hi]))
            else:
                points = (col_labels[c] for c in cols)
            handle.write(f"{row_labels[i]}\t{':'.join(points)}\n")


def _labels(labels, size, what):
    if labels is None:
        return [str(i) for i in range(size)]
    if hasattr(labels, "items"):
        labels = index_labels(labels, size)
    labels = list(labels)
    if len(labels) < size:
        raise ValueError(f"{len(labels)} {what} labels for {size} {what}s")
    for label in labels[:size]:
        _check_label(label, f"{what} label")
        if what == "feature" and any(c in label for c in ",:"):
            raise ValueError(f"feature label {label!r} must not contain ',' or ':'")
    return labels


def _shortest(value):
    return np.format_float_positional(value, trim="-")


# -- recommendations -----------------------------------------------------------------

# Width and precision of at most two digits: a score is never wider than 99
# characters, so a format cannot turn a recommendation file into gigabytes.
_SCORE_FORMAT = re.compile(r"[-+ #0]*\d{0,2}(\.\d{1,2})?[eEfFgG]")


def check_score_format(score_format):
    """Validate a printf-style float format without the ``%`` (DSSTNE's ``-p``,
    default ``4.3f``) and return it."""
    if not isinstance(score_format, str) or not _SCORE_FORMAT.fullmatch(score_format):
        raise ValueError(f"score format must be a printf float format such as '4.3f', "
                         f"'.5g' or '.2e' (without '%'); got {score_format!r}")
    return score_format


def format_recommendations(sample, items, scores, score_format="4.3f"):
    """One line of DSSTNE's recommendation file: ``sample<TAB>item,score:...:``."""
    points = "".join(f"{item},{format(float(score), score_format)}:"
                     for item, score in zip(items, scores))
    return f"{sample}\t{points}\n"


def read_recommendations(path):
    """Read a recommendation file into ``[(sample, [(item, score), ...]), ...]``."""
    path = os.fspath(path)
    out = []
    with _numbered_lines(path, "recommendation file") as lines:
        for lineno, line in lines:
            line = line.rstrip("\r\n")
            if not line:
                continue
            sample, tab, data = line.partition("\t")
            if not tab:
                raise ValueError(f"{path}:{lineno}: no TAB after the sample label")
            items = []
            for point in filter(None, data.split(":")):
                item, comma, score = point.rpartition(",")
                try:
                    if not comma:
                        raise ValueError
                    items.append((item, float(score)))
                except ValueError:
                    raise ValueError(f"{path}:{lineno}: expected 'item,score'; got "
                                     f"{point!r}") from None
            out.append((sample, items))
    return out

"""DSSTNE's NetCDF data set files, to and from scipy.sparse.

A file holds one or more data sets, numbered 0, 1, ...; every name in the file
carries its data set's number as a suffix (``name0``, ``sparseStart0``, ...).
The layout is the one DSSTNE's reader (``NNDataSet<T>::NNDataSet``) expects;
docs/io.md lists every attribute, dimension and variable.

Sparse data sets are stored as per-example ``[start, end)`` ranges into a list
of feature indices (and of values, unless the data set is Boolean, DSSTNE's
name for an indicator set). They are read straight into a CSR matrix and
written from one, never as a dense array.

Files are not trusted: every count, length and type a file states is checked
against the others and against this machine's memory (the sizes come from the
file's metadata) before any array is read, so that a small damaged or hostile
file claiming billions of entries is refused at once, with a message naming
the file and the variable.
"""

import math
import numbers
import os
from dataclasses import dataclass

import netCDF4
import numpy as np
import scipy.sparse as sp

from .._validation import check_memory_budget
from ._files import atomic_path, open_netcdf, read_variable, reading, variable_layout

__all__ = [
    "NetCDFDataSet",
    "read_dataset",
    "read_datasets",
    "write_dataset",
    "write_datasets",
]

# Bits of the attributes<n> mask (DSSTNE's NNDataSetEnums::Attributes).
SPARSE = 1
BOOLEAN = 2
COMPRESSED = 4
RECURRENT = 8
MUTABLE = 16
SPARSE_IGNORE_ZERO = 32
INDEXED = 64
WEIGHTED = 128

# kind<n> (NNDataSetEnums::Kind).
KINDS = {0: "Numeric", 1: "Image", 2: "Audio"}

# dataType<n> (NNDataSetEnums::DataType) and the numpy type of each code.
DATA_TYPES = {0: "UInt", 1: "Int", 2: "LLInt", 3: "ULLInt", 4: "Float", 5: "Double",
              6: "RGB8", 7: "RGB16", 8: "UChar", 9: "Char"}
_CODE_OF_DTYPE = {np.dtype(np.uint32): 0, np.dtype(np.int32): 1, np.dtype(np.int64): 2,
                  np.dtype(np.uint64): 3, np.dtype(np.float32): 4, np.dtype(np.float64): 5,
                  np.dtype(np.uint8): 8, np.dtype(np.int8): 9}

_WHAT = "a DSSTNE NetCDF data set file"


@dataclass
class NetCDFDataSet:
    """One data set of a DSSTNE NetCDF file.

    Parameters
    ----------
    name : str
        The data set's name (``name<n>``); a network layer's ``DataSet`` field
        refers to it.
    data : scipy.sparse matrix or ndarray of shape (n_examples, n_features)
        The examples, one per row. Sparse matrices are kept as CSR with sorted
        indices; a dense 2-D array makes a dense data set.
    indicator : bool, default=False
        Every stored entry means 1 and no values are kept (DSSTNE's Boolean
        attribute; ``generateNetCDF -t indicator``). Only for sparse data, and
        every stored value must then be 1.
    dimensions : tuple of int, optional
        ``(width,)``, ``(width, height)`` or ``(width, height, length)`` of one
        example; their product is ``n_features``. Default ``(n_features,)``.
    kind : int, default=0
        ``kind<n>``: 0 Numeric, 1 Image, 2 Audio (kept for the file's sake).
    weights : ndarray of shape (n_examples,), optional
        Per-example weights (DSSTNE's Weighted attribute, ``dataWeight<n>``).
    sparse_ignore_zero : bool, default=False
        DSSTNE's SparseIgnoreZero attribute (errors only on non-zero targets),
        carried through reading and writing.
    """

    name: str
    data: object
    indicator: bool = False
    dimensions: tuple = None
    kind: int = 0
    weights: np.ndarray = None
    sparse_ignore_zero: bool = False

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"a data set name must be a non-empty string; got {self.name!r}")
        if sp.issparse(self.data):
            data = sp.csr_matrix(self.data)
            if not data.has_sorted_indices:
                data = data.sorted_indices()
            self.data = data
        else:
            data = np.asarray(self.data)
            if data.ndim != 2:
                raise ValueError(f"data set {self.name!r}: data must be 2-D (examples x "
                                 f"features); got {data.ndim} dimension(s)")
            self.data = data
            if self.indicator:
                raise ValueError(f"data set {self.name!r}: an indicator data set must be sparse; "
                                 "pass a scipy.sparse matrix")
        if self.data.shape[0] == 0 or self.data.shape[1] == 0:
            raise ValueError(f"data set {self.name!r} has shape {self.data.shape}; DSSTNE needs "
                             "at least one example and one feature")
        _data_type_code(self.data.dtype, self.name)  # a clear error for unsupported dtypes
        if self.indicator and self.data.nnz and not np.all(self.data.data == 1):
            raise ValueError(f"data set {self.name!r}: indicator=True keeps no values, but the "
                             "matrix holds values other than 1; pass indicator=False to keep them")
        self.dimensions = self._checked_dimensions()
        if self.kind not in KINDS:
            raise ValueError(f"data set {self.name!r}: kind must be one of {dict(KINDS)}; "
                             f"got {self.kind!r}")
        if self.weights is not None:
            weights = np.asarray(self.weights, dtype=np.float32)
            if weights.shape != (self.data.shape[0],):
                raise ValueError(f"data set {self.name!r}: weights must hold one value per "
                                 f"example ({self.data.shape[0]}); got shape {weights.shape}")
            self.weights = weights

    def _checked_dimensions(self):
        n = self.data.shape[1]
        dims = (n,) if self.dimensions is None else tuple(self.dimensions)
        ok = 1 <= len(dims) <= 3 and all(
            isinstance(d, numbers.Integral) and not isinstance(d, bool) and d >= 1 for d in dims
        )
        if not ok or int(np.prod(dims)) != n:
            raise ValueError(f"data set {self.name!r}: dimensions must be 1 to 3 positive "
                             f"integers whose product is the number of features ({n}); "
                             f"got {self.dimensions!r}")
        return tuple(int(d) for d in dims)

    @property
    def is_sparse(self):
        return sp.issparse(self.data)

    @property
    def n_examples(self):
        return self.data.shape[0]

    @property
    def n_features(self):
        return self.data.shape[1]

    @property
    def attributes(self):
        """The ``attributes<n>`` bit mask this data set is written with."""
        bits = SPARSE if self.is_sparse else 0
        if self.indicator:
            bits |= BOOLEAN
        if self.weights is not None:
            bits |= WEIGHTED
        if self.sparse_ignore_zero:
            bits |= SPARSE_IGNORE_ZERO
        return bits

    @property
    def data_type(self):
        """The ``dataType<n>`` code this data set is written with (UInt for
        indicator data, as ``generateNetCDF`` wrote it)."""
        return 0 if self.indicator else _data_type_code(self.data.dtype, self.name)


def _data_type_code(dtype, name):
    code = _CODE_OF_DTYPE.get(np.dtype(dtype))
    if code is None:
        supported = ", ".join(str(d) for d in _CODE_OF_DTYPE)
        raise TypeError(f"data set {name!r}: values of dtype {np.dtype(dtype)} have no DSSTNE "
                        f"data type; convert to one of: {supported}")
    return code


# -- reading ---------------------------------------------------------------------


def read_datasets(path):
    """Read every data set of a DSSTNE NetCDF file.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    dict of str to NetCDFDataSet
        By name, in the file's order (data set 0 first). Sparse data come as
        CSR matrices with sorted indices; entries a row lists twice are summed
        (which is what DSSTNE's kernels compute with them). Indexed data sets
        are expanded to one row per example.

    Raises
    ------
    FileNotFoundError, IsADirectoryError, PermissionError
        If ``path`` does not exist, is a directory or cannot be read.
    ValueError
        If the file is not a regular file, not NetCDF, truncated or damaged;
        lacks an attribute, dimension or variable DSSTNE's reader needs; states
        lengths or types that disagree (checked before anything is read); needs
        more memory than this machine has; or holds out-of-range offsets or
        feature indices. The message names the file and the offending name.
    """
    path = os.fspath(path)
    with reading(path), open_netcdf(path, _WHAT) as nc:
        count = _global_int(nc, "datasets", path, hint="it is not a DSSTNE data set file")
        if count < 1:
            raise ValueError(f"{path}: attribute 'datasets' is {count}; expected at least 1")
        layouts = [_layout(nc, n, path) for n in range(count)]
        needed = sum(layout.nbytes for layout in layouts)
        check_memory_budget(needed, f"{path}: reading its {count} data set(s) needs about "
                                    "{needed}")
        out = {}
        for layout in layouts:
            dataset = _read_one(nc, layout, path, needed)
            if dataset.name in out:
                raise ValueError(f"{path}: data sets {list(out).index(dataset.name)} and "
                                 f"{layout.n} are both named {dataset.name!r}")
            out[dataset.name] = dataset
    return out


def read_dataset(path, name=None):
    """Read one data set of a DSSTNE NetCDF file.

    Parameters
    ----------
    path : str or os.PathLike
    name : str, optional
        Which data set; may be omitted when the file holds only one.

    Returns
    -------
    NetCDFDataSet
    """
    datasets = read_datasets(path)
    if name is None:
        if len(datasets) > 1:
            raise ValueError(f"{os.fspath(path)} holds {len(datasets)} data sets "
                             f"({', '.join(datasets)}); say which one with name=")
        return next(iter(datasets.values()))
    if name not in datasets:
        raise ValueError(f"{os.fspath(path)} holds no data set named {name!r}; it holds: "
                         f"{', '.join(datasets)}")
    return datasets[name]


def _global_attr(nc, name, path, hint=""):
    if name not in nc.ncattrs():
        extra = f"; {hint}" if hint else ""
        raise ValueError(f"{path}: missing global attribute {name!r}{extra}")
    return nc.getncattr(name)


def _global_int(nc, name, path, hint=""):
    value = _global_attr(nc, name, path, hint)
    array = np.asarray(value)
    if array.size != 1 or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{path}: attribute {name!r} must be one integer; got {value!r}")
    return int(array.reshape(()))


def _dimension(nc, name, path):
    if name not in nc.dimensions:
        raise ValueError(f"{path}: missing dimension {name!r}")
    return len(nc.dimensions[name])


# CSR matrices index rows and columns with int64.
_MAX_FEATURES = 2**63 - 1


@dataclass
class _Layout:
    """One data set as the file's metadata describes it, checked for
    consistency before anything is read.

    ``itemsizes`` maps each variable to read to the bytes of one of its
    values; ``nbytes`` adds up, about, the memory reading the data set takes:
    the variables, their int64 copies and the matrix built from them.
    """

    n: int
    name: str
    where: str
    attributes: int
    kind: int
    dims: tuple
    n_examples: int
    n_rows: int
    n_features: int
    size: int  # stored entries (sparse) or values (dense)
    itemsizes: dict
    nbytes: int = 0


def _layout(nc, n, path):
    name = _global_attr(nc, f"name{n}", path)
    if not isinstance(name, str) or not name:
        raise ValueError(f"{path}: attribute 'name{n}' must be a non-empty string; got {name!r}")
    attributes = _global_int(nc, f"attributes{n}", path)
    _data_type(nc, n, path)  # DSSTNE refuses a data set without a valid type
    kind = _global_int(nc, f"kind{n}", path) if f"kind{n}" in nc.ncattrs() else 0
    dims = _shape(nc, n, path)
    where = f"{path} (data set {n}, {name!r})"
    n_features = math.prod(dims)
    if n_features > _MAX_FEATURES:
        raise ValueError(f"{where}: dimensions {dims} make {n_features} features, more than "
                         "a sparse matrix can index")
    n_examples = _dimension(nc, f"examplesDim{n}", path)
    if n_examples == 0:
        raise ValueError(f"{where}: examplesDim{n} is 0; the data set holds no examples")
    n_rows = n_examples
    if attributes & INDEXED:
        unique = f"uniqueExamplesDim{n}"
        n_rows = _dimension(nc, unique, path) if unique in nc.dimensions else n_examples
    sparse = bool(attributes & SPARSE)
    size = _dimension(nc, f"sparseDataDim{n}" if sparse else f"dataDim{n}", path)
    layout = _Layout(n, name, where, attributes, kind, dims, n_examples, n_rows, n_features,
                     size, {})
    (_sparse_layout if sparse else _dense_layout)(nc, layout, path)
    if attributes & INDEXED:
        _expect(nc, layout, f"index{n}", n_examples, path, integer=True)
    if attributes & WEIGHTED:
        _expect(nc, layout, f"dataWeight{n}", n_examples, path)
        layout.nbytes += n_examples * 4  # as float32
    return layout


def _expect(nc, layout, name, length, path, integer=False):
    """Check variable ``name``'s length and type from the metadata; count the
    memory reading it takes (with an int64 copy of an integer variable)."""
    dtype, found = variable_layout(nc, name, path)
    if found != length:
        raise ValueError(f"{path}: variable {name!r} holds {found} values; expected {length}")
    if integer and dtype.kind not in "iu":
        raise ValueError(f"{path}: variable {name!r} must hold integers; it holds {dtype}")
    layout.itemsizes[name] = dtype.itemsize
    layout.nbytes += length * (dtype.itemsize + (8 if integer else 0))
    return dtype


def _sparse_layout(nc, layout, path):
    n = layout.n
    _expect(nc, layout, f"sparseStart{n}", layout.n_rows, path, integer=True)
    _expect(nc, layout, f"sparseEnd{n}", layout.n_rows, path, integer=True)
    _expect(nc, layout, f"sparseIndex{n}", layout.size, path, integer=True)
    if not layout.attributes & BOOLEAN:
        _expect(nc, layout, f"sparseData{n}", layout.size, path)
    value = layout.itemsizes.get(f"sparseData{n}", 4)  # Boolean: float32 ones
    # The gathered values and int64 positions, and the indptr.
    layout.nbytes += layout.size * (2 * value + 8) + layout.n_rows * 8


def _dense_layout(nc, layout, path):
    n, where = layout.n, layout.where
    if layout.attributes & BOOLEAN:
        # DSSTNE's dense Boolean layout: one hot index per example.
        if layout.size != layout.n_rows:
            raise ValueError(f"{where}: a dense Boolean data set holds one index per example; "
                             f"dataDim{n} is {layout.size} but there are {layout.n_rows} "
                             "examples")
        _expect(nc, layout, f"data{n}", layout.size, path, integer=True)
        layout.nbytes += layout.n_rows * (4 + 8)  # the one-hot matrix's values and indptr
        return
    if layout.size != layout.n_rows * layout.n_features:
        raise ValueError(f"{where}: dataDim{n} is {layout.size}, but {layout.n_rows} examples "
                         f"of {layout.n_features} values need {layout.n_rows * layout.n_features}")
    dtype = _expect(nc, layout, f"data{n}", layout.size, path)
    if layout.attributes & INDEXED:  # expanded to one row per example
        layout.nbytes += layout.n_examples * layout.n_features * dtype.itemsize


def _variable(nc, name, path):
    """All values of a variable :func:`_expect` checked, flat."""
    return read_variable(nc, name, path).reshape(-1)


def _read_one(nc, layout, path, planned):
    n, where, attributes = layout.n, layout.where, layout.attributes
    n_rows, n_features = layout.n_rows, layout.n_features
    if attributes & SPARSE:
        data = _read_sparse(nc, layout, path, planned)
    else:
        data = _read_dense(nc, n, path, where, attributes, n_rows, n_features)
    if attributes & INDEXED:
        index = _variable(nc, f"index{n}", path)
        if index.size and (index.min() < 0 or index.max() >= n_rows):
            raise ValueError(f"{where}: index{n} refers to example {int(index.max())}, but the "
                             f"data set stores {n_rows} unique examples")
        index = index.astype(np.int64)
        if sp.issparse(data):
            # The expansion repeats rows: its size is known only now.
            entries = int(np.diff(data.indptr)[index].sum())
            check_memory_budget(planned + entries * (data.dtype.itemsize + 8),
                                f"{where}: expanding index{n} to one row per example needs "
                                "about {needed}")
        data = data[index]
    weights = None
    if attributes & WEIGHTED:
        weights = _variable(nc, f"dataWeight{n}", path).astype(np.float32)
    return NetCDFDataSet(
        name=layout.name, data=data, indicator=bool(attributes & BOOLEAN) and sp.issparse(data),
        dimensions=layout.dims, kind=layout.kind if layout.kind in KINDS else 0,
        weights=weights, sparse_ignore_zero=bool(attributes & SPARSE_IGNORE_ZERO),
    )


def _data_type(nc, n, path):
    """``dataType<n>``, or the lower-case ``datatype<n>`` DSSTNE's own writer used."""
    for spelling in (f"dataType{n}", f"datatype{n}"):
        if spelling in nc.ncattrs():
            code = _global_int(nc, spelling, path)
            if code not in DATA_TYPES:
                raise ValueError(f"{path}: attribute {spelling!r} is {code}; expected one of "
                                 f"{dict(DATA_TYPES)}")
            return code
    raise ValueError(f"{path}: missing global attribute 'dataType{n}' (or 'datatype{n}')")


def _shape(nc, n, path):
    count = _global_int(nc, f"dimensions{n}", path)
    if not 1 <= count <= 3:
        raise ValueError(f"{path}: attribute 'dimensions{n}' is {count}; expected 1, 2 or 3")
    dims = tuple(_global_int(nc, f"{axis}{n}", path)
                 for axis in ("width", "height", "length")[:count])
    if min(dims) < 1:
        raise ValueError(f"{path}: data set {n} has dimensions {dims}; each must be at least 1")
    return dims


def _read_sparse(nc, layout, path, planned):
    n, where, attributes = layout.n, layout.where, layout.attributes
    n_rows, n_features, nnz = layout.n_rows, layout.n_features, layout.size
    start = _variable(nc, f"sparseStart{n}", path).astype(np.int64)
    end = _variable(nc, f"sparseEnd{n}", path).astype(np.int64)
    bad = np.flatnonzero((start < 0) | (end < start) | (end > nnz))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"{where}: example {i} spans sparseStart{n}={start[i]} to "
                         f"sparseEnd{n}={end[i]}, outside [0, {nnz}] or reversed")
    # Examples may share entries (their ranges overlap), each then gathering
    # its own copy: the matrix can hold more entries than the file stores.
    entries = int((end - start).sum())
    if entries > nnz:
        value = layout.itemsizes.get(f"sparseData{n}", 4)
        check_memory_budget(planned + (entries - nnz) * (2 * value + 16),
                            f"{where}: the examples' overlapping ranges make {entries} entries, "
                            "which need about {needed}")
    index = _variable(nc, f"sparseIndex{n}", path)
    if index.size:
        if np.issubdtype(index.dtype, np.signedinteger) and index.min() < 0:
            raise ValueError(f"{where}: sparseIndex{n} holds a negative feature index "
                             f"({int(index.min())})")
        if int(index.max()) >= n_features:
            pos = int(np.argmax(index >= n_features))
            raise ValueError(f"{where}: sparseIndex{n}[{pos}] is {int(index[pos])}, past the "
                             f"width of the data set ({n_features} features)")
    if attributes & BOOLEAN:
        values = np.ones(nnz, dtype=np.float32)
    else:
        values = _variable(nc, f"sparseData{n}", path)
    positions = _gather_positions(start, end)
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(end - start, out=indptr[1:])
    matrix = sp.csr_matrix(
        (values[positions], index[positions].astype(np.int64), indptr),
        shape=(n_rows, n_features),
    )
    matrix.sum_duplicates()  # also sorts each row's indices
    if attributes & BOOLEAN:
        matrix.data[:] = 1  # a feature listed twice is still just present
    return matrix


def _gather_positions(start, end):
    """Positions into the index list of every example's entries, in row order:
    a plain range when the examples are stored back to back (the usual case)."""
    lengths = end - start
    total = int(lengths.sum())
    if start.size == 0 or (start[0] == 0 and np.array_equal(start[1:], end[:-1])):
        return np.arange(total, dtype=np.int64)
    offsets = np.repeat(start - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths)
    return np.arange(total, dtype=np.int64) + offsets


def _read_dense(nc, n, path, where, attributes, n_rows, n_features):
    if attributes & BOOLEAN:
        hot = _variable(nc, f"data{n}", path).astype(np.int64)
        if hot.min() < 0 or hot.max() >= n_features:
            raise ValueError(f"{where}: data{n} holds index {int(hot.max())}, past the width "
                             f"({n_features} features)")
        return sp.csr_matrix((np.ones(n_rows, np.float32), hot, np.arange(n_rows + 1)),
                             shape=(n_rows, n_features))
    return _variable(nc, f"data{n}", path).reshape(n_rows, n_features)


# -- writing ---------------------------------------------------------------------


def write_datasets(path, datasets, *, offset_type="auto", index_type="uint32"):
    """Write data sets to one DSSTNE NetCDF file, atomically.

    Parameters
    ----------
    path : str or os.PathLike
        Replaced if it exists; the file appears only once complete.
    datasets : sequence of NetCDFDataSet, or mapping of name to matrix or NetCDFDataSet
        Written as data sets 0, 1, ... in this order. A bare matrix is written
        as an analog data set (values kept).
    offset_type : {"auto", "uint32", "uint64"}, default="auto"
        Type of ``sparseStart<n>``/``sparseEnd<n>``: 32-bit as
        ``generateNetCDF`` wrote them unless the data set holds 2**32 or more
        entries ("auto"), or as given.
    index_type : {"uint32", "uint64"}, default="uint32"
        Type of ``sparseIndex<n>`` (DSSTNE's reader reads 32-bit indices).

    Notes
    -----
    Attribute names are those DSSTNE's reader looks up, including
    ``dataType<n>`` (not the lower-case spelling of DSSTNE's own writer).
    """
    items = _as_datasets(datasets)
    if offset_type not in ("auto", "uint32", "uint64"):
        raise ValueError(f"offset_type must be 'auto', 'uint32' or 'uint64'; got {offset_type!r}")
    if index_type not in ("uint32", "uint64"):
        raise ValueError(f"index_type must be 'uint32' or 'uint64'; got {index_type!r}")
    for item in items:
        if item.is_sparse and item.data.nnz == 0:
            raise ValueError(f"data set {item.name!r} holds no non-zero entries; DSSTNE cannot "
                             "read an empty sparse data set")
        if item.n_features >= 2**32 or item.n_examples >= 2**32:
            raise ValueError(f"data set {item.name!r} is too large for DSSTNE's 32-bit "
                             "widths and example counts")
    with atomic_path(path) as temporary:
        with netCDF4.Dataset(temporary, "w", format="NETCDF4") as nc:
            nc.setncattr("datasets", np.uint32(len(items)))
            for n, item in enumerate(items):
                _write_one(nc, n, item, offset_type, index_type)


def write_dataset(path, data, name, *, indicator=False, **kwargs):
    """Write one matrix as a single-data-set DSSTNE file (see :func:`write_datasets`).

    Parameters
    ----------
    path : str or os.PathLike
    data : scipy.sparse matrix or ndarray of shape (n_examples, n_features)
    name : str
        The data set's name (what a layer's ``DataSet`` field refers to).
    indicator : bool, default=False
        Write an indicator (Boolean) data set: entries only, no values.
    **kwargs
        ``offset_type``, ``index_type`` of :func:`write_datasets`.
    """
    write_datasets(path, [NetCDFDataSet(name, data, indicator=indicator)], **kwargs)


def _as_datasets(datasets):
    if isinstance(datasets, NetCDFDataSet):
        datasets = [datasets]
    elif hasattr(datasets, "items"):
        datasets = [value if isinstance(value, NetCDFDataSet) else NetCDFDataSet(key, value)
                    for key, value in datasets.items()]
    items = list(datasets)
    if not items:
        raise ValueError("no data sets to write")
    for item in items:
        if not isinstance(item, NetCDFDataSet):
            raise TypeError("datasets must be NetCDFDataSet objects or a mapping of name to "
                            f"matrix; got {type(item).__name__}")
    names = [item.name for item in items]
    if len(set(names)) != len(names):
        raise ValueError(f"data set names must be unique within a file; got {names}")
    return items


def _write_one(nc, n, item, offset_type, index_type):
    nc.setncattr(f"name{n}", item.name)
    nc.setncattr(f"attributes{n}", np.uint32(item.attributes))
    nc.setncattr(f"kind{n}", np.uint32(item.kind))
    nc.setncattr(f"dataType{n}", np.uint32(item.data_type))
    nc.setncattr(f"dimensions{n}", np.uint32(len(item.dimensions)))
    for axis, size in zip(("width", "height", "length"), item.dimensions):
        nc.setncattr(f"{axis}{n}", np.uint32(size))
    examples = nc.createDimension(f"examplesDim{n}", item.n_examples)
    if item.is_sparse:
        _write_sparse(nc, n, item, examples, offset_type, index_type)
    else:
        size = item.data.size
        nc.createDimension(f"dataDim{n}", size)
        var = nc.createVariable(f"data{n}", item.data.dtype, (f"dataDim{n}",))
        var[:] = np.ascontiguousarray(item.data).reshape(-1)
    if item.weights is not None:
        var = nc.createVariable(f"dataWeight{n}", np.float32, (examples.name,))
        var[:] = item.weights


def _write_sparse(nc, n, item, examples, offset_type, index_type):
    matrix = item.data
    nnz = matrix.nnz
    if offset_type == "auto":
        offset_type = "uint32" if nnz < 2**32 else "uint64"
    nc.createDimension(f"sparseDataDim{n}", nnz)
    indptr = matrix.indptr.astype(np.int64)
    for var_name, values in ((f"sparseStart{n}", indptr[:-1]), (f"sparseEnd{n}", indptr[1:])):
        var = nc.createVariable(var_name, offset_type, (examples.name,))
        var[:] = values.astype(offset_type)
    var = nc.createVariable(f"sparseIndex{n}", index_type, (f"sparseDataDim{n}",))
    var[:] = matrix.indices.astype(index_type)
    if not item.indicator:
        var = nc.createVariable(f"sparseData{n}", matrix.dtype, (f"sparseDataDim{n}",))
        var[:] = matrix.data

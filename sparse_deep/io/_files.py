"""File helpers shared by the readers and writers: atomic replacement and
opening NetCDF files with errors that name the file."""

import contextlib
import os
import uuid

import netCDF4


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; on success it replaces ``path``.

    The caller writes the whole file under the temporary name. Only when the
    ``with`` block ends without an exception is the file flushed to disk and
    renamed over ``path`` in one step (``os.replace``), so a reader never sees a
    half-written file under the final name, and a failed or interrupted write
    leaves ``path`` as it was. The temporary file is removed on failure.

    Raises
    ------
    FileNotFoundError
        If the directory of ``path`` does not exist.
    """
    path = os.fspath(path)
    directory, base = os.path.split(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"cannot write {path}: directory {directory} does not exist")
    if os.path.isdir(path):
        raise IsADirectoryError(f"cannot write {path}: it is a directory")
    temporary = os.path.join(directory, f".{base}.{uuid.uuid4().hex}.tmp")
    try:
        yield temporary
        _fsync(temporary)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)
        raise


def _fsync(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_text(path):
    """Open a text file for writing that appears under ``path`` only once complete."""
    with atomic_path(path) as temporary:
        with open(temporary, "x", encoding="utf-8", newline="\n") as handle:
            yield handle


def open_netcdf(path, what):
    """Open ``path`` read-only with netCDF4; ``what`` names the expected content
    in error messages ("a DSSTNE data set file", "a model file")."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{what} not found: {path}")
    if os.path.isdir(path):
        raise IsADirectoryError(f"expected {what}, but {path} is a directory")
    try:
        dataset = netCDF4.Dataset(path, "r")
    except OSError as error:
        raise ValueError(
            f"{path} is not a readable NetCDF file ({_reason(error)}); expected {what}. "
            "The file may be truncated or in another format."
        ) from None
    dataset.set_auto_mask(False)
    dataset.set_auto_scale(False)
    return dataset


def _reason(error):
    text = str(error)
    return text.split(": b'")[0] if text else type(error).__name__


def read_variable(dataset, name, path):
    """All values of variable ``name`` as a numpy array; HDF5 read errors of a
    damaged file become a ValueError naming the file and the variable."""
    try:
        return dataset.variables[name][...]
    except (OSError, RuntimeError, IndexError) as error:
        raise ValueError(
            f"{path}: cannot read variable {name!r} ({_reason(error)}); the file is damaged "
            "or truncated"
        ) from None

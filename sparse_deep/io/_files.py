"""File helpers shared by the readers and writers: atomic replacement, and
opening and reading NetCDF files with errors that name the file.

Files are not trusted: only regular files are opened (a FIFO would block the
reader, a device would stream forever), and whatever the netCDF4 and HDF5
libraries raise while reading a damaged file becomes a ValueError that names
it (see :func:`reading`).
"""

import contextlib
import os
import re
import stat
import uuid

import netCDF4
import numpy as np


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; on success it replaces ``path``.

    The caller writes the whole file under the temporary name. Only when the
    ``with`` block ends without an exception is the file flushed to disk and
    renamed over ``path`` in one step (``os.replace``), so a reader never sees a
    half-written file under the final name, and a failed or interrupted write
    leaves ``path`` as it was. The temporary file is removed on failure; one
    left by a process that was killed outright is removed by the next write of
    ``path`` (its name holds the writer's process id).

    Raises
    ------
    FileNotFoundError
        If the directory of ``path`` does not exist.
    IsADirectoryError
        If ``path`` is a directory.
    ValueError
        If ``path`` exists and is not a regular file (a FIFO, a device such
        as ``/dev/stdout``, a socket): renaming over it would not write to it
        but replace it.
    """
    path = os.fspath(path)
    directory, base = os.path.split(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"cannot write {path}: directory {directory} does not exist")
    mode = _mode_or_none(path)
    if mode is not None and stat.S_ISDIR(mode):
        raise IsADirectoryError(f"cannot write {path}: it is a directory")
    if mode is not None and not stat.S_ISREG(mode):
        raise ValueError(f"cannot write {path}: it is {_kind(mode)}, not a regular file; "
                         "files are written whole and renamed into place, so give the path "
                         "of a regular file (or of none yet)")
    _remove_orphans(directory, base)
    temporary = os.path.join(directory, f".{base}.{os.getpid()}-{uuid.uuid4().hex}.tmp")
    try:
        yield temporary
        _fsync(temporary)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)
        raise


def _remove_orphans(directory, base):
    """Remove the temporary files of earlier writes of ``base`` whose process
    is gone (killed with SIGKILL, or a machine that went down): their name
    holds the writer's process id. A live writer's file is left alone."""
    pattern = re.compile(rf"\.{re.escape(base)}\.(\d+)-[0-9a-f]{{32}}\.tmp")
    for name in os.listdir(directory):
        match = pattern.fullmatch(name)
        if match and not _process_alive(int(match.group(1))):
            with contextlib.suppress(OSError):
                os.remove(os.path.join(directory, name))


def _process_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # another user's process, or not a pid here: not ours to judge
    return True


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


def _mode_or_none(path):
    """``st_mode`` of what ``path`` leads to (links followed), or None if nothing."""
    try:
        return os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None


def _kind(mode):
    """What a non-regular file is, for a message."""
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def open_netcdf(path, what):
    """Open ``path`` read-only with netCDF4; ``what`` names the expected content
    in error messages ("a DSSTNE data set file", "a model file").

    Only a regular file is opened, checked before opening, so that a FIFO never
    blocks the reader and a device is never read.

    Raises
    ------
    FileNotFoundError, IsADirectoryError, PermissionError
        As their names say; the message names ``path``.
    ValueError
        If ``path`` is not a regular file or not a readable NetCDF file.
    """
    path = os.fspath(path)
    mode = _mode_or_none(path)
    if mode is None:
        raise FileNotFoundError(f"{what} not found: {path}")
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(f"expected {what}, but {path} is a directory")
    if not stat.S_ISREG(mode):
        raise ValueError(f"expected {what}, but {path} is {_kind(mode)}; only regular files "
                         "are read")
    try:
        dataset = netCDF4.Dataset(path, "r")
    except PermissionError:
        raise PermissionError(f"cannot read {path}: permission denied") from None
    except (OSError, RuntimeError, UnicodeError) as error:
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


# What the netCDF4 and HDF5 libraries (and numpy, on values they return) raise
# for a damaged file. UnicodeError (a ValueError) is listed for names and text
# attributes that are not UTF-8.
_LIBRARY_ERRORS = (OSError, RuntimeError, IndexError, KeyError, TypeError, AttributeError,
                   UnicodeError, OverflowError, ValueError)
_PASSED_THROUGH = (FileNotFoundError, IsADirectoryError, PermissionError)


@contextlib.contextmanager
def reading(path):
    """Run the ``with`` block's reading of ``path`` with errors that name it.

    Errors the readers raise themselves already name the file and pass
    unchanged. Anything else the libraries raise on a damaged file (an HDF5
    error, an attribute name that is not UTF-8, a value of the wrong type)
    becomes a ValueError naming the file, chained to the original; a
    MemoryError stays one, with the file named.
    """
    path = os.fspath(path)
    try:
        yield
    except _PASSED_THROUGH:
        raise
    except MemoryError as error:
        raise MemoryError(f"{path}: out of memory while reading ({error})") from error
    except _LIBRARY_ERRORS as error:
        if type(error) is ValueError and path in str(error):
            raise
        raise ValueError(f"{path}: cannot be read ({type(error).__name__}: "
                         f"{_reason(error)}); the file is damaged or not what it should "
                         "be") from error


def read_variable(dataset, name, path):
    """All values of variable ``name`` as a numpy array; HDF5 read errors of a
    damaged file become a ValueError naming the file and the variable."""
    try:
        return np.asarray(dataset.variables[name][...])
    except (OSError, RuntimeError, IndexError, TypeError, ValueError) as error:
        raise ValueError(
            f"{path}: cannot read variable {name!r} ({_reason(error)}); the file is damaged "
            "or truncated"
        ) from None


def variable_layout(dataset, name, path):
    """The dtype and length of the 1-D variable ``name``, from the file's
    metadata only (nothing is read).

    Raises
    ------
    ValueError
        If the variable is missing, not 1-D, or of a type numpy has no plain
        dtype for (text, variable-length, compound); the message names the
        file and the variable.
    """
    if name not in dataset.variables:
        raise ValueError(f"{path}: missing variable {name!r}")
    var = dataset.variables[name]
    dtype = var.dtype
    if not isinstance(dtype, np.dtype) or dtype.kind not in "biuf":
        raise ValueError(f"{path}: variable {name!r} holds {dtype!r} values; expected numbers")
    if len(var.dimensions) != 1:
        raise ValueError(f"{path}: variable {name!r} has {len(var.dimensions)} dimensions; "
                         "expected 1")
    return dtype, int(var.shape[0])

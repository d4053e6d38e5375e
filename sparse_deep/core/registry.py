"""A registry of names: canonical spellings, aliases, and the record kept for
each, used for every name the network language, the estimators and the
kernels share (activations, error functions, optimizers, layer types, ...).

Each registry maps a canonical name (the spelling ``to_dict`` emits) to an
optional frozen record of facts, accepts aliases, and knows which names
DSSTNE defines but sparse_deep does not implement, so that users get "not
supported yet" instead of "unknown" for those.
"""

from __future__ import annotations

import dis
import hashlib
import re
from types import FunctionType, ModuleType
from collections.abc import Mapping
from typing import Any, Iterator

# Spaces, underscores and hyphens carry no meaning in a name: DSSTNE itself
# accepts both "CrossEntropy" and "Cross Entropy".
_IGNORED = re.compile(r"[\s_\-]+")


def _normalise(name: str) -> str:
    return _IGNORED.sub("", name).lower()


class Registry(Mapping):
    """Canonical names, their aliases and the facts attached to them.

    Parameters
    ----------
    what : str
        What the names denote, used in error messages ("activation").
    entries : mapping of str to object
        Canonical name -> facts record (or None), in the order to list them.
    aliases : mapping of str to str, optional
        Alias -> canonical name.
    unsupported : iterable of str, optional
        Names DSSTNE defines that sparse_deep does not implement yet.
    """

    def __init__(
        self,
        what: str,
        entries: Mapping[str, Any],
        aliases: Mapping[str, str] | None = None,
        unsupported: tuple[str, ...] = (),
    ) -> None:
        self.what = what
        self._entries = dict(entries)
        self._lookup: dict[str, str] = {}
        for name in self._entries:
            self._add_key(name, name)
        for alias, name in (aliases or {}).items():
            if name not in self._entries:
                raise ValueError(f"alias {alias!r} points at unknown {what} {name!r}")
            self._add_key(alias, name)
        self._unsupported = {_normalise(name): name for name in unsupported}

    def add(self, name: str, record: Any, aliases: tuple[str, ...] = ()) -> None:
        """Register ``name`` (and its ``aliases``) with its record, after the others.

        Raises
        ------
        ValueError
            If the name or an alias is taken already, under any spelling.
        """
        if not isinstance(name, str) or not _normalise(name):
            raise ValueError(f"a {self.what} name must be a non-empty string; got {name!r}")
        taken = [s for s in (name, *aliases) if _normalise(s) in self._lookup]
        if taken:
            raise ValueError(f"{self.what} name {taken[0]!r} is registered already")
        self._entries[name] = record
        self._add_key(name, name)
        for alias in aliases:
            self._add_key(alias, name)
        self._unsupported.pop(_normalise(name), None)

    def remove(self, name: str) -> None:
        """Forget ``name`` and its aliases (a registration made for a test or an
        interactive session)."""
        canonical = self.canonical(name)
        del self._entries[canonical]
        self._lookup = {k: v for k, v in self._lookup.items() if v != canonical}

    def _add_key(self, spelling: str, canonical: str) -> None:
        key = _normalise(spelling)
        if key in self._lookup:
            raise ValueError(f"{self.what} name {spelling!r} registered twice")
        self._lookup[key] = canonical

    @property
    def names(self) -> tuple[str, ...]:
        """Canonical names, in registration order."""
        return tuple(self._entries)

    def canonical(self, name: str) -> str:
        """Return the canonical spelling of `name`.

        Parameters
        ----------
        name : str
            Any accepted spelling: case, spaces, underscores and hyphens are
            ignored, and aliases are resolved.

        Returns
        -------
        str
            The canonical name.

        Raises
        ------
        ValueError
            If `name` is not a string, is unknown, or is a DSSTNE name that
            sparse_deep does not support yet. The message lists the accepted
            canonical names.
        """
        if not isinstance(name, str):
            raise ValueError(
                f"{self.what} must be a string, got {name!r}; "
                f"expected one of: {self._listing()}"
            )
        key = _normalise(name)
        if key in self._lookup:
            return self._lookup[key]
        if key in self._unsupported:
            raise ValueError(
                f"{self._unsupported[key]!r} is a DSSTNE {self.what} that sparse_deep does not "
                f"support yet; supported: {self._listing()}"
            )
        raise ValueError(f"unknown {self.what} {name!r}; expected one of: {self._listing()}")

    def info(self, name: str) -> Any:
        """Return the facts record registered for `name` (any accepted spelling)."""
        return self._entries[self.canonical(name)]

    def record(self, name_or_code: Any) -> Any:
        """The record of a name (any accepted spelling) or of a record's
        ``code`` (the records of activations and error functions have one)."""
        if isinstance(name_or_code, str):
            return self.info(name_or_code)
        if isinstance(name_or_code, bool):  # not a code, though it compares equal to one
            raise ValueError(f"no {self.what} has code {name_or_code!r}")
        for record in self._entries.values():
            if getattr(record, "code", None) == name_or_code:
                return record
        raise ValueError(f"no {self.what} has code {name_or_code!r}")

    def _listing(self) -> str:
        return ", ".join(self._entries)

    def __getitem__(self, name: str) -> Any:
        """The record of ``name`` (any accepted spelling); KeyError if unknown."""
        try:
            return self.info(name)
        except ValueError:
            raise KeyError(name) from None

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and _normalise(name) in self._lookup

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.what!r}, {list(self._entries)!r})"


def fingerprint(*functions) -> str:
    """A digest of the functions' code and of the globals they read (None
    entries are skipped): kernels specialised to a registered definition are
    cached on disk under a name that carries it, so that a cached kernel is
    never reused for another definition under the same name. The same
    definition gives the same digest in every process (or each new process
    would compile its kernels again)."""
    parts = [_code_digest(function) for function in functions if function is not None]
    return hashlib.sha1(repr(parts).encode()).hexdigest()[:12]


def _code_digest(function, seen=()):
    """The code of ``function`` and a stable description of each global it
    reads (helper functions described by their own code, in turn)."""
    function = getattr(function, "py_func", function)  # a numba dispatcher's Python function
    code = function.__code__
    read = sorted({ins.argval for ins in dis.get_instructions(code)
                   if ins.opname == "LOAD_GLOBAL"})
    seen = seen + (code,)
    return (code.co_code, code.co_names, _constants(code),
            [(name, _describe(function.__globals__.get(name), seen)) for name in read])


def _constants(code):
    """A code object's constants, nested functions' code described by theirs."""
    return tuple((c.co_code, c.co_names, _constants(c)) if hasattr(c, "co_code") else c
                 for c in code.co_consts)


def _describe(value, seen):
    """What a global stands for, without a memory address: a module by its
    name, a function (or a numba dispatcher) by its code, once against
    cycles, a builtin or a class by its qualified name, else its repr."""
    if hasattr(value, "__code__") or hasattr(value, "py_func"):
        code = getattr(getattr(value, "py_func", value), "__code__", None)
        if code in seen:
            return "(recursive)"
        return _code_digest(value, seen)
    if isinstance(value, ModuleType):
        return f"module {value.__name__}"
    if callable(value):
        return f"{getattr(value, '__module__', '')}.{getattr(value, '__qualname__', value)}"
    return repr(value)


def compiled_once(record, jit, compiled, *functions):
    """``(*functions compiled with jit, tag)`` for a registered ``record``,
    made once per definition and kept in ``compiled``: ``tag`` names the
    definition (name and fingerprint) for the kernels specialised to it."""
    key = record.name, record.fingerprint
    if key not in compiled:
        compiled[key] = (*(jit(f) for f in functions), f"{record.name}_{record.fingerprint}")
    return compiled[key]


def with_globals(body, qualname=None, **names):
    """A copy of the function ``body`` that reads ``names`` as globals, named
    ``qualname``: how a kernel is specialised to a registered definition.

    numba takes globals for compile-time constants, so the branches of other
    values fold away. Not a closure: numba's cache keys a closure by pickling
    the values it closes over, and a jitted helper pickles with an id that is
    new in every process, so a kernel closing over its helpers missed the
    cache in every new process. Globals are not part of that key, hence a
    name of its own (that names the values of ``names``) for each variant.
    """
    clone = FunctionType(body.__code__, dict(body.__globals__, **names), body.__name__)
    clone.__qualname__ = qualname or body.__qualname__
    clone.__doc__ = body.__doc__
    return clone

"""Caches of what is made from an object, kept as long as the object lives."""

import weakref


def kept(cache, obj, make=dict):
    """``cache``'s entry for ``obj``, made by ``make()`` the first time. The
    entry is keyed by ``id(obj)`` and goes when ``obj`` goes, so an id is
    never taken for another object's."""
    entry = cache.get(id(obj))
    if entry is None:
        entry = cache[id(obj)] = make()
        weakref.finalize(obj, cache.pop, id(obj), None)
    return entry

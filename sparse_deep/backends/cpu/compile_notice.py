"""One line on stderr when a process first compiles sparse_deep's kernels.

numba compiles each kernel the first time it runs on a machine and caches it,
so a new user's first fit waits while nothing says why (half a minute on two
cores for the recommender's defaults, against seconds once cached). The
notice comes only on a cache miss, once per process.
"""

import sys
import threading

NOTICE = ("sparse_deep: compiling kernels for this machine (numba caches them; "
          "this happens once and can take a minute)\n")

_lock = threading.Lock()
_registered = False
_said = False


def announce_first_compile():
    """Say :data:`NOTICE` when this process first compiles a sparse_deep kernel."""
    global _registered
    if _registered:
        return
    from numba.core import event

    class _FirstCompile(event.Listener):
        def on_start(self, ev):
            if ev.data["dispatcher"].py_func.__module__.startswith("sparse_deep."):
                _say()

        def on_end(self, ev):
            pass

    with _lock:
        if not _registered:
            event.register("numba:compile", _FirstCompile())
            _registered = True


def _say():
    global _said
    with _lock:
        if _said:
            return
        _said = True
    sys.stderr.write(NOTICE)
    sys.stderr.flush()

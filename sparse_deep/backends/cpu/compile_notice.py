"""One line on stderr when a process first compiles sparse_deep's kernels.

numba compiles each kernel the first time it runs on a machine and caches it,
so a new user's first fit waits while nothing says why (seven seconds of
compiling on two cores for the recommender's defaults). The notice comes
only on a cache miss, once per process.

A progress bar can take the compiles over (:func:`report_compiles_to`): it
then says it is compiling, and prints the notice above itself.
"""

import contextlib
import sys
import threading

NOTICE = ("sparse_deep: compiling kernels for this machine (numba caches them; "
          "this happens once and can take a minute)\n")

_lock = threading.Lock()
_registered = False
_said = False
_reporters = []  # the innermost report_compiles_to block's is last


def announce_first_compile():
    """Have numba call :func:`compile_started` whenever this process compiles a
    sparse_deep kernel: the notice comes on the first."""
    global _registered
    if _registered:
        return
    from numba.core import event

    class _FirstCompile(event.Listener):
        def on_start(self, ev):
            if ev.data["dispatcher"].py_func.__module__.startswith("sparse_deep."):
                compile_started()

        def on_end(self, ev):
            pass

    with _lock:
        if not _registered:
            event.register("numba:compile", _FirstCompile())
            _registered = True


def compile_started():
    """What a sparse_deep kernel compile does (numba calls it as one starts):
    the notice on the process's first, told to the active reporter if any."""
    notice = NOTICE if _first_notice() else ""
    if _reporters:
        _reporters[-1](notice)
    elif notice:
        sys.stderr.write(notice)
        sys.stderr.flush()


@contextlib.contextmanager
def report_compiles_to(report):
    """Inside the block, each sparse_deep kernel compile calls ``report(notice)``
    instead of writing the notice to stderr; ``notice`` is :data:`NOTICE` on the
    process's first compile and "" on the later ones.

    ``sparse-deep train``'s progress bar uses it to say it is compiling (an
    ETA counting the compile time would be far too long) and to print the
    notice on its own line rather than into the bar's.
    """
    announce_first_compile()
    _reporters.append(report)
    try:
        yield
    finally:
        _reporters.remove(report)


def _first_notice():
    """True once per process: for the first compile."""
    global _said
    with _lock:
        if _said:
            return False
        _said = True
        return True

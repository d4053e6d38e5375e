"""Will the model fit in GPU memory? The check made before anything is allocated."""

from numba import cuda


def format_bytes(n):
    """``n`` bytes in KiB, MiB or GiB, whichever reads best."""
    if n == float("inf"):
        return "unlimited"
    if n < 1 << 20:
        return f"{n / (1 << 10):.1f} KiB"
    if n < 1 << 30:
        return f"{n / (1 << 20):.1f} MiB"
    return f"{n / (1 << 30):.2f} GiB"


def check_fits(needed, free, total):
    """Raise MemoryError when the parts of ``needed`` (name -> bytes) add up to
    more than ``free`` bytes; the message gives every part and both totals."""
    need = sum(needed.values())
    if need <= free:
        return need
    parts = ", ".join(f"{name} {format_bytes(size)}" for name, size in needed.items() if size)
    raise MemoryError(
        f"the model does not fit in GPU memory: it needs {format_bytes(need)} ({parts}), but "
        f"the GPU has {format_bytes(free)} free of {format_bytes(total)}. Use fewer hidden "
        "units, a smaller batch_size, an optimizer with less state (sgd keeps none, adam two "
        "copies of the weights), or device='cpu'."
    )


def memory_info():
    """``(free, total)`` bytes of the current GPU (infinite under the simulator)."""
    info = cuda.current_context().get_memory_info()
    return info[0], info[1]

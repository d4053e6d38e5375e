"""Compute backends behind one interface (:class:`~sparse_deep.backends.base.Backend`)."""

from .base import Backend
from .cpu import CPUBackend

_DEVICES = ("cpu", "cuda", "auto")


def get_backend(device="cpu"):
    """Backend for the estimators' ``device`` parameter.

    ``"cpu"`` is always available. ``"cuda"`` needs an NVIDIA GPU usable by
    numba; ``"auto"`` takes it when present and the CPU otherwise.
    """
    if not isinstance(device, str) or device.lower() not in _DEVICES:
        raise ValueError(f"device must be one of {', '.join(map(repr, _DEVICES))}; got {device!r}")
    device = device.lower()
    if device in ("cpu", "auto"):
        # The numba.cuda backend is not written yet: "auto" finds no usable GPU.
        return CPUBackend()
    raise ValueError(
        "device='cuda' was requested, but this version of sparse_deep has no CUDA "
        "backend yet; use device='cpu' or device='auto'"
    )


__all__ = ["Backend", "CPUBackend", "get_backend"]

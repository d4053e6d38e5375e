"""Compute backends behind one interface (:class:`~sparse_deep.backends.base.Backend`)."""

import importlib
import os

from ..core.devices import DEVICES
from .base import Backend
from .cpu import CPUBackend


def cuda_device_status():
    """What numba.cuda can use here: ``(usable, simulated, report)``.

    ``report`` says what was found: the GPU's name and compute capability, the
    simulator, or why there is no usable GPU (numba.cuda's own explanation,
    e.g. no driver library). Importing numba.cuda happens here, not before.
    """
    try:
        from numba import cuda
        from numba.core import config
    except Exception as exc:  # a numba without its CUDA target
        return False, False, f"numba.cuda cannot be imported ({exc})"
    if config.ENABLE_CUDASIM or "simulator" in getattr(cuda.jit, "__module__", ""):
        return True, True, "numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1)"
    problem = cuda_compiler_problem()
    if problem:
        return False, False, problem
    if not cuda.is_available():
        reason = cuda.cuda_error()
        reason = " ".join(str(reason).split()) if reason else "no CUDA-capable GPU was found"
        return False, False, f"numba.cuda found no usable GPU: {reason}"
    try:
        _select_gpu_of_this_rank(cuda)
        device = cuda.get_current_device()
        name = device.name.decode() if isinstance(device.name, bytes) else str(device.name)
        major, minor = device.compute_capability
    except Exception as exc:  # a driver, but the device cannot be opened
        return False, False, ("numba.cuda found a CUDA driver but could not open a GPU: "
                              + " ".join(str(exc).split()))
    return True, False, f"{name} (compute capability {major}.{minor})"


def cuda_compiler_problem(import_module=importlib.import_module):
    """Why numba.cuda's kernel compiler cannot load here, or None.

    Its typing modules are imported when the first kernel compiles; a failure
    there would surface in the middle of a fit. Seen on a GPU machine:
    numba-cuda 0.30.4 with numpy 2.5, which removed ``np.row_stack``.
    """
    try:
        import_module("numba.cuda.cudaimpl")
    except ImportError:  # a numba.cuda laid out otherwise: nothing known to check
        return None
    except Exception as exc:
        hint = (" numpy 2.5 removed np.row_stack, which this numba-cuda still uses: install "
                "numpy<2.5 (pip install 'sparse_deep[cuda]' does) or a numba-cuda that supports "
                "it." if "row_stack" in str(exc) else "")
        return (f"numba.cuda cannot compile kernels here ({type(exc).__name__}: "
                f"{' '.join(str(exc).split())}).{hint}")
    return None


# Launchers' environment variables for a process's rank on its own machine.
_LOCAL_RANK_VARIABLES = ("MPI_LOCALRANKID", "OMPI_COMM_WORLD_LOCAL_RANK", "PMIX_LOCAL_RANK",
                         "SLURM_LOCALID")


def local_rank():
    """This process's rank among the MPI ranks on its machine (0 without MPI)."""
    for name in _LOCAL_RANK_VARIABLES:
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return 0


def gpu_for_rank(rank, n_gpus):
    """The GPU a rank uses: one GPU per rank, round robin over the machine's GPUs."""
    return rank % n_gpus if n_gpus > 0 else 0


def _select_gpu_of_this_rank(cuda):
    """Under MPI, each rank on a machine takes its own GPU (before any context
    is created on the default one)."""
    global _GPU_SELECTED
    if _GPU_SELECTED:
        return
    rank = local_rank()
    if rank:
        cuda.select_device(gpu_for_rank(rank, len(cuda.gpus)))
    _GPU_SELECTED = True


_GPU_SELECTED = False


def get_backend(device="cpu"):
    """Backend for the estimators' ``device`` parameter.

    ``"cpu"`` is always available. ``"cuda"`` needs an NVIDIA GPU usable by
    numba.cuda (or numba's simulator, NUMBA_ENABLE_CUDASIM=1, which runs the
    same kernels slowly in Python) and otherwise raises a ValueError saying
    what numba.cuda found. ``"auto"`` takes a real GPU when there is one and
    the CPU otherwise (never the simulator).
    """
    if not isinstance(device, str) or device.lower() not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(map(repr, DEVICES))}; got {device!r}")
    device = device.lower()
    if device == "cpu":
        return CPUBackend()
    usable, simulated, report = cuda_device_status()
    if device == "auto" and (not usable or simulated):
        return CPUBackend()
    if not usable:
        raise ValueError(
            f"device='cuda' was requested, but {report}. Use device='cpu', or device='auto' "
            "to run on a GPU when there is one and on the CPU otherwise."
        )
    from .cuda import CUDABackend

    return CUDABackend()


__all__ = ["Backend", "CPUBackend", "cuda_device_status", "get_backend"]

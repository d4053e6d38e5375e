"""Descriptions of the parameters and attributes the estimators share, written once.

An estimator's docstring names an entry (or a group of them) on a line of its
own, ``%(device)s``, indented as the entry should be; :func:`share_docs` puts
the entry there.
"""

import re

from ..core.optimizers import OPTIMIZERS

SHARED = {
    # -- parameters --------------------------------------------------------------
    "optimizer": f"""\
optimizer : str, default="adam"
    {", ".join(OPTIMIZERS)}, or one added with
    :func:`sparse_deep.core.optimizers.register_optimizer`.""",
    "momentum": """\
momentum : float, default=0.9
    Momentum of the momentum and nesterov optimizers.""",
    "warm_start": """\
warm_start : bool, default=False
    Continue training the fitted model (weights, optimizer state, epoch
    count) on the next ``fit`` instead of starting again. The training
    buffers are then kept between fits, up to 1 GiB (as with
    ``partial_fit``), so that the next call does not allocate them again.""",
    "checkpoint_path": """\
checkpoint_path : str, os.PathLike or None, default=None
    A model file that ``fit`` writes every ``checkpoint_every`` epochs
    (atomically, in the format of :func:`~sparse_deep.io.save_model`). If
    it exists when ``fit`` starts and was written by a fit of the same
    parameters on the same data, training resumes from it and gives the
    same model as a fit never interrupted; a file of another fit is
    replaced (with a warning). Not with ``early_stopping=True``.""",
    "checkpoint_every": """\
checkpoint_every : int, default=1
    Epochs between checkpoints.""",
    "device": """\
device : {"cpu", "cuda", "auto"}, default="cpu"
    Where fit and inference run: the CPU, an NVIDIA GPU through numba.cuda
    (an error saying what numba.cuda found when it cannot use one), or the
    GPU when there is one and the CPU otherwise. The fitted model is the
    same kind of object either way (docs/gpu.md).""",
    "distributed": """\
distributed : {"auto", "off"}, default="auto"
    Under ``mpiexec -n R`` with R > 1, "auto" shards the model over the R
    ranks (input features and output units split, DSSTNE's model
    parallelism; see docs/distributed.md); every rank runs the same script
    with the same data. "off" trains an independent model on each rank.""",
    "weight_memory_limit": """\
weight_memory_limit : int, str or None, default=None
    Most memory (bytes, or e.g. "2GiB") that one rank may spend on
    weights, their gradients and optimizer state; a larger model is refused
    before anything is allocated, with the number of ranks that would fit it.""",
    # -- attributes ----------------------------------------------------------------
    "network_": """\
network_ : dict
    The DSSTNE JSON network trained (sizes resolved).""",
    "model_": """\
model_ : sparse_deep.engine.model.Model
    The weights and biases, and the network's execution plan. After a
    ``partial_fit`` (or a warm-start fit) on a GPU the newest weights stay
    on the GPU for the next call and are copied back when ``model_`` is
    read.""",
    "coefs_": """\
coefs_ : list of ndarray
    The weight matrices, one per connection, each (units of its source,
    units of its target) as in scikit-learn's MLPs: read-only views of
    ``model_``'s weights.""",
    "intercepts_": """\
intercepts_ : list of ndarray
    The bias vectors of the layers after the input, in layer order
    (read-only views).""",
}

# Entries that always come together, named as one.
GROUPS = {
    "checkpoints": ("checkpoint_path", "checkpoint_every"),
    "placement": ("device", "distributed", "weight_memory_limit"),
    "fitted_network": ("network_", "model_", "coefs_", "intercepts_"),
}

_MARKER = re.compile(r"^(?P<indent>[ ]*)%\((?P<name>\w+)\)s[ ]*$", re.MULTILINE)


def share_docs(cls):
    """Class decorator: replace each ``%(name)s`` line of the docstring by
    :data:`SHARED` ``[name]``, indented as the marker is."""

    def entry(match):
        indent, name = match["indent"], match["name"]
        try:
            text = "\n".join(SHARED[entry] for entry in GROUPS.get(name, (name,)))
        except KeyError:
            raise KeyError(f"{cls.__name__}'s docstring names {name!r}, which "
                           f"sparse_deep/estimators/_docs.py does not describe") from None
        return "\n".join(indent + line if line else line for line in text.splitlines())

    if cls.__doc__:  # None under python -OO
        cls.__doc__ = _MARKER.sub(entry, cls.__doc__)
    return cls

"""The names of the devices a fit can run on: ``device=`` and the CLI's ``--device``.

"cpu" and "cuda" name the backends in :mod:`sparse_deep.backends`; "auto"
takes a real GPU when there is one and the CPU otherwise.
"""

DEVICES = ("cpu", "cuda", "auto")

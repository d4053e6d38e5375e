"""What the engine and every backend share, below both of them.

* :mod:`~sparse_deep.core.codes`: the integer codes that name activations,
  error functions and optimizers inside kernels;
* :mod:`~sparse_deep.core.scalar`: their per-element maths, one definition
  that the CPU and CUDA backends each compile;
* :mod:`~sparse_deep.core.rng`: the counter-based random numbers of dropout,
  denoising and sampling;
* :mod:`~sparse_deep.core.blocks`: the CSR blocks a batch is loaded into.

Nothing here imports the engine, a backend or an estimator.
"""

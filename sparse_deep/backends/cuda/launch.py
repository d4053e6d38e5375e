"""Launch geometry of the CUDA kernels.

Every block and tile size lives here as a module-level constant, read when a
kernel is launched (kernels whose shared memory depends on a size are compiled
once per value). The tests shrink them, so that the simulator runs the
multi-block and multi-tile paths on inputs of a few rows and columns.
"""

# Threads per block of the elementwise kernels (grid-stride loops).
THREADS = 256
# Most blocks one elementwise launch asks for; larger inputs loop.
MAX_BLOCKS = 8192
# Threads of the one-block-per-row kernels (SoftMax, the output pass, top-k).
# A power of two: their reductions halve it. Rows are output layers of
# thousands to millions of items, so blocks are wide. (Not tuned on a GPU yet.)
ROW_THREADS = 512
# GEMM: a block of GEMM_THREADS x GEMM_THREADS threads, each computing
# GEMM_WORK x GEMM_WORK outputs, walks K in steps of GEMM_TILE_K.
GEMM_THREADS = 16
GEMM_WORK = 4
GEMM_TILE_K = 16
# A product with fewer output tiles than this (a long K, a small C: the
# gradient passed back through the output layer) splits K across more blocks;
# their partial products are added in a fixed order by a second kernel.
GEMM_MIN_BLOCKS = 256
# ... but only when K is at least this long: below it, a block's whole K takes
# about as long as numba-cuda's host-side cost of the second launch (about
# 0.1 ms), so the products of a sampled step (K = the batch, the hidden width,
# the negatives) run in one launch each, and the output layer's over every item
# still splits. (Reasoned, not yet timed on a GPU.)
GEMM_SPLIT_MIN_K = 4096


def blocks_for(n, threads=None):
    """Blocks of a grid-stride launch over ``n`` items."""
    threads = THREADS if threads is None else threads
    return max(1, min(MAX_BLOCKS, -(-int(n) // threads)))


def elementwise(n):
    """``(blocks, threads)`` of a grid-stride launch over ``n`` items."""
    return blocks_for(n), THREADS


def rows(n_rows):
    """``(blocks, threads)`` of a one-block-per-row launch (blocks loop over rows)."""
    check_power_of_two(ROW_THREADS, "ROW_THREADS")
    return max(1, min(MAX_BLOCKS, int(n_rows))), ROW_THREADS


def check_power_of_two(value, name):
    if value < 1 or value & (value - 1):
        raise ValueError(f"{name} must be a power of two; got {value}")

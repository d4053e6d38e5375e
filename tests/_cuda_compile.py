"""Compile the CUDA backend's kernels to PTX for a real GPU, without one.

The simulator runs kernels as Python, so it would accept code that numba's
CUDA compiler rejects (numba 0.66+ fails on two-argument min/max, for one).
``tests/test_kernels_cuda.py`` runs this file in a subprocess with the
simulator off: it types and compiles every kernel for compute capability 9.0
through NVVM and prints "compiled N kernels". numba asks the current device
for its compute capability, and there is no device here, so the two places
that ask are given a stand-in that answers (9, 0). Exit status 3 means NVVM
itself is missing (nothing to check on this machine).
"""

import sys

import numba.cuda.compiler as cuda_compiler
import numba.cuda.dispatcher as cuda_dispatcher
import numpy as np
from numba import cuda, types

CC = (9, 0)


class _Device:
    compute_capability = CC


def main():
    cuda_compiler.get_current_device = cuda_dispatcher.get_current_device = _Device
    try:
        cuda.compile_ptx(lambda x: None, (types.float32[:],), cc=CC)
    except Exception as exc:  # no libNVVM: the CUDA toolkit is not installed
        print(f"NVVM unavailable: {exc}")
        return 3
    from sparse_deep.backends.cuda import dense, gemm, optim, sampled, sparse, topk
    from sparse_deep.core.activations import ACTIVATIONS
    from sparse_deep.core.optimizers import OPTIMIZERS
    from sparse_deep.core.errors import ERROR_FUNCTIONS

    ACT = {name: ACTIVATIONS.info(name).code for name in ACTIVATIONS}
    ERR = {name: ERROR_FUNCTIONS.info(name).code for name in ERROR_FUNCTIONS}

    f32, f64, i32, i64, u64 = (types.float32, types.float64, types.int32, types.int64,
                               types.uint64)

    def arr(dtype, ndim=1):
        return types.Array(dtype, ndim, "C")

    m2, v, i64v, i32v = arr(f32, 2), arr(f32), arr(i64), arr(i32)
    kernels = [
        (dense._fill_rows, (m2, v)), (dense._fill, (m2, f32)), (dense._copy, (m2, m2)),
        (dense._add, (m2, m2)),
        (dense._softmax_kernel(256), (m2,)),
        (dense._dropout, (m2, m2, u64, i64v, f64, f64)),
        (dense._column_sums, (m2, f32, v)),
        (dense._penalty_kernel(256), (m2, f64, f64, f64, v, arr(f64))),
        (dense._scale_rows, (m2, v)), (dense._scale, (m2, f32)),
        (sparse._sparse_matmul_add, (i64v, i32v, v, m2, m2, v, types.boolean)),
        (sparse._sparse_weight_gradient, (i64v, i32v, v, i64, m2, f32, m2, v, types.boolean,
                                           i64v, i64v, i64, types.boolean)),
        (sparse._scatter_rows, (m2, i64v, m2)), (sparse._zero_rows, (m2, i64v)),
        *((optim._kernel(code), tuple(types.UniTuple(t, optim.GROUPS) for t in (
            m2, m2, i64v, i64, m2, m2, types.UniTuple(f64, 15), i64v, i64)))
          for code in range(len(OPTIMIZERS))),
        (optim._clear_slots, (i64v,)), (optim._mark_slots, (i64v, i64v, i64, i64)),
        (optim._cap_column_norms, (m2, f64)),
        (topk._make_topk(32, 256), (m2, arr(types.uint32, 2), i64, i64v, i32v, arr(i64, 2), m2)),
    ]
    for trans_a in (False, True):
        for trans_b in (False, True):
            for split in (False, True):
                kernels.append((gemm._make_gemm(np.dtype(np.float32), 16, 4, 16, trans_a,
                                                trans_b, split),
                                (m2, m2, m2, f32, f32, f32, i64, arr(f32, 3))))
    kernels.append((gemm._add_chunks, (arr(f32, 3), i64, m2, f32, f32, f32)))
    # Every activation's own kernels, and every error function once.
    for code in ACT.values():
        kernels += [
            (dense.specialised(dense._activate_body, {}, code), (m2, f64, f64, f64)),
            (dense.specialised(dense._hidden_delta_body, {}, code),
             (m2, m2, f64, f64, f64, u64, i64v, f64, f64, v)),
            (dense.specialised(sparse._activated_sparse_affine_body, {}, code),
             (i64v, i32v, v, m2, m2, v, f64, f64, f64)),
        ]
    for act, err in [("SoftMax", "CrossEntropy"), ("Sigmoid", "ScaledMarginalCrossEntropy"),
                     ("Sigmoid", "DataScaledMarginalCrossEntropy"), ("Tanh", "L2"),
                     ("Relu", "L1"), ("ELU", "Hinge"), ("SoftPlus", "L2Hinge")]:
        kernels.append((dense._make_output_pass(ACT[act], ERR[err], 256),
                        (m2, i64v, i32v, v, v, f64, m2, arr(f64), arr(f64, 2))))
    # Model parallelism: the sharded SoftMax pass and its helpers.
    kernels += [
        (dense._make_output_pass(ACT["SoftMax"], ERR["CrossEntropy"], 256, True),
         (m2, i64v, i32v, v, v, f64, m2, arr(f64), arr(f64, 2))),
        (dense._partials_kernel(256), (m2, i64v, v, arr(f64, 2))),
        (dense._softmax_apply, (m2, arr(f64, 2))),
        (dense._softmax_jacobian, (m2, m2, arr(f64), f64)),
    ]
    # The sampled output layer (every loss's branches, dot and cosine scores).
    f64v, f64m = arr(f64), arr(f64, 2)
    kernels += [
        (sampled._gather_rows_dense, (m2, i64v, m2)),
        (sampled._normalize_rows, (m2, m2, v)), (sampled._row_norms, (m2, v)),
        (sampled._reciprocal_scaled, (v, f32)),
        (sampled._positive_scores, (m2, i64v, i64, i32v, m2, v, types.boolean, v)),
        (sampled._add_row_bias, (m2, v, i64v)), (sampled._scale_columns, (m2, v)),
        (sampled._negative_logsumexp, (m2, f64v, f64, f64m, f64v)),
        (sampled._positive_pass, (i64, v, i64v, i64, v, f64v, f64, f64v, v, f64v, f64v)),
        (sampled._negative_pass, (i64, m2, f64v, f64v, f64v, f64, f64, f64, f64v, m2, f64v)),
        (sampled._bpr_pass, (v, i64v, i64, v, m2, f64, f64, f64v, v, m2, f64v)),
        (sampled._positive_deltas, (v, i64v, i64, i32v, m2, types.boolean, m2, f64v,
                                    types.boolean, m2, v, m2, types.boolean)),
        (sampled._into_hidden, (m2, types.boolean, m2, v, m2, types.boolean)),
        (sampled._unit_operands, (m2, m2, v, m2, i64v, m2, v)),
        (sampled._sampled_rows, (i64, m2, i64v, i64, i32v, v, m2, v, types.boolean, v, m2,
                                 f64v, f64, f64, f64, f64v, f64m, f64v, v, m2, f64v, f64v)),
        (sampled._compact_unit_gradient, (v, i64v, i64, i64v, i64v, i64, m2, m2, i64v, m2, i64v,
                                          m2)),
        (sampled._positive_gradient, (v, i64v, i64, i64v, i64v, i64, m2, m2)),
        (sampled._add_negative_rows, (m2, i64v, m2)),
        (sampled._project_out_radial, (m2, m2, i64v)),
        (sampled._positive_bias_gradient, (v, i64v, i64v, i64, v)),
        (sampled._negative_column_sums, (m2, v)), (sampled._add_negative_bias, (v, i64v, v)),
    ]
    for kernel, signature in kernels:
        cuda.compile_ptx(kernel.py_func, signature, cc=CC)
    print(f"compiled {len(kernels)} kernels")
    return 0


if __name__ == "__main__":
    sys.exit(main())

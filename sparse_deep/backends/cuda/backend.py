"""The CUDA backend: numba.cuda device arrays and kernels.

Everything a fit needs on the GPU (weights, optimizer state, the buffers of
one batch) is allocated once, when the engine's Runner is built, after a check
that it fits. The data set stays in host memory: each batch is gathered on the
host into pinned memory and copied to the GPU on a second stream while the
previous step's kernels run (see :meth:`CUDABackend.gather_rows`).

All kernels run in order on one stream; the host waits for the GPU only where
it needs a number back (a batch's summed error, the count of features present,
the sparseness penalty's value).
"""

import numpy as np
from numba import cuda

from ...core.codes import OUTPUT_HYPER_SIZE
from ..base import Backend
from ..cpu import sparse as host_kernels
from ..cpu.threads import start_thread_pool
from . import dense, memory, optim, sampled, sparse, topk
from ._device import SIMULATED
from .gemm import gemm, scratch_elements


class HostCSRSource:
    """A CSR data set kept in host memory, from which the backend copies batches.

    Holds the three CSR arrays (as the CPU backend would) and two staging
    slots, used in turn: pinned host buffers a batch is gathered into, device
    buffers it is copied to ahead of use, and the events that say when each
    may be reused.
    """

    def __init__(self, matrix):
        self.indptr = np.ascontiguousarray(matrix.indptr, dtype=np.int64)
        self.indices = np.ascontiguousarray(matrix.indices, dtype=np.int32)
        self.data = np.ascontiguousarray(matrix.data)
        self._slots = []
        self._turn = 0

    def next_slot(self, batch):
        """The staging slot for the next batch, sized like the ``batch`` buffers."""
        shape = (batch.indptr.shape[0], batch.indices.shape[0], batch.data.dtype)
        if not self._slots or self._slots[0].shape != shape:
            for old in self._slots:  # let pending copies finish before the memory goes
                old.copied.synchronize()
                old.consumed.synchronize()
            self._slots = [_StagingSlot(*shape) for _ in range(2)]
        self._turn ^= 1
        return self._slots[self._turn]


class DeviceCSRSource:
    """A CSR data set copied to the GPU once; batches are gathered there.

    Only the row offsets stay on the host too, so that a batch's offsets and
    size are known without asking the GPU. Used when the data set takes a
    small part of the free GPU memory (see ``CUDABackend.batch_source``).
    """

    def __init__(self, matrix, stream):
        self.host_indptr = np.ascontiguousarray(matrix.indptr, dtype=np.int64)
        self.indptr = cuda.to_device(self.host_indptr, stream=stream)
        self.indices = cuda.to_device(np.ascontiguousarray(matrix.indices, dtype=np.int32),
                                      stream=stream)
        self.data = cuda.to_device(np.ascontiguousarray(matrix.data), stream=stream)

    @staticmethod
    def nbytes(matrix):
        return (matrix.shape[0] + 1) * 8 + matrix.nnz * (4 + matrix.data.dtype.itemsize)

    def gather_plan(self, rows):
        """``rows`` followed by the batch's row offsets (int64, host): what the
        GPU's gather needs, in one array so that one upload carries it."""
        b = rows.shape[0]
        plan = np.empty(2 * b + 1, dtype=np.int64)
        plan[:b] = rows
        plan[b] = 0
        np.cumsum(self.host_indptr[rows + 1] - self.host_indptr[rows], out=plan[b + 1:])
        return plan


class _StagingSlot:
    def __init__(self, n_indptr, capacity, dtype):
        self.shape = (n_indptr, capacity, dtype)
        self.host = (cuda.pinned_array(n_indptr, np.int64), cuda.pinned_array(capacity, np.int32),
                     cuda.pinned_array(capacity, dtype))
        self.device = (cuda.device_array(n_indptr, np.int64),
                       cuda.device_array(capacity, np.int32), cuda.device_array(capacity, dtype))
        self.copied = _event()  # host -> device copy done: pinned buffers free
        self.consumed = _event()  # copied into the batch: device buffers free


class _UploadRing:
    """Pinned buffers, used in turn, for small asynchronous host-to-device
    copies. A buffer is reused once its last copy is done; with a few uploads
    a step, eight of them let the host run about two steps ahead of the GPU
    before it waits."""

    SLOTS = 8

    def __init__(self):
        self._buffers = {}
        self._turn = 0

    def stage(self, values):
        self._turn = (self._turn + 1) % self.SLOTS
        key = (values.dtype, self._turn)
        entry = self._buffers.get(key)
        if entry is None or entry[0].shape[0] < values.shape[0]:
            if entry is not None:
                entry[1].synchronize()  # its pending copy finishes before the memory goes
            size = max(values.shape[0], 2 * entry[0].shape[0] if entry else 0)
            entry = self._buffers[key] = (cuda.pinned_array(size, values.dtype),
                                          _event())
        host, done = entry
        done.synchronize()  # its previous copy has left
        host[: values.shape[0]] = values
        return host[: values.shape[0]], done


def _is_device_array(x):
    return hasattr(x, "copy_to_host")


def _event():
    # Events only order work here; the simulator's take no timing argument.
    return cuda.event() if SIMULATED else cuda.event(timing=False)


class CUDABackend(Backend):
    """Kernels compiled with ``numba.cuda.jit``; device arrays throughout.

    Build it through :func:`sparse_deep.backends.get_backend` (``device="cuda"``),
    which first checks that a GPU is usable.
    """

    name = "cuda"

    def __init__(self):
        start_thread_pool()  # batches are gathered on the host by the CPU's kernels
        self.stream = cuda.stream()
        self.copy_stream = cuda.stream()
        self._scratch = {}
        self._scratch_views = {}
        self._constants = {}
        self._uploads = _UploadRing()
        self._no_anchors = cuda.device_array(0, dtype=np.float64, stream=self.stream)

    # -- memory -------------------------------------------------------------------
    def zeros(self, shape, dtype):
        out = cuda.device_array(shape, dtype=dtype, stream=self.stream)
        dense.fill(out.reshape(-1), 0, self.stream)
        return out

    def empty(self, shape, dtype):
        return cuda.device_array(shape, dtype=dtype, stream=self.stream)

    def to_device(self, array):
        if _is_device_array(array):
            return array
        return cuda.to_device(np.ascontiguousarray(array), stream=self.stream)

    def to_host(self, array):
        if isinstance(array, np.ndarray):
            return array
        host = array.copy_to_host(stream=self.stream)
        self.stream.synchronize()
        return host

    def upload(self, dst, values):
        values = np.ascontiguousarray(values, dtype=dst.dtype)
        n = values.shape[0]
        if n:
            staged, done = self._uploads.stage(values)
            # Slicing a device array costs tens of µs in Python: only when needed.
            (dst if dst.shape[0] == n else dst[:n]).copy_to_device(staged, stream=self.stream)
            done.record(self.stream)

    def copy(self, dst, src):
        dense.copy(dst, src, self.stream)

    def zero(self, x):
        dense.fill(x, 0, self.stream)

    def fill(self, x, value):
        dense.fill(x, value, self.stream)

    def scale(self, x, factor):
        dense.scale(x, factor, self.stream)

    def sum(self, x):
        return float(np.sum(self.to_host(x)))

    def scratch(self, name, size, dtype):
        """A device array of ``size`` entries kept between calls (grown as needed;
        a growth that cannot fit raises the memory check's MemoryError)."""
        size = max(int(size), 1)
        view = self._scratch_views.get((name, size))
        if view is not None and view.dtype == np.dtype(dtype):
            return view  # slicing a device array costs tens of µs in Python
        buf = self._scratch.get(name)
        if buf is None or buf.shape[0] < size or buf.dtype != np.dtype(dtype):
            self._scratch.pop(name, None)
            self._scratch_views = {k: v for k, v in self._scratch_views.items() if k[0] != name}
            self.check_memory({f"scratch for {name.replace('_', ' ')}":
                               size * np.dtype(dtype).itemsize})
            buf = self._scratch[name] = cuda.device_array(size, dtype=dtype, stream=self.stream)
        view = self._scratch_views[(name, size)] = buf[:size]
        return view

    def scratch_bytes(self, n_rows, max_input_nnz, max_target_nnz, itemsize):
        """Device memory this backend adds to a Runner's buffers for one fit:
        two staging slots per data set, denoising and transpose scratch, and
        the partial products of split GEMMs."""
        def batch(nnz):
            return (n_rows + 1) * 8 + max(nnz, 1) * (4 + itemsize)

        staging = 2 * (batch(max_input_nnz) + batch(max_target_nnz))
        denoise = n_rows * 16 + 8 + max(max_input_nnz, 1) * (4 + itemsize)
        transpose = max(max_input_nnz, 1) * (4 * 3 + 8 * 2) + 8
        return staging + denoise + transpose + scratch_elements() * itemsize

    def check_memory(self, needed):
        free, total = memory.memory_info()
        return memory.check_fits(needed, free, total)

    def _constant(self, values, dtype):
        """A small constant array on the device, uploaded once and kept."""
        values = np.asarray(values, dtype=dtype)
        key = (values.dtype.str, values.tobytes())
        out = self._constants.get(key)
        if out is None:
            out = self._constants[key] = self.to_device(values)
        return out

    # -- batches ------------------------------------------------------------------
    # A data set is copied to the GPU whole when it takes at most this share of
    # the free memory (after the model and buffers); larger ones stay on the
    # host and are copied a batch at a time.
    DEVICE_DATA_SHARE = 0.25

    def batch_source(self, matrix):
        free, _ = memory.memory_info()
        if DeviceCSRSource.nbytes(matrix) <= self.DEVICE_DATA_SHARE * free:
            return DeviceCSRSource(matrix, self.stream)
        return HostCSRSource(matrix)

    def gather_rows(self, source, rows, batch):
        """Load rows ``rows`` of a data set into the device ``batch`` buffers;
        returns the nnz. A :class:`DeviceCSRSource` gathers on the GPU with no
        wait; a :class:`HostCSRSource` goes through its staging slots."""
        if isinstance(source, DeviceCSRSource):
            plan = source.gather_plan(np.ascontiguousarray(rows, dtype=np.int64))
            device_plan = self.scratch("gather_plan", plan.shape[0], np.int64)
            self.upload(device_plan, plan)
            sparse.gather_rows(source.indptr, source.indices, source.data, device_plan,
                               rows.shape[0], batch.indptr, batch.indices, batch.data,
                               self.stream)
            return int(plan[-1])
        return self._gather_host_rows(source, rows, batch)

    def _gather_host_rows(self, source, rows, batch):
        """Copy rows ``rows`` of a host data set into the device ``batch`` buffers.

        The rows are gathered on the host (the CPU backend's kernel) into a
        pinned staging slot and copied to the slot's device buffers on the copy
        stream; the compute stream waits for that copy only, then moves the batch
        into place. Two slots alternate, so gathering and copying batch s + 1
        overlaps the kernels still running for batch s. Returns the nnz.
        """
        if not isinstance(source, HostCSRSource):
            raise TypeError("the CUDA backend loads batches from backend.batch_source(matrix); "
                            f"got {type(source).__name__}")
        rows = np.ascontiguousarray(rows, dtype=np.int64)
        b = rows.shape[0]
        slot = source.next_slot(batch)
        h_indptr, h_indices, h_data = slot.host
        d_indptr, d_indices, d_data = slot.device
        slot.copied.synchronize()  # the slot's pinned buffers are free
        nnz = host_kernels.gather_rows(source.indptr, source.indices, source.data, rows,
                                       h_indptr, h_indices, h_data)
        slot.consumed.wait(self.copy_stream)  # ... and its device buffers
        d_indptr[: b + 1].copy_to_device(h_indptr[: b + 1], stream=self.copy_stream)
        if nnz:
            d_indices[:nnz].copy_to_device(h_indices[:nnz], stream=self.copy_stream)
            d_data[:nnz].copy_to_device(h_data[:nnz], stream=self.copy_stream)
        slot.copied.record(self.copy_stream)
        slot.copied.wait(self.stream)
        batch.indptr[: b + 1].copy_to_device(d_indptr[: b + 1], stream=self.stream)
        if nnz:
            batch.indices[:nnz].copy_to_device(d_indices[:nnz], stream=self.stream)
            batch.data[:nnz].copy_to_device(d_data[:nnz], stream=self.stream)
        slot.consumed.record(self.stream)
        return nnz

    def denoise(self, batch, row_ids, n_features, key, p, feature_offset=0):
        sparse.denoise(batch.indptr, batch.indices, batch.data, row_ids, n_features, key, p,
                       self.scratch, self.stream, feature_offset)

    def transpose_batch(self, batch, transposed):
        return sparse.transpose_batch(
            batch.indptr, batch.indices, batch.data, transposed.slot, transposed.features,
            transposed.indptr, transposed.rows, transposed.data, self.scratch, self.stream,
        )

    # -- forward ------------------------------------------------------------------
    def fill_rows(self, out, bias):
        dense.fill_rows(out, bias, self.stream)

    def sparse_matmul_add(self, batch, weights, out):
        sparse.sparse_matmul_add(batch.indptr, batch.indices, batch.data, weights, out,
                                 self.stream)

    def gemm(self, a, b, c, *, alpha=1.0, beta=0.0, trans_a=False, trans_b=False):
        gemm(a, b, c, self.stream, self.scratch, alpha=alpha, beta=beta, trans_a=trans_a,
             trans_b=trans_b)

    def add(self, out, other):
        dense.add(out, other, self.stream)

    def activate(self, z, act, slope, alpha, lam):
        dense.activate_rows(z, act, slope, alpha, lam, self.stream)

    def dropout(self, a, out, key, row_ids, p):
        dense.dropout_forward(a, out, key, row_ids, p, self.stream)

    def output_pass(self, z, targets, act, err, hyper, inv_batch, delta, row_error,
                    row_stats=None):
        stats = None if row_stats is None else self._stats_to_device(row_stats)
        hp = self._constant(np.asarray(hyper)[:OUTPUT_HYPER_SIZE], z.dtype)
        dense.output_pass(z, targets.indptr, targets.indices, targets.data, act, err, hp,
                          inv_batch, delta, row_error, self.stream, stats)
        if stats is not None:  # this slice's sum of h, for the Jacobian over all slices
            row_stats[:, 3] = self.to_host(stats)[:, 3]

    # Model parallelism: row statistics of a sharded SoftMax travel through the
    # host (they are summed over ranks by MPI there); rows x 4 float64 each.
    def _stats_to_device(self, row_stats):
        stats = self.scratch("row_stats", row_stats.size, np.float64)
        stats = stats.reshape(row_stats.shape)
        stats.copy_to_device(np.ascontiguousarray(row_stats), stream=self.stream)
        return stats

    def softmax_partials(self, z, targets, row_stats):
        stats = self.scratch("row_stats", z.shape[0] * 3, np.float64).reshape(z.shape[0], 3)
        dense.softmax_partials(z, targets.indptr, targets.data, stats, self.stream)
        row_stats[...] = self.to_host(stats)

    def softmax_apply(self, z, row_stats):
        dense.softmax_apply(z, self._stats_to_device(row_stats), self.stream)

    def softmax_jacobian(self, delta, a, h_sum, inv_batch):
        dense.softmax_jacobian(delta, a, h_sum, inv_batch, self.stream)

    # -- backward -----------------------------------------------------------------
    def sparseness_penalty(self, a, p, beta, inv_batch, grad_out):
        return dense.sparseness_penalty(a, p, beta, inv_batch, grad_out, self.scratch,
                                        self.stream)

    def hidden_delta(self, delta, a, act, slope, alpha, lam, key, row_ids, p, penalty):
        dense.hidden_delta(delta, a, act, slope, alpha, lam, key, row_ids, p, penalty,
                           self.stream)

    def column_sums(self, x, out):
        dense.column_sums(x, out, self.stream)

    def scale_rows(self, x, weights):
        if not _is_device_array(weights) or weights.dtype != x.dtype:
            host = np.asarray(self.to_host(weights), dtype=x.dtype)
            weights = self.scratch("row_weights", host.shape[0], x.dtype)
            self.upload(weights, host)
        dense.scale_rows(x, weights, self.stream)

    def sparse_weight_gradient(self, transposed, n_present, delta, grad):
        sparse.sparse_weight_gradient(transposed.indptr, transposed.rows, transposed.data,
                                      n_present, delta, grad, self.stream)

    # -- update -------------------------------------------------------------------
    def update_rows(self, param, grad, rows, n_rows, state1, state2, code, hyper):
        optim.update_rows(param, grad, rows, n_rows, state1, state2, code, hyper, self.stream)

    def cap_column_norms(self, weights, max_norm):
        optim.cap_column_norms(weights, max_norm, self.stream)

    def scatter_rows(self, dst, rows, src):
        sparse.scatter_rows(dst, rows, src, self.stream)

    def zero_rows(self, dst, rows):
        sparse.zero_rows(dst, rows, self.stream)

    # -- sampled output layer -------------------------------------------------------
    def touched_rows(self, targets, neg_ids, slot, rows, neg_slot, g_indptr, g_entries):
        return sampled.touched_rows(targets.indptr, targets.indices, neg_ids, slot, rows,
                                    neg_slot, g_indptr, g_entries,
                                    self.scratch("touched_counts", 2, np.int64), self.stream)

    def gather_rows_dense(self, source, ids, out):
        sampled.gather_rows_dense(source, ids, out, self.stream)

    def normalize_rows(self, x, out, norms):
        sampled.normalize_rows(x, out, norms, self.stream)

    def row_norms(self, x, out):
        sampled.row_norms(x, out, self.stream)

    def reciprocal_scaled(self, x, factor):
        sampled.reciprocal_scaled(x, x.dtype.type(factor), self.stream)

    def positive_scores(self, h, targets, weights, bias, cosine, out):
        sampled.positive_scores(h, targets.indptr, targets.indices, weights, bias, bool(cosine),
                                out, self.stream)

    def add_row_bias(self, z, bias, ids):
        sampled.add_row_bias(z, bias, ids, self.stream)

    def scale_columns(self, z, scales):
        sampled.scale_columns(z, scales, self.stream)

    def negative_logsumexp(self, z_neg, corrections, inv_tau, stats, anchors=None):
        if anchors is None:
            anchors = self._no_anchors
        sampled.negative_logsumexp(z_neg, corrections, float(inv_tau), stats, anchors,
                                   self.stream)

    def positive_pass(self, err, z_pos, targets, anchors, inv_tau, row_scale, d_pos, row_error,
                      pulls):
        sampled.positive_pass(err, z_pos, targets.indptr, targets.data, anchors, float(inv_tau),
                              row_scale, d_pos, row_error, pulls, self.stream)

    def negative_pass(self, err, z_neg, corrections, anchors, pulls, inv_tau, margin, neg_scale,
                      row_scale, d_neg, row_error):
        sampled.negative_pass(err, z_neg, corrections, anchors, pulls, float(inv_tau),
                              float(margin), float(neg_scale), row_scale, d_neg, row_error,
                              self.stream)

    def bpr_pass(self, z_pos, targets, z_neg, inv_tau, neg_scale, row_scale, d_pos, d_neg,
                 row_error):
        sampled.bpr_pass(z_pos, targets.indptr, targets.data, z_neg, float(inv_tau),
                         float(neg_scale), row_scale, d_pos, d_neg, row_error,
                         self.stream)

    def add_positive_deltas(self, d_pos, targets, weights, cosine, dh):
        sampled.add_positive_deltas(d_pos, targets.indptr, targets.indices, weights,
                                    bool(cosine), dh, self.stream)

    def compact_gradient(self, d_pos, targets, g_indptr, g_entries, n_pos, h, d_negatives,
                         neg_slot, grad):
        sampled.compact_gradient(d_pos, targets.indptr, g_indptr, g_entries, n_pos, h,
                                 d_negatives, neg_slot, grad, self.stream)

    def compact_bias_gradient(self, d_pos, g_indptr, g_entries, n_pos, d_neg, neg_slot, grad):
        sums = self.scratch("negative_bias_sums", d_neg.shape[1], d_neg.dtype)
        sampled.compact_bias_gradient(d_pos, g_indptr, g_entries, n_pos, d_neg, neg_slot, grad,
                                      sums, self.stream)

    def project_out_radial(self, grad, vectors, ids):
        sampled.project_out_radial(grad, vectors, ids, self.stream)

    def project_hidden(self, dh_unit, h_unit, norms, dh, accumulate):
        sampled.project_hidden(dh_unit, h_unit, norms, dh, bool(accumulate), self.stream)

    # -- inference ----------------------------------------------------------------
    def topk(self, scores, k, exclude_indptr, exclude_indices, out_ids, out_scores):
        """As the CPU's; ``out_ids``/``out_scores`` may be host arrays (the result
        is then copied into them)."""
        ex_indptr = self.to_device(np.asarray(exclude_indptr, dtype=np.int64)
                                   if not _is_device_array(exclude_indptr) else exclude_indptr)
        ex_indices = self.to_device(np.asarray(exclude_indices, dtype=np.int32)
                                    if not _is_device_array(exclude_indices) else exclude_indices)
        if ex_indices.shape[0] == 0:  # a kernel argument cannot be empty everywhere
            ex_indices = self._constant(np.zeros(1, np.int32), np.int32)
        on_host = isinstance(out_ids, np.ndarray)
        d_ids, d_scores = out_ids, out_scores
        if on_host:
            n = scores.shape[0] * k
            d_ids = self.scratch("topk_ids", n, np.int64).reshape(scores.shape[0], k)
            d_scores = self.scratch("topk_scores", n, scores.dtype).reshape(scores.shape[0], k)
        topk.topk_rows(scores, k, ex_indptr, ex_indices, d_ids, d_scores, self.stream)
        if on_host:
            out_ids[...] = self.to_host(d_ids)
            out_scores[...] = self.to_host(d_scores)


__all__ = ["CUDABackend", "HostCSRSource"]

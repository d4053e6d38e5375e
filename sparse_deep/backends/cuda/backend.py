"""The CUDA backend: numba.cuda device arrays and kernels.

Everything a fit needs on the GPU (weights, optimizer state, the buffers of
one batch) is allocated once, when the engine's Runner is built, after a check
that it fits. The data set stays in host memory: each batch is prepared on the
host by the CPU's kernels (gathered, denoised, transposed, its touched output
rows listed) and copied to the GPU through pinned buffers, so that the host
knows every size a step needs (see :meth:`CUDABackend.load_batch`).

All kernels and copies run in order on one stream; a training step does not
wait for the GPU (the losses are read every few hundred steps), except to
combine a sharded layer's ranks, or when the host runs so far ahead that it
must reuse a pinned upload buffer whose copy is still pending.
"""

import dataclasses
import warnings

import numpy as np
from numba import cuda
from numba.cuda.cudadrv import driver

from ...core.codes import OUTPUT_HYPER_SIZE, SOFTMAX
from ..base import Backend, ParameterStep
from ..cpu import CPUBackend
from . import dense, memory, optim, sampled, sparse, topk
from ._cache import kept
from ._device import SIMULATED
from .blas import CUBLAS_WORKSPACE_BYTES, load_cublas
from .gemm import gemm, scratch_elements


class _UploadRing:
    """Pinned buffers, used in turn, for asynchronous host-to-device copies
    on one stream (a step makes 10 to 20: its batch, negatives and touched
    rows).

    The copies queued since the last :meth:`seal` are marked together, by
    one event recorded when the backend seals (after a batch's uploads), not
    one event each. A buffer is reused once the seal of its last copy is
    done. Events complete in stream order, so the ring keeps the latest seal
    known done and asks the GPU (an event query) only about later ones; it
    waits only when the host runs about SLOTS uploads ahead of the GPU. Each
    buffer grows to at most twice the largest upload it has carried, so the
    ring holds at most 2 x SLOTS times a batch's largest array per dtype in
    page-locked memory (a few hundred MB for batches of 100,000 non-zeros).
    """

    SLOTS = 64
    EVENTS = 8  # reused in turn: one marking a later seal stands for an earlier

    def __init__(self, stream):
        self._stream = stream
        self._buffers = {}  # (dtype, turn) -> [pinned array, seal of its last copy]
        self._turn = 0
        self._seals = 0  # copies staged since the last seal belong to seal _seals + 1
        self._done = 0  # every copy of the seals up to this one has finished
        self._unsealed = False
        self._events = []  # made at the first seal
        self._marks = [0] * self.EVENTS  # the seal each event was last recorded for

    def stage(self, values):
        """A pinned copy of ``values`` (1-D) to queue a copy from."""
        self._turn = (self._turn + 1) % self.SLOTS
        key = (values.dtype, self._turn)
        entry = self._buffers.get(key)
        if entry is not None:
            self._wait_for(entry[1])  # its last copy has left (and before its memory goes)
        if entry is None or entry[0].shape[0] < values.shape[0]:
            size = max(values.shape[0], 2 * entry[0].shape[0] if entry else 0)
            entry = self._buffers[key] = [cuda.pinned_array(size, values.dtype), 0]
        entry[0][: values.shape[0]] = values
        entry[1] = self._seals + 1
        self._unsealed = True
        return entry[0][: values.shape[0]]

    def seal(self):
        """Mark the copies queued since the last seal (call it after queueing them)."""
        if self._unsealed:
            if not self._events:
                self._events = [_event() for _ in range(self.EVENTS)]
            self._seals += 1
            self._events[self._seals % self.EVENTS].record(self._stream)
            self._marks[self._seals % self.EVENTS] = self._seals
            self._unsealed = False

    def _wait_for(self, seal):
        if seal <= self._done:
            return
        if seal > self._seals:  # its copy is queued but not yet marked
            self.seal()
        turn = seal % self.EVENTS
        event = self._events[turn]
        if not event.query():
            event.synchronize()
        self._done = max(self._done, self._marks[turn])


def _copy_to_head(dst, host, stream):
    """The first ``host.nbytes`` bytes of ``dst`` become ``host`` (1-D,
    pinned, of ``dst``'s dtype; ``dst`` contiguous), queued on ``stream``.
    numba's copy wants a slice of ``dst`` of ``host``'s shape, which costs
    tens of µs to make; its driver's copy takes a byte count. (The
    simulator's copies bytes along a 1-D array.)"""
    if dst.ndim > 1:
        dst = dst.reshape(-1)
    driver.host_to_device(dst, host, host.nbytes, stream=stream)


def _is_device_array(x):
    return hasattr(x, "copy_to_host")


def _event():
    # Events only order work here; the simulator's take no timing argument.
    return _SimulatedEvent() if SIMULATED else cuda.event(timing=False)


if SIMULATED:
    class _SimulatedEvent(type(cuda.event())):
        """The simulator's event, which runs everything synchronously: the work
        it marks is always done."""

        def query(self):
            return True


class CUDABackend(Backend):
    """Kernels compiled with ``numba.cuda.jit``; device arrays throughout.

    Build it through :func:`sparse_deep.backends.get_backend` (``device="cuda"``),
    which first checks that a GPU is usable.
    """

    name = "cuda"

    def __init__(self):
        self._host = CPUBackend()  # batches are prepared on the host by the CPU's kernels
        self.stream = cuda.stream()
        self._mirrors = {}
        self._views = {}
        self._scratch = {}
        self._scratch_views = {}
        self._constants = {}
        self._uploads = _UploadRing(self.stream)
        self._no_anchors = cuda.device_array(0, dtype=np.float64, stream=self.stream)
        self._no_slots = cuda.to_device(np.full(1, -1, np.int64), stream=self.stream)
        self._blas = self._gemm_report = None

    @property
    def blas(self):
        """cuBLAS on this backend's stream, or None where sparse_deep's own GEMM
        kernel computes the dense products; loaded when first asked for (a
        fit's memory check or first product), so that a backend made and
        dropped, as a continued fit's is when it keeps its runner's, never
        opens a cuBLAS handle."""
        self._load_blas()
        return self._blas

    @blas.setter
    def blas(self, blas):
        self._blas, self._gemm_report = blas, "set by the caller"

    @property
    def gemm_report(self):
        """What computes the dense products, and why."""
        self._load_blas()
        return self._gemm_report

    def _load_blas(self):
        if self._gemm_report is None:
            self._blas, self._gemm_report = self._dense_products()

    def _dense_products(self):
        """``(cuBLAS or None, which computes the dense products)``: cuBLAS on a
        GPU, sparse_deep's own GEMM kernel in the simulator (and, with a
        warning, on a GPU where cuBLAS cannot be loaded)."""
        if SIMULATED:
            return None, "sparse_deep's GEMM kernel (numba's CUDA simulator)"
        blas, report = load_cublas(self.stream)
        if blas is None:
            warnings.warn(f"Dense products on the GPU use sparse_deep's own GEMM kernel, several "
                          f"times slower than cuBLAS: {report}. pip install 'sparse_deep[cuda]' "
                          "installs nvmath-python, which calls cuBLAS.", RuntimeWarning,
                          stacklevel=3)
            return None, f"sparse_deep's GEMM kernel: {report}"
        return blas, f"{report}, through nvmath-python"

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
        if values.shape[0]:
            _copy_to_head(dst, self._uploads.stage(values.reshape(-1)), self.stream)

    def head(self, x, rows, columns=None):
        """The base's view, made once per buffer and size: numba-cuda takes tens
        of µs of Python to make a view of a device array, and a step takes
        dozens of views of its buffers, of the same sizes step after step."""
        if rows == x.shape[0] and (columns is None or columns == x.shape[1]):
            return x
        views = kept(self._views, x)
        view = views.get((rows, columns))
        if view is None:
            view = views[(rows, columns)] = super().head(x, rows, columns)
        return view

    def reshaped(self, x, shape):
        """The base's view, made once per buffer and shape (as :meth:`head`)."""
        views = kept(self._views, x)
        view = views.get(shape)
        if view is None:
            view = views[shape] = super().reshaped(x, shape)
        return view

    def copy(self, dst, src):
        dense.copy(dst, src, self.stream)

    def zero(self, x):
        dense.fill(x, 0, self.stream)

    def fill(self, x, value):
        dense.fill(x, value, self.stream)

    def scale(self, x, factor):
        dense.scale(x, factor, self.stream)

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
        the partial products of split GEMMs, cuBLAS's workspace (batches are
        prepared on the host)."""
        return scratch_elements() * itemsize + (0 if self.blas is None
                                                else CUBLAS_WORKSPACE_BYTES)

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
    def batch_source(self, matrix):
        """The CSR arrays in host memory: each batch is prepared there and
        copied to the GPU (see :meth:`load_batch`)."""
        return self._host.batch_source(matrix)

    def load_batch(self, rows, row_ids, inputs, input_batch, targets=None, target_batch=None,
                   denoising=None, transposed=None):
        """The base's batch, prepared on the host by the CPU's kernels in host
        mirrors of the blocks (gathered, denoised, transposed), then copied
        into the device blocks: copies the stream orders before the step's
        kernels, with no launch and no wait. The host also learns the counts
        the step is sized by (non-zeros, features present)."""
        b = rows.shape[0]
        host_inputs = self._mirror(input_batch)
        host_targets = None if targets is None else self._mirror(target_batch)
        host_transposed = None if transposed is None else self._mirror(transposed)
        n_present = self._host.load_batch(rows, self._mirror(row_ids), inputs, host_inputs,
                                          targets, host_targets, denoising, host_transposed)
        self.upload(row_ids, rows)
        nnz = self._upload_csr(input_batch, host_inputs, b)
        if targets is not None:
            self._upload_csr(target_batch, host_targets, b)
        if transposed is not None:
            self.upload(transposed.features, host_transposed.features[:n_present])
            self.upload(transposed.indptr, host_transposed.indptr[: n_present + 1])
            self.upload(transposed.rows, host_transposed.rows[:nnz])
            self.upload(transposed.data, host_transposed.data[:nnz])
        self._uploads.seal()  # one event marks the batch's copies
        return n_present

    def _upload_csr(self, block, host, b):
        nnz = int(host.indptr[b])
        self.upload(block.indptr, host.indptr[: b + 1])
        self.upload(block.indices, host.indices[:nnz])
        self.upload(block.data, host.data[:nnz])
        return nnz

    def host_mirror(self, batch):
        return self._mirrors[id(batch)]

    def _mirror(self, device):
        """Host arrays shaped as ``device`` (a whole buffer, or a block of
        them; host arrays are their own mirrors), made once and kept while
        the buffer lives (a slice would make a new mirror each time)."""
        if isinstance(device, np.ndarray):
            return device
        return kept(self._mirrors, device, lambda: (
            np.zeros(device.shape, device.dtype) if _is_device_array(device)
            else type(device)(*(self._mirror(getattr(device, f.name))
                                for f in dataclasses.fields(device)))))

    # -- forward ------------------------------------------------------------------
    def fill_rows(self, out, bias):
        dense.fill_rows(out, bias, self.stream)

    def sparse_matmul_add(self, batch, weights, out):
        sparse.sparse_matmul_add(batch.indptr, batch.indices, batch.data, weights, out,
                                 self.stream)

    def sparse_affine(self, batch, weights, bias, out):
        sparse.sparse_matmul_add(batch.indptr, batch.indices, batch.data, weights, out,
                                 self.stream, bias)

    def activated_sparse_affine(self, batch, weights, bias, out, act, slope, alpha, lam):
        if act == SOFTMAX:  # a row-wise activation: its own kernel
            super().activated_sparse_affine(batch, weights, bias, out, act, slope, alpha, lam)
        elif out.shape[0]:
            sparse.activated_sparse_affine(batch.indptr, batch.indices, batch.data, weights, bias,
                                           out, act, slope, alpha, lam, self.stream)

    def gemm(self, a, b, c, *, alpha=1.0, beta=0.0, trans_a=False, trans_b=False):
        if self.blas is None or not self.blas.gemm(a, b, c, alpha, beta, trans_a, trans_b):
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
    def sparseness_penalty(self, a, p, beta, inv_batch, grad_out, loss_out):
        dense.sparseness_penalty(a, p, beta, inv_batch, grad_out, loss_out, self.stream)

    def hidden_delta(self, delta, a, act, slope, alpha, lam, key, row_ids, p, penalty):
        dense.hidden_delta(delta, a, act, slope, alpha, lam, key, row_ids, p, penalty,
                           self.stream)

    def column_sums(self, x, out):
        dense.column_sums(x, out, self.stream)

    def all_finite(self, arrays):
        """The base's test on each array's float64 column sums, made on the
        GPU: what is read back is a row of sums, not the array."""
        for a in arrays:
            a = a if a.ndim == 2 else self.reshaped(a, (1, a.shape[0]))
            sums = self.scratch("finite_sums", a.shape[1], np.float64)
            dense.column_sums(a, sums, self.stream)
            if not np.isfinite(np.add.reduce(self.to_host(sums), dtype=np.float64)):
                return False
        return True

    def scale_rows(self, x, weights):
        if not _is_device_array(weights) or weights.dtype != x.dtype:
            host = np.asarray(self.to_host(weights), dtype=x.dtype)
            weights = self.scratch("row_weights", host.shape[0], x.dtype)
            self.upload(weights, host)
        dense.scale_rows(x, weights, self.stream)

    def sparse_weight_gradient(self, transposed, n_present, delta, grad):
        sparse.sparse_weight_gradient(transposed.indptr, transposed.rows, transposed.data,
                                      n_present, delta, grad, self.stream)

    def input_gradients(self, transposed, n_present, delta, grad, bias_grad, scratch=None):
        """The base's, in one launch, which also stamps the step into the
        weight's slot map when it is updated whole."""
        slot_map = scratch if isinstance(scratch, optim.SlotMap) else None
        sparse.sparse_weight_gradient(transposed.indptr, transposed.rows, transposed.data,
                                      n_present, delta, grad, self.stream, bias_grad,
                                      transposed.features, slot_map)

    # -- update -------------------------------------------------------------------
    def update_rows(self, param, grad, rows, n_rows, state1, state2, code, hyper):
        self._update([ParameterStep(param, grad, rows, n_rows, state1, state2, hyper)], code)

    def all_rows_scratch(self, shape, dtype):
        """Not a full-size gradient: a slot map, each row's place among a
        step's row gradients (``optim.SlotMap``)."""
        return optim.slot_map(shape[0], self.stream)

    def all_rows_scratch_bytes(self, shape, itemsize):
        return int(shape[0]) * 8

    def update_all_rows(self, param, row_grads, rows, n_rows, all_rows, scratch, state1, state2,
                        code, hyper):
        self._update([ParameterStep(param, row_grads, rows, n_rows, state1, state2, hyper,
                                    all_rows, scratch)], code)

    def update_params(self, steps, code):
        """The parameters' steps in as few launches as their types allow (and
        one more for each slot map of a parameter updated whole)."""
        self._update(steps, code)

    def _update(self, steps, code):
        optim.update_params(steps, code, self.stream, self._no_slots)

    def cap_column_norms(self, weights, max_norm):
        optim.cap_column_norms(weights, max_norm, self.stream)

    def scatter_rows(self, dst, rows, src):
        sparse.scatter_rows(dst, rows, src, self.stream)

    def zero_rows(self, dst, rows):
        sparse.zero_rows(dst, rows, self.stream)

    # -- sampled output layer -------------------------------------------------------
    def touched_rows(self, targets, neg_ids, slot, rows, neg_slot, g_indptr, g_entries):
        """The CPU's, on the host's arrays (the lists are then uploaded): the
        host learns the counts without asking the GPU."""
        lists = (rows, neg_slot, g_indptr, g_entries)
        host = [self._mirror(a) for a in lists]
        n_rows, n_pos = self._host.touched_rows(targets, neg_ids, slot, *host)
        nnz = int(targets.indptr[-1])
        for dst, src, n in zip(lists, host, (n_rows, neg_ids.shape[0], n_pos + 1, nnz)):
            self.upload(dst, src[:n])
        return n_rows, n_pos

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
        sampled.positive_deltas(d_pos, targets.indptr, targets.indices, weights, bool(cosine),
                                dh, self._entry_norms(targets), self.stream)

    def positive_deltas_into_hidden(self, d_pos, targets, weights, cosine, dh, h_unit, h_norms,
                                    target, accumulate):
        into = (*self._unit_hidden(cosine, dh, h_unit, h_norms), target)
        sampled.positive_deltas(d_pos, targets.indptr, targets.indices, weights, bool(cosine),
                                dh, self._entry_norms(targets), self.stream, into,
                                bool(accumulate))

    def _entry_norms(self, targets):
        return self.scratch("target_norms", targets.indices.shape[0], np.float64)

    def project_hidden(self, dh_unit, h_unit, norms, dh, accumulate):
        sampled.into_hidden(dh_unit, True, h_unit, norms, dh, bool(accumulate), self.stream)

    def into_hidden(self, dh, cosine, h_unit, h_norms, target, accumulate):
        h_unit, h_norms = self._unit_hidden(cosine, dh, h_unit, h_norms)
        sampled.into_hidden(dh, bool(cosine), h_unit, h_norms, target, bool(accumulate),
                            self.stream)

    def _unit_hidden(self, cosine, dh, h_unit, h_norms):
        """``h_unit`` and ``h_norms``, which the kernels read only with cosine
        scores: arrays of their types stand in otherwise."""
        if cosine:
            return h_unit, h_norms
        return dh, self.scratch("no_norms", 1, dh.dtype)

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

    def unit_operands(self, h, h_unit, h_norms, source, ids, out, norms):
        sampled.unit_operands(h, h_unit, h_norms, source, ids, out, norms, self.stream)

    def sampled_rows(self, err, h, targets, weights, bias, cosine, z_pos, z_neg, corrections,
                     inv_tau, margin, neg_scale, row_scale, stats, anchors, d_pos, d_neg,
                     row_error, pulls):
        sampled.sampled_rows(err, h, targets.indptr, targets.indices, targets.data, weights,
                             bias, bool(cosine), z_pos, z_neg, corrections, float(inv_tau),
                             float(margin), float(neg_scale), row_scale, stats, anchors, d_pos,
                             d_neg, row_error, pulls, self.stream)

    def compact_unit_gradient(self, d_pos, targets, g_indptr, g_entries, n_pos, h, d_negatives,
                              neg_ids, neg_slot, weights, rows, grad):
        sampled.compact_unit_gradient(d_pos, targets.indptr, g_indptr, g_entries, n_pos, h,
                                      d_negatives, neg_ids, weights, rows, grad, self.stream)

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


__all__ = ["CUDABackend"]

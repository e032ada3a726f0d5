"""DistributedDataParallel: one model replica per process, gradients averaged
over the processes during backward (torch.nn.parallel.DistributedDataParallel).

At wrap time the parameters and buffers are broadcast from rank 0.  The
parameters are cut into buckets of about ``bucket_cap_mb`` (in reverse order
of registration, roughly the order backward produces their gradients).  A
post-accumulate-grad hook on each parameter counts the ready gradients of its
bucket; a full bucket is flattened and its all-reduce started at once
(non-blocking), buckets always in the same order on every rank, so the
communication of the first buckets overlaps the rest of the backward.  At the
end of the backward pass (an engine callback) the buckets not started (their
parameters were unused on this rank: they count as zero) are started, all are
waited for, averaged, and written back to the ``.grad`` of every parameter.
``no_sync()`` skips all of this: gradients accumulate locally until the first
backward outside it, whose reduction averages the accumulated sums.
"""

import contextlib

from gpugrad import distributed as dist
from gpugrad.autograd import engine
from gpugrad.autograd.grad_mode import no_grad
from gpugrad.nn.modules.module import Module
from gpugrad.tensor import Tensor


class _Bucket:
    def __init__(self, params):
        self.params = params
        self.pending = len(params)
        self.work = None
        self.flat = None


class DistributedDataParallel(Module):
    """``DistributedDataParallel(module, bucket_cap_mb=25, broadcast_buffers=True, ...)``:
    forward runs ``module``; backward averages the gradients over the default
    process group.  The wrapped module is ``.module`` (state_dict keys get the
    ``module.`` prefix, as in torch)."""

    def __init__(self, module, device_ids=None, output_device=None, dim=0, broadcast_buffers=True,
                 process_group=None, bucket_cap_mb=25, find_unused_parameters=False, check_reduction=False,
                 gradient_as_bucket_view=False, static_graph=False):
        super().__init__()
        if process_group is not None:
            raise NotImplementedError("DistributedDataParallel: gpugrad has the default process group only")
        if gradient_as_bucket_view:
            raise NotImplementedError("DistributedDataParallel(gradient_as_bucket_view=True) is not supported")
        if dim != 0:
            raise NotImplementedError("DistributedDataParallel: dim must be 0")
        if not dist.is_initialized():
            raise RuntimeError("DistributedDataParallel needs init_process_group() first")
        self.module = module
        self.broadcast_buffers = broadcast_buffers
        self.find_unused_parameters = find_unused_parameters
        self.world_size = dist.get_world_size()
        params = [p for p in module.parameters() if p.requires_grad]
        devices = {p.device for p in params}
        if len(devices) > 1:
            raise RuntimeError(f"DistributedDataParallel: the module's parameters are on several devices {devices}")
        if device_ids is not None and len(device_ids) != 1:
            raise ValueError("DistributedDataParallel: device_ids holds the one device of this process's replica")
        self._sync_module_states()
        self._buckets, self._bucket_of = [], {}
        cap = max(1, int(bucket_cap_mb * 1024 * 1024))
        current, size = [], 0
        for p in reversed(params):
            if current and (size + p.numel() * p.array.itemsize > cap or p.dtype != current[0].dtype):
                self._buckets.append(_Bucket(current))
                current, size = [], 0
            current.append(p)
            size += p.numel() * p.array.itemsize
        if current:
            self._buckets.append(_Bucket(current))
        for index, bucket in enumerate(self._buckets):
            for p in bucket.params:
                self._bucket_of[id(p)] = index
                p.register_post_accumulate_grad_hook(self._gradient_ready)
        self.require_backward_grad_sync = True
        self._next = 0             # the next bucket to start, in order
        self._active = False       # a reduction is under way in this backward pass

    # -- forward -----------------------------------------------------------------------------
    @no_grad()
    def _sync_module_states(self):
        for t in list(self.module.parameters()) + list(self.module.buffers()):
            dist.broadcast(t, 0)

    def forward(self, *args, **kwargs):
        if self.broadcast_buffers and self.world_size > 1:
            with no_grad():
                for buffer in self.module.buffers():
                    dist.broadcast(buffer, 0)
        return self.module(*args, **kwargs)

    @contextlib.contextmanager
    def no_sync(self):
        """Inside, backward leaves the gradients local (accumulation over micro-batches)."""
        previous, self.require_backward_grad_sync = self.require_backward_grad_sync, False
        try:
            yield
        finally:
            self.require_backward_grad_sync = previous

    # -- the reduction -----------------------------------------------------------------------
    def _gradient_ready(self, param):
        if not self.require_backward_grad_sync or self.world_size == 1:
            return
        if not self._active:
            self._active = True
            self._next = 0
            for bucket in self._buckets:
                bucket.pending, bucket.work, bucket.flat = len(bucket.params), None, None
            engine.queue_callback(self._finish)
        bucket = self._buckets[self._bucket_of[id(param)]]
        bucket.pending -= 1
        while self._next < len(self._buckets) and self._buckets[self._next].pending == 0:
            self._start(self._buckets[self._next])
            self._next += 1

    def _start(self, bucket):
        first = bucket.params[0]
        xp = first.xp
        parts = [p.grad.array.reshape(-1) if p.grad is not None else xp.zeros(p.numel(), dtype=p.dtype)
                 for p in bucket.params]
        bucket.flat = xp.concatenate(parts) if len(parts) > 1 else xp.array(parts[0])
        bucket.work = dist.all_reduce(Tensor._make(bucket.flat), dist.ReduceOp.SUM, async_op=True)

    def _finish(self):
        self._active = False
        for bucket in self._buckets[self._next:]:        # parameters unused in this pass: zeros
            self._start(bucket)
        self._next = len(self._buckets)
        with no_grad():
            for bucket in self._buckets:
                bucket.work.wait()
                flat = bucket.flat
                flat /= self.world_size
                offset = 0
                for p in bucket.params:
                    n = p.numel()
                    values = flat[offset:offset + n].reshape(p.shape)
                    offset += n
                    if p.grad is None:
                        p.grad = Tensor._make(values.copy())
                    else:
                        p.grad.array[...] = values
                        p.grad.increment_version()
                bucket.flat = bucket.work = None

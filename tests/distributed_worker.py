"""One rank of a test of gpugrad.distributed, started by mpiexec from
tests/test_distributed.py:  mpiexec -n N python tests/distributed_worker.py SCENARIO [ARGS]

Every rank checks its own results and writes them as JSON to
``$GPUGRAD_TEST_OUT/rank<R>.json`` (the ranks' prints would interleave); a
failed check raises (and, through the process group's hook, aborts the job)."""

import datetime
import json
import os
import sys
import time

import numpy

import gpugrad
import gpugrad.distributed as dist
from gpugrad import nn
from gpugrad.nn.parallel import DistributedDataParallel


def collectives(rank, size):
    base = numpy.arange(6, dtype=numpy.float64).reshape(2, 3)
    expected = {"sum": base * sum(r + 1 for r in range(size)), "product": base * 0 + numpy.prod([r + 1 for r in
                                                                                                 range(size)]),
                "min": base, "max": base * size, "avg": base * (size + 1) / 2}
    for op, want in expected.items():
        t = gpugrad.tensor(base * (rank + 1) if op != "product" else base * 0 + rank + 1)
        if op == "min":
            t = gpugrad.tensor(base * (rank + 1))
        version = t._version
        dist.all_reduce(t, op=getattr(dist.ReduceOp, op.upper()))
        assert numpy.allclose(t.numpy(), want), (op, t.numpy(), want)
        assert t._version > version
    for dtype in ("int64", "float16", "bfloat16", "float32"):
        t = gpugrad.tensor([1, 2, 3], dtype=dtype) * (rank + 1)
        dist.all_reduce(t)
        assert t.float().tolist() == [float(v * size * (size + 1) // 2) for v in (1, 2, 3)], (dtype, t)
    strided = gpugrad.ones(4, 6, dtype=gpugrad.float64)[:, ::2] * (rank + 1)
    dist.all_reduce(strided)
    assert strided.tolist() == [[size * (size + 1) / 2] * 3] * 4
    t = gpugrad.full((3,), float(rank))
    dist.broadcast(t, src=size - 1)
    assert t.tolist() == [float(size - 1)] * 3
    parts = [gpugrad.zeros(2) for _ in range(size)]
    dist.all_gather(parts, gpugrad.tensor([rank, 10.0 * rank]))
    assert [p.tolist() for p in parts] == [[float(r), 10.0 * r] for r in range(size)]
    work = dist.all_reduce(gpugrad.ones(5), async_op=True)
    assert work.wait()
    dist.barrier()
    sampler = gpugrad.utils.data.DistributedSampler(range(11), shuffle=True, seed=3)
    mine = gpugrad.tensor(list(sampler) + [-1] * 0)
    everyone = [gpugrad.zeros(len(sampler), dtype=gpugrad.int64) for _ in range(size)]
    dist.all_gather(everyone, mine)
    covered = sorted(set(sum((e.tolist() for e in everyone), [])))
    assert covered == list(range(11)) and len(sampler) == -(-11 // size)
    return {}


def _model(seed):
    gpugrad.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 6), nn.Tanh(), nn.Linear(6, 3)).double()


def _batch(step, total):
    rng = numpy.random.default_rng(100 + step)
    return rng.standard_normal((total, 5)), rng.integers(0, 3, total)


def _optimizer(name, params):
    if name == "sgd":
        return gpugrad.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=0.01)
    return gpugrad.optim.AdamW(params, lr=0.01)


def ddp(rank, size, optimizer_name, bucket_mb, accumulate):
    """K steps of DDP against one process trained on the concatenated batch."""
    model = _model(seed=rank)                       # different on every rank: the wrap broadcasts rank 0's
    wrapped = DistributedDataParallel(model, bucket_cap_mb=float(bucket_mb))
    reference = _model(seed=99)
    reference.load_state_dict({k: v.clone() for k, v in model.state_dict().items()})
    opt, ref_opt = _optimizer(optimizer_name, model.parameters()), _optimizer(optimizer_name, reference.parameters())
    local = 4
    micro = 2 if accumulate == "1" else 1
    for step in range(3):
        x, t = _batch(step, local * size * micro)
        opt.zero_grad()
        for m in range(micro):              # micro-batch m of this rank: rows of the global batch
            rows = slice((m * size + rank) * local, (m * size + rank + 1) * local)
            context = wrapped.no_sync() if m < micro - 1 else _nothing()
            with context:
                loss = nn.functional.cross_entropy(wrapped(gpugrad.tensor(x[rows])), gpugrad.tensor(t[rows])) / micro
                loss.backward()
        opt.step()
        ref_opt.zero_grad()
        nn.functional.cross_entropy(reference(gpugrad.tensor(x)), gpugrad.tensor(t)).backward()
        ref_opt.step()
    worst = max(float((p - q).abs().max()) for p, q in zip(model.parameters(), reference.parameters()))
    assert worst <= 1e-10, f"rank {rank}: weights differ from the single-process run by {worst:.3e}"
    buckets = len(wrapped._buckets)
    return {"max_difference": worst, "buckets": buckets}


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def failing(rank, size, how):
    if rank == 1:
        if how == "raise":
            raise RuntimeError("rank 1 failed on purpose")
        time.sleep(20)                               # alive, but never joins the collective
    dist.all_reduce(gpugrad.ones(3))
    return {}


def leaving(rank, size, how):
    """Ten steps of all_reduce; rank 1 leaves after three (sys.exit(0), destroy_process_group, os._exit(0)),
    or every rank ends at its own pace without destroy_process_group ("late": rank 0 works 3 s longer)."""
    out = os.environ["GPUGRAD_TEST_OUT"]
    for step in range(10):
        if rank == 1 and step == 3 and how != "late":
            if how == "exit":
                sys.exit(0)
            if how == "os_exit":
                os._exit(0)
            dist.destroy_process_group()
            time.sleep(1)
            return
        t = gpugrad.ones(3)
        dist.all_reduce(t)
        assert t.tolist() == [size] * 3
    if rank == 0:
        time.sleep(3)                                # a last save the others do not wait for
    open(os.path.join(out, f"rank{rank}.json"), "w").write("{}")


def main():
    scenario, args = sys.argv[1], sys.argv[2:]
    timeout = datetime.timedelta(seconds=4 if scenario == "failing" else 120)
    dist.init_process_group("mpi", timeout=timeout)
    rank, size = dist.get_rank(), dist.get_world_size()
    if scenario == "leaving":
        return leaving(rank, size, *args)
    result = {"collectives": collectives, "ddp": ddp, "failing": failing}[scenario](rank, size, *args)
    dist.barrier()
    with open(os.path.join(os.environ["GPUGRAD_TEST_OUT"], f"rank{rank}.json"), "w") as out:
        json.dump(result, out)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()

"""gpugrad.distributed on the CPU over MPI (mpiexec from MPICH's wheel): the
collectives, DistributedDataParallel against one process trained on the
concatenated batch (SGD and AdamW, float64, 2 and 3 ranks, buckets of several
sizes, no_sync accumulation), failures that end the job instead of hanging,
the torchrun-style launcher with its TCP store, and the sampler."""

import contextlib
import datetime
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import EMULATED

from gpugrad.distributed import run as launcher

HERE = pathlib.Path(__file__).resolve().parent
WORKER = HERE / "distributed_worker.py"
ROOT = HERE.parent
MPIEXEC = launcher.find_mpiexec()
pytest.importorskip("mpi4py")
pytestmark = pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec (pip install mpich)")


def _env(out=None):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    if out is not None:
        env["GPUGRAD_TEST_OUT"] = str(out)
    return env


@pytest.fixture
def _mpi(tmp_path):
    def run(ranks, *args, timeout=120):
        started = time.monotonic()
        command = [MPIEXEC, "-n", str(ranks), sys.executable, str(WORKER), *map(str, args)]
        job = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=_env(tmp_path), start_new_session=True)
        try:
            out, err = job.communicate(timeout=timeout)
        finally:                        # a hung job (a regression) must not outlive the test: all its ranks go
            with contextlib.suppress(ProcessLookupError):
                os.killpg(job.pid, signal.SIGKILL)
            job.wait(10)
        done = subprocess.CompletedProcess(command, job.returncode, out, err)
        done.results = [tmp_path / f"rank{r}.json" for r in range(ranks)]
        return done, time.monotonic() - started
    return run


def _results(done, ranks):
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    assert all(path.exists() for path in done.results), done.stdout
    return [json.loads(path.read_text()) for path in done.results]


@pytest.mark.parametrize("ranks", [2, 3])
def test_collectives(_mpi, ranks):
    _results(_mpi(ranks, "collectives")[0], ranks)


@pytest.mark.parametrize("ranks,optimizer,bucket_mb,accumulate", [
    (2, "sgd", 1e-6, 0), (3, "sgd", 25, 0), (2, "adamw", 3e-4, 0), (3, "adamw", 25, 0),
    (2, "sgd", 3e-4, 1), (3, "adamw", 1e-6, 1),
])
def test_ddp_equals_one_process_on_the_whole_batch(_mpi, ranks, optimizer, bucket_mb, accumulate):
    """Every rank's weights after 3 steps equal a single process trained on the
    concatenated batch (1e-10, float64); the bucket sizes give 1 to 6 buckets."""
    results = _results(_mpi(ranks, "ddp", optimizer, bucket_mb, accumulate)[0], ranks)
    assert all(r["max_difference"] <= 1e-10 for r in results)
    expected = {1e-6: 6, 3e-4: 4, 25: 1}[bucket_mb]
    assert {r["buckets"] for r in results} == {expected}


@pytest.mark.parametrize("how,message", [("raise", "rank 1 failed on purpose"),
                                          ("stall", "timed out after 4 s waiting for the other ranks")])
def test_a_failing_rank_ends_the_job(_mpi, how, message):
    """One rank raises (the job is aborted at once), or stops joining the
    collectives (the others' wait times out with a clear error): no hang."""
    done, seconds = _mpi(2, "failing", how, timeout=60)
    assert done.returncode != 0
    assert message in done.stdout + done.stderr
    assert seconds < 30


@pytest.mark.parametrize("how,message", [("exit", "left the job (its process is exiting)"),
                                          ("destroy", "left the job (it called destroy_process_group)")])
def test_a_rank_that_leaves_mid_training_fails_the_job(_mpi, how, message):
    """Rank 1 leaves after 3 of 10 steps with exit status 0 (sys.exit(0)) or through
    destroy_process_group; the group's timeout is 120 s, yet within seconds rank 0, waiting
    for it in all_reduce, raises naming it, and the job ends with an error."""
    done, seconds = _mpi(2, "leaving", how, timeout=60)
    assert done.returncode != 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert f"rank 1 of 2 {message} while rank 0 waits for it in all_reduce" in done.stdout + done.stderr
    assert seconds < 30
    assert not done.results[0].exists()


def test_ranks_that_end_at_their_own_pace_end_the_job_well(_mpi):
    """No false alarm: every rank ends without destroy_process_group, rank 0 three seconds after the other."""
    done, seconds = _mpi(2, "leaving", "late", timeout=60)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert all(path.exists() for path in done.results) and seconds > 3


def test_the_launcher_fails_a_job_whose_rank_vanished(tmp_path):
    """os._exit(0) in the middle of training: MPICH's mpiexec kills the other rank and exits 0;
    python -m gpugrad.distributed.run sees that neither left its process group and fails the job."""
    done = subprocess.run([sys.executable, "-m", "gpugrad.distributed.run", "--nproc-per-node", "2", str(WORKER),
                           "leaving", "os_exit"], capture_output=True, text=True, timeout=60, env=_env(tmp_path))
    assert done.returncode == 1, done.stderr[-3000:]
    assert "ended without leaving the process group" in done.stderr
    assert not (tmp_path / "rank0.json").exists()


def test_torchrun_style_launch_and_store(tmp_path):
    script = tmp_path / "store_worker.py"
    script.write_text(
        "import json, os\n"
        "import gpugrad.distributed as dist\n"
        "rank, size = int(os.environ['RANK']), int(os.environ['WORLD_SIZE'])\n"
        "store = dist.TCPStore(os.environ['MASTER_ADDR'], int(os.environ['MASTER_PORT']), size, rank == 0, 20)\n"
        "store.set(f'from {rank}', str(rank * 10))\n"
        "seen = sorted(int(store.get(f'from {r}')) for r in range(size))\n"
        "try:\n"
        "    dist.init_process_group('mpi')\n"
        "except RuntimeError as error:\n"
        "    seen.append(str(error))\n"
        "open(os.path.join(os.environ['GPUGRAD_TEST_OUT'], f'rank{rank}'), 'w').write(json.dumps(seen))\n"
        "store.set(f'done {rank}', b'1')\n"
        "if rank == 0:\n"
        "    [store.get(f'done {r}') for r in range(size)]   # the server lives until every rank is done\n")
    done = subprocess.run([sys.executable, "-m", "gpugrad.distributed.run", "--no-mpi", "--nproc-per-node", "3",
                           str(script)], capture_output=True, text=True, timeout=60, env=_env(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    for rank in range(3):
        seen = json.loads((tmp_path / f"rank{rank}").read_text())
        assert seen[:3] == [0, 10, 20] and "needs its processes started by mpiexec" in seen[3]
    failing = tmp_path / "fail.py"
    failing.write_text("import os, sys, time\nif os.environ['RANK'] == '1':\n    sys.exit(3)\ntime.sleep(60)\n")
    started = time.monotonic()
    code = subprocess.run([sys.executable, "-m", "gpugrad.distributed.run", "--no-mpi", "--nproc-per-node", "2",
                           str(failing)], timeout=60, env=_env()).returncode
    assert code == 3 and time.monotonic() - started < 30        # the sleeping rank was stopped


def test_launcher_uses_mpiexec(tmp_path):
    script = tmp_path / "hello.py"
    script.write_text("import sys, gpugrad.distributed as dist\ndist.init_process_group('mpi')\n"
                      "open(f'{sys.argv[1]}/rank{dist.get_rank()}', 'w').write(str(dist.get_world_size()))\n")
    done = subprocess.run([sys.executable, "-m", "gpugrad.distributed.run", "--nproc-per-node", "2", str(script),
                           str(tmp_path)], capture_output=True, text=True, timeout=60, env=_env())
    assert done.returncode == 0, done.stderr[-3000:]
    assert [(tmp_path / f"rank{r}").read_text() for r in range(2)] == ["2", "2"]


def test_launcher_shares_the_cores_out(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 64)              # the machine's processors
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)  # this process's
    env = launcher.thread_environment(4, {"PATH": "/bin"})
    assert env["OMP_NUM_THREADS"] == env["OPENBLAS_NUM_THREADS"] == "4" and env["PATH"] == "/bin"
    assert launcher.thread_environment(32, {})["OMP_NUM_THREADS"] == "1"
    assert launcher.thread_environment(4, {"OMP_NUM_THREADS": "7"}) == {"OMP_NUM_THREADS": "7"}  # the user's choice


def test_sampler_matches_torchs_partition():
    torch = pytest.importorskip("torch")
    from gpugrad.utils.data import DistributedSampler
    for n, ranks, drop_last in [(10, 3, False), (10, 3, True), (7, 2, False), (4, 4, False)]:
        for rank in range(ranks):
            ours = DistributedSampler(range(n), ranks, rank, shuffle=False, drop_last=drop_last)
            theirs = torch.utils.data.DistributedSampler(range(n), ranks, rank, shuffle=False, drop_last=drop_last)
            assert list(ours) == list(theirs) and len(ours) == len(theirs)
    first = [list(DistributedSampler(range(20), 2, r, seed=5)) for r in range(2)]
    assert sorted(first[0] + first[1]) == list(range(20))
    sampler = DistributedSampler(range(20), 2, 0, seed=5)
    sampler.set_epoch(1)
    assert list(sampler) != first[0]
    with pytest.raises(ValueError, match="Invalid rank 2"):
        DistributedSampler(range(5), 2, 2)


@pytest.mark.cuda
@pytest.mark.skipif(EMULATED, reason="the CUDA emulator has no NCCL")
def test_nccl_world_of_one():
    """One process, one GPU: the nccl backend's collectives on CUDA tensors and DDP over them."""
    import gpugrad
    import gpugrad.distributed as dist
    dist.init_process_group("nccl")
    try:
        assert dist.get_world_size() == 1 and dist.get_backend() == "nccl"
        t = gpugrad.arange(6, dtype=gpugrad.float32, device="cuda")
        dist.all_reduce(t)
        work = dist.all_reduce(t, async_op=True)
        assert isinstance(work.is_completed(), bool)
        gpugrad.cuda.synchronize()
        assert work.is_completed()  # asked of the collective's event: wait() has not run
        work.wait()
        dist.broadcast(t, 0)
        parts = [gpugrad.zeros(6, device="cuda")]
        dist.all_gather(parts, t)
        dist.barrier()
        assert t.tolist() == list(range(6)) and parts[0].tolist() == list(range(6))
        model = gpugrad.nn.Linear(4, 2).cuda()
        ddp = gpugrad.nn.parallel.DistributedDataParallel(model)
        ddp(gpugrad.ones(3, 4, device="cuda")).sum().backward()
        assert model.weight.grad.tolist() == [[3.0] * 4] * 2
    finally:
        dist.destroy_process_group()


def test_without_a_process_group():
    import gpugrad
    import gpugrad.distributed as dist
    assert not dist.is_initialized()
    with pytest.raises(RuntimeError, match="Default process group has not been initialized"):
        dist.get_rank()
    with pytest.raises(RuntimeError, match="needs init_process_group"):
        gpugrad.nn.parallel.DistributedDataParallel(gpugrad.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="Invalid backend"):
        dist.init_process_group("tcp")
    with pytest.raises(ValueError, match="init_method 'file:///tmp/rendezvous'"):
        dist.init_process_group("mpi", init_method="file:///tmp/rendezvous")
    assert not dist.is_initialized()
    assert dist._rendezvous_address("tcp://10.1.2.3:1234") == ("10.1.2.3", 1234)
    assert dist._rendezvous_address("tcp://[::1]:29501") == ("::1", 29501)


def test_the_gpt_example_trains_data_parallel(tmp_path):
    """examples/train_gpt.py --ddp on 2 CPU processes: it trains, the replicas end identical."""
    pytest.importorskip("tokenizers")
    done = subprocess.run(
        [MPIEXEC, "-n", "2", sys.executable, str(ROOT / "examples" / "train_gpt.py"), "--ddp", "--device", "cpu",
         "--size", "tiny", "--vocab", "512", "--max-files", "80", "--batch-size", "4", "--steps", "12",
         "--eval-interval", "6", "--eval-batches", "2", "--cache", str(tmp_path / "cache"), "--out",
         str(tmp_path / "out"), "--quiet", "--sample", ""], capture_output=True, text=True, timeout=300, env=_env())
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "data-parallel over 2 processes (mpi)" in done.stdout
    assert "the 2 replicas' weights are identical" in done.stdout
    assert (tmp_path / "out" / "tiny.pt").exists()


# -- the TCP store: a fixed wire format, never a pickle --------------------------------------------------

def _store(timeout=5):
    import gpugrad.distributed as dist
    port = launcher._free_port()
    return dist.TCPStore("127.0.0.1", port, 2, True, timeout), port


def test_the_store_keeps_torchs_semantics():
    import gpugrad.distributed as dist
    ours, port = _store()
    theirs = torch.distributed.TCPStore("127.0.0.1", launcher._free_port(), 1, True, timeout=datetime.timedelta(
        seconds=5))
    try:
        assert ours._server.getsockname()[0] == "127.0.0.1"             # listens where MASTER_ADDR says only
        other = dist.TCPStore("127.0.0.1", port, 2, False, 5)            # a second rank's client
        for store in (ours, theirs):
            store.set("text", "héllo")
            store.set("raw", b"\x00\xff" * 70)
            assert store.get("text") == "héllo".encode() and store.get("raw") == b"\x00\xff" * 70
            assert store.add("counter", 3) == 3 and store.add("counter", -5) == -2 and store.get("counter") == b"-2"
            assert store.check(["text", "raw"]) and not store.check(["text", "missing"])
            assert store.delete_key("text") and not store.delete_key("text")
        assert other.get("raw") == b"\x00\xff" * 70
        started = time.monotonic()
        with pytest.raises(TimeoutError, match="'never' not set within 1 s"):
            other.get("never", 1)
        assert time.monotonic() - started < 4
        for bad in (3, None):
            with pytest.raises(TypeError, match="str or bytes"):
                ours.set("x", bad)
        other.close()
    finally:
        ours.close()


def _raw(port, payload):
    import socket
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


def test_the_store_never_unpickles_what_arrives(tmp_path):
    """A pickle (the old wire format) whose loading would run a command, a header claiming
    a huge value, an unknown operation, a key that is not UTF-8, bytes that stop halfway: each
    gets an error reply (or a closed connection), nothing runs, nothing is allocated, and the
    store goes on serving its ranks."""
    import pickle
    import struct

    from gpugrad.distributed import store as wire
    marker = tmp_path / "ran"

    class Exploit:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    store, port = _store()
    try:
        evil = pickle.dumps(("set", "k", Exploit()))
        reply = _raw(port, struct.pack("!Q", len(evil)) + evil)
        assert b"not a gpugrad store message" in reply and not marker.exists()
        header = struct.pack("!4sBIQ", b"GGS1", wire.SET, 1, 1 << 62)
        assert b"over the limits" in _raw(port, header + b"k")
        assert b"unknown operation 9" in _raw(port, struct.pack("!4sBIQ", b"GGS1", 9, 1, 0) + b"k")
        assert b"not UTF-8" in _raw(port, struct.pack("!4sBIQ", b"GGS1", wire.SET, 2, 0) + b"\xff\xfe")
        assert b"operation 2 with a value of 3 bytes" in _raw(port, struct.pack("!4sBIQ", b"GGS1", wire.GET, 1, 3)
                                                                    + b"kabc")
        assert _raw(port, b"GGS1\x01") == b""                                    # half a header, then gone
        store.set("still", "serving")
        assert store.get("still") == b"serving" and store.num_keys() == 1
    finally:
        store.close()
    assert not marker.exists()


def test_a_client_refuses_a_reply_that_is_not_the_stores():
    import socket
    import threading

    import gpugrad.distributed as dist
    server = socket.create_server(("127.0.0.1", 0))

    def answer():
        conn, _ = server.accept()
        with conn:
            conn.recv(4096)
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    client = dist.TCPStore("127.0.0.1", server.getsockname()[1], 2, False, 5)
    try:
        with pytest.raises(ValueError, match="malformed reply"):
            client.get("key")
    finally:
        client.close()
        server.close()


def test_the_nccl_unique_id_travels_as_bytes(monkeypatch):
    """CuPy's unique id is a tuple of 128 C chars: signed on x86, unsigned on ARM."""
    from gpugrad.distributed.backends import NCCLBackend
    signed = tuple((i * 37) % 256 - 128 for i in range(128))
    data = NCCLBackend.id_bytes(signed)
    assert isinstance(data, bytes) and len(data) == 128
    monkeypatch.setattr("platform.machine", lambda: "x86_64")
    assert NCCLBackend.id_from_bytes(data) == signed
    monkeypatch.setattr("platform.machine", lambda: "aarch64")
    assert NCCLBackend.id_from_bytes(data) == tuple(c % 256 for c in signed)
    with pytest.raises(RuntimeError, match="of 5 bytes, not 128"):
        NCCLBackend.id_from_bytes(b"short")

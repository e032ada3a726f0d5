"""DataLoader worker processes under failure, run by tests/test_utils_data.py
in a subprocess of its own (a regression hangs that process, not the suite):

    python tests/dataloader_scenarios.py SCENARIO PIDFILE

Every worker appends its pid to PIDFILE when it starts; the scenario prints
what it saw, one line per check, and the test reads them."""

import gc
import os
import signal
import sys
import time

from gpugrad.utils.data import DataLoader, Dataset

PIDFILE = sys.argv[2]


class Slow(Dataset):
    """Item i: (i, the worker's pid); items from ``slow_from`` on take ``seconds``."""

    def __init__(self, n=64, slow_from=10**9, seconds=0.0, exit_at=None):
        self.n, self.slow_from, self.seconds, self.exit_at = n, slow_from, seconds, exit_at

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if i == self.exit_at:
            os._exit(3)
        if i >= self.slow_from:
            time.sleep(self.seconds)
        return i, os.getpid()


def record_pid(worker_id):
    with open(PIDFILE, "a") as out:
        out.write(f"{os.getpid()}\n")


def loader(dataset, workers=2, **kwargs):
    return DataLoader(dataset, batch_size=2, num_workers=workers, worker_init_fn=record_pid, **kwargs)


def alive(pid):
    """A process that exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def workers_alive(pids):
    return sum(alive(p) for p in pids)


def say(*words):
    print(*words, flush=True)


def in_process():
    """The ways out of a loop inside one process: after each, no worker is left."""
    for how in ("exhausted", "break", "caught", "gc"):
        data = loader(Slow(40))
        if how == "exhausted":
            assert len(list(data)) == 20
        elif how == "break":
            for step, _ in enumerate(data):
                if step == 2:
                    break
        elif how == "caught":
            try:
                for step, _ in enumerate(data):
                    if step == 2:
                        raise KeyError("in the loop")
            except KeyError:
                pass
        else:
            iterator = iter(data)
            next(iterator)
            cycle = [iterator]
            cycle.append(cycle)             # only the garbage collector frees it
            del iterator, cycle
            gc.collect()
        pids = [int(p) for p in open(PIDFILE).read().split()]
        say(how, "workers left", workers_alive(pids))
        os.remove(PIDFILE)
    for sig in (signal.SIGKILL, signal.SIGTERM):      # a worker killed by a signal
        iterator = iter(loader(Slow(400, slow_from=20, seconds=0.05)))
        next(iterator)
        second = next(iterator)
        victim = int(second[1][0])                    # the second batch came from worker 1
        started = time.monotonic()
        os.kill(victim, sig)
        try:
            for _ in iterator:
                pass
            say("no error")
        except RuntimeError as error:
            say(f"{sig.name} raised after {time.monotonic() - started:.2f} s:", error)
        say(sig.name, "workers left", workers_alive([int(p) for p in open(PIDFILE).read().split()]))
        os.remove(PIDFILE)
    try:                                              # a worker that exits by itself
        list(loader(Slow(40, exit_at=13)))
        say("no error")
    except RuntimeError as error:
        say("exit raised:", error)


def uncaught():
    """The loop raises and nobody catches it: the process ends, its workers with it."""
    for step, _ in enumerate(loader(Slow(400, slow_from=8, seconds=30))):
        if step == 1:
            say("raising")
            raise ValueError("in the loop")


def exit_mid_epoch():
    """The interpreter exits while an iterator (held globally) has workers busy."""
    global iterator
    iterator = iter(loader(Slow(400, slow_from=8, seconds=30)))
    next(iterator), next(iterator)                  # one batch from each worker: both have started
    say("exiting")
    sys.exit(0)


def parent_killed():
    """The parent is killed (by the test) while its workers are inside a 30 s item."""
    iterator = iter(loader(Slow(400, slow_from=6, seconds=30)))
    next(iterator), next(iterator)
    say("ready")
    time.sleep(60)


if __name__ == "__main__":
    {"in_process": in_process, "uncaught": uncaught, "exit_mid_epoch": exit_mid_epoch,
     "parent_killed": parent_killed}[sys.argv[1]]()

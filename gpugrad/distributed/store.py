"""TCPStore: the small key-value rendezvous of torchrun-style launches
(MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE): rank 0 serves, every rank sets
and waits for keys.  Used to hand NCCL's unique id to the other ranks when no
MPI launched the processes."""

import pickle
import socket
import struct
import threading
import time


def _send(sock, obj):
    data = pickle.dumps(obj)
    sock.sendall(struct.pack("!Q", len(data)) + data)


def _receive(sock):
    header = _exactly(sock, 8)
    return pickle.loads(_exactly(sock, struct.unpack("!Q", header)[0]))  # noqa: S301 (our own ranks' messages)


def _exactly(sock, count):
    chunks = []
    while count:
        chunk = sock.recv(count)
        if not chunk:
            raise ConnectionError("the store's connection closed")
        chunks.append(chunk)
        count -= len(chunk)
    return b"".join(chunks)


class TCPStore:
    """``TCPStore(host, port, world_size, is_master, timeout)`` with ``set``,
    ``get`` (waits for the key, up to the timeout) and ``close``."""

    def __init__(self, host, port, world_size=None, is_master=False, timeout=300.0):
        self.timeout = float(timeout)
        self._server = None
        if is_master:
            self._data, self._condition = {}, threading.Condition()
            self._server = socket.create_server((host, int(port)), reuse_port=False)
            self._server.settimeout(0.2)
            self._stop = False
            self._thread = threading.Thread(target=self._serve, daemon=True)
            self._thread.start()
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                self._sock = socket.create_connection((host, int(port)), timeout=self.timeout + 5)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"TCPStore: no store at {host}:{port} after {self.timeout:.0f} s") from None
                time.sleep(0.05)

    # -- the server (rank 0) ----------------------------------------------------------
    def _serve(self):
        while not self._stop:
            try:
                conn, _ = self._server.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=self._client, args=(conn,), daemon=True).start()

    def _client(self, conn):
        conn.settimeout(None)
        with conn:
            while True:
                try:
                    op, key, value = _receive(conn)
                except (ConnectionError, OSError):
                    return
                with self._condition:
                    if op == "set":
                        self._data[key] = value
                        self._condition.notify_all()
                        reply = True
                    else:
                        found = self._condition.wait_for(lambda: key in self._data, timeout=value)
                        reply = ("ok", self._data[key]) if found else ("timeout", None)
                _send(conn, reply)

    # -- the client (every rank) --------------------------------------------------------
    def set(self, key, value):
        _send(self._sock, ("set", key, value))
        _receive(self._sock)

    def get(self, key):
        _send(self._sock, ("get", key, self.timeout))
        status, value = _receive(self._sock)
        if status != "ok":
            raise TimeoutError(f"TCPStore: key {key!r} not set within {self.timeout:.0f} s")
        return value

    def close(self):
        self._sock.close()
        if self._server is not None:
            self._stop = True
            self._server.close()

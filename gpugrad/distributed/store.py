"""TCPStore: the small key-value rendezvous of torchrun-style launches
(MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE): rank 0 serves, every rank sets
and waits for keys.  Used to hand NCCL's unique id to the other ranks when no
MPI launched the processes.

What crosses the network is data, never code: keys are UTF-8 strings and
values bytes, in a fixed, length-prefixed wire format (below) that is parsed,
never unpickled.  The server listens on the address it is given (MASTER_ADDR:
127.0.0.1 keeps it on this machine) and answers a malformed message (wrong
magic, unknown operation, a key or value over the limits, bad UTF-8) with an
error reply and closes that connection; the store keeps serving the others.

Wire format (network byte order):

    request  = "GGS1" | op: u8 | key length: u32 | value length: u64 | key | value
    reply    = "GGS1" | status: u8 | value length: u64 | value

    op: 1 set (value: the bytes), 2 get (value: u64 timeout in ms; waits for the key),
        3 add (value: i64; returns the new i64), 4 check (value: empty; returns u8 1/0),
        5 delete (value: empty; returns u8 1/0), 6 num_keys (returns u64)
    status: 0 ok, 1 timed out, 2 error (value: the message, UTF-8)

This is not cupyx.distributed's store: that one is private API, runs its
server in a process of its own, cannot wait for a key, and holds 256 bytes.
"""

import socket
import struct
import threading
import time

MAGIC = b"GGS1"
MAX_KEY = 4096
MAX_VALUE = 1 << 24
_REQUEST = struct.Struct("!4sBIQ")
_REPLY = struct.Struct("!4sBQ")
SET, GET, ADD, CHECK, DELETE, NUM_KEYS = 1, 2, 3, 4, 5, 6
OK, TIMED_OUT, ERROR = 0, 1, 2


class StoreProtocolError(ValueError):
    """A message that does not follow the store's wire format."""


def _exactly(sock, count):
    chunks = []
    while count:
        chunk = sock.recv(min(count, 1 << 20))
        if not chunk:
            raise ConnectionError("the store's connection closed")
        chunks.append(chunk)
        count -= len(chunk)
    return b"".join(chunks)


def _read_request(sock):
    """(op, key, value) of one request; StoreProtocolError when it is malformed."""
    magic, op, key_length, value_length = _REQUEST.unpack(_exactly(sock, _REQUEST.size))
    if magic != MAGIC:
        raise StoreProtocolError(f"not a gpugrad store message (it begins {magic!r}, not {MAGIC!r})")
    if op not in (SET, GET, ADD, CHECK, DELETE, NUM_KEYS):
        raise StoreProtocolError(f"unknown operation {op}")
    if key_length > MAX_KEY or value_length > MAX_VALUE:
        raise StoreProtocolError(f"a key of {key_length} bytes or a value of {value_length} bytes is over the limits "
                                 f"({MAX_KEY} and {MAX_VALUE})")
    if op in (GET, ADD) and value_length != 8 or op in (CHECK, DELETE, NUM_KEYS) and value_length:
        raise StoreProtocolError(f"operation {op} with a value of {value_length} bytes")
    try:
        key = _exactly(sock, key_length).decode("utf-8")
    except UnicodeDecodeError:
        raise StoreProtocolError("a key that is not UTF-8") from None
    return op, key, _exactly(sock, value_length)


def _reply(sock, status, value=b""):
    sock.sendall(_REPLY.pack(MAGIC, status, len(value)) + value)


def _hang_up(sock):
    """Close after a refusal so that the reply arrives: what the peer still sends is read and
    dropped (up to 1 MB or 1 s), since closing on unread bytes would reset the connection."""
    sock.shutdown(socket.SHUT_WR)
    sock.settimeout(1.0)
    left = 1 << 20
    while left > 0 and (chunk := sock.recv(min(left, 65536))):
        left -= len(chunk)


class TCPStore:
    """torch.distributed.TCPStore's core: ``TCPStore(host_name, port,
    world_size, is_master, timeout)`` with ``set(key, value)`` (str or bytes),
    ``get(key)`` (bytes; waits for the key up to the timeout), ``add(key,
    amount)``, ``check(keys)``, ``wait(keys)``, ``delete_key``, ``num_keys``
    and ``close``."""

    def __init__(self, host_name, port, world_size=None, is_master=False, timeout=300.0):
        self.host, self.port = host_name, int(port)
        self.timeout = timeout.total_seconds() if hasattr(timeout, "total_seconds") else float(timeout)
        self._server = None
        if is_master:
            self._data, self._condition = {}, threading.Condition()
            self._server = socket.create_server((host_name, self.port))
            self._server.settimeout(0.2)
            self._stop = False
            self._connections = threading.BoundedSemaphore(max(64, 4 * (world_size or 1)))
            self._thread = threading.Thread(target=self._serve, daemon=True, name="gpugrad TCPStore")
            self._thread.start()
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                self._sock = socket.create_connection((host_name, self.port), timeout=self.timeout + 5)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"TCPStore: no store at {host_name}:{port} after {self.timeout:.0f} s") from None
                time.sleep(0.05)
        self._lock = threading.Lock()

    # -- the server (rank 0) ----------------------------------------------------------
    def _serve(self):
        while not self._stop:
            try:
                conn, _ = self._server.accept()
            except (TimeoutError, OSError):
                continue
            if not self._connections.acquire(blocking=False):
                conn.close()                     # a flood of connections: refuse the excess
                continue
            threading.Thread(target=self._client, args=(conn,), daemon=True).start()

    def _client(self, conn):
        conn.settimeout(None)
        try:
            with conn:
                while True:
                    try:
                        op, key, value = _read_request(conn)
                    except StoreProtocolError as error:
                        _reply(conn, ERROR, f"TCPStore refused a malformed message: {error}".encode())
                        _hang_up(conn)
                        return
                    status, answer = self._execute(op, key, value)
                    _reply(conn, status, answer)
        except (ConnectionError, OSError):
            return
        finally:
            self._connections.release()

    def _execute(self, op, key, value):
        with self._condition:
            if op == SET:
                self._data[key] = value
                self._condition.notify_all()
                return OK, b""
            if op == GET:
                seconds = struct.unpack("!Q", value)[0] / 1000
                if not self._condition.wait_for(lambda: key in self._data, timeout=seconds):
                    return TIMED_OUT, b""
                return OK, self._data[key]
            if op == ADD:
                current = self._data.get(key, b"0")
                try:
                    total = int(current) + struct.unpack("!q", value)[0]
                except ValueError:
                    return ERROR, f"add: the value of {key!r} is not an integer".encode()
                self._data[key] = str(total).encode()
                self._condition.notify_all()
                return OK, struct.pack("!q", total)
            if op == CHECK:
                return OK, bytes([key in self._data])
            if op == DELETE:
                return OK, bytes([self._data.pop(key, None) is not None])
            return OK, struct.pack("!Q", len(self._data))

    # -- the client (every rank) --------------------------------------------------------
    def _call(self, op, key, value=b""):
        data = key.encode("utf-8")
        if len(data) > MAX_KEY or len(value) > MAX_VALUE:
            raise ValueError(f"TCPStore: keys hold at most {MAX_KEY} bytes and values {MAX_VALUE}")
        with self._lock:
            self._sock.sendall(_REQUEST.pack(MAGIC, op, len(data), len(value)) + data + value)
            magic, status, length = _REPLY.unpack(_exactly(self._sock, _REPLY.size))
            if magic != MAGIC or status not in (OK, TIMED_OUT, ERROR) or length > MAX_VALUE:
                raise StoreProtocolError(f"TCPStore: a malformed reply from {self.host}:{self.port}")
            answer = _exactly(self._sock, length)
        if status == ERROR:
            raise RuntimeError(answer.decode("utf-8", "replace"))
        return status, answer

    @staticmethod
    def _key(key):
        if not isinstance(key, str):
            raise TypeError(f"TCPStore: keys are strings, not {type(key).__name__}")
        return key

    def set(self, key, value):
        """Store ``value`` (str or bytes) under ``key``."""
        if isinstance(value, str):
            value = value.encode("utf-8")
        if not isinstance(value, (bytes, bytearray)):
            raise TypeError(f"TCPStore.set: the value is str or bytes, not {type(value).__name__}")
        self._call(SET, self._key(key), bytes(value))

    def get(self, key, _timeout=None):
        """The bytes stored under ``key``, waiting for them up to the timeout."""
        seconds = self.timeout if _timeout is None else _timeout
        status, value = self._call(GET, self._key(key), struct.pack("!Q", int(seconds * 1000)))
        if status == TIMED_OUT:
            raise TimeoutError(f"TCPStore: key {key!r} not set within {seconds:.0f} s")
        return value

    def add(self, key, amount):
        """Add ``amount`` to the integer under ``key`` (0 if unset); returns the new value."""
        return struct.unpack("!q", self._call(ADD, self._key(key), struct.pack("!q", int(amount)))[1])[0]

    def check(self, keys):
        """True when every key is set (without waiting)."""
        return all(self._call(CHECK, self._key(k))[1] == b"\x01" for k in keys)

    def wait(self, keys, timeout=None):
        """Wait until every key is set (up to ``timeout``, a timedelta or seconds, else the store's)."""
        seconds = timeout.total_seconds() if hasattr(timeout, "total_seconds") else timeout
        deadline = time.monotonic() + (self.timeout if seconds is None else seconds)
        for key in keys:
            self.get(key, max(0.0, deadline - time.monotonic()))

    def delete_key(self, key):
        return self._call(DELETE, self._key(key))[1] == b"\x01"

    def num_keys(self):
        return struct.unpack("!Q", self._call(NUM_KEYS, "")[1])[0]

    def close(self):
        self._sock.close()
        if self._server is not None:
            self._stop = True
            self._server.close()

"""A fault-injecting HTTP/1.1 server for the reliability tests: stdlib only, bounded, on 127.0.0.1.

Unlike a mock at the adapter layer, this is a real socket peer, so transport faults are real:
a connection reset (RST), a chunked body cut off mid-stream, a server that accepts and then
says nothing, a client disconnect the server can observe, TLS with a self-signed certificate.

Every request is answered by a *handler*, a callable `handler(conn, request)`. Tests queue
handlers with `script()` (used in order, one per request) and the rest get `default`. A handler
marked `before_request` runs as soon as a connection is accepted, before the request is read.
Everything the server saw is recorded: connections accepted and still open, requests read
(method, path, headers, body) and client disconnects noticed while a handler waited.

Every wait is bounded: sockets have an I/O timeout, handlers wait at most `MAX_WAIT` seconds,
connections are capped at `max_connections`, and `stop()` closes every socket and joins every
thread (with a timeout).
"""

from __future__ import annotations

import collections
import contextlib
import json
import select
import socket
import ssl
import struct
import threading
import time
from typing import Any, Callable, Deque, Iterable, Iterator, Optional

__all__ = [
    "MAX_WAIT",
    "Connection",
    "FaultServer",
    "Request",
    "blackhole",
    "close_after_request",
    "delayed",
    "echo_stream",
    "endless",
    "redirect",
    "reset_after_request",
    "reset_before_request",
    "respond",
    "respond_json",
    "silence",
    "sse_stream",
    "sse_unframed",
    "text_chunks",
    "text_stream",
]

MAX_WAIT = 10.0  # the longest any handler or socket operation waits, in seconds
_MAX_HEAD = 64 * 1024

Handler = Callable[["Connection", "Request"], None]


class Request:
    """One request the server read."""

    def __init__(self, method: str, path: str, headers: dict, body: bytes) -> None:
        self.method = method
        self.path = path
        self.headers = headers  # lower-case names
        self.body = body

    def json(self) -> Any:
        """The body, decoded as JSON."""
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"Request({self.method} {self.path}, {len(self.body)} bytes)"


class Connection:
    """The server side of one accepted connection, with the primitives handlers use."""

    def __init__(self, sock: socket.socket, server: "FaultServer") -> None:
        self.sock = sock
        self.server = server
        self.keep_alive = True  # a handler sets False when the connection must close after it
        self.closed = False
        self._buffer = b""

    # -- reading -----------------------------------------------------------------------------

    def _recv(self) -> bytes:
        try:
            return self.sock.recv(65536)
        except (OSError, ssl.SSLError):
            return b""

    def read_request(self) -> Optional[Request]:
        """Read one request (head and Content-Length body); None on EOF or garbage."""
        while b"\r\n\r\n" not in self._buffer:
            if len(self._buffer) > _MAX_HEAD:
                return None
            data = self._recv()
            if not data:
                return None
            self._buffer += data
        head, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        try:
            method, path, _ = lines[0].split(" ", 2)
        except ValueError:
            return None
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0") or 0)
        while len(self._buffer) < length:
            data = self._recv()
            if not data:
                return None
            self._buffer += data
        body, self._buffer = self._buffer[:length], self._buffer[length:]
        request = Request(method, path, headers, body)
        self.server._record(request)
        return request

    # -- writing -----------------------------------------------------------------------------

    def send(self, data: bytes) -> bool:
        """Send raw bytes; False when the client is gone."""
        try:
            self.sock.sendall(data)
            return True
        except (OSError, ssl.SSLError):
            self.server._note_disconnect()
            return False

    def send_head(self, status: int, headers: Iterable[tuple] = (), *, reason: str = "Fault") -> bool:
        """Send a status line and headers (the caller includes framing headers)."""
        lines = [f"HTTP/1.1 {status} {reason}"] + [f"{name}: {value}" for name, value in headers]
        return self.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    def send_chunk(self, data: bytes) -> bool:
        """Send one chunk of a chunked body."""
        return self.send(b"%x\r\n%s\r\n" % (len(data), data)) if data else True

    def end_chunks(self) -> bool:
        """Send the terminating zero-length chunk."""
        return self.send(b"0\r\n\r\n")

    # -- ending ------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection normally (FIN)."""
        if not self.closed:
            self.closed = True
            self.keep_alive = False
            try:
                self.sock.close()
            except OSError:
                pass
            self.server._connection_closed()

    def reset(self) -> None:
        """Abort the connection with a TCP reset (RST), as a crashing peer or a proxy would."""
        if not self.closed:
            try:
                raw = self.sock
                raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
            self.close()

    def wait_for_disconnect(self, timeout: float = MAX_WAIT) -> bool:
        """Send nothing and wait until the client closes the connection (True) or `timeout` passes."""
        deadline = time.monotonic() + min(timeout, MAX_WAIT)
        while not self.server.stopping:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                readable, _, _ = select.select([self.sock], [], [], min(remaining, 0.05))
            except (OSError, ValueError):
                readable = [self.sock]
            if readable and not self._recv():
                self.server._note_disconnect()
                self.keep_alive = False
                return True
        return False


class FaultServer:
    """A threaded HTTP/1.1 server on 127.0.0.1 whose answers are scripted faults.

    Args:
        ssl_context: Serve HTTPS with this server-side context.
        listen: Start listening at once; with False the port is bound but connections are
            refused until `listen()` is called.
        max_connections: Connections accepted at most (later ones are reset).
    """

    def __init__(self, *, ssl_context: ssl.SSLContext | None = None, listen: bool = True,
                 max_connections: int = 64) -> None:
        self._ssl = ssl_context
        self._max_connections = max_connections
        self._lock = threading.Lock()
        self._script: Deque[Handler] = collections.deque()
        self.default: Handler = echo_stream()
        self.requests: list = []
        self.request_times: list = []
        self.connections = 0
        self.open_connections = 0
        self.disconnects = 0
        self.disconnected = threading.Event()
        self.stopping = False
        self._threads: list = []
        self._sockets: list = []
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"{'https' if ssl_context else 'http'}://127.0.0.1:{self.port}"
        self._acceptor: threading.Thread | None = None
        if listen:
            self.listen()

    # -- lifetime ------------------------------------------------------------------------------

    def listen(self) -> None:
        """Start accepting connections."""
        self._listener.listen(64)
        self._listener.settimeout(0.05)
        self._acceptor = threading.Thread(target=self._accept_loop, name="fault-server-accept", daemon=True)
        self._acceptor.start()

    def stop(self) -> None:
        """Close every socket and join every thread (bounded)."""
        self.stopping = True
        if self._acceptor is not None:
            self._acceptor.join(MAX_WAIT)
        self._listener.close()
        with self._lock:
            sockets, threads = list(self._sockets), list(self._threads)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread in threads:
            thread.join(MAX_WAIT)
        for sock in sockets:
            try:
                sock.close()
            except OSError:
                pass

    def __enter__(self) -> "FaultServer":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    # -- scripting and records ------------------------------------------------------------------

    def script(self, *handlers: Handler) -> "FaultServer":
        """Queue handlers for the next requests, in order (then `default` answers)."""
        with self._lock:
            self._script.extend(handlers)
        return self

    @property
    def paths(self) -> list:
        """The paths of the requests read, in order."""
        return [request.path for request in self.requests]

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 3.0) -> bool:
        """Poll `predicate` until it is true (True) or `timeout` passes (False)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.01)
        return predicate()

    def _record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)
            self.request_times.append(time.monotonic())

    def _note_disconnect(self) -> None:
        with self._lock:
            self.disconnects += 1
        self.disconnected.set()

    def _connection_closed(self) -> None:
        with self._lock:
            self.open_connections -= 1

    def _next(self, *, early: bool) -> Handler | None:
        with self._lock:
            if self._script and bool(getattr(self._script[0], "before_request", False)) == early:
                return self._script.popleft()
        return None if early else self.default

    # -- serving -------------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        while not self.stopping:
            try:
                sock, _ = self._listener.accept()
            except (socket.timeout, BlockingIOError):
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self.open_connections += 1
                full = self.connections > self._max_connections
                thread = threading.Thread(target=self._serve, args=(sock, full), name="fault-server-conn", daemon=True)
                self._threads.append(thread)
                self._sockets.append(sock)
            thread.start()

    def _serve(self, sock: socket.socket, refuse: bool) -> None:
        sock.settimeout(MAX_WAIT)
        if self._ssl is not None:
            try:
                sock = self._ssl.wrap_socket(sock, server_side=True)
            except (OSError, ssl.SSLError):
                Connection(sock, self).close()
                return
            with self._lock:
                self._sockets.append(sock)
        conn = Connection(sock, self)
        try:
            if refuse:
                conn.reset()
                return
            early = self._next(early=True)
            if early is not None:
                early(conn, None)  # type: ignore[arg-type]
            while not conn.closed and conn.keep_alive and not self.stopping:
                request = conn.read_request()
                if request is None:
                    break
                handler = self._next(early=False)
                handler(conn, request)  # type: ignore[misc]
        finally:
            conn.close()


# ---------------------------------------------------------------------------------------------
# Handlers


def _early(handler: Handler) -> Handler:
    handler.before_request = True  # type: ignore[attr-defined]
    return handler


def reset_before_request() -> Handler:
    """Reset the connection as soon as it is accepted, before reading the request."""
    return _early(lambda conn, request: conn.reset())


def reset_after_request() -> Handler:
    """Read the whole request, then reset the connection without answering."""
    return lambda conn, request: conn.reset()


def close_after_request() -> Handler:
    """Read the whole request, then close the connection without answering."""
    return lambda conn, request: conn.close()


def silence(seconds: float = MAX_WAIT) -> Handler:
    """Read the request, then send nothing until the client leaves (or `seconds` pass)."""

    def handler(conn: Connection, request: Request) -> None:
        conn.wait_for_disconnect(seconds)
        conn.close()

    return handler


def respond(status: int, body: bytes | str = b"", *, content_type: str = "text/plain",
            headers: Iterable[tuple] = (), close: bool = False) -> Handler:
    """Answer with a fixed body (Content-Length framing)."""
    data = body.encode() if isinstance(body, str) else body

    def handler(conn: Connection, request: Request) -> None:
        head = [("Content-Type", content_type), ("Content-Length", len(data)), *headers]
        if close:
            head.append(("Connection", "close"))
        conn.send_head(status, head)
        conn.send(data)
        if close:
            conn.close()

    return handler


def respond_json(status: int, payload: Any, **kwargs: Any) -> Handler:
    """Answer with a JSON body, as llama-server does for errors."""
    return respond(status, json.dumps(payload), content_type="application/json; charset=utf-8", **kwargs)


def redirect(location: str, status: int = 307) -> Handler:
    """Answer with a redirect to `location`."""
    return respond(status, b"", headers=[("Location", location)])


def sse_event(payload: Any) -> bytes:
    """Frame one payload as llama-server does: `data: <json>\\n\\n` (strings are sent as is)."""
    data = payload if isinstance(payload, (str, bytes)) else json.dumps(payload)
    return b"data: " + (data if isinstance(data, bytes) else data.encode()) + b"\n\n"


def sse_stream(*payloads: Any, done: bool = True, status: int = 200, content_type: str = "text/event-stream",
               end: str = "finish", gap: float = 0.0, raw: bytes | None = None,
               raw_chunks: Iterable[bytes] | None = None) -> Handler:
    """Answer with a chunked SSE stream, one event per chunk, then end it as `end` says.

    Args:
        payloads: The events' data (dicts are JSON-encoded, strings and bytes sent as is).
        done: Send `data: [DONE]` after the payloads.
        status: The HTTP status.
        content_type: The Content-Type header.
        end: `finish` (terminating chunk, keep-alive), `cut` (close without the terminating
            chunk), `reset` (RST without the terminating chunk), `stall` (send nothing more and
            wait for the client to leave), `finish-close` (terminating chunk, then close, as
            llama-server does after a stream), `finish-reset-next` (terminating chunk, then
            reset the connection when the next request arrives, without reading it: the race of
            a pooled connection the server drops just as it is reused).
        gap: Seconds to wait between events.
        raw: Bytes to send as the body instead of the framed payloads.
        raw_chunks: Pieces of body to send as they are, one HTTP chunk each (empty ones skipped).
    """
    if raw_chunks is not None:
        events = [piece for piece in raw_chunks if piece]
    elif raw is not None:
        events = [raw]
    else:
        events = [sse_event(p) for p in payloads] + ([b"data: [DONE]\n\n"] if done else [])

    def handler(conn: Connection, request: Request) -> None:
        head = [("Content-Type", content_type), ("Transfer-Encoding", "chunked"), ("Server", "llama.cpp"),
                ("Keep-Alive", "timeout=5, max=100")]
        if not conn.send_head(status, head):
            return
        for index, event in enumerate(events):
            if index and gap:
                time.sleep(gap)
            if not conn.send_chunk(event):
                conn.close()
                return
        if end == "finish":
            conn.end_chunks()
        elif end == "cut":
            conn.close()
        elif end == "reset":
            conn.reset()
        elif end == "stall":
            conn.wait_for_disconnect()
            conn.close()
        elif end == "finish-close":
            conn.end_chunks()
            conn.close()
        elif end == "finish-reset-next":
            conn.end_chunks()
            select.select([conn.sock], [], [], MAX_WAIT)  # the client sends its next request
            conn.reset()
        else:
            raise ValueError(f"unknown end {end!r}")

    return handler


def sse_unframed(*payloads: Any, done: bool = True, gap: float = 0.0, end: str = "close") -> Handler:
    """Answer with an SSE body without chunked framing, delimited by closing the connection
    (as an HTTP/1.0 proxy sends it); `end` is `close` or `stall` (wait for the client to leave)."""
    events = [sse_event(p) for p in payloads] + ([b"data: [DONE]\n\n"] if done else [])

    def handler(conn: Connection, request: Request) -> None:
        conn.send_head(200, [("Content-Type", "text/event-stream"), ("Connection", "close")])
        for index, event in enumerate(events):
            if index and gap:
                time.sleep(gap)
            if not conn.send(event):
                break
        if end == "stall":
            conn.wait_for_disconnect()
        conn.close()

    return handler


def text_chunks(*pieces: str, finish: str = "stop") -> list:
    """A llama-server chat stream: role chunk, one chunk per piece, finish chunk, usage chunk."""
    chunks: list = [{"choices": [{"index": 0, "finish_reason": None, "delta": {"role": "assistant", "content": None}}]}]
    chunks += [{"choices": [{"index": 0, "finish_reason": None, "delta": {"content": p}}]} for p in pieces]
    chunks.append({"choices": [{"index": 0, "finish_reason": finish, "delta": {}}]})
    chunks.append({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": len(pieces),
                                            "total_tokens": 5 + len(pieces)}})
    return chunks


def text_stream(*pieces: str, **kwargs: Any) -> Handler:
    """A complete, well-formed text answer."""
    return sse_stream(*text_chunks(*pieces), **kwargs)


def echo_stream(pieces: int = 3, gap: float = 0.0, barrier: threading.Barrier | None = None) -> Handler:
    """Stream the last user message back, `pieces` times, so each caller can spot its own answer.

    With a `barrier`, each request waits (bounded) until that many are being answered at once.
    """

    def handler(conn: Connection, request: Request) -> None:
        if barrier is not None:
            barrier.wait(MAX_WAIT)
        try:
            marker = request.json()["messages"][-1]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            marker = "?"
        text = marker if isinstance(marker, str) else json.dumps(marker)
        sse_stream(*text_chunks(*[f"{text}|{i};" for i in range(pieces)]), gap=gap)(conn, request)

    return handler


def delayed(seconds: float, then: Handler) -> Handler:
    """Read the request, send nothing for `seconds` (a queued request), then answer with `then`."""

    def handler(conn: Connection, request: Request) -> None:
        if conn.wait_for_disconnect(seconds):
            conn.close()
            return
        then(conn, request)

    return handler


def endless(status: int, content_type: str = "text/html", piece: bytes = b"<p>proxy error page</p>\n" * 40) -> Handler:
    """Answer with a chunked body that never ends (until the client leaves, `MAX_WAIT`, or 256 MiB)."""

    def handler(conn: Connection, request: Request) -> None:
        conn.send_head(status, [("Content-Type", content_type), ("Transfer-Encoding", "chunked")])
        deadline, sent = time.monotonic() + MAX_WAIT, 0
        while time.monotonic() < deadline and sent < 256 * 1024 * 1024:
            if not conn.send_chunk(piece):
                break
            sent += len(piece)
            time.sleep(0.001)
        conn.close()

    return handler


@contextlib.contextmanager
def blackhole() -> Iterator[str]:
    """Yield the URL of a port whose accept queue is full, so that connecting times out.

    The listening socket never accepts; its queue (backlog 0) is filled by a few connections
    of our own, after which the kernel drops new connection attempts without answering.
    """
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    fillers = []
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        for _ in range(8):
            filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            filler.setblocking(False)
            fillers.append(filler)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
        time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        for sock in [*fillers, listener]:
            sock.close()


def stream_body(status: int, pieces: Iterable[bytes], *, content_type: str = "application/json",
                headers: Iterable[tuple] = (), length: int | None = None) -> Handler:
    """Answer with `pieces` sent as fast as the client reads them: chunked, or with a declared
    `Content-Length` (which the pieces need not match); stops when the client leaves."""

    def handler(conn: Connection, request: Request) -> None:
        framing = [("Transfer-Encoding", "chunked")] if length is None else [("Content-Length", length)]
        if not conn.send_head(status, [("Content-Type", content_type), *framing, *headers]):
            return
        for piece in pieces:
            if not (conn.send_chunk(piece) if length is None else conn.send(piece)):
                break
        else:
            if length is None:
                conn.end_chunks()
        conn.close()

    return handler


def compressed(data_pieces: Iterable[bytes], encoding: str = "gzip") -> bytes:
    """Compress pieces of data into one `gzip` or `deflate` (zlib) body, piece by piece."""
    import zlib

    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS)
    return b"".join(compressor.compress(piece) for piece in data_pieces) + compressor.flush()
